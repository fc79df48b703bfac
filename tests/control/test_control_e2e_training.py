"""TrainingRun supervision end to end: simulated trainer pods, their metrics in an exporter that the
test sets, a real Prometheus scraping it, and the operator restarting the Job from a checkpoint."""

from __future__ import annotations

import json
from typing import Any

import pytest

from artisan_operator.sandbox.prometheus import ControlledExporter, PrometheusServer
from artisan_operator.sandbox.runtime import SIMULATED_TERMINATION_ANNOTATION
from artisan_operator.sandbox.testing import wait_for

from .conftest import NS, Control, condition, unique

pytestmark = pytest.mark.e2e


def training_run(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "artisan.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"ppo": {"totalSteps": 100000}, **spec},
    }


def report(exporter: ControlledExporter, pod: str, **values: float) -> None:
    names = {
        "step": "ppo_training_step",
        "checkpoint": "ppo_last_checkpoint_step",
        "exhausted": "artisan_trainer_rollbacks_exhausted",
        "kl": "ppo_approx_kl",
    }
    for key, value in values.items():
        exporter.set(names[key], value, namespace=NS, pod=pod)


def pod_of(run: str, attempt: int) -> str:
    return f"{run}-trainer-{attempt}-sim"  # the simulated runtime's pod of that attempt's Job


def job(control: Control, run: str, attempt: int) -> dict[str, Any] | None:
    return control.raw(f"/apis/batch/v1/namespaces/{NS}/jobs/{run}-trainer-{attempt}")


def args(job_body: dict[str, Any]) -> list[str]:
    return list(job_body["spec"]["template"]["spec"]["containers"][0]["args"])


def status(control: Control, run: str) -> dict[str, Any]:
    return dict(control.get("trainingruns", run).get("status") or {})


def operator_records(control: Control, run: str) -> list[dict[str, Any]]:
    return [r for r in status(control, run).get("rollbacks", []) if r["source"] == "operator"]


def running_at(
    control: Control, exporter: ControlledExporter, prometheus: PrometheusServer, run: str
) -> None:
    """The run trains at step 1600 with a verified checkpoint at 1500, as the status reports."""
    report(exporter, pod_of(run, 0), step=1600, checkpoint=1500, exhausted=0, kl=0.01)
    prometheus.wait_for_sample(f'ppo_training_step{{pod="{pod_of(run, 0)}"}}', expect=1600)
    control.create(training_run(run, rollback={"maxRollbacks": 1}))
    wait_for(
        lambda: status(control, run).get("phase") == "Running" and status(control, run).get("step") == 1600,
        timeout=15,
        message="Running with the trainer's step in status",
    )
    assert status(control, run)["lastCheckpoint"]["step"] == 1500


