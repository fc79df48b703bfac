"""A real kopf operator reconciles against the emulator over HTTP, survives a kill, cleans up."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from artisan_operator.sandbox.floor import FLOOR_LABEL, floor_operator_main
from artisan_operator.sandbox.server import RunningApi
from artisan_operator.sandbox.testing import OperatorRunner, wait_for

GROUP, VERSION, NS = "artisan.dev", "v1alpha1", "default"


@pytest.fixture
def floor_runner(emulated_api: RunningApi) -> Iterator[OperatorRunner]:
    runner = OperatorRunner(floor_operator_main(emulated_api.kubeconfig_path))
    yield runner
    if runner.current is not None and runner.current.running:
        runner.stop()


def create(custom: kubernetes.client.CustomObjectsApi, plural: str, kind: str, name: str) -> dict[str, Any]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": {}}
    return custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural, body)  # type: ignore[no-any-return]


def floor_children(core: kubernetes.client.CoreV1Api) -> dict[str, Any]:
    return {
        cm.metadata.labels[FLOOR_LABEL]: cm
        for cm in core.list_namespaced_config_map(NS, label_selector=FLOOR_LABEL).items
    }


def test_kopf_operator_creates_one_owned_child_per_object(
    floor_runner: OperatorRunner, kube_client: Any
) -> None:
    custom, core = kubernetes.client.CustomObjectsApi(kube_client), kubernetes.client.CoreV1Api(kube_client)
    floor_runner.start()
    run = create(custom, "trainingruns", "TrainingRun", "tr-1")
    pin = create(custom, "modelpins", "ModelPin", "pin-1")
    wait_for(lambda: len(floor_children(core)) == 2, message="two children")
    children = floor_children(core)
    assert children["tr-1"].metadata.owner_references[0].uid == run["metadata"]["uid"]
    assert children["pin-1"].metadata.owner_references[0].uid == pin["metadata"]["uid"]
    # kopf recorded its progress on the object through the emulator's PATCH.
    annotations = wait_for(
        lambda: custom.get_namespaced_custom_object(GROUP, VERSION, NS, "trainingruns", "tr-1")[
            "metadata"
        ].get("annotations")
    )
    assert "floor.artisan.dev/last-handled-configuration" in annotations
    floor_runner.stop()


def test_killed_and_restarted_operator_neither_duplicates_nor_misses_children(
    floor_runner: OperatorRunner, kube_client: Any
) -> None:
    custom, core = kubernetes.client.CustomObjectsApi(kube_client), kubernetes.client.CoreV1Api(kube_client)
    floor_runner.start()
    for index in range(5):
        create(custom, "trainingruns", "TrainingRun", f"before-{index}")
    floor_runner.kill()  # wherever it is in handling those five
    for index in range(3):
        create(custom, "trainingruns", "TrainingRun", f"while-down-{index}")
    floor_runner.start()
    expected = {f"before-{i}" for i in range(5)} | {f"while-down-{i}" for i in range(3)}
    wait_for(lambda: set(floor_children(core)) == expected, message="one child per object")
    names = [cm.metadata.name for cm in core.list_namespaced_config_map(NS).items]
    assert len(names) == len(set(names)) == len(expected)
    floor_runner.stop()


def test_deleting_the_owner_garbage_collects_the_child(
    floor_runner: OperatorRunner, kube_client: Any
) -> None:
    custom, core = kubernetes.client.CustomObjectsApi(kube_client), kubernetes.client.CoreV1Api(kube_client)
    floor_runner.start()
    create(custom, "modelpins", "ModelPin", "pin-1")
    wait_for(lambda: "pin-1" in floor_children(core))
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "modelpins", "pin-1")
    wait_for(lambda: not floor_children(core), message="child collected")
    floor_runner.stop()
