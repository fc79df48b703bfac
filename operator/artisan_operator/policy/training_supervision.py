"""TrainingRun supervision (pure): reflect the trainer's metrics, and roll back at the operator level.

The trainer rolls back by itself inside its process (KL, loss spike, reward drop). The operator steps
in when the process cannot help itself: the pod failed, crash-loops, makes no step progress, or reports
that its own rollbacks are exhausted. Then the Job is restarted (a new attempt) with ``--resume``, which
loads the newest checkpoint whose sha256 matches the manifest; the status records the checkpoint the
trainer last reported as verified. After ``rollback.maxRollbacks`` operator rollbacks the run fails.

| case                | observation                           | phase     | action                          |
|---------------------|---------------------------------------|-----------|---------------------------------|
| progress            | step advanced                         | Running   | lastProgressTime = now          |
| pod-failed          | Job failed / pod Failed               | Running   | restart from checkpoint         |
| crash-loop          | CrashLoopBackOff or restarts ≥ 3      | Running   | restart from checkpoint         |
| stalled             | no step progress for stallSeconds     | Running   | restart from checkpoint         |
| trainer-exhausted   | trainer's rollbacks exhausted         | Running   | restart from checkpoint         |
| exit-exhausted      | ended with outcome RollbacksExhausted | Running   | restart from final checkpoint   |
| exit-final-values   | Succeeded, termination message        | Succeeded | final step, reward, checkpoints |
| rollbacks-exhausted | anomaly after maxRollbacks restarts   | Failed    | stop, RollbacksExhausted        |
| deadline            | activeDeadlineSeconds since (re)start | Failed    | stop, DeadlineExceeded          |
| job-deadline        | the Job failed with DeadlineExceeded  | Failed    | DeadlineExceeded                |
| suspended           | spec.suspend                          | Suspended | Job suspended, PVC kept         |
| suspended-deadline  | suspended past the deadline           | Suspended | none; clock restarts on resume  |
| succeeded           | Job succeeded                         | Succeeded | none                            |
| finished            | ended before, same generation         | kept      | none                            |

``activeDeadlineSeconds`` counts like a Job's: from the run's start, and afresh from each resume.
Suspended time never counts (``spec.suspend``, or a Job that Kueue suspended or has not admitted
yet): a suspended run never fails on its deadline; ``status.activeSince`` holds when the clock last
started (cleared while suspended). The Job carries the same ``activeDeadlineSeconds``, which
Kubernetes pauses and resets on resume the same way.

A stall needs evidence: metrics that were read (a provider error is no evidence) and a pod running
for ``stallSeconds`` without any change of step (a step that goes back after a restart is progress).
In-process rollbacks are counted per Job attempt (a restarted trainer's counters start at zero).

When the trainer container has terminated, its termination message (``terminationMessagePath``, a
compact JSON the trainer writes at exit: step, rewardMA, last/best checkpoint, its rollbacks, outcome)
carries what happened after the last scrape: it overrides the scraped values, its rollbacks are
recorded with the same per-attempt dedup as the counters, and outcome ``RollbacksExhausted`` (or,
without a readable message, exit code 3) is ``TrainerRollbacksExhausted``, not ``PodFailed``. A
message that is not that JSON (log text under ``FallbackToLogsOnError``, garbage, a truncated
document) is ignored.

Status writes carrying only fresh metric values are limited to one per ``min_write_interval`` (5 s);
a change of phase, conditions or records is written at once. "Only fresh metric values" means: the
per-scrape fields (:data:`METRIC_FIELDS`), the status message and condition messages (which quote
those values, e.g. "training at step N") changed, but no phase, condition status or reason did.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from artisan_operator.api.common import PROGRESSING
from artisan_operator.api.training_run import (
    DEADLINE_EXCEEDED,
    EMERGENCY_STOPPED,
    ROLLBACKS_EXHAUSTED,
    ROLLED_BACK,
    CheckpointRef,
    RollbackRecord,
    TrainingPhase,
    TrainingRunSpec,
    TrainingRunStatus,
)
from artisan_operator.policy.conditions import KState, set_condition, set_kstatus
from artisan_operator.policy.plan import EventNote

CRASH_LOOP = "CrashLoop"
POD_FAILED = "PodFailed"
STALLED_REASON = "Stalled"
TRAINER_EXHAUSTED = "TrainerRollbacksExhausted"
EXIT_ROLLBACKS_EXHAUSTED = 3
"""The trainer's exit code when its in-process rollbacks are exhausted (artisan_trainer.cli)."""
TERMINATION_MESSAGE_LIMIT = 4096
"""The kubelet keeps at most this many bytes of a container's termination message."""
TrainerOutcome = Literal["Succeeded", "RollbacksExhausted", "Error"]


