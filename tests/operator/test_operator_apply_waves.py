"""Children are applied in waves (support objects, then workloads; a new owner's all at once)."""

from __future__ import annotations

import threading
import time

import pytest

from artisan_operator.cluster.apply import creation_waves
from artisan_operator.cluster.client import ClusterClient
from artisan_operator.policy.plan import EnsureChild
from artisan_operator.settings import Settings

from .doc_tables import doc_table

pytestmark = pytest.mark.timeout(10)

SHORT = {"PVC": "PersistentVolumeClaim"}


def child(kind: str) -> EnsureChild:
    return EnsureChild(manifest={"kind": kind, "metadata": {"name": f"x-{kind.lower()}", "namespace": "ns"}})


def kinds(cell: str) -> list[str]:
    return [SHORT.get(name.strip(), name.strip()) for name in cell.split(",")]


@pytest.mark.parametrize(
    "row", doc_table(creation_waves.__doc__, "children"), ids=lambda r: r["children (in plan order)"]
)
def test_creation_waves_table(row: dict[str, str]) -> None:
    children = [child(kind) for kind in kinds(row["children (in plan order)"])]
    waves = [[c.kind for c in wave] for wave in creation_waves(children, all_new=row["all_new"] == "yes")]
    expected = [kinds(cell.strip(" []")) for cell in row["waves"].split("], [")]
    assert waves == expected


def test_creation_waves_keep_every_child_once() -> None:
    children = [child(k) for k in ("Job", "ConfigMap", "Deployment", "Service", "PersistentVolumeClaim")]
    flat = [c for wave in creation_waves(children) for c in wave]
    assert sorted(c.kind for c in flat) == sorted(c.kind for c in children)
    assert [c.kind for c in flat][-2:] == ["Job", "Deployment"]


def client() -> ClusterClient:
    import kubernetes.client

    return ClusterClient(Settings(api_threads=4), kubernetes.client.Configuration())


def test_fan_out_runs_calls_at_once_and_keeps_their_order() -> None:
    cluster = client()
    barrier = threading.Barrier(3, timeout=5)  # only passes when all three run at the same time

    def call(value: int) -> int:
        barrier.wait()
        return value

    try:
        assert cluster.fan_out([lambda v=v: call(v) for v in (1, 2, 3)]) == [1, 2, 3]
    finally:
        cluster.close()


def test_fan_out_finishes_every_call_before_raising_the_first_error() -> None:
    cluster = client()
    finished: list[str] = []

    def slow() -> str:
        time.sleep(0.2)
        finished.append("slow")
        return "slow"

    def broken() -> str:
        raise ValueError("first")

    def later() -> str:
        raise KeyError("second")

    try:
        with pytest.raises(ValueError, match="first"):
            cluster.fan_out([broken, slow, later])
        assert finished == ["slow"]
    finally:
        cluster.close()
