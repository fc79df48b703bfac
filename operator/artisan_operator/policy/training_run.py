"""TrainingRun decision (pure): the children to ensure and the status, from the observed Job and pod.

:func:`decide_training_run` always ensures the same four children (PVC, trainer ConfigMap, metrics
Service, the Job of the current attempt) and derives the phase from what it observed:

| job                   | pod                     | spec      | phase     | reason           | kstatus     |
|-----------------------|-------------------------|-----------|-----------|------------------|-------------|
| absent                | -                       | suspend   | Suspended | Suspended        | idle        |
| absent                | -                       | -         | Pending   | JobCreated       | progressing |
| Complete              | any                     | any       | Succeeded | Succeeded        | ready       |
| Failed, DeadlineExc.  | any                     | any       | Failed    | DeadlineExceeded | stalled     |
| Failed (other)        | any                     | any       | Failed    | JobFailed        | stalled     |
| suspended             | -                       | suspend   | Suspended | Suspended        | idle        |
| suspended             | -                       | queueName | Pending   | Queued           | progressing |
| running               | stuck waiting (below)   | -         | Pending   | ImagePullBackOff | stalled     |
| running               | Running                 | -         | Running   | Running          | ready       |
| running               | Pending, unschedulable  | -         | Pending   | Unschedulable    | progressing |
| running               | absent or Pending       | -         | Pending   | PodPending       | progressing |

Stuck waiting reasons: ImagePullBackOff, ErrImagePull, InvalidImageName,
CreateContainerConfigError, CrashLoopBackOff (the reason becomes the condition reason).

A running Job counts as Ready (kstatus reads a started Job as Current); wait for
``.status.phase=Succeeded`` to wait for the end of training.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from artisan_operator.api.common import Condition
from artisan_operator.api.training_run import (
    DEADLINE_EXCEEDED,
    TrainingPhase,
    TrainingRunSpec,
    TrainingRunStatus,
)
from artisan_operator.manifests.common import Owner
from artisan_operator.manifests.trainer import (
    build_trainer_configmap,
    build_trainer_job,
    build_trainer_pvc,
    build_trainer_service,
    job_patchable_fields,
    trainer_job_name,
)
from artisan_operator.policy.conditions import KState, kstatus, merge_conditions, transition_events
from artisan_operator.policy.plan import EnsureChild, Plan

# Reasons specific to the TrainingRun phases (beside api.training_run's condition reasons).
JOB_CREATED = "JobCreated"
QUEUED = "Queued"
SUSPENDED = "Suspended"
SUCCEEDED = "Succeeded"
JOB_FAILED = "JobFailed"
RUNNING = "Running"
POD_PENDING = "PodPending"
UNSCHEDULABLE = "Unschedulable"

# Container waiting reasons that never clear without a user's change: the run is Stalled.
STUCK_WAITING_REASONS = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError", "CrashLoopBackOff"}
)

# How soon to look again per phase (seconds): quick while things move, slow when settled.
REQUEUE_SECONDS: dict[TrainingPhase, float | None] = {
    "Pending": 5.0,
    "Running": 30.0,
    "Suspended": None,
    "Succeeded": None,
    "Failed": None,
}

TrainingRunPlan = Plan[TrainingRunStatus]


@dataclass(frozen=True)
class JobObservation:
    name: str
    attempt: int
    suspended: bool = False
    active: int = 0
    complete: bool = False
    failed: bool = False
    failed_reason: str | None = None
    failed_message: str | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None


@dataclass(frozen=True)
class PodObservation:
    name: str
    phase: str
    waiting_reason: str | None = None
    waiting_message: str | None = None
    unschedulable_message: str | None = None
    start_time: datetime | None = None


@dataclass(frozen=True)
class TrainingRunObservation:
    """The newest Job of the run (highest attempt) and its newest pod."""

    job: JobObservation | None = None
    pod: PodObservation | None = None


@dataclass(frozen=True)
class PhaseVerdict:
    phase: TrainingPhase
    state: KState
    reason: str
    message: str


def assess_training_phase(spec: TrainingRunSpec, observation: TrainingRunObservation) -> PhaseVerdict:
    """The row of the module table that matches the observation."""
    job, pod = observation.job, observation.pod
    if job is None:
        if spec.suspend:
            return PhaseVerdict("Suspended", "idle", SUSPENDED, "the run is suspended (spec.suspend)")
        return PhaseVerdict("Pending", "progressing", JOB_CREATED, "creating the trainer Job")
    if job.complete:
        return PhaseVerdict("Succeeded", "ready", SUCCEEDED, f"Job {job.name} completed")
    if job.failed:
        reason = DEADLINE_EXCEEDED if job.failed_reason == "DeadlineExceeded" else JOB_FAILED
        detail = job.failed_message or job.failed_reason or "the trainer pod failed"
        return PhaseVerdict("Failed", "stalled", reason, f"Job {job.name} failed: {detail}")
    if job.suspended:
        if spec.suspend:
            return PhaseVerdict(
                "Suspended", "idle", SUSPENDED, f"Job {job.name} is suspended; checkpoints kept"
            )
        return PhaseVerdict(
            "Pending", "progressing", QUEUED, f"Job {job.name} waits for admission by queue {spec.queue_name}"
        )
    if pod is not None and pod.waiting_reason in STUCK_WAITING_REASONS:
        detail = f": {pod.waiting_message}" if pod.waiting_message else ""
        return PhaseVerdict("Pending", "stalled", pod.waiting_reason, f"pod {pod.name}{detail}")
    if pod is not None and pod.phase == "Running":
        return PhaseVerdict("Running", "ready", RUNNING, f"pod {pod.name} is training")
    if pod is not None and pod.unschedulable_message:
        return PhaseVerdict("Pending", "progressing", UNSCHEDULABLE, pod.unschedulable_message)
    where = f"pod {pod.name} is {pod.phase}" if pod is not None else f"Job {job.name} has no pod yet"
    return PhaseVerdict("Pending", "progressing", POD_PENDING, where)


def decide_training_run(
    owner: Owner,
    spec: TrainingRunSpec,
    observation: TrainingRunObservation,
    previous: TrainingRunStatus,
    *,
    image: str,
    now: datetime,
) -> TrainingRunPlan:
    """Children and status of one TrainingRun (see the module table)."""
    # The attempt is a record of past actions: the larger of what status says and what exists.
    attempt = max(previous.attempt, observation.job.attempt if observation.job else 0)
    verdict = assess_training_phase(spec, observation)
    children = (
        EnsureChild(build_trainer_pvc(owner, spec), patchable=("metadata.labels", "metadata.annotations")),
        EnsureChild(build_trainer_configmap(owner, spec)),
        EnsureChild(build_trainer_service(owner)),
        EnsureChild(build_trainer_job(owner, spec, image=image, attempt=attempt), job_patchable_fields(spec)),
    )
    conditions: list[Condition] = merge_conditions(
        previous.conditions,
        kstatus(verdict.state, verdict.reason, verdict.message),
        now=now,
        generation=owner.generation,
    )
    job = observation.job
    pod_start = observation.pod.start_time if observation.pod else None
    status = previous.model_copy(
        update={
            "observed_generation": owner.generation,
            "phase": verdict.phase,
            "conditions": conditions,
            "job_name": trainer_job_name(owner.name, attempt),
            "attempt": attempt,
            "total_steps": spec.ppo.total_steps,
            "start_time": previous.start_time or pod_start or (job.start_time if job else None),
            "completion_time": job.completion_time if job and (job.complete or job.failed) else None,
            "message": verdict.message,
        }
    )
    return Plan(
        status=status,
        children=children,
        events=transition_events(previous.conditions, verdict.reason, verdict.message, verdict.state),
        requeue_after=REQUEUE_SECONDS[verdict.phase],
    )