METRIC_FIELDS = (
    "step",
    "reward_ma",
    "kl",
    "entropy_coef",
    "learning_rate",
    "last_checkpoint",
    "best_checkpoint",
    "last_progress_time",
)
"""Status fields that change with every scrape: written at most once per min_write_interval."""


def _without_scrape_values(status: TrainingRunStatus, previous: TrainingRunStatus) -> TrainingRunStatus:
    """``status`` with the per-scrape fields and the messages taken from ``previous``."""
    messages = {(c.type, c.status, c.reason): c for c in previous.conditions}
    conditions = [
        c.model_copy(
            update={
                "message": messages[key].message,
                "last_transition_time": messages[key].last_transition_time,
            }
        )
        if (key := (c.type, c.status, c.reason)) in messages
        else c
        for c in status.conditions
    ]
    kept = {name: getattr(previous, name) for name in METRIC_FIELDS}
    return status.model_copy(update={**kept, "message": previous.message, "conditions": conditions})


def only_scrape_values_changed(previous: TrainingRunStatus, status: TrainingRunStatus) -> bool:
    """Whether ``status`` differs from ``previous`` only in what every scrape changes (throttled)."""
    return status != previous and _without_scrape_values(status, previous) == previous


@dataclass(frozen=True)
class SupervisionSettings:
    stall_seconds: float = 600.0
    """No step progress for this long (while the pod runs) is a stall."""
    crash_loop_restarts: int = 3
    """Container restarts counted as a crash loop even before the kubelet says CrashLoopBackOff."""
    min_write_interval: float = 5.0
    """At most one metrics-only status write per this many seconds."""


@dataclass(frozen=True)
class TrainerMetrics:
    """What the trainer's /metrics says (any field may be missing)."""

    step: int | None = None
    reward_ma: float | None = None
    kl: float | None = None
    entropy_coef: float | None = None
    learning_rate: float | None = None
    rollbacks_by_reason: Mapping[str, int] = field(default_factory=dict)
    """In-process rollbacks so far, by reason (rl_checkpoint_rollback_total{reason})."""
    rollbacks_exhausted: bool = False
    last_checkpoint: CheckpointRef | None = None
    """The newest checkpoint whose sha256 the trainer verified against its manifest."""
    best_checkpoint: CheckpointRef | None = None


@dataclass(frozen=True)
class TrainerRollback:
    """One in-process rollback as the trainer's termination message lists it."""

    step: int
    reason: str
    to_step: int | None = None


@dataclass(frozen=True)
class TrainerTermination:
    """The trainer container ended: its exit code and what its termination message says."""

    exit_code: int | None = None
    step: int | None = None
    reward_ma: float | None = None
    last_checkpoint: CheckpointRef | None = None
    best_checkpoint: CheckpointRef | None = None
    rollbacks: tuple[TrainerRollback, ...] = ()
    outcome: TrainerOutcome | None = None
    """None when the message was absent or unreadable (then only the exit code speaks)."""
    message: str | None = None

    @property
    def rollbacks_exhausted(self) -> bool:
        if self.outcome is not None:
            return self.outcome == "RollbacksExhausted"
        return self.exit_code == EXIT_ROLLBACKS_EXHAUSTED


