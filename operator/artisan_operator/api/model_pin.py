"""ModelPin (short name `mpin`): the inference fleet with pinned model revisions."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from artisan_common.model import ApiModel
from artisan_common.serving import DownshiftPolicy, Mode, ModelsSpec, ModesSpec, TrafficMix
from artisan_operator.api.common import Condition, LocalObjectReference, ResourcesSpec, SchedulingSpec

KIND = "ModelPin"
PLURAL = "modelpins"

ModelPinPhase = Literal["Pending", "Progressing", "Ready", "Degraded"]

# Condition types and reasons specific to ModelPin.
DOWNSHIFTED = "Downshifted"
# Manual fleet downshift: "<mode>/<duration>" (e.g. "fast/10m"), or "off" to end one early.
DOWNSHIFT_ANNOTATION = "artisan.dev/downshift"
# `kubectl artisan emergency-stop`: "true" scales every ensemble Deployment of the ModelPin to 0
# (stable and canary) until the annotation is removed (`kubectl artisan resume`).
EMERGENCY_STOP_ANNOTATION = "artisan.dev/emergency-stop"
# `kubectl artisan restart`: copied into the pod template, so a new value rolls the pods.
RESTARTED_AT_ANNOTATION = "artisan.dev/restartedAt"
EMERGENCY_STOPPED = "EmergencyStopped"
MODEL_UNHEALTHY = "ModelUnhealthy"
MANUAL_DOWNSHIFT = "ManualDownshift"
RECOVERED = "Recovered"


class PolicySpec(ApiModel):
    training_run_ref: LocalObjectReference
    """The TrainingRun whose checkpoints provide the formula policy."""
    checkpoint: str = Field(default="best", pattern=r"^(best|latest|step-[0-9]+)$")
    """best, latest or step-N."""


class ModelPinSpec(ApiModel):
    models: ModelsSpec
    """The pinned models; primary is required."""
    policy: PolicySpec | None = None
    """Formula policy checkpoint; a deterministic heuristic when unset."""
    replicas: int = Field(default=2, ge=0, le=1000)
    """Ensemble pods of the stable fleet."""
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    """GPUs, CPU and memory per ensemble pod."""
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec)
    """Node selector, tolerations and priority class of the ensemble pods."""
    image: str | None = Field(default=None, min_length=1)
    """Ensemble image; the chart's ensemble image when unset."""
    modes: ModesSpec = Field(default_factory=ModesSpec)
    """Generation parameters per mode."""
    traffic: TrafficMix = Field(default_factory=TrafficMix)
    """Mode mix of requests (percent, sums to 100)."""
    downshift: DownshiftPolicy = Field(default_factory=DownshiftPolicy)
    """Circuit breaker and fleet downshift policy."""


class ModelHealth(ApiModel):
    role: Literal["primary", "validator", "creative"]
    """Role of the model in the ensemble."""
    name: str
    """Model name."""
    healthy_pods: int = Field(ge=0)
    """Pods on which the model is healthy."""
    total_pods: int = Field(ge=0)
    """Pods reporting."""
    unhealthy_since: datetime | None = None
    """Since when the model is down on at least downshift.unhealthyPodFraction of the pods."""


class DownshiftRecord(ApiModel):
    mode: Mode
    """Mode ceiling in force."""
    reason: str
    """Why (ModelUnhealthy, ManualDownshift)."""
    since: datetime
    """When the downshift started."""
    until: datetime | None = None
    """When a manual downshift expires."""
    manual: bool = False
    """Set by `kubectl artisan downshift`."""
    healthy_since: datetime | None = None
    """Since when every model is healthy again; the ceiling is restored after holdSeconds of it."""


class PinnedRevision(ApiModel):
    revision: str
    """Hash of the pinned set (models, policy, image)."""
    models: ModelsSpec
    """The pins of that revision."""
    policy: PolicySpec | None = None
    """The formula policy of that revision."""
    image: str | None = None
    """The ensemble image of that revision."""
    time: datetime
    """When it became stable."""


class ModelPinStatus(ApiModel):
    observed_generation: int | None = None
    """The spec generation this status describes."""
    phase: ModelPinPhase = "Pending"
    """Pending, Progressing, Ready or Degraded."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready / Reconciling / Stalled plus Downshifted."""
    revision: str | None = None
    """Hash of the pinned set in the spec."""
    stable: PinnedRevision | None = None
    """The pinned set serving stable traffic; a Canary promotes the spec's set into it."""
    replicas: int = Field(default=0, ge=0)
    """Pods of the stable Deployment."""
    ready_replicas: int = Field(default=0, ge=0)
    """Ready pods of the stable Deployment."""
    mode_ceiling: Mode = "creative"
    """Richest mode the fleet may serve (lowered by a downshift)."""
    downshift: DownshiftRecord | None = None
    """The downshift in force, if any."""
    model_health: list[ModelHealth] = Field(default_factory=list)
    """Per-model health across the fleet."""
    history: list[PinnedRevision] = Field(default_factory=list, max_length=10)
    """Previously stable pin sets, newest last (for undo)."""
