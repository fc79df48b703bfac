"""supervise_training: each row of the docstring table, the rollback budget and write throttling."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from artisan_operator.api.training_run import CheckpointRef, TrainingRunSpec, TrainingRunStatus
from artisan_operator.manifests.common import Owner
from artisan_operator.policy import training_supervision as module
from artisan_operator.policy.training_run import (
    JobObservation,
    PodObservation,
    SupervisionInput,
    TrainingRunDecision,
    TrainingRunObservation,
    decide_supervised_training_run,
)
from artisan_operator.policy.training_supervision import (
    SupervisionObservation,
    SupervisionPlan,
    SupervisionSettings,
    TrainerJobState,
    TrainerMetrics,
    only_scrape_values_changed,
    parse_termination_message,
    supervise_training,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SETTINGS = SupervisionSettings(stall_seconds=60)
CKPT = CheckpointRef(step=1500, sha256="ab" * 32, path="/ckpt/step-1500.pt")


def spec(**kw: object) -> TrainingRunSpec:
    return TrainingRunSpec.model_validate(kw)


RUNNING = TrainerJobState(name="run-0", active=1, pod_phase="Running")


def step(
    s: TrainingRunSpec,
    previous: TrainingRunStatus | None,
    now: datetime,
    job: TrainerJobState | None = RUNNING,
    metrics: TrainerMetrics | None = None,
    last_write: datetime | None = None,
) -> SupervisionPlan:
    obs = SupervisionObservation(
        job=job, metrics=metrics, generation=1, previous=previous, last_write=last_write
    )
    return supervise_training(s, obs, now, SETTINGS)


def started(steps: int = 1600) -> TrainingRunStatus:
    return step(spec(), None, T0, metrics=TrainerMetrics(step=steps, last_checkpoint=CKPT)).status


def cond(plan: SupervisionPlan, type_: str) -> str | None:
    return next((c.status for c in plan.status.conditions if c.type == type_), None)


def case_progress() -> None:
    first = started(100)
    plan = step(
        spec(), first, T0 + timedelta(seconds=30), metrics=TrainerMetrics(step=200, reward_ma=1.5, kl=0.01)
    )
    assert (plan.status.phase, plan.status.step, plan.status.reward_ma) == ("Running", 200, 1.5)
    assert plan.status.last_progress_time == T0 + timedelta(seconds=30)
    assert plan.restart is None


def _rolled_back(plan: SupervisionPlan, reason: str) -> None:
    assert plan.restart is not None
    assert plan.restart.attempt == 1
    assert plan.restart.stop_job == "run-0"
    assert plan.restart.resume_from == CKPT
    record = plan.status.rollbacks[-1]
    assert (record.reason, record.source, record.to_step, record.step) == (reason, "operator", 1500, 1600)
    assert plan.status.attempt == 1
    assert plan.write_status
    assert cond(plan, "RolledBack") == "True"
    assert [e.reason for e in plan.events] == ["RolledBack"]


def case_pod_failed() -> None:
    plan = step(spec(), started(), T0 + timedelta(seconds=5), TrainerJobState("run-0", failed=1))
    _rolled_back(plan, "PodFailed")


def case_crash_loop() -> None:
    job = TrainerJobState("run-0", active=1, pod_phase="Running", waiting_reason="CrashLoopBackOff")
    _rolled_back(step(spec(), started(), T0 + timedelta(seconds=5), job), "CrashLoop")
    job = TrainerJobState("run-0", active=1, pod_phase="Running", restart_count=3)
    _rolled_back(step(spec(), started(), T0 + timedelta(seconds=5), job), "CrashLoop")


def case_stalled() -> None:
    status = started()
    same = TrainerMetrics(step=1600)
    assert step(spec(), status, T0 + timedelta(seconds=59), metrics=same).restart is None
    _rolled_back(step(spec(), status, T0 + timedelta(seconds=60), metrics=same), "Stalled")


def case_trainer_exhausted() -> None:
    plan = step(
        spec(),
        started(),
        T0 + timedelta(seconds=5),
        metrics=TrainerMetrics(step=1600, rollbacks_exhausted=True),
    )
    _rolled_back(plan, "TrainerRollbacksExhausted")


FINAL = (
    '{"step": 1700, "rewardMA": 2.5, "lastCheckpoint": 1650, "bestCheckpoint": 1000,'
    ' "rollbacks": [{"step": 1620, "reason": "kl_divergence", "toStep": 1500},'
    ' {"step": 1690, "reason": "kl_divergence", "toStep": 1650}], "outcome": "%s", "message": "%s"}'
)


def ended(exit_code: int, outcome: str, message: str = "done") -> TrainerJobState:
    end = parse_termination_message(FINAL % (outcome, message), exit_code)
    failed = 0 if exit_code == 0 else 1
    return TrainerJobState("run-0", succeeded=1 - failed, failed=failed, termination=end)


def case_exit_exhausted() -> None:
    # Exit code 3 after the last scrape (step 1600, checkpoint 1500): the final message wins.
    plan = step(spec(), started(), T0 + timedelta(seconds=5), ended(3, "RollbacksExhausted", "3 rollbacks"))
    assert plan.restart is not None
    assert plan.restart.resume_from == CheckpointRef(step=1650)
    trainer = [
        (r.step, r.reason, r.to_step, r.attempt) for r in plan.status.rollbacks if r.source == "trainer"
    ]
    assert trainer == [(1620, "kl_divergence", 1500, 0), (1690, "kl_divergence", 1650, 0)]
    record = plan.status.rollbacks[-1]
    assert (record.reason, record.source, record.step, record.to_step) == (
        "TrainerRollbacksExhausted",
        "operator",
        1700,
        1650,
    )
    assert "3 rollbacks" in (plan.status.message or "")
    assert [e.reason for e in plan.events] == ["RolledBack"] * 3  # two in-process, one operator


def case_exit_final_values() -> None:
    plan = step(spec(), started(), T0 + timedelta(seconds=5), ended(0, "Succeeded"))
    s = plan.status
    assert (s.phase, s.step, s.reward_ma) == ("Succeeded", 1700, 2.5)
    assert (s.last_checkpoint, s.best_checkpoint) == (CheckpointRef(step=1650), CheckpointRef(step=1000))
    assert len([r for r in s.rollbacks if r.source == "trainer"]) == 2
    assert plan.write_status


def case_rollbacks_exhausted() -> None:
    s = spec(rollback={"maxRollbacks": 1})
    plan = step(s, started(), T0 + timedelta(seconds=5), TrainerJobState("run-0", failed=1))
    assert plan.restart is not None
    plan = step(s, plan.status, T0 + timedelta(seconds=10), TrainerJobState("run-1", failed=1))
    assert (plan.status.phase, plan.restart, plan.stop_job) == ("Failed", None, "run-1")
    assert cond(plan, "RollbacksExhausted") == "True"
    assert cond(plan, "Stalled") == "True"
    assert "maxRollbacks=1" in (plan.status.message or "")


def case_deadline() -> None:
    s = spec(activeDeadlineSeconds=100)
    plan = step(s, started(), T0 + timedelta(seconds=100))
    assert (plan.status.phase, plan.stop_job) == ("Failed", "run-0")
    assert cond(plan, "DeadlineExceeded") == "True"


def case_suspended_deadline() -> None:
    s = spec(activeDeadlineSeconds=100, suspend=True)
    status = step(spec(activeDeadlineSeconds=100), started(), T0 + timedelta(seconds=50)).status
    assert status.active_since == T0
    # Suspended long past the deadline: no failure, the clock is stopped.
    plan = step(s, status, T0 + timedelta(hours=3), TrainerJobState("run-0", suspended=True))
    assert (plan.status.phase, plan.stop_job, plan.status.active_since) == ("Suspended", None, None)
    # Resumed: the clock restarts, so 99 s later the run still trains and 100 s later it ends.
    resumed_at = T0 + timedelta(hours=3, seconds=10)
    resumed = step(spec(activeDeadlineSeconds=100), plan.status, resumed_at).status
    assert (resumed.phase, resumed.active_since) == ("Running", resumed_at)
    later = step(spec(activeDeadlineSeconds=100), resumed, resumed_at + timedelta(seconds=99))
    assert later.status.phase == "Running"
    ended = step(spec(activeDeadlineSeconds=100), resumed, resumed_at + timedelta(seconds=100))
    assert ended.status.phase == "Failed"
    # A Job that Kueue suspended (preemption, not yet admitted) does not count either.
    queued = TrainerJobState("run-0", suspended=True)
    plan = step(spec(activeDeadlineSeconds=100), status, T0 + timedelta(hours=1), queued)
    assert plan.status.phase != "Failed"
    assert plan.stop_job is None


def case_job_deadline() -> None:
    # The Job's own activeDeadlineSeconds ended it: the run's deadline, not a pod failure to retry.
    job = TrainerJobState("run-0", failed=1, deadline_exceeded=True)
    plan = step(spec(activeDeadlineSeconds=100), started(), T0 + timedelta(seconds=5), job)
    assert (plan.status.phase, plan.restart) == ("Failed", None)
    assert cond(plan, "DeadlineExceeded") == "True"


def case_suspended() -> None:
    s = spec(suspend=True)
    plan = step(s, started(), T0 + timedelta(hours=2), TrainerJobState("run-0", suspended=True))
    assert plan.status.phase == "Suspended"
    assert plan.status.last_checkpoint == CKPT
    assert plan.restart is None
    # Resuming gives a fresh stall window (no rollback for the time spent suspended).
    resumed = step(
        spec(), plan.status, T0 + timedelta(hours=2, seconds=30), metrics=TrainerMetrics(step=1600)
    )
    assert resumed.restart is None
    assert resumed.status.phase == "Running"


def case_succeeded() -> None:
    plan = step(spec(), started(), T0 + timedelta(seconds=5), TrainerJobState("run-0", succeeded=1))
    assert plan.status.phase == "Succeeded"
    assert plan.status.completion_time == T0 + timedelta(seconds=5)


def case_finished() -> None:
    done = step(spec(), started(), T0 + timedelta(seconds=5), TrainerJobState("run-0", succeeded=1)).status
    plan = step(spec(), done, T0 + timedelta(seconds=50), TrainerJobState("run-0", failed=1))
    assert plan.status == done
    assert not plan.write_status


CASES = {n[5:].replace("_", "-"): f for n, f in globals().items() if n.startswith("case_")}


def test_every_docstring_row_has_a_scenario() -> None:
    rows = set(re.findall(r"^\| ([a-z-]+) +\|", module.__doc__ or "", re.MULTILINE)) - {"case"}
    assert rows == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_worked_example(case: str) -> None:
    CASES[case]()


def test_deadline_clock_keeps_running_across_an_operator_rollback() -> None:
    s = spec(activeDeadlineSeconds=100)
    rolled = step(s, started(), T0 + timedelta(seconds=60), TrainerJobState("run-0", failed=1))
    assert rolled.restart is not None
    between = step(s, rolled.status, T0 + timedelta(seconds=70), job=None)
    assert between.status.active_since == T0
    new_job = TrainerJobState("run-1", active=1, pod_phase="Running", attempt=1)
    assert step(s, between.status, T0 + timedelta(seconds=100), new_job).status.phase == "Failed"


def test_restart_is_not_repeated_after_an_operator_restart() -> None:
    """Once attempt 1 is recorded, the old Job's failure is history: the new Job is observed instead."""
    plan = step(spec(), started(), T0 + timedelta(seconds=5), TrainerJobState("run-0", failed=1))
    # The operator died after writing status: the next pass sees the new attempt's Job (or none yet).
    again = step(spec(), plan.status, T0 + timedelta(seconds=6), job=None)
    assert again.restart is None
    assert again.status.attempt == 1
    assert len(again.status.rollbacks) == 1


