"""Resource requests are routed once per (method, action), and test reactions still win."""

from __future__ import annotations

import time
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client import ApiException

from artisan_operator.sandbox.emulator import SandboxEmulator
from artisan_operator.sandbox.server import EmulatorThread, RunningApi

NS = "default"


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


def test_routes_are_reused_and_serve_every_verb(
    emulated_api: RunningApi, kube_client: kubernetes.client.ApiClient
) -> None:
    core = kubernetes.client.CoreV1Api(kube_client)
    for index in range(3):
        core.create_namespaced_config_map(NS, configmap(f"cm-{index}"))  # type: ignore[arg-type]
    core.patch_namespaced_config_map("cm-0", NS, {"data": {"k": "patched"}})
    assert core.read_namespaced_config_map("cm-0", NS).data == {"k": "patched"}
    assert sorted(i.metadata.name for i in core.list_namespaced_config_map(NS).items) == [
        "cm-0",
        "cm-1",
        "cm-2",
    ]
    core.delete_namespaced_config_map("cm-1", NS)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("cm-1", NS)
    assert missing.value.status == 404
    # One memoised route per (method, action) seen, not one per request.
    routes = emulated_api.emulator._routes
    assert 4 <= len(routes) <= 6
    assert all(route is not None for route in routes.values())


def test_a_reaction_added_after_routing_still_intercepts(
    emulated_api: RunningApi, kube_client: kubernetes.client.ApiClient
) -> None:
    core = kubernetes.client.CoreV1Api(kube_client)
    core.create_namespaced_config_map(NS, configmap("first"))  # type: ignore[arg-type]
    core.read_namespaced_config_map("first", NS)  # the GET route is memoised now

    def reads_of_configmaps(request: Any) -> bool:
        resource = request.resource
        return bool(
            str(request.method).upper().endswith("GET")
            and resource is not None
            and resource.plural == "configmaps"
        )

    emulated_api.emulator[reads_of_configmaps] << 503
    with pytest.raises(ApiException) as refused:
        core.read_namespaced_config_map("first", NS)
    assert refused.value.status == 503
    # Other requests are still served by the store through kmock's own matching.
    created = core.create_namespaced_config_map(NS, configmap("second"))  # type: ignore[arg-type]
    assert created.metadata.uid
    assert created.metadata.resource_version


def test_write_latency_delays_writes_only() -> None:
    latency = 0.25
    with EmulatorThread(SandboxEmulator(write_latency_seconds=latency)) as api, api.api_client() as client:
        core = kubernetes.client.CoreV1Api(client)
        started = time.monotonic()
        core.create_namespaced_config_map(NS, configmap("slow"))  # type: ignore[arg-type]
        write = time.monotonic() - started
        started = time.monotonic()
        assert core.read_namespaced_config_map("slow", NS).data == {"k": "v"}
        read = time.monotonic() - started
    assert write >= latency
    assert read < latency
