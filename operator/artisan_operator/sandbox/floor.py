"""The smallest useful kopf operator: one ConfigMap per object, owned by it.

It is the floor that Artisan's operator is measured against (``bench/operator_reconcile.py``)
and the operator the sandbox's own tests reconcile with. It talks to the API like any real
operator: kopf over HTTP for watching and patching, the ``kubernetes`` client for the child.
"""

from __future__ import annotations

import threading
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

import kopf
import kubernetes.client
import kubernetes.config

from artisan_operator.sandbox.runner import OperatorMain

FLOOR_LABEL = "artisan.dev/floor-owner"


def connection_from_kubeconfig(kubeconfig: Path) -> kubernetes.client.Configuration:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    return configuration


def floor_configmap(kind: str, api_version: str, name: str, uid: str, generation: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{name}-floor",
            "labels": {FLOOR_LABEL: name},
            "ownerReferences": [
                {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True}
            ],
        },
        "data": {"generation": str(generation)},
    }


def build_floor_registry(
    configuration: kubernetes.client.Configuration, resources: Iterable[tuple[str, str, str]]
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        token = (configuration.api_key or {}).get("authorization", "").removeprefix("Bearer ")
        return kopf.ConnectionInfo(server=configuration.host, scheme="Bearer", token=token or None)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="floor.artisan.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="floor.artisan.dev")
        settings.posting.enabled = False
        settings.watching.server_timeout = 300  # the API ends idle watches; kopf reconnects

    for group, version, plural in resources:

        @kopf.on.create(group, version, plural, registry=registry, id="floor-configmap")
        def create_configmap(body: kopf.Body, name: str, namespace: str | None, uid: str, **_: Any) -> None:
            child = floor_configmap(
                body["kind"], body["apiVersion"], name, uid, body.meta.get("generation", 1)
            )
            try:
                # The client sends a dict body as it is; its stubs only name the model class.
                core.create_namespaced_config_map(namespace, child)  # type: ignore[arg-type]
            except kubernetes.client.ApiException as exc:
                if exc.status != 409:  # already created by an earlier attempt: done
                    raise

    return registry


def floor_operator_main(
    kubeconfig: Path,
    resources: Iterable[tuple[str, str, str]] = (
        ("artisan.dev", "v1alpha1", "trainingruns"),
        ("artisan.dev", "v1alpha1", "modelpins"),
    ),
) -> OperatorMain:
    registry = build_floor_registry(connection_from_kubeconfig(kubeconfig), list(resources))

    def main(stop_flag: threading.Event, ready_flag: threading.Event) -> Coroutine[Any, Any, Any]:
        return kopf.operator(
            registry=registry, clusterwide=True, standalone=True, stop_flag=stop_flag, ready_flag=ready_flag
        )

    return main