def test_trainer_in_process_rollbacks_are_recorded_once() -> None:
    metrics = TrainerMetrics(step=2000, rollbacks_by_reason={"KLDivergence": 1})
    plan = step(spec(), started(), T0 + timedelta(seconds=5), metrics=metrics)
    assert [(r.reason, r.source) for r in plan.status.rollbacks] == [("KLDivergence", "trainer")]
    again = step(spec(), plan.status, T0 + timedelta(seconds=10), metrics=metrics)
    assert len(again.status.rollbacks) == 1
    assert again.events == ()


def test_metric_only_writes_are_throttled_to_one_per_five_seconds() -> None:
    status = started(100)
    wrote = T0
    plan = step(
        spec(), status, T0 + timedelta(seconds=2), metrics=TrainerMetrics(step=100, kl=0.02), last_write=wrote
    )
    assert not plan.write_status
    plan = step(
        spec(), status, T0 + timedelta(seconds=5), metrics=TrainerMetrics(step=100, kl=0.02), last_write=wrote
    )
    assert plan.write_status
    failed = step(
        spec(), status, T0 + timedelta(seconds=1), TrainerJobState("run-0", failed=1), last_write=wrote
    )
    assert failed.write_status  # a rollback is written at once


def test_termination_rollbacks_already_counted_from_metrics_are_not_recorded_twice() -> None:
    scraped = step(
        spec(),
        started(),
        T0 + timedelta(seconds=5),
        metrics=TrainerMetrics(rollbacks_by_reason={"kl_divergence": 1}),
    )
    assert len(scraped.status.rollbacks) == 1
    plan = step(spec(), scraped.status, T0 + timedelta(seconds=9), ended(0, "Succeeded"))
    trainer = [(r.step, r.to_step) for r in plan.status.rollbacks if r.source == "trainer"]
    assert trainer == [(1600, None), (1690, 1650)]  # the first came from the counter, the second is new


