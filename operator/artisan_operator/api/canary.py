"""Canary (short name `cny`): how a ModelPin change is rolled out, step by step, gated by metrics."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from artisan_common.model import ApiModel, CelRule, Duration, invariant_error
from artisan_operator.api.common import Condition, LocalObjectReference
from artisan_operator.policy.expressions import parse_condition

KIND = "Canary"
PLURAL = "canaries"

CanaryPhase = Literal["Healthy", "Progressing", "Paused", "Degraded"]
MeasurementPhase = Literal["Successful", "Failed", "Inconclusive", "Error", "Running"]
BuiltinMetric = Literal["errorRate", "latencyP95", "latencyMean", "ifraViolationRate", "meanRating"]

# Manual actions go through this annotation (the operator never writes spec).
ACTION_ANNOTATION = "artisan.dev/action"
CanaryAction = Literal["promote", "promote-full", "abort", "retry"]

# Condition types and reasons specific to Canary.
ABORTED = "Aborted"
PROMOTED = "Promoted"
PAUSED = "Paused"
ANALYSIS_FAILED = "AnalysisFailed"


class PrometheusProvider(ApiModel):
    query: str = Field(min_length=1, max_length=8192)
    """PromQL instant query; {{canary}}, {{stable}}, {{namespace}}, {{modelpin}} and {{window}}
    are substituted."""
    address: str | None = Field(default=None, pattern=r"^https?://")
    """Prometheus URL; the operator's configured Prometheus when unset."""


class BuiltinProvider(ApiModel):
    name: BuiltinMetric
    """A metric the gateway records per variant: errorRate, latencyP95, latencyMean, ..."""


class MetricProvider(ApiModel):
    prometheus: PrometheusProvider | None = None
    """Query Prometheus."""
    builtin: BuiltinProvider | None = None
    """Use a metric the gateway records (Prometheus or a direct scrape, whichever the operator has)."""

    cel_rules = (
        CelRule(
            "has(self.prometheus) != has(self.builtin)", "exactly one of prometheus or builtin must be set"
        ),
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.prometheus is None) == (self.builtin is None):
            raise invariant_error(self, "exactly one of prometheus or builtin must be set")
        return self


class MetricSpec(ApiModel):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    """Metric name, unique within the analysis."""
    interval: Duration = "30s"
    """Time between measurements."""
    count: int | None = Field(default=None, ge=1)
    """Measurements to take; when unset, one in an inline analysis and unlimited in the background."""
    failure_limit: int = Field(default=0, ge=0)
    """Failed measurements tolerated; 0 means the first failure fails the analysis."""
    consecutive_error_limit: int = Field(default=4, ge=0)
    """Provider errors in a row tolerated before the measurement is Error."""
    inconclusive_limit: int = Field(default=0, ge=0)
    """Inconclusive measurements tolerated before the canary pauses."""
    success_condition: str = Field(min_length=1, max_length=1024)
    """Expression over `result`, e.g. "result < 0.05" (a small safe language, no eval)."""
    failure_condition: str | None = Field(default=None, max_length=1024)
    """Optional expression that marks a measurement Failed explicitly."""
    provider: MetricProvider
    """Where the value comes from."""

    @field_validator("success_condition", "failure_condition")
    @classmethod
    def _condition_parses(cls, text: str | None) -> str | None:
        # Refused at admission time by the operator (InvalidSpec naming the field), not at measurement.
        if text is not None:
            parse_condition(text)
        return text


class AnalysisSpec(ApiModel):
    metrics: list[MetricSpec] = Field(min_length=1, max_length=20)
    """Metrics measured during the analysis (names unique)."""

    cel_rules = (
        CelRule(
            "self.metrics.all(m, self.metrics.exists_one(n, n.name == m.name))",
            "metric names must be unique within an analysis",
            ".metrics",
        ),
    )

    @model_validator(mode="after")
    def _metric_names_unique(self) -> Self:
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise invariant_error(self, "metric names must be unique within an analysis", ".metrics")
        return self


class BackgroundAnalysisSpec(AnalysisSpec):
    starting_step: int = Field(default=0, ge=0)
    """Step index from which the background analysis runs."""


class PauseSpec(ApiModel):
    duration: Duration | None = None
    """How long to pause; indefinite (until promoted) when unset."""


