"""TrainingRun (short name `tr`): a PPO run executed as a Job with a checkpoint PVC."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import Field

from artisan_common.model import ApiModel
from artisan_common.training import TrainingConfig
from artisan_operator.api.common import Condition, ResourcesSpec, SchedulingSpec

KIND = "TrainingRun"
PLURAL = "trainingruns"

TrainingPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended"]

# Condition types and reasons specific to TrainingRun.
ROLLED_BACK = "RolledBack"
DEADLINE_EXCEEDED = "DeadlineExceeded"
ROLLBACKS_EXHAUSTED = "RollbacksExhausted"
# `kubectl artisan rollback trainingrun NAME --to-checkpoint STEP`: restart the trainer from the
# checkpoint at that step ("<step>", optionally "<step>@<nonce>" to repeat the same request).
ROLLBACK_TO_ANNOTATION = "artisan.dev/rollback-to"
# `kubectl artisan emergency-stop`: "true" suspends the run (the Job is suspended, checkpoints kept)
# until the annotation is removed (`kubectl artisan resume`); spec stays as GitOps wrote it.
EMERGENCY_STOP_ANNOTATION = "artisan.dev/emergency-stop"
EMERGENCY_STOPPED = "EmergencyStopped"


def emergency_stopped(annotations: Mapping[str, str]) -> bool:
    """Whether ``artisan.dev/emergency-stop`` says "true" (the ModelPin annotation's rule)."""
    return annotations.get(EMERGENCY_STOP_ANNOTATION, "").strip().lower() == "true"


def parse_rollback_to(value: str) -> int:
    """The checkpoint step named by an ``artisan.dev/rollback-to`` value; ValueError naming the problem."""
    step_text = value.split("@", 1)[0].strip()
    if not step_text or any(c not in "0123456789" for c in step_text):
        raise ValueError(f"{ROLLBACK_TO_ANNOTATION} must be a checkpoint step (whole number), got {value!r}")
    return int(step_text)


class TrainingRunSpec(TrainingConfig):
    """A PPO training run. Algorithm fields come from the trainer's shared config model."""

    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    """GPUs, CPU and memory of the trainer pod."""
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec)
    """Node selector, tolerations and priority class of the trainer pod."""
    image: str | None = Field(default=None, min_length=1)
    """Trainer image; the chart's trainer image when unset."""
    suspend: bool = False
    """Suspend the run: the Job is suspended and the checkpoints are kept."""
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    """Time limit of the run, counted from its start and afresh from each resume (suspended time never
    counts, as for a Job); past it the run ends Failed (DeadlineExceeded)."""
    queue_name: str | None = Field(default=None, min_length=1, max_length=63)
    """Kueue LocalQueue; sets the kueue.x-k8s.io/queue-name label on the Job."""
    seed: int = Field(default=1, ge=0)
    """Seed for environments, torch and numpy (runs are reproducible)."""
    num_envs: int = Field(default=4, ge=1, le=256)
    """Vectorized environments per trainer."""


class CheckpointRef(ApiModel):
    step: int = Field(ge=0)
    """Environment step of the checkpoint."""
    path: str | None = None
    """File of the checkpoint on the PVC."""
    sha256: str | None = None
    """Digest recorded in the checkpoint manifest."""
    mean_reward: float | None = None
    """Mean episode reward when it was saved."""


class RollbackRecord(ApiModel):
    time: datetime
    """When the rollback happened."""
    step: int = Field(ge=0)
    """Training step at which the anomaly was seen."""
    reason: str
    """What triggered it: KLDivergence, LossSpike, RewardDrop, PodFailed, CrashLoop, Stalled, ..."""
    to_step: int | None = Field(default=None, ge=0)
    """Checkpoint step the run resumed from."""
    source: Literal["trainer", "operator"] = "operator"
    """Whether the trainer rolled back in-process or the operator restarted the Job."""
    attempt: int | None = Field(default=None, ge=0)
    """The Job attempt: the one it started (operator) or the one it happened in (trainer)."""
    request: str | None = None
    """The ``artisan.dev/rollback-to`` value that asked for it (manual rollbacks; applied once)."""


class TrainingRunStatus(ApiModel):
    observed_generation: int | None = None
    """The spec generation this status describes."""
    phase: TrainingPhase = "Pending"
    """Pending, Running, Succeeded, Failed or Suspended."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready / Reconciling / Stalled plus RolledBack."""
    job_name: str | None = None
    """The current trainer Job."""
    attempt: int = Field(default=0, ge=0)
    """How many times the operator restarted the Job from a checkpoint."""
    step: int | None = Field(default=None, ge=0)
    """Latest environment step the trainer reported."""
    total_steps: int | None = Field(default=None, ge=0)
    """Steps of the whole run."""
    reward_ma: float | None = None
    """Moving average of the episode reward."""
    kl: float | None = None
    """Approximate KL of the last update."""
    entropy_coef: float | None = None
    """Current entropy coefficient."""
    learning_rate: float | None = None
    """Current learning rate."""
    last_checkpoint: CheckpointRef | None = None
    """Most recent checkpoint."""
    best_checkpoint: CheckpointRef | None = None
    """Checkpoint with the best mean reward."""
    rollbacks: list[RollbackRecord] = Field(default_factory=list)
    """Rollbacks so far (trainer and operator), oldest first."""
    start_time: datetime | None = None
    """When the trainer pod first started."""
    active_since: datetime | None = None
    """When the activeDeadlineSeconds clock last started: the run's start or its last resume (unset
    while suspended; suspended time does not count, as for a Job)."""
    completion_time: datetime | None = None
    """When the run ended."""
    last_progress_time: datetime | None = None
    """When the step last advanced (stall detection)."""
    message: str | None = None
    """Why the run is in its phase."""