def test_exit_code_3_without_a_readable_message_is_trainer_exhaustion() -> None:
    for text in (None, "Traceback (most recent call last):\n  ...", '{"outcome": ', "[1, 2]"):
        end = parse_termination_message(text, 3)
        assert end.outcome is None
        assert end.step is None
        plan = step(
            spec(), started(), T0 + timedelta(seconds=5), TrainerJobState("run-0", failed=1, termination=end)
        )
        assert plan.status.rollbacks[-1].reason == "TrainerRollbacksExhausted"
        assert plan.status.step == 1600  # nothing from the unreadable message
    # A plain failure with log text stays PodFailed, with nothing invented.
    end = parse_termination_message("OOM while allocating", 137)
    plan = step(
        spec(), started(), T0 + timedelta(seconds=5), TrainerJobState("run-0", failed=1, termination=end)
    )
    assert plan.status.rollbacks[-1].reason == "PodFailed"


def test_error_outcome_is_a_pod_failure_with_the_trainers_message() -> None:
    plan = step(spec(), started(), T0 + timedelta(seconds=5), ended(1, "Error", "CUDA error: out of memory"))
    assert plan.status.rollbacks[-1].reason == "PodFailed"
    assert "CUDA error: out of memory" in (plan.status.message or "")
    assert plan.restart is not None
    assert plan.restart.resume_from == CheckpointRef(step=1650)


