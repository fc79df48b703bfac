"""The worked-example tables of the decisions, row by row (parsed from the docstrings)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from artisan_operator.api.ab_experiment import ABExperimentSpec, ABExperimentStatus
from artisan_operator.api.canary import CanarySpec, CanaryStatus
from artisan_operator.api.model_pin import ModelPinSpec, ModelPinStatus
from artisan_operator.api.training_run import TrainingRunSpec, TrainingRunStatus
from artisan_operator.manifests.common import Owner
from artisan_operator.manifests.ensemble import FleetOverrides, pin_revision
from artisan_operator.policy import conditions as conditions_module
from artisan_operator.policy import initial_status, model_pin, training_run
from artisan_operator.policy.conditions import kstatus
from artisan_operator.policy.initial_status import TargetObservation
from artisan_operator.policy.model_pin import DeploymentObservation, ModelPinObservation
from artisan_operator.policy.training_run import JobObservation, PodObservation, TrainingRunObservation

from .doc_tables import doc_table

pytestmark = pytest.mark.timeout(2)

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
TR_OWNER = Owner(kind="TrainingRun", name="tr", namespace="ml", uid="u-1", generation=3)
PIN_OWNER = Owner(kind="ModelPin", name="pin", namespace="ml", uid="u-2", generation=2)
IMAGE = "registry.example/ensemble:1"


def kstate_of(status: Any) -> str:
    by_type = {c.type: c.status for c in status.conditions}
    if by_type["Stalled"] == "True":
        return "stalled"
    if by_type["Reconciling"] == "True":
        return "progressing"
    return "ready" if by_type["Ready"] == "True" else "idle"


# --- TrainingRun ---------------------------------------------------------------------------------

RUNNING_JOB = JobObservation(name="tr-trainer-0", attempt=0, active=1)
TRAINING_CASES: dict[tuple[str, str, str], tuple[dict[str, Any], TrainingRunObservation]] = {
    ("absent", "-", "suspend"): ({"suspend": True}, TrainingRunObservation()),
    ("absent", "-", "-"): ({}, TrainingRunObservation()),
    ("Complete", "any", "any"): (
        {},
        TrainingRunObservation(job=JobObservation(name="tr-trainer-0", attempt=0, complete=True)),
    ),
    ("Failed, DeadlineExc.", "any", "any"): (
        {"activeDeadlineSeconds": 60},
        TrainingRunObservation(
            job=JobObservation(name="tr-trainer-0", attempt=0, failed=True, failed_reason="DeadlineExceeded")
        ),
    ),
    ("Failed (other)", "any", "any"): (
        {},
        TrainingRunObservation(
            job=JobObservation(
                name="tr-trainer-0", attempt=0, failed=True, failed_reason="BackoffLimitExceeded"
            )
        ),
    ),
    ("suspended", "-", "suspend"): (
        {"suspend": True},
        TrainingRunObservation(job=JobObservation(name="tr-trainer-0", attempt=0, suspended=True)),
    ),
    # "_emergencyStop": the artisan.dev/emergency-stop annotation (spec stays as written).
    ("absent", "-", "e-stop"): ({"_emergencyStop": True}, TrainingRunObservation()),
    ("suspended", "-", "e-stop"): (
        {"queueName": "gpu-queue", "_emergencyStop": True},
        TrainingRunObservation(job=JobObservation(name="tr-trainer-0", attempt=0, suspended=True)),
    ),
    ("suspended", "-", "queueName"): (
        {"queueName": "gpu-queue"},
        TrainingRunObservation(job=JobObservation(name="tr-trainer-0", attempt=0, suspended=True)),
    ),
    ("running", "stuck waiting (below)", "-"): (
        {},
        TrainingRunObservation(
            job=RUNNING_JOB,
            pod=PodObservation(
                name="p", phase="Pending", waiting_reason="ImagePullBackOff", waiting_message="nope"
            ),
        ),
    ),
    ("running", "Running", "-"): (
        {},
        TrainingRunObservation(job=RUNNING_JOB, pod=PodObservation("p", "Running")),
    ),
    ("running", "Pending, unschedulable", "-"): (
        {},
        TrainingRunObservation(
            job=RUNNING_JOB,
            pod=PodObservation(
                name="p", phase="Pending", unschedulable_message="0/3 nodes have nvidia.com/gpu"
            ),
        ),
    ),
    ("running", "absent or Pending", "-"): ({}, TrainingRunObservation(job=RUNNING_JOB)),
}
TRAINING_ROWS = doc_table(training_run.__doc__, "job")


def test_training_table_rows_all_have_a_case() -> None:
    assert {(r["job"], r["pod"], r["spec"]) for r in TRAINING_ROWS} == set(TRAINING_CASES)


@pytest.mark.parametrize("row", TRAINING_ROWS, ids=lambda r: f"{r['job']}/{r['pod']}/{r['spec']}")
def test_training_run_decision_table(row: dict[str, str]) -> None:
    spec_fields, observation = TRAINING_CASES[(row["job"], row["pod"], row["spec"])]
    fields = dict(spec_fields)
    emergency = bool(fields.pop("_emergencyStop", False))
    spec = TrainingRunSpec.model_validate(fields)
    plan = training_run.decide_training_run(
        TR_OWNER, spec, observation, TrainingRunStatus(), image="trainer:1", now=NOW, emergency_stop=emergency
    )
    if emergency:  # the Job is suspended, a queued one too (an emergency outranks Kueue)
        assert plan.children[3].manifest["spec"]["suspend"] is True
        assert "spec.suspend" in plan.children[3].patchable
    ready = next(c for c in plan.status.conditions if c.type == "Ready")
    assert (plan.status.phase, ready.reason, kstate_of(plan.status)) == (
        row["phase"],
        row["reason"],
        row["kstatus"],
    )
    assert plan.status.observed_generation == 3
    assert [c.kind for c in plan.children] == ["PersistentVolumeClaim", "ConfigMap", "Service", "Job"]
    assert len(plan.events) == 1  # first pass: one Event naming the state
    assert plan.events[0].reason == row["reason"]


def test_training_run_same_state_twice_posts_no_second_event_and_keeps_transition_time() -> None:
    spec = TrainingRunSpec()
    observation = TrainingRunObservation(job=RUNNING_JOB, pod=PodObservation("p", "Running"))
    first = training_run.decide_training_run(
        TR_OWNER, spec, observation, TrainingRunStatus(), image="t", now=NOW
    )
    later = NOW.replace(hour=13)
    second = training_run.decide_training_run(TR_OWNER, spec, observation, first.status, image="t", now=later)
    assert second.events == ()
    assert second.status == first.status  # nothing changed: nothing to write


def test_training_run_attempt_is_the_highest_seen() -> None:
    observation = TrainingRunObservation(job=JobObservation(name="tr-trainer-2", attempt=2, active=1))
    plan = training_run.decide_training_run(
        TR_OWNER, TrainingRunSpec(), observation, TrainingRunStatus(attempt=1), image="t", now=NOW
    )
    job = plan.children[-1].manifest
    assert (plan.status.attempt, plan.status.job_name, job["metadata"]["name"]) == (
        2,
        "tr-trainer-2",
        "tr-trainer-2",
    )
    assert "--resume" in job["spec"]["template"]["spec"]["containers"][0]["args"]


# --- ModelPin ------------------------------------------------------------------------------------

PIN_SPEC = ModelPinSpec.model_validate(
    {"models": {"primary": {"name": "qwen", "source": "/m/qwen", "revision": "2.5.1"}}, "replicas": 2}
)
REVISION = pin_revision(PIN_SPEC, IMAGE)


def deployment(**fields: Any) -> DeploymentObservation:
    values: dict[str, Any] = {
        "name": "pin-ensemble",
        "generation": 4,
        "observed_generation": 4,
        "revision": REVISION,
        "replicas": 2,
        "updated_replicas": 2,
        "ready_replicas": 2,
        "available_replicas": 2,
        **fields,
    }
    return DeploymentObservation(**values)


FLEET_CASES: dict[str, DeploymentObservation | None] = {
    "absent": None,
    "Progressing=False, ProgressDeadlineExceeded": deployment(
        progress_deadline_exceeded=True, ready_replicas=1
    ),
    "observedGeneration < generation, other revision": deployment(observed_generation=3),
    "updated, ready or available < desired": deployment(ready_replicas=1, available_replicas=1),
    "more pods than desired (old ones terminating)": deployment(replicas=3),
    "otherwise": deployment(),
    'any, with ``artisan.dev/emergency-stop: "true"``': deployment(),
}
STOPPED_ROW = 'any, with ``artisan.dev/emergency-stop: "true"``'
FLEET_ROWS = doc_table(model_pin.__doc__, "deployment observed")


def test_fleet_table_rows_all_have_a_case() -> None:
    assert {r["deployment observed"] for r in FLEET_ROWS} == set(FLEET_CASES)


@pytest.mark.parametrize("row", FLEET_ROWS, ids=lambda r: r["deployment observed"])
def test_model_pin_decision_table(row: dict[str, str]) -> None:
    observation = ModelPinObservation(deployment=FLEET_CASES[row["deployment observed"]])
    stopped = row["deployment observed"] == STOPPED_ROW
    overrides = FleetOverrides(emergency_stop=stopped)
    plan = model_pin.decide_model_pin(
        PIN_OWNER, PIN_SPEC, observation, ModelPinStatus(), image=IMAGE, now=NOW, overrides=overrides
    )
    assert (plan.children[1].manifest["spec"]["replicas"] == 0) == stopped
    ready = next(c for c in plan.status.conditions if c.type == "Ready")
    assert (plan.status.phase, ready.reason, kstate_of(plan.status)) == (
        row["phase"],
        row["reason"],
        row["kstatus"],
    )
    assert plan.status.revision == REVISION
    assert [c.kind for c in plan.children] == ["ConfigMap", "Deployment", "Service", "ConfigMap"]
    assert (plan.status.stable is not None) == (row["phase"] == "Ready")


def test_emergency_stop_then_resume_sets_and_clears_the_condition() -> None:
    observation = ModelPinObservation(deployment=deployment())
    stopped = model_pin.decide_model_pin(
        PIN_OWNER,
        PIN_SPEC,
        observation,
        ModelPinStatus(),
        image=IMAGE,
        now=NOW,
        overrides=FleetOverrides(emergency_stop=True, restarted_at="2025-05-01T12:00:00Z"),
    )
    template = stopped.children[1].manifest["spec"]["template"]
    assert template["metadata"]["annotations"]["artisan.dev/restartedAt"] == "2025-05-01T12:00:00Z"
    flag = next(c for c in stopped.status.conditions if c.type == "EmergencyStopped")
    assert (flag.status, stopped.status.stable) == ("True", None)
    resumed = model_pin.decide_model_pin(
        PIN_OWNER, PIN_SPEC, observation, stopped.status, image=IMAGE, now=NOW
    )
    flag = next(c for c in resumed.status.conditions if c.type == "EmergencyStopped")
    assert (flag.status, flag.reason, resumed.status.phase) == ("False", "Resumed", "Ready")
    assert resumed.children[1].manifest["spec"]["replicas"] == 2


def test_model_pin_another_revision_counts_as_rolling_out() -> None:
    observation = ModelPinObservation(deployment=deployment(revision="0123456789"))
    plan = model_pin.decide_model_pin(
        PIN_OWNER, PIN_SPEC, observation, ModelPinStatus(), image=IMAGE, now=NOW
    )
    assert plan.status.phase == "Progressing"


def test_model_pin_ready_on_a_new_revision_moves_the_old_stable_to_history() -> None:
    ready = ModelPinObservation(deployment=deployment())
    first = model_pin.decide_model_pin(PIN_OWNER, PIN_SPEC, ready, ModelPinStatus(), image=IMAGE, now=NOW)
    assert first.status.stable is not None
    assert first.status.history == []
    new_spec = PIN_SPEC.model_copy(
        update={
            "models": PIN_SPEC.models.model_copy(
                update={"primary": PIN_SPEC.models.primary.model_copy(update={"revision": "2.6.0"})}
            )
        }
    )
    new_revision = pin_revision(new_spec, IMAGE)
    later = NOW.replace(hour=14)
    rolled = ModelPinObservation(deployment=deployment(revision=new_revision))
    second = model_pin.decide_model_pin(PIN_OWNER, new_spec, rolled, first.status, image=IMAGE, now=later)
    assert second.status.stable is not None
    assert (second.status.stable.revision, second.status.stable.time) == (new_revision, later)
    assert [h.revision for h in second.status.history] == [REVISION]
    # Same revision again: the record (and its time) is kept.
    third = model_pin.decide_model_pin(
        PIN_OWNER, new_spec, rolled, second.status, image=IMAGE, now=NOW.replace(hour=15)
    )
    assert third.status.stable == second.status.stable
    assert third.status.history == second.status.history


# --- Canary and ABExperiment initial statuses ---------------------------------------------------

CANARY_SPEC = CanarySpec.model_validate({"targetRef": {"name": "pin"}, "steps": [{"setWeight": 10}]})
TARGETS = {
    "absent": TargetObservation(name="pin", exists=False),
    "present, not Ready": TargetObservation(name="pin", exists=True, phase="Progressing", revision="r2"),
    "present, Ready": TargetObservation(
        name="pin", exists=True, phase="Ready", revision="r1", stable_revision="r1"
    ),
    "present": TargetObservation(name="pin", exists=True, phase="Ready", revision="r1", stable_revision="r1"),
}
CANARY_DOC, AB_DOC = (initial_status.__doc__ or "").split("ABExperiment (``decide_ab_experiment_initial``)")
CANARY_ROWS = doc_table(CANARY_DOC, "target ModelPin")
AB_ROWS = doc_table(AB_DOC, "target ModelPin")


@pytest.mark.parametrize("row", CANARY_ROWS, ids=lambda r: r["target ModelPin"])
def test_canary_initial_status_table(row: dict[str, str]) -> None:
    plan = initial_status.decide_canary_initial(
        CANARY_SPEC, TARGETS[row["target ModelPin"]], CanaryStatus(), generation=1, now=NOW
    )
    ready = next(c for c in plan.status.conditions if c.type == "Ready")
    assert (plan.status.phase, ready.reason, kstate_of(plan.status)) == (
        row["phase"],
        row["reason"],
        row["kstatus"],
    )
    assert plan.status.weight == 0
    assert plan.children == ()


@pytest.mark.parametrize("row", AB_ROWS, ids=lambda r: r["target ModelPin"])
def test_ab_experiment_initial_status_table(row: dict[str, str]) -> None:
    spec = ABExperimentSpec.model_validate(
        {"targetRef": {"name": "pin"}, "variants": [{"name": "a", "weight": 70}, {"name": "b", "weight": 30}]}
    )
    previous = ABExperimentStatus(start_time=NOW.replace(hour=1))
    plan = initial_status.decide_ab_experiment_initial(
        spec, TARGETS[row["target ModelPin"]], previous, generation=1, now=NOW
    )
    ready = next(c for c in plan.status.conditions if c.type == "Ready")
    assert (plan.status.phase, ready.reason, kstate_of(plan.status)) == (
        row["phase"],
        row["reason"],
        row["kstatus"],
    )
    assert plan.status.start_time == NOW.replace(hour=1)  # a record: kept
    assert [v.name for v in plan.status.variants] == ["a", "b"]


# --- kstatus ---------------------------------------------------------------------------------------

KSTATUS_ROWS = doc_table(conditions_module.__doc__, "state")


@pytest.mark.parametrize("row", KSTATUS_ROWS, ids=lambda r: r["state"])
def test_kstatus_table(row: dict[str, str]) -> None:
    state = row["state"].strip("`")
    updates = {u.type: u.status for u in kstatus(state, "Why", "because")}  # type: ignore[arg-type]
    assert updates == {"Ready": row["Ready"], "Reconciling": row["Reconciling"], "Stalled": row["Stalled"]}
