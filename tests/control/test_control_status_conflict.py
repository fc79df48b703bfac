"""A control loop's status write is conditional on the resourceVersion it read (no lost updates)."""

from __future__ import annotations

from typing import Any

import kubernetes.client

from artisan_operator.cluster.client import ClusterClient
from artisan_operator.cluster.control import patch_model_pin_status

PIN = {
    "apiVersion": "artisan.dev/v1alpha1",
    "kind": "ModelPin",
    "metadata": {"name": "pin", "namespace": "default"},
    "spec": {"models": {"primary": {"name": "qwen", "source": "/models/qwen", "revision": "2.5.1"}}},
}


def condition_types(api: kubernetes.client.CustomObjectsApi) -> list[str]:
    body: dict[str, Any] = api.get_namespaced_custom_object(
        "artisan.dev", "v1alpha1", "default", "modelpins", "pin"
    )
    return [c["type"] for c in (body.get("status") or {}).get("conditions", [])]


def condition(kind: str) -> dict[str, str]:
    return {"type": kind, "status": "True", "reason": kind, "lastTransitionTime": "2026-11-21T00:00:00Z"}


def test_a_write_based_on_a_stale_read_is_refused_and_changes_nothing(
    cluster: ClusterClient, kube_client: kubernetes.client.ApiClient
) -> None:
    api = kubernetes.client.CustomObjectsApi(kube_client)
    created = api.create_namespaced_custom_object("artisan.dev", "v1alpha1", "default", "modelpins", PIN)
    stale_version = created["metadata"]["resourceVersion"]
    # Another writer (the reconcile) adds its condition after the loop read the object.
    assert patch_model_pin_status(cluster, "default", "pin", {"conditions": [condition("EmergencyStopped")]})

    written = patch_model_pin_status(
        cluster, "default", "pin", {"conditions": [condition("Downshifted")]}, resource_version=stale_version
    )

    assert written is False
    assert condition_types(api) == ["EmergencyStopped"]


def test_a_write_based_on_the_current_read_lands(
    cluster: ClusterClient, kube_client: kubernetes.client.ApiClient
) -> None:
    api = kubernetes.client.CustomObjectsApi(kube_client)
    created = api.create_namespaced_custom_object("artisan.dev", "v1alpha1", "default", "modelpins", PIN)

    written = patch_model_pin_status(
        cluster,
        "default",
        "pin",
        {"conditions": [condition("Downshifted")]},
        resource_version=created["metadata"]["resourceVersion"],
    )

    assert written is True
    assert condition_types(api) == ["Downshifted"]