def test_exhausted_trainer_is_restarted_from_its_checkpoint_then_fails_after_max_rollbacks(
    control: Control, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    run = unique("tr")
    running_at(control, exporter, prometheus, run)
    report(exporter, pod_of(run, 0), exhausted=1)
    restarted = wait_for(lambda: job(control, run, 1), timeout=15, message="the Job of attempt 1")
    assert args(restarted)[-3:] == ["--resume", "--resume-from-step", "1500"]
    assert job(control, run, 0) is None  # the old attempt's Job was deleted first
    (record,) = operator_records(control, run)
    assert (record["reason"], record["toStep"], record["step"], record["attempt"]) == (
        "TrainerRollbacksExhausted",
        1500,
        1600,
        1,
    )
    assert len(control.posted_events(run, "RolledBack")) == 1
    assert status(control, run)["attempt"] == 1
    # The restarted trainer resumes (step back at 1500) and then exhausts its rollbacks again.
    report(exporter, pod_of(run, 1), step=1500, checkpoint=1500, exhausted=0)
    wait_for(lambda: status(control, run).get("phase") == "Running", timeout=15, message="attempt 1 runs")
    report(exporter, pod_of(run, 1), exhausted=1)
    failed = wait_for(
        lambda: (s := status(control, run)).get("phase") == "Failed" and s, timeout=15, message="Failed"
    )
    assert "maxRollbacks=1" in failed["message"]
    obj = control.get("trainingruns", run)
    assert condition(obj, "RollbacksExhausted")["status"] == "True"  # type: ignore[index]
    assert condition(obj, "Stalled")["status"] == "True"  # type: ignore[index]
    assert len(operator_records(control, run)) == 1
    assert job(control, run, 2) is None
    assert len(control.posted_events(run, "RollbacksExhausted")) == 1


def test_operator_restart_in_the_middle_of_a_rollback_neither_repeats_nor_skips_it(
    control: Control, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    run = unique("tr")
    running_at(control, exporter, prometheus, run)
    report(exporter, pod_of(run, 0), exhausted=1)
    # Kill the operator as soon as the rollback is recorded (before or while it replaces the Job).
    wait_for(lambda: operator_records(control, run), timeout=15, interval=0.01, message="rollback recorded")
    control.restart()
    wait_for(lambda: job(control, run, 1), timeout=15, message="the Job of attempt 1")
    report(exporter, pod_of(run, 1), step=1500, checkpoint=1500, exhausted=0)
    wait_for(lambda: status(control, run).get("phase") == "Running", timeout=15, message="attempt 1 runs")
    assert len(operator_records(control, run)) == 1
    assert status(control, run)["attempt"] == 1
    assert job(control, run, 0) is None
    assert job(control, run, 2) is None


def test_manual_rollback_annotation_is_applied_once(
    control: Control, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    run = unique("tr")
    running_at(control, exporter, prometheus, run)
    control.patch("trainingruns", run, {"metadata": {"annotations": {"artisan.dev/rollback-to": "1000@t1"}}})
    restarted = wait_for(lambda: job(control, run, 1), timeout=15, message="the Job of attempt 1")
    assert args(restarted)[-3:] == ["--resume", "--resume-from-step", "1000"]
    wait_for(
        lambda: (
            "artisan.dev/rollback-to"
            not in (control.get("trainingruns", run)["metadata"].get("annotations") or {})
        ),
        timeout=10,
        message="annotation consumed",
    )
    (record,) = operator_records(control, run)
    assert (record["reason"], record["toStep"], record["request"]) == ("ManualRollback", 1000, "1000@t1")
    report(exporter, pod_of(run, 1), step=1000, checkpoint=1000, exhausted=0)
    wait_for(lambda: status(control, run).get("phase") == "Running", timeout=15, message="attempt 1 runs")
    assert len(operator_records(control, run)) == 1
    assert job(control, run, 2) is None
    assert len(control.posted_events(run, "RolledBack")) == 1


def terminate(control: Control, pod: str, exit_code: int, message: dict[str, Any] | str) -> None:
    """End the simulated trainer container with an exit code and a termination message."""
    text = message if isinstance(message, str) else json.dumps(message)
    value = json.dumps({"exitCode": exit_code, "message": text})
    body = {"metadata": {"annotations": {SIMULATED_TERMINATION_ANNOTATION: value}}}
    control.core.patch_namespaced_pod(pod, NS, body)


def test_trainer_exiting_exhausted_is_rolled_back_from_its_final_checkpoint(
    control: Control, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    """Everything after the last scrape (step 1700, a checkpoint at 1650, two in-process rollbacks)
    arrives in the termination message; exit code 3 is the trainer's exhaustion, not a pod failure."""
    run = unique("tr")
    running_at(control, exporter, prometheus, run)
    final = {
        "step": 1700,
        "rewardMA": 1.25,
        "lastCheckpoint": 1650,
        "bestCheckpoint": 1500,
        "rollbacks": [
            {"step": 1620, "reason": "kl_divergence", "toStep": 1500},
            {"step": 1690, "reason": "reward_drop", "toStep": 1650},
        ],
        "outcome": "RollbacksExhausted",
        "message": "in-process rollbacks exhausted (2 of 2)",
    }
    terminate(control, pod_of(run, 0), 3, final)
    restarted = wait_for(lambda: job(control, run, 1), timeout=15, message="the Job of attempt 1")
    assert args(restarted)[-3:] == ["--resume", "--resume-from-step", "1650"]
    (record,) = operator_records(control, run)
    assert (record["reason"], record["step"], record["toStep"]) == ("TrainerRollbacksExhausted", 1700, 1650)
    trainer = [
        (r["step"], r["reason"], r["toStep"])
        for r in status(control, run)["rollbacks"]
        if r["source"] == "trainer"
    ]
    assert trainer == [(1620, "kl_divergence", 1500), (1690, "reward_drop", 1650)]
    shown = status(control, run)
    assert (shown["step"], shown["rewardMa"], shown["lastCheckpoint"]["step"]) == (1700, 1.25, 1650)
    assert "exhausted (2 of 2)" in condition(control.get("trainingruns", run), "RolledBack")["message"]  # type: ignore[index]


def test_final_values_of_a_finished_trainer_reach_status(
    control: Control, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    run = unique("tr")
    running_at(control, exporter, prometheus, run)
    final = {
        "step": 100000,
        "rewardMA": 3.5,
        "lastCheckpoint": 100000,
        "bestCheckpoint": 99500,
        "rollbacks": [],
        "outcome": "Succeeded",
        "message": "finished",
    }
    terminate(control, pod_of(run, 0), 0, final)
    done = wait_for(
        lambda: (s := status(control, run)).get("phase") == "Succeeded" and s, timeout=15, message="Succeeded"
    )
    assert (done["step"], done["rewardMa"]) == (100000, 3.5)
    assert (done["lastCheckpoint"]["step"], done["bestCheckpoint"]["step"]) == (100000, 99500)
    assert done["rollbacks"] == []
    assert job(control, run, 1) is None