@pytest.mark.parametrize(
    ("text", "exit_code", "outcome", "step_"),
    [
        ('{"step": 100, "outcome": "Succeeded", "rewardMA": 1.0}', 0, "Succeeded", 100),
        ("Traceback: log text under FallbackToLogsOnError", 1, None, None),
        ('{"step": "ten", "outcome": "Maybe"}', 1, None, None),
        (None, 3, None, None),
    ],
)
def test_termination_message_table(
    text: str | None, exit_code: int, outcome: str | None, step_: int | None
) -> None:
    """The rows of parse_termination_message's docstring table."""
    end = parse_termination_message(text, exit_code)
    assert (end.outcome, end.step, end.exit_code) == (outcome, step_, exit_code)
    assert end.rollbacks_exhausted == (exit_code == 3)


def test_termination_message_ignores_wrong_types_field_by_field() -> None:
    end = parse_termination_message(
        '{"step": true, "rewardMA": "high", "lastCheckpoint": -1, "bestCheckpoint": 2.5,'
        ' "rollbacks": [1, {"step": 5}, {"step": 7, "reason": "reward_drop", "toStep": "x"}],'
        ' "outcome": "RollbacksExhausted", "message": 42}',
        3,
    )
    assert (end.step, end.reward_ma, end.last_checkpoint, end.best_checkpoint, end.message) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert [(r.step, r.reason, r.to_step) for r in end.rollbacks] == [(7, "reward_drop", None)]
    assert end.rollbacks_exhausted
    assert parse_termination_message('{"rewardMA": NaN, "outcome": "Error"}', 1).reward_ma is None


