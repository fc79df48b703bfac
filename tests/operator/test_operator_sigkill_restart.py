"""Artisan's operator in its own process, SIGKILLed twice while it reconciles a burst of objects.

A killed pod gets no chance to clean up: whatever it was doing (a create in flight, a status write
half done) stops. The restarted operator must finish every object with exactly its children: none
missing, none twice (a second Job attempt would mean a repeated action), each owned by its object.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

from artisan_operator.sandbox.server import RunningApi
from artisan_operator.sandbox.testing import wait_for

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, NS = "artisan.dev", "v1alpha1", "default"
OBJECTS = 15  # of each kind
EXPECTED = {
    "TrainingRun": Counter({"Job": 1, "PersistentVolumeClaim": 1, "ConfigMap": 1, "Service": 1}),
    "ModelPin": Counter({"Deployment": 1, "Service": 1, "ConfigMap": 2}),  # pin config + routing table
}
SERVE = (
    "import sys\n"
    "from pathlib import Path\n"
    "from artisan_operator.sandbox.runner import OperatorThread, artisan_operator_main\n"
    "OperatorThread(artisan_operator_main(Path(sys.argv[1]))).start(60)\n"
    "print('READY', flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.fixture
def operator_process(emulated_api: RunningApi) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(30)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


def start(api: RunningApi, started: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(api.kubeconfig_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    started.append(process)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "READY"
    return process


def children_by_owner(client: kubernetes.client.ApiClient) -> dict[str, Counter[str]]:
    core, apps = kubernetes.client.CoreV1Api(client), kubernetes.client.AppsV1Api(client)
    batch = kubernetes.client.BatchV1Api(client)
    listed: list[tuple[str, Any]] = [
        ("Job", batch.list_namespaced_job(NS).items),
        ("PersistentVolumeClaim", core.list_namespaced_persistent_volume_claim(NS).items),
        ("ConfigMap", core.list_namespaced_config_map(NS).items),
        ("Service", core.list_namespaced_service(NS).items),
        ("Deployment", apps.list_namespaced_deployment(NS).items),
    ]
    owned: dict[str, Counter[str]] = defaultdict(Counter)
    for kind, items in listed:
        for item in items:
            for ref in item.metadata.owner_references or []:
                owned[ref.uid][kind] += 1
    return owned


def test_sigkilled_operator_restarts_without_repeating_or_missing_an_action(
    emulated_api: RunningApi, kube_client: kubernetes.client.ApiClient, operator_process: Any
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    samples = {
        kind: yaml.safe_load((REPO / "configs" / "samples" / f"{kind.lower()}.yaml").read_text())
        for kind in EXPECTED
    }
    uids: dict[str, str] = {}
    for index in range(OBJECTS):
        for kind, sample in samples.items():
            body = {**sample, "metadata": {"name": f"{kind.lower()}-{index:02d}", "namespace": NS}}
            created = custom.create_namespaced_custom_object(GROUP, VERSION, NS, f"{kind.lower()}s", body)
            uids[created["metadata"]["uid"]] = kind

    def done() -> int:
        owned = children_by_owner(kube_client)
        return sum(1 for uid, kind in uids.items() if owned.get(uid) == EXPECTED[kind])

    # Kill it twice mid-burst: once early, once with about half the objects done.
    for threshold in (1, OBJECTS):
        process = start(emulated_api, operator_process)
        wait_for(lambda t=threshold: done() >= t, timeout=60, interval=0.01, message=f"{threshold} done")
        process.kill()
        process.wait(30)
    start(emulated_api, operator_process)
    wait_for(lambda: done() == len(uids), timeout=90, message="every object reconciled")

    owned = children_by_owner(kube_client)
    for uid, kind in uids.items():
        assert owned[uid] == EXPECTED[kind], (kind, uid, owned[uid])
    # Every object's status gets written by the last operator (its pass writes status after the
    # children, so wait for it): nothing half-done is left behind.
    for kind in EXPECTED:

        def written(plural: str = f"{kind.lower()}s") -> bool:
            listed = custom.list_namespaced_custom_object(GROUP, VERSION, NS, plural)["items"]
            return all((o.get("status") or {}).get("observedGeneration") == 1 for o in listed)

        wait_for(written, timeout=30, message=f"every {kind} status written")
