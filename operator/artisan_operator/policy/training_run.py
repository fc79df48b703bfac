"""TrainingRun decision (pure): the children to ensure and the status, from the observed Job and pod.

:func:`decide_training_run` always ensures the same four children (PVC, trainer ConfigMap, metrics
Service, the Job of the current attempt) and derives the phase from what it observed:

| job                   | pod                     | spec      | phase     | reason           | kstatus     |
|-----------------------|-------------------------|-----------|-----------|------------------|-------------|
| absent                | -                       | suspend   | Suspended | Suspended        | idle        |
| absent                | -                       | e-stop    | Suspended | EmergencyStopped | idle        |
| absent                | -                       | -         | Pending   | JobCreated       | progressing |
| Complete              | any                     | any       | Succeeded | Succeeded        | ready       |
| Failed, DeadlineExc.  | any                     | any       | Failed    | DeadlineExceeded | stalled     |
| Failed (other)        | any                     | any       | Failed    | JobFailed        | stalled     |
| suspended             | -                       | suspend   | Suspended | Suspended        | idle        |
| suspended             | -                       | e-stop    | Suspended | EmergencyStopped | idle        |
| suspended             | -                       | queueName | Pending   | Queued           | progressing |
| running               | stuck waiting (below)   | -         | Pending   | ImagePullBackOff | stalled     |
| running               | Running                 | -         | Running   | Running          | ready       |
| running               | Pending, unschedulable  | -         | Pending   | Unschedulable    | progressing |
| running               | absent or Pending       | -         | Pending   | PodPending       | progressing |

``e-stop`` is the ``artisan.dev/emergency-stop: "true"`` annotation (``kubectl artisan
emergency-stop``): the run is suspended exactly as with ``spec.suspend`` (a queued Job too: an
emergency outranks Kueue's ownership of ``suspend``), but spec is never written, so Argo CD or Flux
self-heal does not undo it; removing the annotation resumes from the checkpoints.

Stuck waiting reasons: ImagePullBackOff, ErrImagePull, InvalidImageName,
CreateContainerConfigError, CrashLoopBackOff (the reason becomes the condition reason).

A running Job counts as Ready (kstatus reads a started Job as Current); wait for
``.status.phase=Succeeded`` to wait for the end of training.

:func:`decide_supervised_training_run` is the full pass: a manual ``artisan.dev/rollback-to``
request, then supervision (:mod:`policy.training_supervision`: metrics, operator rollbacks, deadline),
then this table for the Job of the current attempt:

| situation                                   | status               | Job action                        |
|---------------------------------------------|----------------------|-----------------------------------|
| anomaly, budget left                        | Running, RolledBack  | write first, delete, next attempt |
| anomaly, budget used                        | Failed               | delete if still running           |
| rollback-to S (once per annotation value)   | Pending, RolledBack  | write first, delete, resume at S  |
| rollback-to already recorded / unparsable   | unchanged / Event    | annotation removed                |
| older attempt's Job still there             | Pending              | delete it, new Job only after     |
| ended (Failed, Succeeded), same generation  | kept                 | no Job ensured                    |
| otherwise                                   | the module table     | ensure the current attempt's Job  |

Restart-safety: the status that records a rollback (attempt + record) is written before the old
Job is deleted and before the new one exists, so a pass that dies anywhere is finished by the next
one without repeating the rollback (the record is there) or skipping it (nothing happened without
it). Attempt ``k``'s Job resumes from the ``toStep`` of the operator record with ``attempt == k``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from artisan_operator.api.common import Condition
from artisan_operator.api.training_run import (
    DEADLINE_EXCEEDED,
    EMERGENCY_STOP_ANNOTATION,
    EMERGENCY_STOPPED,
    ROLLBACK_TO_ANNOTATION,
    ROLLED_BACK,
    RollbackRecord,
    TrainingPhase,
    TrainingRunSpec,
    TrainingRunStatus,
    emergency_stopped,
    parse_rollback_to,
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
from artisan_operator.policy.conditions import (
    KState,
    kstatus,
    merge_conditions,
    set_condition,
    set_kstatus,
    transition_events,
)
from artisan_operator.policy.plan import EnsureChild, EventNote, Plan
from artisan_operator.policy.training_supervision import (
    SupervisionObservation,
    SupervisionSettings,
    TrainerJobState,
    TrainerMetrics,
    only_scrape_values_changed,
    parse_termination_message,
    supervise_training,
)

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
    restart_count: int = 0
    running_since: datetime | None = None
    ip: str | None = None
    exit_code: int | None = None
    """The trainer container's exit code once it has terminated (None while it has not)."""
    termination_message: str | None = None
    """Its ``state.terminated.message``: the trainer's final JSON (or log text, or nothing)."""


@dataclass(frozen=True)
class TrainingRunObservation:
    """The newest Job of the run (highest attempt) and its newest pod."""

    job: JobObservation | None = None
    pod: PodObservation | None = None
    jobs: tuple[JobObservation, ...] = ()
    """Every Job of the run (older attempts too: they are deleted before the next one starts)."""