def test_no_stall_without_metrics_or_before_the_pod_runs() -> None:
    status = started()
    late = T0 + timedelta(seconds=600)
    # Metrics unreadable (provider error): no evidence of a stall.
    assert step(spec(), status, late, metrics=None).restart is None
    # The container only started running 10 s ago (it waited for a node): not stalled yet.
    job = TrainerJobState("run-0", active=1, pod_phase="Running", running_since=late - timedelta(seconds=10))
    assert step(spec(), status, late, job, metrics=TrainerMetrics(step=1600)).restart is None


def test_a_step_that_goes_back_after_a_restart_is_progress() -> None:
    status = started(1600)
    plan = step(spec(), status, T0 + timedelta(seconds=59), metrics=TrainerMetrics(step=1500))
    assert plan.status.last_progress_time == T0 + timedelta(seconds=59)


def test_trainer_rollbacks_are_counted_per_attempt() -> None:
    metrics = TrainerMetrics(step=2000, rollbacks_by_reason={"kl_divergence": 1})
    first = step(spec(), started(), T0 + timedelta(seconds=5), metrics=metrics)
    assert len(first.status.rollbacks) == 1
    # The restarted trainer (attempt 1) reports its own first rollback: a new record.
    job = TrainerJobState("run-1", active=1, pod_phase="Running", attempt=1)
    second = step(spec(), first.status, T0 + timedelta(seconds=10), job, metrics=metrics)
    assert [(r.attempt, r.reason) for r in second.status.rollbacks] == [
        (0, "kl_divergence"),
        (1, "kl_divergence"),
    ]


def test_metrics_are_read_from_the_trainers_samples() -> None:
    samples = [
        ("ppo_training_step", {}, 2048.0),
        ("rl_reward_ma", {"window": "10"}, 1.0),
        ("rl_reward_ma", {"window": "100"}, 2.5),
        ("ppo_approx_kl", {}, 0.012),
        ("ppo_entropy_coef", {}, 0.008),
        ("ppo_learning_rate", {}, 2.5e-4),
        ("rl_checkpoint_rollback_total", {"reason": "kl_divergence"}, 1.0),
        ("rl_checkpoint_rollback_total", {"reason": "reward_drop"}, 0.0),
        ("artisan_trainer_rollbacks_exhausted", {}, 0.0),
        ("ppo_last_checkpoint_step", {}, 1500.0),
        ("ppo_best_checkpoint_step", {}, 1000.0),
        ("ppo_value_loss", {}, float("nan")),
    ]
    got = module.trainer_metrics_from_samples(samples)
    assert (got.step, got.reward_ma, got.kl, got.entropy_coef, got.learning_rate) == (
        2048,
        2.5,
        0.012,
        0.008,
        2.5e-4,
    )
    assert got.rollbacks_by_reason == {"kl_divergence": 1, "reward_drop": 0}
    assert not got.rollbacks_exhausted
    assert (got.last_checkpoint, got.best_checkpoint) == (CheckpointRef(step=1500), CheckpointRef(step=1000))
    exhausted = module.trainer_metrics_from_samples([("artisan_trainer_rollbacks_exhausted", {}, 1.0)])
    assert exhausted.rollbacks_exhausted
    assert exhausted.step is None


# --- the full pass: decide_supervised_training_run -------------------------------------------------

OWNER = Owner(kind="TrainingRun", name="run", namespace="ml", uid="u-1", generation=1)
RUNNING_OBS = TrainingRunObservation(
    job=JobObservation(name="run-trainer-0", attempt=0, active=1),
    pod=PodObservation("run-trainer-0-p", "Running", running_since=T0),
)


