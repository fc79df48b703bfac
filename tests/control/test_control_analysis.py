"""Measurement bookkeeping: classification, aggregation and scheduling of metric measurements."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from artisan_operator.api.canary import MetricSpec
from artisan_operator.policy.analysis import (
    MetricValue,
    aggregate_phase,
    classify,
    next_due,
    record,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def metric(**overrides: object) -> MetricSpec:
    fields: dict[str, object] = {
        "name": "errors",
        "interval": "10s",
        "successCondition": "result < 0.05",
        "provider": {"builtin": {"name": "errorRate"}},
    }
    fields.update(overrides)
    return MetricSpec.model_validate(fields)


# Rows of the classification table in the module docstring.
@pytest.mark.parametrize(
    ("sample", "failure_condition", "phase"),
    [
        (MetricValue(error="connection refused"), None, "Error"),
        (MetricValue(), None, "Inconclusive"),
        (MetricValue(math.nan), None, "Inconclusive"),
        (MetricValue(0.01), None, "Successful"),
        (MetricValue(0.10), None, "Failed"),
        (MetricValue(0.10), "result > 0.2", "Inconclusive"),
        (MetricValue(0.30), "result > 0.2", "Failed"),
    ],
)
def test_classify(sample: MetricValue, failure_condition: str | None, phase: str) -> None:
    spec = metric(failureCondition=failure_condition) if failure_condition else metric()
    assert classify(spec, sample)[0] == phase


def test_condition_that_cannot_be_evaluated_is_an_error() -> None:
    phase, message = classify(metric(successCondition="1 / result < 2"), MetricValue(0.0))
    assert phase == "Error"
    assert message is not None
    assert "division by zero" in message


def run(spec: MetricSpec, samples: list[MetricValue], count: int | None) -> list[str]:
    result = None
    phases = []
    for i, sample in enumerate(samples):
        result = record(spec, result, sample, T0 + timedelta(seconds=i), count=count)
        phases.append(result.phase)
    return phases


OK, BAD, NONE, ERR = MetricValue(0.01), MetricValue(0.5), MetricValue(), MetricValue(error="down")


# Rows of the aggregation table: failureLimit, consecutiveErrorLimit, inconclusiveLimit, count.
@pytest.mark.parametrize(
    ("overrides", "samples", "count", "phases"),
    [
        ({}, [BAD], None, ["Failed"]),
        ({"failureLimit": 1}, [BAD, OK, BAD], None, ["Running", "Running", "Failed"]),
        ({"consecutiveErrorLimit": 2}, [ERR, ERR, ERR], None, ["Running", "Running", "Error"]),
        ({"consecutiveErrorLimit": 1}, [ERR, OK, ERR, OK], None, ["Running"] * 4),
        ({}, [NONE], None, ["Inconclusive"]),
        ({"inconclusiveLimit": 1}, [NONE, OK, NONE], 5, ["Running", "Running", "Inconclusive"]),
        ({}, [OK, OK, OK], 3, ["Running", "Running", "Successful"]),
        ({}, [OK, ERR, OK], 2, ["Running", "Running", "Successful"]),
    ],
)
def test_aggregation(
    overrides: dict[str, object], samples: list[MetricValue], count: int | None, phases: list[str]
) -> None:
    assert run(metric(**overrides), samples, count) == phases


def test_default_error_limit_is_four_in_a_row() -> None:
    assert run(metric(), [ERR] * 5, None) == ["Running"] * 4 + ["Error"]


def test_failed_wins_over_error() -> None:
    spec = metric(consecutiveErrorLimit=0)
    result = record(spec, None, BAD, T0, count=None)
    result = result.model_copy(update={"consecutive_errors": 3})
    assert aggregate_phase(spec, result, None) == "Failed"


def test_only_last_ten_measurements_are_kept() -> None:
    spec = metric()
    result = None
    for i in range(25):
        result = record(spec, result, OK, T0 + timedelta(seconds=i), count=None)
    assert result is not None
    assert len(result.measurements) == 10
    assert result.successful == 25
    assert result.measurements[-1].started_at == T0 + timedelta(seconds=24)


def test_next_due_schedule() -> None:
    spec = metric(interval="30s")
    assert next_due(spec, None, T0) == T0
    after_ok = record(spec, None, OK, T0, count=None)
    assert next_due(spec, after_ok, T0) == T0 + timedelta(seconds=30)
    after_error = record(spec, None, ERR, T0, count=None)
    assert next_due(spec, after_error, T0) == T0 + timedelta(seconds=10)
    short = metric(interval="2s")
    assert next_due(short, record(short, None, ERR, T0, count=None), T0) == T0 + timedelta(seconds=2)
    failed = record(spec, None, BAD, T0, count=None)
    assert next_due(spec, failed, T0) is None


def test_nan_is_recorded_without_a_value() -> None:
    result = record(metric(), None, MetricValue(math.nan), T0, count=None)
    assert result.measurements[0].value is None
    assert result.measurements[0].phase == "Inconclusive"