class CanaryStep(ApiModel):
    set_weight: int | None = Field(default=None, ge=0, le=100)
    """Percent of traffic to the canary."""
    pause: PauseSpec | None = None
    """Wait, for a duration or until promoted."""
    analysis: AnalysisSpec | None = None
    """Measure metrics; the step passes when every metric succeeds."""

    cel_rules = (
        CelRule(
            "[has(self.setWeight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1",
            "each step must have exactly one of setWeight, pause or analysis",
        ),
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        chosen = [f for f in ("set_weight", "pause", "analysis") if getattr(self, f) is not None]
        if len(chosen) != 1:
            raise invariant_error(self, "each step must have exactly one of setWeight, pause or analysis")
        return self


class GatewayRouting(ApiModel):
    """Route with the built-in gateway's routing table (the default)."""


class HTTPRouteRef(ApiModel):
    http_route: str = Field(min_length=1, max_length=253)
    """Name of the Gateway API HTTPRoute whose backend weights are set."""


class ReplicaRouting(ApiModel):
    """No router: the traffic share follows the ratio of canary to stable pods."""


class TrafficRoutingSpec(ApiModel):
    gateway: GatewayRouting | None = None
    """The built-in gateway's routing table."""
    gateway_api: HTTPRouteRef | None = Field(default=None, alias="gatewayAPI")
    """A Gateway API HTTPRoute."""
    replicas: ReplicaRouting | None = None
    """Replica ratio, no router."""

    cel_rules = (
        CelRule(
            "[has(self.gateway), has(self.gatewayAPI), has(self.replicas)].filter(x, x).size() <= 1",
            "set at most one of gateway, gatewayAPI or replicas",
        ),
    )

    @model_validator(mode="after")
    def _at_most_one(self) -> Self:
        chosen = [f for f in ("gateway", "gateway_api", "replicas") if getattr(self, f) is not None]
        if len(chosen) > 1:
            raise invariant_error(self, "set at most one of gateway, gatewayAPI or replicas")
        return self

    @property
    def router(self) -> Literal["gateway", "gatewayAPI", "replicas"]:
        if self.gateway_api is not None:
            return "gatewayAPI"
        if self.replicas is not None:
            return "replicas"
        return "gateway"


class CanarySpec(ApiModel):
    target_ref: LocalObjectReference
    """The ModelPin whose changes this Canary rolls out."""
    steps: list[CanaryStep] = Field(min_length=1, max_length=50)
    """The rollout: setWeight, pause and analysis steps, in order."""
    analysis: BackgroundAnalysisSpec | None = None
    """Background analysis, run from startingStep until the end."""
    traffic_routing: TrafficRoutingSpec = Field(default_factory=TrafficRoutingSpec)
    """How the canary weight reaches traffic."""
    abort_scale_down_delay_seconds: int = Field(default=30, ge=0)
    """After an abort, the canary pods are kept this long (for debugging) then scaled to 0."""

    cel_rules = (
        CelRule(
            "self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",
            "setWeight must not decrease from one step to a later one",
            ".steps",
        ),
        CelRule(
            "!has(self.analysis) || self.analysis.startingStep < size(self.steps)",
            "analysis.startingStep must be less than the number of steps",
            ".analysis.startingStep",
        ),
    )

    @model_validator(mode="after")
    def _weights_never_decrease(self) -> Self:
        last = 0
        for index, step in enumerate(self.steps):
            if step.set_weight is not None:
                if step.set_weight < last:
                    raise invariant_error(
                        self,
                        "setWeight must not decrease from one step to a later one"
                        f" ({step.set_weight} < {last})",
                        f".steps.{index}.setWeight",
                    )
                last = step.set_weight
        if self.analysis is not None and self.analysis.starting_step >= len(self.steps):
            raise invariant_error(
                self, "analysis.startingStep must be less than the number of steps", ".analysis.startingStep"
            )
        return self


class Measurement(ApiModel):
    phase: MeasurementPhase
    """Successful, Failed, Inconclusive, Error or Running."""
    value: float | None = None
    """The measured value."""
    started_at: datetime
    """When the measurement started."""
    finished_at: datetime | None = None
    """When it finished."""
    message: str | None = None
    """Provider error or why the value is inconclusive."""


class MetricResult(ApiModel):
    name: str
    """Metric name."""
    phase: MeasurementPhase
    """Aggregate phase of the metric so far."""
    successful: int = Field(default=0, ge=0)
    """Successful measurements."""
    failed: int = Field(default=0, ge=0)
    """Failed measurements."""
    inconclusive: int = Field(default=0, ge=0)
    """Inconclusive measurements."""
    error: int = Field(default=0, ge=0)
    """Errored measurements."""
    consecutive_errors: int = Field(default=0, ge=0)
    """Errors in a row."""
    measurements: list[Measurement] = Field(default_factory=list, max_length=10)
    """The last 10 measurements."""


class CanaryStatus(ApiModel):
    observed_generation: int | None = None
    """The spec generation this status describes."""
    phase: CanaryPhase = "Healthy"
    """Healthy, Progressing, Paused or Degraded."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready / Reconciling / Stalled plus Aborted, Promoted, Paused."""
    current_step_index: int | None = Field(default=None, ge=0)
    """Index of the step in progress; equals len(steps) when complete."""
    weight: int = Field(default=0, ge=0, le=100)
    """Percent of traffic the canary receives now."""
    stable_revision: str | None = None
    """Pin-set hash of the stable fleet."""
    canary_revision: str | None = None
    """Pin-set hash being rolled out."""
    step_started_at: datetime | None = None
    """When the current step started (pause and analysis timing)."""
    metrics: list[MetricResult] = Field(default_factory=list)
    """Measurements of the current analysis runs."""
    aborted_at: datetime | None = None
    """When the rollout was aborted."""
    abort_reason: str | None = None
    """Why it was aborted."""
    promoted_at: datetime | None = None
    """When the canary revision last became stable."""
    last_action: str | None = None
    """Last manual action consumed (its annotation value and time), so it is applied once."""
    message: str | None = None
    """Human-readable state."""
