"""The simulated runtime's decisions, the demo's expectations, and `artisan sandbox demo` itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes.client
import pytest

from artisan_operator.cli import main as cli_main
from artisan_operator.sandbox.demo import assess
from artisan_operator.sandbox.runtime import (
    SimulatedRuntime,
    simulated_deployment_status,
    simulated_job_pod,
    simulated_job_status,
    simulated_pod_status,
)
from artisan_operator.sandbox.server import RunningApi

REPO = Path(__file__).resolve().parents[2]
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "train", "namespace": "ns", "uid": "u-1"},
    "spec": {
        "template": {
            "metadata": {"labels": {"app": "t"}},
            "spec": {"containers": [{"name": "trainer", "image": "img"}]},
        }
    },
}


def test_deployment_is_reported_fully_ready_at_its_generation() -> None:
    status = simulated_deployment_status({"metadata": {"generation": 3}, "spec": {"replicas": 2}})
    assert (status["readyReplicas"], status["availableReplicas"], status["observedGeneration"]) == (2, 2, 3)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Available": "True",
        "Progressing": "True",
    }


def test_condition_transition_time_is_kept_when_nothing_changed() -> None:
    first = simulated_deployment_status({"metadata": {"generation": 1}, "spec": {"replicas": 1}})
    again = simulated_deployment_status(
        {"metadata": {"generation": 1}, "spec": {"replicas": 1}, "status": first}
    )
    assert again == first


def test_job_gets_one_owned_pod_unless_suspended() -> None:
    pod = simulated_job_pod(JOB)
    assert pod is not None
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert pod["metadata"]["labels"]["job-name"] == "train"
    assert pod["metadata"]["labels"]["app"] == "t"
    assert simulated_job_pod({**JOB, "spec": {**JOB["spec"], "suspend": True}}) is None


def test_job_status_follows_its_pod_and_suspension() -> None:
    pod = simulated_job_pod(JOB)
    assert pod is not None
    running = {**pod, "status": simulated_pod_status(pod, "2024-01-01T00:00:00Z")}
    assert simulated_job_status(JOB, running, "t")["ready"] == 1
    assert simulated_job_status(JOB, pod, "t")["ready"] == 0
    suspended = simulated_job_status({**JOB, "spec": {"suspend": True}}, None, "t")
    assert suspended["active"] == 0
    assert suspended["conditions"][0]["type"] == "Suspended"


def test_runtime_pass_makes_jobs_and_deployments_look_alive(
    emulated_api: RunningApi, kube_client: Any
) -> None:
    batch, apps = kubernetes.client.BatchV1Api(kube_client), kubernetes.client.AppsV1Api(kube_client)
    batch.create_namespaced_job("ns", JOB)
    template = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "img"}]},
    }
    deployment = {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template}
    apps.create_namespaced_deployment("ns", {"metadata": {"name": "web"}, "spec": deployment})
    runtime = SimulatedRuntime(kube_client)
    assert runtime.step() > 0
    assert runtime.step() == 0  # converged: nothing left to write
    assert batch.read_namespaced_job("train", "ns").status.ready == 1
    assert apps.read_namespaced_deployment("web", "ns").status.ready_replicas == 3
    pod = kubernetes.client.CoreV1Api(kube_client).read_namespaced_pod("train-sim", "ns")
    assert pod.status.phase == "Running"


def _run(kind: str, status: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("obj", "children", "reached"),
    [
        (
            _run("TrainingRun", {"observedGeneration": 1, "phase": "Running"}),
            ["Job", "PersistentVolumeClaim", "ConfigMap", "Service"],
            True,
        ),
        (
            _run("TrainingRun", {"observedGeneration": 1, "phase": "Pending"}),
            ["Job", "PersistentVolumeClaim", "ConfigMap", "Service"],
            False,
        ),
        (
            _run("TrainingRun", {"observedGeneration": 1, "phase": "Running"}),
            ["Job", "ConfigMap", "Service"],
            False,
        ),
        (
            _run("ModelPin", {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}),
            ["Deployment", "Service", "ConfigMap"],
            True,
        ),
        (
            _run("ModelPin", {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False"}]}),
            ["Deployment", "Service", "ConfigMap"],
            False,
        ),
        (
            _run(
                "Canary",
                {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "False"}]},
                generation=2,
            ),
            [],
            True,
        ),
        (
            _run(
                "Canary",
                {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False"}]},
                generation=2,
            ),
            [],
            False,
        ),
        (_run("ABExperiment", {"observedGeneration": 1}), [], False),
    ],
)
def test_demo_expectations(obj: dict[str, Any], children: list[str], reached: bool) -> None:
    assert assess(obj, children).reached is reached


@pytest.mark.e2e
def test_sandbox_demo_reaches_every_sample_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert cli_main(["sandbox", "demo", "--timeout", "45"]) == 0


def test_sandbox_demo_fails_clearly_without_samples(tmp_path: Path) -> None:
    assert cli_main(["sandbox", "demo", "--samples", str(tmp_path)]) == 2
