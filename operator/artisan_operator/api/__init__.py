"""The public API of Artisan (group artisan.dev, version v1alpha1): the source of truth for the CRDs."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from artisan_operator.api import ab_experiment, canary, model_pin, training_run
from artisan_operator.api.common import API_VERSION, GROUP, VERSION


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class Kind:
    """Everything the CRD generator, the operator and the CLI need to know about one kind."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[PrinterColumn, ...]
    description: str


_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")
_READY = PrinterColumn("Ready", '.status.conditions[?(@.type=="Ready")].status')
_PHASE = PrinterColumn("Phase", ".status.phase")

KINDS: tuple[Kind, ...] = (
    Kind(
        kind=training_run.KIND,
        plural=training_run.PLURAL,
        singular="trainingrun",
        short_names=("tr",),
        spec=training_run.TrainingRunSpec,
        status=training_run.TrainingRunStatus,
        columns=(
            _PHASE,
            PrinterColumn("Env", ".spec.env.id"),
            PrinterColumn("Step", ".status.step", "integer"),
            PrinterColumn("Reward", ".status.rewardMa", "number"),
            PrinterColumn("Rollbacks", ".status.rollbacks[*].step", "string", priority=1),
            _READY,
            _AGE,
        ),
        description="A PPO training run: a trainer Job with checkpoints, schedules and automatic rollback.",
    ),
    Kind(
        kind=model_pin.KIND,
        plural=model_pin.PLURAL,
        singular="modelpin",
        short_names=("mpin",),
        spec=model_pin.ModelPinSpec,
        status=model_pin.ModelPinStatus,
        columns=(
            _PHASE,
            PrinterColumn("Primary", ".spec.models.primary.revision"),
            PrinterColumn("Ready-Replicas", ".status.readyReplicas", "integer"),
            PrinterColumn("Ceiling", ".status.modeCeiling"),
            PrinterColumn("Revision", ".status.revision", priority=1),
            _READY,
            _AGE,
        ),
        description="The inference fleet with pinned model revisions and a policy checkpoint.",
    ),
    Kind(
        kind=canary.KIND,
        plural=canary.PLURAL,
        singular="canary",
        short_names=("cny",),
        spec=canary.CanarySpec,
        status=canary.CanaryStatus,
        columns=(
            _PHASE,
            PrinterColumn("Target", ".spec.targetRef.name"),
            PrinterColumn("Step", ".status.currentStepIndex", "integer"),
            PrinterColumn("Weight", ".status.weight", "integer"),
            _READY,
            _AGE,
        ),
        description="Progressive rollout of a ModelPin change with metric analysis and instant abort.",
    ),
    Kind(
        kind=ab_experiment.KIND,
        plural=ab_experiment.PLURAL,
        singular="abexperiment",
        short_names=("abx",),
        spec=ab_experiment.ABExperimentSpec,
        status=ab_experiment.ABExperimentStatus,
        columns=(
            _PHASE,
            PrinterColumn("Target", ".spec.targetRef.name"),
            PrinterColumn("Winner", ".status.winner"),
            PrinterColumn("SRM-p", ".status.srmPValue", "number", priority=1),
            _READY,
            _AGE,
        ),
        description="An A/B experiment on a ModelPin: sticky assignment, sequential analysis, SRM check.",
    ),
)

KINDS_BY_NAME: dict[str, Kind] = {k.kind: k for k in KINDS}

__all__ = ["API_VERSION", "GROUP", "KINDS", "KINDS_BY_NAME", "VERSION", "Kind", "PrinterColumn"]
