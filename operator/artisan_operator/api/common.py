"""Pieces every kind shares: conditions, references, resources, scheduling."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from artisan_common.model import ApiModel

GROUP = "artisan.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# kstatus condition types: `kubectl wait --for=condition=Ready`, Flux and Argo CD read these.
READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"

# Reasons shared by every kind.
INVALID_SPEC = "InvalidSpec"
RECONCILED = "Reconciled"
PROGRESSING = "Progressing"


class Condition(ApiModel):
    """The metav1.Condition shape."""

    type: str = Field(min_length=1, max_length=316, pattern=r"^([a-z0-9.-]+/)?[A-Za-z0-9_.-]+$")
    """Condition type in CamelCase (Ready, Reconciling, Stalled, ...)."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    """A CamelCase reason for the last transition."""
    message: str = Field(default="", max_length=32768)
    """A human-readable explanation."""
    last_transition_time: datetime
    """When status last changed (kept when only reason or message change)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The spec generation the condition was computed from."""


class LocalObjectReference(ApiModel):
    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    """Name of an object in the same namespace."""


class ResourcesSpec(ApiModel):
    gpus: int = Field(default=1, ge=0, le=16)
    """nvidia.com/gpu requested (and limited) per pod; 0 runs on CPU."""
    cpu: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9]+)?m?$")
    """CPU request, e.g. 500m or 2; the chart default when unset."""
    memory: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")
    """Memory request and limit, e.g. 16Gi; the chart default when unset."""


class Toleration(ApiModel):
    key: str | None = None
    """Taint key the toleration applies to; empty matches all keys (with operator Exists)."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Exists or Equal."""
    value: str | None = None
    """Taint value to match with Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """How long a NoExecute taint is tolerated."""


class SchedulingSpec(ApiModel):
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the pods must run on (e.g. a GPU node pool)."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Taints the pods tolerate (e.g. nvidia.com/gpu)."""
    priority_class_name: str | None = None
    """PriorityClass of the pods."""
