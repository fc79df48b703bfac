"""Measurement bookkeeping for metric analysis (pure): when to measure, how to classify, how to aggregate.

A metric's state is its :class:`MetricResult` in the Canary status (a record of past measurements,
the one kind of status the operator reads back). Each pass, :func:`next_due` says whether a new
measurement is due; the handler queries the provider only then, and :func:`record` folds the sample in.

Classifying one sample (:func:`classify`):

| provider says        | successCondition | failureCondition | measurement  |
|----------------------|------------------|------------------|--------------|
| error                | –                | –                | Error        |
| empty / NaN          | –                | –                | Inconclusive |
| 0.01                 | result < 0.05    | unset            | Successful   |
| 0.10                 | result < 0.05    | unset            | Failed       |
| 0.10                 | result < 0.05    | result > 0.2     | Inconclusive |
| 0.30                 | result < 0.05    | result > 0.2     | Failed       |

Aggregating (:func:`aggregate_phase`, the first rule that holds wins):

| failed > failureLimit | errors in a row > errorLimit | inconclusive > limit | taken ≥ count | phase        |
|-----------------------|------------------------------|----------------------|---------------|--------------|
| yes                   | –                            | –                    | –             | Failed       |
| no                    | yes                          | –                    | –             | Error        |
| no                    | no                           | yes                  | –             | Inconclusive |
| no                    | no                           | no                   | yes           | Successful   |
| no                    | no                           | no                   | no            | Running      |

(errorLimit is consecutiveErrorLimit, limit is inconclusiveLimit.)

Errors are retried sooner than the interval (every :data:`ERROR_RETRY_SECONDS` at most) and do not
count towards `count`: a provider outage delays the analysis, and only a long one fails it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from artisan_common.model import parse_duration
from artisan_operator.api.canary import Measurement, MeasurementPhase, MetricResult, MetricSpec
from artisan_operator.policy.expressions import EvaluationError, parse_condition

ERROR_RETRY_SECONDS = 10.0
"""Provider errors are retried this often (or at the metric's interval, when shorter)."""
KEEP_MEASUREMENTS = 10
"""Measurements kept per metric in status."""
TERMINAL_PHASES: frozenset[MeasurementPhase] = frozenset({"Successful", "Failed", "Error", "Inconclusive"})


@dataclass(frozen=True)
class MetricValue:
    """What a provider returns: a value, nothing (empty result), or an error.

    ``baseline``: the provider only took the starting point of a counter delta (the direct scrape's
    builtin errorRate); there is nothing to classify yet, and the first measurement is due one
    interval later. Never recorded as a measurement.
    """

    value: float | None = None
    error: str | None = None
    baseline: bool = False

    @property
    def is_error(self) -> bool:
        return self.error is not None


def classify(metric: MetricSpec, sample: MetricValue) -> tuple[MeasurementPhase, str | None]:
    """The phase of one measurement, with a message when it is not a plain pass or fail."""
    if sample.error is not None:
        return "Error", sample.error
    if sample.value is None:
        return "Inconclusive", "the query returned no data"
    if math.isnan(sample.value):
        return "Inconclusive", "the query returned NaN"
    try:
        if metric.failure_condition is not None and parse_condition(metric.failure_condition).evaluate(
            sample.value
        ):
            return "Failed", f"failureCondition {metric.failure_condition!r} holds"
        if parse_condition(metric.success_condition).evaluate(sample.value):
            return "Successful", None
    except EvaluationError as error:
        return "Error", f"condition cannot be evaluated on {sample.value}: {error}"
    if metric.failure_condition is not None:
        return "Inconclusive", "neither successCondition nor failureCondition holds"
    return "Failed", f"successCondition {metric.success_condition!r} does not hold"


def aggregate_phase(metric: MetricSpec, result: MetricResult, count: int | None) -> MeasurementPhase:
    """The metric's phase from its counters (see the module table)."""
    if result.failed > metric.failure_limit:
        return "Failed"
    if result.consecutive_errors > metric.consecutive_error_limit:
        return "Error"
    if result.inconclusive > metric.inconclusive_limit:
        return "Inconclusive"
    if count is not None and taken(result) >= count:
        return "Successful"
    return "Running"


def taken(result: MetricResult) -> int:
    """Measurements that count towards `count` (errors are retried, not counted)."""
    return result.successful + result.failed + result.inconclusive


def empty_result(metric: MetricSpec, name: str | None = None) -> MetricResult:
    return MetricResult(name=name or metric.name, phase="Running")


def next_due(metric: MetricSpec, result: MetricResult | None, started_at: datetime) -> datetime | None:
    """When the next measurement is due; None when the metric is finished (a terminal phase).

    | measurements so far          | due at                                    |
    |------------------------------|-------------------------------------------|
    | none                         | the start of the analysis                 |
    | last one Successful/Failed/… | last finish + interval                    |
    | last one Error               | last finish + min(interval, 10 s)         |
    | phase terminal               | never (None)                              |
    """
    if result is None or not result.measurements:
        if result is not None and result.phase in TERMINAL_PHASES:
            return None
        return started_at
    if result.phase in TERMINAL_PHASES:
        return None
    last = result.measurements[-1]
    finished = last.finished_at or last.started_at
    interval = parse_duration(metric.interval)
    if last.phase == "Error":
        interval = min(interval, ERROR_RETRY_SECONDS)
    return finished + timedelta(seconds=interval)


def record(
    metric: MetricSpec,
    result: MetricResult | None,
    sample: MetricValue,
    now: datetime,
    *,
    count: int | None,
    name: str | None = None,
) -> MetricResult:
    """Fold one sample into the metric's result: counters, the last 10 measurements, the phase."""
    previous = result or empty_result(metric, name)
    phase, message = classify(metric, sample)
    value = None if sample.value is None or math.isnan(sample.value) else sample.value
    measurement = Measurement(phase=phase, value=value, started_at=now, finished_at=now, message=message)
    counters = {
        "successful": previous.successful + (phase == "Successful"),
        "failed": previous.failed + (phase == "Failed"),
        "inconclusive": previous.inconclusive + (phase == "Inconclusive"),
        "error": previous.error + (phase == "Error"),
        "consecutive_errors": previous.consecutive_errors + 1 if phase == "Error" else 0,
    }
    updated = previous.model_copy(
        update={
            **counters,
            "measurements": [*previous.measurements, measurement][-KEEP_MEASUREMENTS:],
        }
    )
    return updated.model_copy(update={"phase": aggregate_phase(metric, updated, count)})