def full_pass(
    previous: TrainingRunStatus,
    now: datetime,
    metrics: TrainerMetrics | None,
    last_write: datetime | None,
    observation: TrainingRunObservation = RUNNING_OBS,
) -> TrainingRunDecision:
    given = SupervisionInput(metrics=metrics, last_write=last_write, settings=SETTINGS)
    return decide_supervised_training_run(OWNER, spec(), observation, previous, given, image="t", now=now)


def test_full_pass_throttles_metric_only_changes_to_one_write_per_five_seconds() -> None:
    first = full_pass(TrainingRunStatus(), T0, TrainerMetrics(step=100, kl=0.01), None).plan.status
    assert (first.phase, first.step) == ("Running", 100)
    # 2 s after that write: a new step and KL only. Nothing to write; look again when it is due.
    soon = full_pass(first, T0 + timedelta(seconds=2), TrainerMetrics(step=200, kl=0.02), T0).plan
    assert soon.status == first
    assert soon.requeue_after == pytest.approx(3.0)
    # 5 s after it: written.
    due = full_pass(first, T0 + timedelta(seconds=5), TrainerMetrics(step=200, kl=0.02), T0).plan
    assert (due.status.step, due.status.kl) == (200, 0.02)
    # A phase change within the 5 s is written at once, with the fresh values.
    done = TrainingRunObservation(job=JobObservation(name="run-trainer-0", attempt=0, complete=True))
    ended = full_pass(first, T0 + timedelta(seconds=1), TrainerMetrics(step=300), T0, done).plan
    assert (ended.status.phase, ended.status.step) == ("Succeeded", 300)
    # So is a new in-process rollback record.
    rolled = full_pass(
        first, T0 + timedelta(seconds=1), TrainerMetrics(step=300, rollbacks_by_reason={"reward_drop": 1}), T0
    ).plan
    assert [r.reason for r in rolled.status.rollbacks] == ["reward_drop"]


def test_only_scrape_values_changed_ignores_messages_that_quote_them() -> None:
    first = step(spec(), None, T0, metrics=TrainerMetrics(step=100)).status
    later = step(spec(), first, T0 + timedelta(seconds=1), metrics=TrainerMetrics(step=200)).status
    assert later.conditions != first.conditions  # "training at step 200"
    assert only_scrape_values_changed(first, later)
    suspended = step(spec(suspend=True), first, T0 + timedelta(seconds=1)).status
    assert not only_scrape_values_changed(first, suspended)
    assert not only_scrape_values_changed(first, first)


def test_emergency_stop_annotation_suspends_the_run_and_removing_it_resumes() -> None:
    first = full_pass(TrainingRunStatus(), T0, TrainerMetrics(step=100), None).plan.status
    stop = {"artisan.dev/emergency-stop": "true"}
    given = SupervisionInput(metrics=None, annotations=stop, last_write=T0, settings=SETTINGS)
    stopped = decide_supervised_training_run(
        OWNER, spec(), RUNNING_OBS, first, given, image="t", now=T0 + timedelta(seconds=1)
    )
    ready = next(c for c in stopped.plan.status.conditions if c.type == "Ready")
    assert (stopped.plan.status.phase, ready.reason) == ("Suspended", "EmergencyStopped")
    job = stopped.plan.children[3].manifest
    assert job["spec"]["suspend"] is True
    assert [e.reason for e in stopped.plan.events] == ["EmergencyStopped"]
    # A rollback request waits while stopped (not consumed), as with spec.suspend.
    asked = SupervisionInput(annotations={**stop, "artisan.dev/rollback-to": "50"}, settings=SETTINGS)
    waiting = decide_supervised_training_run(
        OWNER, spec(), RUNNING_OBS, stopped.plan.status, asked, image="t", now=T0 + timedelta(seconds=2)
    )
    assert not waiting.consume_annotation
    # The annotation removed: the Job is unsuspended and the run trains again from its checkpoints.
    resumed = full_pass(stopped.plan.status, T0 + timedelta(seconds=10), TrainerMetrics(step=100), None)
    assert resumed.plan.status.phase == "Running"
    assert resumed.plan.children[3].manifest["spec"]["suspend"] is False
