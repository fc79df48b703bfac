"""Adapters of the metric-driven control loops (blocking; run on the API thread pool).

Each function does one thing and is safe to repeat: a write is skipped when the object already
says what is wanted, so a restarted operator that replays a step changes nothing twice.

| function                   | writes                                                        |
|----------------------------|---------------------------------------------------------------|
| patch_routing_key          | one key of ``<pin>-routing`` (canary.json, experiment.json, pin.json) |
| patch_model_pin_status     | fields of a ModelPin's status (stable record, downshift)      |
| remove_annotation          | one annotation of a custom resource (a consumed manual action) |
| patch_httproute_weights    | backend weights of a Gateway API HTTPRoute                    |
| delete_job                 | a Job and its pods (background, or foreground for a restart)  |
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from artisan_common.routing import routing_configmap_name
from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.api.model_pin import PLURAL as MODEL_PIN_PLURAL
from artisan_operator.cluster.client import MERGE_PATCH, ApiException, ClusterClient, decode

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_VERSION = "v1"
HTTPROUTE_PLURAL = "httproutes"

Manifest = dict[str, Any]


def _not_found(error: ApiException) -> bool:
    return bool(error.status == 404)


def read_routing(cluster: ClusterClient, namespace: str, model_pin: str) -> dict[str, str] | None:
    """The data of ``<pin>-routing``; None when the ModelPin has not created it yet."""
    configmap = cluster.read(
        cluster.core.read_namespaced_config_map, routing_configmap_name(model_pin), namespace
    )
    if configmap is None:
        return None
    return {str(k): str(v) for k, v in (configmap.get("data") or {}).items()}


def patch_routing_key(cluster: ClusterClient, namespace: str, model_pin: str, key: str, value: str) -> bool:
    """Set one key of the routing table; returns whether it changed. False too when the ConfigMap is
    missing (the ModelPin creates it; the loop retries on its next pass)."""
    data = read_routing(cluster, namespace, model_pin)
    if data is None or data.get(key, "null") == value:
        return False
    cluster.core.patch_namespaced_config_map(
        routing_configmap_name(model_pin),
        namespace,
        {"data": {key: value}},
        _content_type=MERGE_PATCH,
        _preload_content=False,
        _request_timeout=cluster.request_timeout,
    )
    return True


def patch_model_pin_status(
    cluster: ClusterClient,
    namespace: str,
    name: str,
    fields: Mapping[str, Any],
    *,
    resource_version: str | None = None,
) -> bool:
    """Merge ``fields`` into a ModelPin's status (the records the control loops own).

    With ``resource_version`` the write is conditional (optimistic concurrency): when the ModelPin
    changed since it was read, for instance the reconcile just added a condition, nothing is written
    and False is returned, so the caller re-reads rather than overwriting the newer list.
    """
    body: dict[str, Any] = {"status": dict(fields)}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    try:
        cluster.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            MODEL_PIN_PLURAL,
            name,
            body,
            _content_type=MERGE_PATCH,
            _preload_content=False,
            _request_timeout=cluster.request_timeout,
        )
    except ApiException as error:
        if resource_version is not None and error.status == 409:
            return False
        raise
    return True


def remove_annotation(cluster: ClusterClient, plural: str, namespace: str, name: str, key: str) -> None:
    """Drop one annotation (a manual action once applied); a vanished object is fine."""
    try:
        cluster.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"metadata": {"annotations": {key: None}}},
            _content_type=MERGE_PATCH,
            _preload_content=False,
            _request_timeout=cluster.request_timeout,
        )
    except ApiException as error:
        if not _not_found(error):
            raise


def weighted_rules(rules: list[Manifest], stable: str, canary: str, weight: int) -> list[Manifest]:
    """The HTTPRoute rules with the stable/canary backend weights set (pure).

    Every rule that routes to the stable Service gets both backends: stable ``100 - weight``, canary
    ``weight`` (a weight of 0 keeps the canary backend listed, receiving nothing).
    """
    result: list[Manifest] = []
    for rule in rules:
        refs = [dict(ref) for ref in rule.get("backendRefs") or []]
        names = [ref.get("name") for ref in refs]
        if stable in names:
            port: Any = None
            refs = [ref for ref in refs if ref.get("name") != canary]
            for ref in refs:
                if ref.get("name") == stable:
                    ref["weight"] = 100 - weight
                    port = ref.get("port")
            canary_ref: Manifest = {"name": canary, "weight": weight}
            if port is not None:
                canary_ref["port"] = port
            refs.append(canary_ref)
        result.append({**rule, "backendRefs": refs})
    return result


def patch_httproute_weights(
    cluster: ClusterClient, namespace: str, route: str, *, stable: str, canary: str, weight: int
) -> bool:
    """Set the canary weight in a Gateway API HTTPRoute; returns whether it changed.

    Raises LookupError when the route is missing or does not route to the stable Service.
    """
    try:
        current = decode(
            cluster.custom.get_namespaced_custom_object(
                GATEWAY_API_GROUP,
                GATEWAY_API_VERSION,
                namespace,
                HTTPROUTE_PLURAL,
                route,
                _preload_content=False,
                _request_timeout=cluster.request_timeout,
            )
        )
    except ApiException as error:
        if _not_found(error):
            raise LookupError(f"HTTPRoute {route} not found") from error
        raise
    rules = list((current.get("spec") or {}).get("rules") or [])
    if not any(ref.get("name") == stable for rule in rules for ref in rule.get("backendRefs") or []):
        raise LookupError(f"HTTPRoute {route} has no backendRef to the stable Service {stable}")
    wanted = weighted_rules(rules, stable, canary, weight)
    if json.dumps(wanted, sort_keys=True) == json.dumps(rules, sort_keys=True):
        return False
    cluster.custom.patch_namespaced_custom_object(
        GATEWAY_API_GROUP,
        GATEWAY_API_VERSION,
        namespace,
        HTTPROUTE_PLURAL,
        route,
        {"spec": {"rules": wanted}},
        _content_type=MERGE_PATCH,
        _preload_content=False,
        _request_timeout=cluster.request_timeout,
    )
    return True


def pods_metrics_urls_by_name(
    cluster: ClusterClient, namespace: str, selector: Mapping[str, str], port: int
) -> dict[str, str]:
    """Pod name → its /metrics URL, for the running pods matching ``selector``."""
    raw = decode(
        cluster.core.list_namespaced_pod(
            namespace,
            label_selector=",".join(f"{k}={v}" for k, v in sorted(selector.items())),
            _preload_content=False,
            _request_timeout=cluster.request_timeout,
        )
    )
    urls: dict[str, str] = {}
    for pod in raw.get("items") or []:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            continue
        status = pod.get("status") or {}
        if status.get("podIP") and status.get("phase") == "Running":
            urls[str(meta.get("name"))] = f"http://{status['podIP']}:{port}/metrics"
    return urls


def pod_metrics_urls(
    cluster: ClusterClient, namespace: str, selector: Mapping[str, str], port: int
) -> list[str]:
    """``http://<podIP>:<port>/metrics`` of the running pods matching ``selector``."""
    return list(pods_metrics_urls_by_name(cluster, namespace, selector, port).values())


