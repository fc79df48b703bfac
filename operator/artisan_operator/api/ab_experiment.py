"""ABExperiment (short name `abx`): variants, sticky assignment and sequential analysis."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from pydantic import Field, model_validator

from artisan_common.model import ApiModel, CelRule, invariant_error
from artisan_common.serving import Mode
from artisan_operator.api.common import Condition, LocalObjectReference

KIND = "ABExperiment"
PLURAL = "abexperiments"

ExperimentPhase = Literal["Running", "Concluded", "Inconclusive", "Invalid"]
# Metrics the gateway records as sufficient statistics (count, sum, sum of squares) per variant.
RecordedMetric = Literal["rating", "reward", "latency", "success", "ifraCompliance"]
GuardrailMetric = Literal["latencyP95", "latencyMean", "errorRate", "ifraCompliance", "rating", "reward"]

# Condition types and reasons specific to ABExperiment.
SRM_DETECTED = "SRMDetected"
WINNER_FOUND = "WinnerFound"
GUARDRAIL_BREACHED = "GuardrailBreached"
MAX_DURATION_REACHED = "MaxDurationReached"


class Variant(ApiModel):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")
    """Variant name; the first variant is the control."""
    weight: int = Field(ge=0, le=100)
    """Percent of users assigned (weights sum to 100)."""
    mode: Mode = "balanced"
    """Ensemble mode served to this variant."""


class AssignmentSpec(ApiModel):
    key: Literal["user_id", "session_id"] = "user_id"
    """Request field users are assigned by (sticky)."""
    salt: str = Field(default="", max_length=128)
    """Salt of the assignment hash; change it to reshuffle users. Empty (the default) means
    "<namespace>/<name>" of the ABExperiment, so no two experiments share hash seeds (the same users
    land in unrelated variants); the operator writes the effective salt into the routing entry."""

    def effective_salt(self, namespace: str, name: str) -> str:
        """The salt the gateway hashes with.

        | salt     | namespace | name  | effective salt |
        |----------|-----------|-------|----------------|
        | ""       | prod      | tone  | prod/tone      |
        | "wave-2" | prod      | tone  | wave-2         |
        """
        return self.salt or f"{namespace}/{name}"


class PrimaryMetric(ApiModel):
    name: RecordedMetric = "rating"
    """The metric that decides the winner."""
    direction: Literal["increase", "decrease"] = "increase"
    """Whether higher or lower is better."""


class Guardrail(ApiModel):
    name: GuardrailMetric
    """The guarded metric."""
    max: float | None = None
    """A winner must stay at or below this."""
    min: float | None = None
    """A winner must stay at or above this."""

    cel_rules = (
        CelRule("has(self.max) || has(self.min)", "a guardrail needs max or min"),
        # A band with min above max can never be met: it would veto every winner silently.
        CelRule(
            "!has(self.max) || !has(self.min) || self.min <= self.max",
            "min must be less than or equal to max",
            ".min",
        ),
    )

    @model_validator(mode="after")
    def _has_bound(self) -> Self:
        if self.max is None and self.min is None:
            raise invariant_error(self, "a guardrail needs max or min")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise invariant_error(self, "min must be less than or equal to max", ".min")
        return self


class MetricsSpec(ApiModel):
    primary: PrimaryMetric = Field(default_factory=PrimaryMetric)
    """The decision metric."""
    guardrails: list[Guardrail] = Field(default_factory=list, max_length=20)
    """Metrics that veto a winner."""


class AnalysisSpec(ApiModel):
    method: Literal["sequential", "fixed"] = "sequential"
    """sequential: always-valid under continuous monitoring; fixed: one fixed-horizon test."""
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    """Family-wise false-positive rate, in (0, 0.5)."""
    min_samples_per_variant: int = Field(default=100, ge=2)
    """No verdict before every variant has this many samples."""
    srm_alpha: float = Field(default=0.001, gt=0, lt=0.5)
    """Significance of the sample-ratio-mismatch chi-square test."""
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    """Multiple-comparison correction across treatments."""
    max_duration_seconds: int = Field(default=604_800, ge=60)
    """Past this the experiment ends Inconclusive if no winner."""


class OnConclusionSpec(ApiModel):
    promote: bool = False
    """Route 100% of the target's traffic to the winner (routing table only; spec untouched)."""


class ABExperimentSpec(ApiModel):
    target_ref: LocalObjectReference
    """The ModelPin the experiment runs on."""
    variants: list[Variant] = Field(min_length=2, max_length=10)
    """2–10 variants; the first is the control; weights sum to 100."""
    assignment: AssignmentSpec = Field(default_factory=AssignmentSpec)
    """How users are assigned to variants."""
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    """Primary metric and guardrails."""
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    """Statistical method and thresholds."""
    on_conclusion: OnConclusionSpec = Field(default_factory=OnConclusionSpec)
    """What to do with a winner."""

    cel_rules = (
        CelRule(
            "self.variants.all(v, self.variants.exists_one(w, w.name == v.name))",
            "variant names must be unique",
            ".variants",
        ),
        CelRule(
            "self.variants.map(v, v.weight).sum() == 100", "variant weights must sum to 100", ".variants"
        ),
    )

    @model_validator(mode="after")
    def _variants_consistent(self) -> Self:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise invariant_error(self, "variant names must be unique", ".variants")
        if sum(v.weight for v in self.variants) != 100:
            raise invariant_error(self, "variant weights must sum to 100", ".variants")
        return self


class VariantResult(ApiModel):
    name: str
    """Variant name."""
    n: int = Field(default=0, ge=0)
    """Samples of the primary metric."""
    mean: float | None = None
    """Mean of the primary metric."""
    ci_lower: float | None = None
    """Lower bound of the confidence interval of the difference to control."""
    ci_upper: float | None = None
    """Upper bound of that interval."""
    p_value: float | None = None
    """Adjusted p-value against control (fixed method)."""
    e_value: float | None = None
    """E-value against control (sequential method)."""
    improvement_percent: float | None = None
    """Relative change of the mean against control, in percent."""
    guardrails_ok: bool = True
    """Whether every guardrail holds for this variant."""


class ABExperimentStatus(ApiModel):
    observed_generation: int | None = None
    """The spec generation this status describes."""
    phase: ExperimentPhase = "Running"
    """Running, Concluded, Inconclusive or Invalid."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready / Reconciling / Stalled plus SRMDetected, WinnerFound."""
    variants: list[VariantResult] = Field(default_factory=list)
    """Per-variant results."""
    srm_p_value: float | None = None
    """p-value of the sample-ratio-mismatch test."""
    winner: str | None = None
    """Winning variant, once concluded."""
    improvement_percent: float | None = None
    """Improvement of the winner over control, in percent."""
    start_time: datetime | None = None
    """When the experiment started."""
    concluded_at: datetime | None = None
    """When it concluded (record of a past action)."""
    promoted: bool = False
    """Whether the winner got 100% of the traffic."""
    message: str | None = None
    """Human-readable state."""