def _whole(value: Any) -> int | None:
    # bool is an int in Python; a JSON true is not a step.
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _real(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def parse_termination_message(text: str | None, exit_code: int | None = None) -> TrainerTermination:
    """The trainer's termination message, read defensively: anything but its JSON object is ignored.

    | message                                            | exit | outcome            | values kept     |
    |----------------------------------------------------|------|--------------------|-----------------|
    | {"step": 100, "outcome": "Succeeded", ...}         | 0    | Succeeded          | all valid ones  |
    | log text (FallbackToLogsOnError)                   | 1    | None               | none            |
    | {"step": "ten", "outcome": "Maybe"}                | 1    | None               | none of those   |
    | absent                                             | 3    | None (exhausted)   | none            |
    """
    document: Any = None
    if text:
        try:
            document = json.loads(text[:TERMINATION_MESSAGE_LIMIT])
        except ValueError:
            document = None
    if not isinstance(document, dict):
        return TrainerTermination(exit_code=exit_code)

    def checkpoint(key: str) -> CheckpointRef | None:
        step = _whole(document.get(key))
        return CheckpointRef(step=step) if step is not None else None

    rollbacks: list[TrainerRollback] = []
    raw_rollbacks = document.get("rollbacks")
    for item in raw_rollbacks if isinstance(raw_rollbacks, list) else []:
        if not isinstance(item, dict):
            continue
        step, reason = _whole(item.get("step")), item.get("reason")
        if step is not None and isinstance(reason, str) and reason:
            rollbacks.append(TrainerRollback(step=step, reason=reason, to_step=_whole(item.get("toStep"))))
    outcome = document.get("outcome")
    message = document.get("message")
    return TrainerTermination(
        exit_code=exit_code,
        step=_whole(document.get("step")),
        reward_ma=_real(document.get("rewardMA")),
        last_checkpoint=checkpoint("lastCheckpoint"),
        best_checkpoint=checkpoint("bestCheckpoint"),
        rollbacks=tuple(rollbacks),
        outcome=outcome if outcome in ("Succeeded", "RollbacksExhausted", "Error") else None,
        message=message if isinstance(message, str) and message else None,
    )


def with_termination(metrics: TrainerMetrics | None, end: TrainerTermination | None) -> TrainerMetrics | None:
    """The last scrape overlaid with the (newer) final values of the termination message."""
    if end is None or end.outcome is None:
        return metrics
    base = metrics or TrainerMetrics()
    return replace(
        base,
        step=end.step if end.step is not None else base.step,
        reward_ma=end.reward_ma if end.reward_ma is not None else base.reward_ma,
        last_checkpoint=end.last_checkpoint or base.last_checkpoint,
        best_checkpoint=end.best_checkpoint or base.best_checkpoint,
        rollbacks_exhausted=end.rollbacks_exhausted,
    )


@dataclass(frozen=True)
class TrainerJobState:
    """The Job of the current attempt and its pod."""

    name: str
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    suspended: bool = False
    pod_phase: str | None = None
    waiting_reason: str | None = None
    restart_count: int = 0
    running_since: datetime | None = None
    """When the trainer container started running (a pod that waited for a node is not stalled)."""
    deadline_exceeded: bool = False
    """The Job itself failed with DeadlineExceeded (its activeDeadlineSeconds)."""
    attempt: int = 0
    termination: TrainerTermination | None = None
    """Set once the trainer container has terminated (exit code, parsed termination message)."""


@dataclass(frozen=True)
class SupervisionObservation:
    job: TrainerJobState | None
    """The current attempt's Job; None when it does not exist (yet)."""
    metrics: TrainerMetrics | None = None
    generation: int | None = None
    previous: TrainingRunStatus | None = None
    last_write: datetime | None = None
    """When this operator last wrote the status (None after a restart)."""
    emergency_stop: bool = False
    """``artisan.dev/emergency-stop: "true"``: suspended like spec.suspend, with its own reason."""


@dataclass(frozen=True)
class RestartJob:
    """Replace the Job with attempt ``attempt``, resuming from the newest verified checkpoint."""

    attempt: int
    stop_job: str | None
    resume_from: CheckpointRef | None


@dataclass(frozen=True)
class SupervisionPlan:
    status: TrainingRunStatus
    write_status: bool
    restart: RestartJob | None = None
    stop_job: str | None = None
    """A Job to delete because the run ended (failed for good, deadline)."""
    events: tuple[EventNote, ...] = ()
    requeue_after: float | None = None


def detect_anomaly(
    job: TrainerJobState | None,
    metrics: TrainerMetrics | None,
    last_progress: datetime | None,
    now: datetime,
    settings: SupervisionSettings,
) -> tuple[str, str] | None:
    """(reason, message) of the first anomaly that needs an operator rollback, if any."""
    if job is None or job.suspended or job.succeeded:
        return None
    end = job.termination
    if end is not None and end.rollbacks_exhausted and end.exit_code != 0:
        detail = f": {end.message}" if end.message else ""
        return TRAINER_EXHAUSTED, f"the trainer exited with its in-process rollbacks exhausted{detail}"
    if job.failed or job.pod_phase == "Failed":
        detail = f": {end.message}" if end is not None and end.message else ""
        return POD_FAILED, f"trainer Job {job.name} failed{detail}"
    if job.waiting_reason == "CrashLoopBackOff" or job.restart_count >= settings.crash_loop_restarts:
        return CRASH_LOOP, f"trainer pod of {job.name} crash-loops ({job.restart_count} restarts)"
    if metrics is not None and metrics.rollbacks_exhausted:
        return TRAINER_EXHAUSTED, "the trainer reports its in-process rollbacks exhausted"
    running = job.active > 0 and job.pod_phase in (None, "Running")
    since = last_progress
    if since is not None and job.running_since is not None:
        since = max(since, job.running_since)
    if (
        running
        and metrics is not None
        and since is not None
        and (now - since).total_seconds() >= settings.stall_seconds
    ):
        return STALLED_REASON, f"no step progress for {settings.stall_seconds:g}s"
    return None


def _trainer_rollbacks(
    previous: list[RollbackRecord],
    metrics: TrainerMetrics | None,
    step: int | None,
    now: datetime,
    *,
    attempt: int,
    end: TrainerTermination | None = None,
) -> list[RollbackRecord]:
    """Append a record for each in-process rollback the trainer reports that status lacks.

    The counters (and the termination message's list) belong to one trainer process, so they are
    compared with this attempt's records, reason by reason. The termination message lists every
    rollback of the process with its step and target, so when it is readable it replaces the counters.
    """
    reported: dict[str, list[TrainerRollback]] = {}
    if end is not None and end.outcome is not None:
        for rollback in end.rollbacks:
            reported.setdefault(rollback.reason, []).append(rollback)
    elif metrics is not None:
        for reason, total in metrics.rollbacks_by_reason.items():
            reported[reason] = [TrainerRollback(step=step or 0, reason=reason)] * max(0, int(total))
    records = list(previous)
    for reason, items in sorted(reported.items()):
        known = sum(
            1 for r in records if r.source == "trainer" and r.reason == reason and (r.attempt or 0) == attempt
        )
        records.extend(
            RollbackRecord(
                time=now, step=r.step, reason=reason, to_step=r.to_step, source="trainer", attempt=attempt
            )
            for r in items[known:]
        )
    return records


def supervise_training(
    spec: TrainingRunSpec,
    obs: SupervisionObservation,
    now: datetime,
    settings: SupervisionSettings = SupervisionSettings(),
) -> SupervisionPlan:
    """The supervision plan for this pass (see the module table)."""
    previous = obs.previous or TrainingRunStatus()
    if obs.emergency_stop:
        spec = spec.model_copy(update={"suspend": True})  # in effect only: spec is the user's
    generation = obs.generation
    if previous.phase in ("Failed", "Succeeded") and (
        generation is None or previous.observed_generation == generation
    ):
        return SupervisionPlan(previous, write_status=False)

    job = obs.job
    end = job.termination if job is not None else None
    metrics = with_termination(obs.metrics, end)
    events: list[EventNote] = []
    step = metrics.step if metrics is not None and metrics.step is not None else previous.step
    # Any change counts: after a restart the step goes back to the checkpoint's and climbs again.
    progressed = step is not None and step != previous.step
    start = previous.start_time or (now if job is not None else None)
    suspended = spec.suspend or (job is not None and job.suspended)
    # The deadline clock: stopped while suspended, restarted when the run runs again.
    active_since = None if suspended or job is None else (previous.active_since or now)
    if previous.active_since is not None and job is None and not suspended:
        active_since = previous.active_since  # between attempts: the clock keeps running
    last_progress = previous.last_progress_time
    if progressed or spec.suspend or (last_progress is None and job is not None):
        # A suspended run gets a fresh stall window when it resumes; a new Job starts one.
        last_progress = now
    attempt_now = job.attempt if job is not None else previous.attempt
    rollbacks = _trainer_rollbacks(list(previous.rollbacks), metrics, step, now, attempt=attempt_now, end=end)
    conditions = list(previous.conditions)
    update: dict[str, object] = {
        "observed_generation": generation,
        "step": step,
        "total_steps": spec.ppo.total_steps,
        "start_time": start,
        "active_since": active_since,
        "last_progress_time": last_progress,
        "rollbacks": rollbacks,
    }
    if metrics is not None:
        update |= {
            "reward_ma": metrics.reward_ma if metrics.reward_ma is not None else previous.reward_ma,
            "kl": metrics.kl if metrics.kl is not None else previous.kl,
            "entropy_coef": metrics.entropy_coef
            if metrics.entropy_coef is not None
            else previous.entropy_coef,
            "learning_rate": metrics.learning_rate
            if metrics.learning_rate is not None
            else previous.learning_rate,
            "last_checkpoint": metrics.last_checkpoint or previous.last_checkpoint,
            "best_checkpoint": metrics.best_checkpoint or previous.best_checkpoint,
        }
    if len(rollbacks) > len(previous.rollbacks):
        new = rollbacks[len(previous.rollbacks) :]
        events.extend(
            EventNote(ROLLED_BACK, f"trainer rolled back in-process at step {r.step} ({r.reason})", "Warning")
            for r in new
        )

    def plan(
        phase: TrainingPhase,
        state: KState,
        reason: str,
        message: str,
        *,
        restart: RestartJob | None = None,
        stop_job: str | None = None,
        requeue: float | None = None,
        **extra: object,
    ) -> SupervisionPlan:
        nonlocal conditions
        conditions = set_kstatus(conditions, state, reason, message, now=now, generation=generation)
        status = TrainingRunStatus.model_validate(
            previous.model_copy(
                update={**update, **extra, "phase": phase, "message": message, "conditions": conditions}
            ).model_dump()
        )
        due = obs.last_write is None or (now - obs.last_write).total_seconds() >= settings.min_write_interval
        write = status != previous and (due or not only_scrape_values_changed(previous, status))
        return SupervisionPlan(status, write, restart, stop_job, tuple(events), requeue)

    deadline_hit = job is not None and job.deadline_exceeded
    if spec.active_deadline_seconds is not None and active_since is not None:
        deadline_hit = deadline_hit or now >= active_since + timedelta(seconds=spec.active_deadline_seconds)
    if deadline_hit:
        message = f"activeDeadlineSeconds={spec.active_deadline_seconds} exceeded"
        conditions = set_condition(
            conditions,
            DEADLINE_EXCEEDED,
            "True",
            DEADLINE_EXCEEDED,
            message,
            now=now,
            generation=generation,
        )
        events.append(EventNote(DEADLINE_EXCEEDED, message, "Warning"))
        return plan(
            "Failed",
            "stalled",
            DEADLINE_EXCEEDED,
            message,
            stop_job=job.name if job is not None else None,
            completion_time=now,
        )
    if obs.emergency_stop:
        return plan(
            "Suspended",
            "idle",
            EMERGENCY_STOPPED,
            "emergency stop; checkpoints kept, resume continues from them",
        )
    if spec.suspend:
        return plan(
            "Suspended", "idle", "Suspended", "suspended; checkpoints kept, resume continues from them"
        )
    if job is not None and job.succeeded:
        return plan("Succeeded", "ready", "Succeeded", f"finished at step {step}", completion_time=now)

    anomaly = detect_anomaly(job, metrics, last_progress, now, settings)
    if anomaly is not None and job is not None:
        reason, detail = anomaly
        # A manual rollback is the user's decision: it does not use up the automatic budget.
        operator_rollbacks = sum(1 for r in rollbacks if r.source == "operator" and r.request is None)
        if not spec.rollback.enabled or operator_rollbacks >= spec.rollback.max_rollbacks:
            limit = spec.rollback.max_rollbacks
            message = f"{detail}; {operator_rollbacks} operator rollbacks used of maxRollbacks={limit}"
            conditions = set_condition(
                conditions, ROLLBACKS_EXHAUSTED, "True", reason, message, now=now, generation=generation
            )
            events.append(EventNote(ROLLBACKS_EXHAUSTED, message, "Warning"))
            return plan(
                "Failed", "stalled", ROLLBACKS_EXHAUSTED, message, stop_job=job.name, completion_time=now
            )
        checkpoint = (
            metrics.last_checkpoint if metrics and metrics.last_checkpoint else previous.last_checkpoint
        )
        attempt = max(previous.attempt, job.attempt) + 1
        record = RollbackRecord(
            time=now,
            step=step or 0,
            reason=reason,
            to_step=checkpoint.step if checkpoint is not None else None,
            source="operator",
            attempt=attempt,
        )
        rollbacks.append(record)
        target = (
            f"checkpoint at step {checkpoint.step}"
            if checkpoint is not None
            else "the start (no checkpoint yet)"
        )
        message = f"{detail}; restarting the trainer (attempt {attempt}) from {target}"
        conditions = set_condition(
            conditions, ROLLED_BACK, "True", reason, message, now=now, generation=generation
        )
        events.append(EventNote(ROLLED_BACK, message, "Warning"))
        return plan(
            "Running",
            "progressing",
            ROLLED_BACK,
            message,
            restart=RestartJob(attempt=attempt, stop_job=job.name, resume_from=checkpoint),
            attempt=attempt,
            last_progress_time=now,
        )

    if job is None:
        return plan("Pending", "progressing", PROGRESSING, "waiting for the trainer Job", requeue=1.0)
    stall_in = None
    if last_progress is not None:
        stall_in = max(0.0, settings.stall_seconds - (now - last_progress).total_seconds())
    running = job.active > 0 and job.pod_phase in (None, "Running")
    phase: TrainingPhase = "Running" if running else "Pending"
    message = f"training at step {step} of {spec.ppo.total_steps}" if step is not None else "trainer starting"
    return plan(phase, "ready" if running else "progressing", phase, message, requeue=stall_in)


# --------------------------------------------------------------------------- the trainer's /metrics

STEP_METRIC = "ppo_training_step"
REWARD_MA_METRIC = "rl_reward_ma"
KL_METRIC = "ppo_approx_kl"
ENTROPY_COEF_METRIC = "ppo_entropy_coef"
LEARNING_RATE_METRIC = "ppo_learning_rate"
ROLLBACKS_METRIC = "rl_checkpoint_rollback_total"
EXHAUSTED_METRIC = "artisan_trainer_rollbacks_exhausted"
LAST_CHECKPOINT_METRIC = "ppo_last_checkpoint_step"
BEST_CHECKPOINT_METRIC = "ppo_best_checkpoint_step"
TRAINER_METRIC_NAMES = (
    STEP_METRIC,
    REWARD_MA_METRIC,
    KL_METRIC,
    ENTROPY_COEF_METRIC,
    LEARNING_RATE_METRIC,
    ROLLBACKS_METRIC,
    EXHAUSTED_METRIC,
    LAST_CHECKPOINT_METRIC,
    BEST_CHECKPOINT_METRIC,
)
"""What the operator reads from the trainer (artisan_trainer/server.py exports them)."""
REWARD_WINDOW = "100"
"""The reward moving average shown in status (the trainer exports several windows)."""

MetricSample = tuple[str, Mapping[str, str], float]


def trainer_metrics_from_samples(samples: Iterable[MetricSample]) -> TrainerMetrics:
    """TrainerMetrics from one trainer's samples (a scrape, or a Prometheus query by pod).

    Checkpoint steps come from the trainer's gauges, which it sets only for a checkpoint it wrote
    with a sha256 in its manifest (or rolled back to after verifying it); -1/absent means none yet.
    """
    values: dict[str, float] = {}
    windows: dict[str, float] = {}
    rollbacks: dict[str, int] = {}
    for name, labels, value in samples:
        if math.isnan(value):  # no value
            continue
        if name == REWARD_MA_METRIC:
            windows[labels.get("window", "")] = value
        elif name == ROLLBACKS_METRIC and "reason" in labels:
            rollbacks[labels["reason"]] = rollbacks.get(labels["reason"], 0) + int(value)
        elif name in TRAINER_METRIC_NAMES:
            values[name] = value

    def whole(name: str) -> int | None:
        value = values.get(name)
        return int(value) if value is not None and value >= 0 else None

    def checkpoint(name: str) -> CheckpointRef | None:
        step = whole(name)
        return CheckpointRef(step=step) if step is not None else None

    reward = windows.get(REWARD_WINDOW)
    if reward is None and windows:
        reward = windows[min(windows, key=lambda w: int(w) if w.isdigit() else 1 << 30)]
    return TrainerMetrics(
        step=whole(STEP_METRIC),
        reward_ma=reward,
        kl=values.get(KL_METRIC),
        entropy_coef=values.get(ENTROPY_COEF_METRIC),
        learning_rate=values.get(LEARNING_RATE_METRIC),
        rollbacks_by_reason=rollbacks,
        rollbacks_exhausted=values.get(EXHAUSTED_METRIC, 0.0) >= 1,
        last_checkpoint=checkpoint(LAST_CHECKPOINT_METRIC),
        best_checkpoint=checkpoint(BEST_CHECKPOINT_METRIC),
    )