def delete_job(cluster: ClusterClient, namespace: str, name: str, *, foreground: bool = False) -> bool:
    """Delete a Job and its pods; False when it was already gone.

    ``foreground``: the Job stays (with a deletionTimestamp) until its pods are gone, so a caller that
    waits for the Job to disappear knows no old pod still writes the checkpoint volume.
    """
    try:
        cluster.batch.delete_namespaced_job(
            name,
            namespace,
            propagation_policy="Foreground" if foreground else "Background",
            _preload_content=False,
            _request_timeout=cluster.request_timeout,
        )
    except ApiException as error:
        if _not_found(error):
            return False
        raise
    return True


def scale_deployment_if_exists(cluster: ClusterClient, namespace: str, name: str, replicas: int) -> bool:
    """Set a Deployment's replicas if it exists and differs; returns whether it changed."""
    try:
        current = decode(
            cluster.apps.read_namespaced_deployment(
                name, namespace, _preload_content=False, _request_timeout=cluster.request_timeout
            )
        )
    except ApiException as error:
        if _not_found(error):
            return False
        raise
    if (current.get("spec") or {}).get("replicas") == replicas:
        return False
    cluster.apps.patch_namespaced_deployment(
        name,
        namespace,
        {"spec": {"replicas": replicas}},
        _content_type=MERGE_PATCH,
        _preload_content=False,
        _request_timeout=cluster.request_timeout,
    )
    return True