@dataclass(frozen=True)
class PhaseVerdict:
    phase: TrainingPhase
    state: KState
    reason: str
    message: str


def assess_training_phase(
    spec: TrainingRunSpec, observation: TrainingRunObservation, *, emergency_stop: bool = False
) -> PhaseVerdict:
    """The row of the module table that matches the observation."""
    job, pod = observation.job, observation.pod
    if emergency_stop and not (job is not None and (job.complete or job.failed)):
        where = f"Job {job.name} is suspended; " if job is not None and job.suspended else ""
        return PhaseVerdict(
            "Suspended",
            "idle",
            EMERGENCY_STOPPED,
            f"emergency stop ({EMERGENCY_STOP_ANNOTATION}): {where}checkpoints kept; "
            "kubectl artisan resume continues from them",
        )
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
    resume_from_step: int | None = None,
    emergency_stop: bool = False,
) -> TrainingRunPlan:
    """Children and status of one TrainingRun (see the module table)."""
    if emergency_stop:
        spec = spec.model_copy(update={"suspend": True})
    # The attempt is a record of past actions: the larger of what status says and what exists.
    attempt = max(previous.attempt, observation.job.attempt if observation.job else 0)
    verdict = assess_training_phase(spec, observation, emergency_stop=emergency_stop)
    children = (
        EnsureChild(build_trainer_pvc(owner, spec), patchable=("metadata.labels", "metadata.annotations")),
        EnsureChild(build_trainer_configmap(owner, spec)),
        EnsureChild(build_trainer_service(owner)),
        EnsureChild(
            build_trainer_job(owner, spec, image=image, attempt=attempt, resume_from_step=resume_from_step),
            job_patchable_fields(spec, emergency_stop=emergency_stop),
        ),
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


# ------------------------------------------------------------------------------ supervised pass

MANUAL_ROLLBACK = "ManualRollback"
INVALID_ROLLBACK_REQUEST = "InvalidRollbackRequest"
RESTART_REQUEUE_SECONDS = 1.0
"""How soon to look again while an old attempt's Job is being deleted."""
METRICS_REQUEUE_SECONDS = 5.0
"""How often a running trainer's metrics are read (the status write limit is the same)."""


@dataclass(frozen=True)
class TrainingRunDecision:
    plan: TrainingRunPlan
    write_first: bool = False
    """The status records an action (a rollback): write it before deleting or creating any Job."""
    delete_jobs: tuple[str, ...] = ()
    """Jobs to delete (older attempts, or a run that ended while its pod still ran)."""
    consume_annotation: bool = False
    """Remove ``artisan.dev/rollback-to`` (after the status is written)."""


@dataclass(frozen=True)
class SupervisionInput:
    """What the supervised pass needs beyond the plain decision's inputs."""

    metrics: TrainerMetrics | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    last_write: datetime | None = None
    settings: SupervisionSettings = field(default_factory=SupervisionSettings)


def job_state(job: JobObservation, pod: PodObservation | None) -> TrainerJobState:
    deadline = job.failed and job.failed_reason == "DeadlineExceeded"
    return TrainerJobState(
        name=job.name,
        active=job.active,
        succeeded=1 if job.complete else 0,
        failed=1 if job.failed and not deadline else 0,
        suspended=job.suspended,
        pod_phase=pod.phase if pod else None,
        waiting_reason=pod.waiting_reason if pod else None,
        restart_count=pod.restart_count if pod else 0,
        running_since=pod.running_since if pod else None,
        deadline_exceeded=deadline,
        attempt=job.attempt,
        termination=parse_termination_message(pod.termination_message, pod.exit_code)
        if pod is not None and pod.exit_code is not None
        else None,
    )


def resume_step_of(status: TrainingRunStatus, attempt: int) -> int | None:
    """The checkpoint step attempt ``attempt`` resumes from (its operator record's ``toStep``)."""
    for record in reversed(status.rollbacks):
        if record.source == "operator" and record.attempt == attempt:
            return record.to_step
    return None


def _manual_rollback(
    owner: Owner, previous: TrainingRunStatus, request: str, step: int, *, attempt: int, now: datetime
) -> tuple[TrainingRunStatus, EventNote]:
    new_attempt = attempt + 1
    record = RollbackRecord(
        time=now,
        step=previous.step or 0,
        reason=MANUAL_ROLLBACK,
        to_step=step,
        source="operator",
        attempt=new_attempt,
        request=request,
    )
    message = (
        f"manual rollback ({ROLLBACK_TO_ANNOTATION}={request}): restarting the trainer "
        f"(attempt {new_attempt}) from the checkpoint at or before step {step}"
    )
    conditions = set_condition(
        previous.conditions,
        ROLLED_BACK,
        "True",
        MANUAL_ROLLBACK,
        message,
        now=now,
        generation=owner.generation,
    )
    conditions = set_kstatus(
        conditions, "progressing", ROLLED_BACK, message, now=now, generation=owner.generation
    )
    status = previous.model_copy(
        update={
            "rollbacks": [*previous.rollbacks, record],
            "attempt": new_attempt,
            "phase": "Pending",
            "message": message,
            "conditions": conditions,
            "completion_time": None,
            "last_progress_time": now,
            "observed_generation": owner.generation,
        }
    )
    return status, EventNote(ROLLED_BACK, message, "Warning")


def decide_supervised_training_run(
    owner: Owner,
    spec: TrainingRunSpec,
    observation: TrainingRunObservation,
    previous: TrainingRunStatus,
    given: SupervisionInput,
    *,
    image: str,
    now: datetime,
) -> TrainingRunDecision:
    """One supervised pass (the second table of the module docstring)."""
    stopped = emergency_stopped(given.annotations)
    if stopped:
        spec = spec.model_copy(update={"suspend": True})  # suspended in effect, spec untouched
    jobs = observation.jobs or ((observation.job,) if observation.job else ())
    attempt = max([previous.attempt, *(j.attempt for j in jobs)])
    current = observation.job if observation.job is not None and observation.job.attempt == attempt else None
    pod = observation.pod if current is not None else None
    delete = [j.name for j in jobs if j.attempt < attempt]
    events: list[EventNote] = []
    write_first = False
    consume = False
    base_previous = previous.model_copy(update={"attempt": attempt})

    request = (given.annotations.get(ROLLBACK_TO_ANNOTATION) or "").strip() or None
    if request is not None and not spec.suspend:
        consume = True
        if not any(r.request == request for r in previous.rollbacks):
            try:
                target = parse_rollback_to(request)
            except ValueError as error:
                events.append(EventNote(INVALID_ROLLBACK_REQUEST, str(error), "Warning"))
            else:
                base_previous, note = _manual_rollback(
                    owner, base_previous, request, target, attempt=attempt, now=now
                )
                events.append(note)
                write_first = True
                attempt = base_previous.attempt
                if current is not None:
                    delete.append(current.name)
                current = pod = None

    supervision = supervise_training(
        spec,
        SupervisionObservation(
            job=job_state(current, pod) if current is not None else None,
            metrics=given.metrics,
            generation=owner.generation,
            previous=base_previous,
            last_write=given.last_write,
            emergency_stop=stopped,
        ),
        now,
        given.settings,
    )
    status = supervision.status
    events.extend(supervision.events)
    if supervision.restart is not None:
        write_first = True
        attempt = supervision.restart.attempt
        if current is not None:
            delete.append(current.name)
        current = pod = None
    finished = previous.phase in ("Failed", "Succeeded") and previous.observed_generation == owner.generation
    owned = write_first or status.phase == "Failed" or (finished and not write_first)
    if owned:
        # Supervision decided the phase (a rollback, the end of the run): children without a Job
        # while an old one is going away or the run has ended.
        base = decide_training_run(
            owner,
            spec,
            TrainingRunObservation(),
            status,
            image=image,
            now=now,
            resume_from_step=resume_step_of(status, attempt),
            emergency_stop=stopped,
        )
        children = (
            base.children if not delete and status.phase != "Failed" and not finished else base.children[:-1]
        )
        if status.phase == "Failed" and current is not None and current.active > 0:
            delete.append(current.name)  # stop a pod that still trains (stalled, deadline)
        final = status.model_copy(
            update={"attempt": attempt, "job_name": trainer_job_name(owner.name, attempt)}
        )
        requeue = RESTART_REQUEUE_SECONDS if delete or write_first else REQUEUE_SECONDS.get(final.phase)
        plan: TrainingRunPlan = Plan(
            status=final, children=children, events=tuple(events), requeue_after=requeue
        )
        return TrainingRunDecision(plan, write_first, tuple(dict.fromkeys(delete)), consume)

    # The plain table decides the phase for the current attempt's Job; supervision's fields stay.
    shown = status.model_copy(update={"conditions": previous.conditions})
    base = decide_training_run(
        owner,
        spec,
        TrainingRunObservation(job=current, pod=pod),
        shown,
        image=image,
        now=now,
        resume_from_step=resume_step_of(status, attempt),
        emergency_stop=stopped,
    )
    extra = [c for c in status.conditions if c.type not in {x.type for x in base.status.conditions}]
    final = base.status.model_copy(update={"conditions": [*base.status.conditions, *extra]})
    children = base.children[:-1] if delete else base.children
    requeues = [r for r in (base.requeue_after, supervision.requeue_after) if r is not None]
    since_write = (now - given.last_write).total_seconds() if given.last_write is not None else None
    wait = given.settings.min_write_interval - since_write if since_write is not None else 0.0
    if wait > 0 and only_scrape_values_changed(previous, final):
        final = previous  # only fresh metric values within min_write_interval: written when due
        requeues.append(wait)
    if final.phase == "Running":
        requeues.append(METRICS_REQUEUE_SECONDS)
    if delete:
        requeues.append(RESTART_REQUEUE_SECONDS)
    plan = Plan(
        status=final,
        children=children,
        events=(*events, *base.events),
        requeue_after=min(requeues) if requeues else None,
    )
    return TrainingRunDecision(plan, False, tuple(dict.fromkeys(delete)), consume)
