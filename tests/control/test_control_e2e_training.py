"""TrainingRun supervision end to end: simulated trainer pods, their metrics in an exporter that the
test sets, a real Prometheus scraping it, and the operator restarting the Job from a checkpoint."""

from __future__ import annotations

from typing import Any

import pytest

from artisan_operator.sandbox.prometheus import ControlledExporter, PrometheusServer
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
    assert args(restarted)[-2:] == ["--resume-from-step", "1500"]
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
    assert args(restarted)[-2:] == ["--resume-from-step", "1000"]
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
