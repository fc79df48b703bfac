"""Condition merging, invalid-spec and conflict statuses, validation messages (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from artisan_operator.api.common import Condition
from artisan_operator.api.model_pin import ModelPinStatus
from artisan_operator.api.training_run import TrainingRunSpec, TrainingRunStatus
from artisan_operator.policy.conditions import (
    ConditionUpdate,
    decide_child_conflicts,
    decide_invalid_spec,
    describe_validation_error,
    merge_conditions,
    parse_conditions,
)
from artisan_operator.policy.plan import Plan

pytestmark = pytest.mark.timeout(2)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = datetime(2025, 1, 2, tzinfo=UTC)


def cond(type_: str, status: str, reason: str = "R", at: datetime = T0) -> Condition:
    return Condition.model_validate(
        {"type": type_, "status": status, "reason": reason, "lastTransitionTime": at.isoformat()}
    )


@pytest.mark.parametrize(
    ("previous", "update", "expected_time"),
    [
        ([], ConditionUpdate("Ready", "True", "Running"), T1),
        ([cond("Ready", "True")], ConditionUpdate("Ready", "True", "Succeeded", "done"), T0),
        ([cond("Ready", "True")], ConditionUpdate("Ready", "False", "Failed"), T1),
    ],
    ids=["new", "same-status-new-reason", "status-flips"],
)
def test_merge_keeps_transition_time_only_when_status_holds(
    previous: list[Condition], update: ConditionUpdate, expected_time: datetime
) -> None:
    [merged] = merge_conditions(previous, [update], now=T1, generation=7)
    assert merged.last_transition_time == expected_time
    assert (merged.status, merged.reason, merged.message) == (update.status, update.reason, update.message)
    assert merged.observed_generation == 7


def test_merge_keeps_conditions_it_was_not_told_about_in_order() -> None:
    previous = [cond("RolledBack", "True", "KLDivergence"), cond("Ready", "False")]
    merged = merge_conditions(previous, [ConditionUpdate("Ready", "True", "Running")], now=T1, generation=1)
    assert [c.type for c in merged] == ["RolledBack", "Ready"]
    assert merged[0] == previous[0]


def test_parse_conditions_drops_malformed_entries() -> None:
    good = cond("Ready", "True").to_wire()
    assert parse_conditions([good, {"type": "Ready"}, "junk"]) == [cond("Ready", "True")]
    assert parse_conditions(None) == []


def test_validation_error_names_the_camel_case_field_path() -> None:
    with pytest.raises(ValidationError) as caught:
        TrainingRunSpec.model_validate(
            {"ppo": {"clipRange": 1.5}, "rollback": {"window": 10, "baselineWindow": 5}}
        )
    message = describe_validation_error(caught.value)
    assert "spec.ppo.clipRange: Input should be less than 1" in message
    assert "spec.rollback.window: window must be less than baselineWindow" in message


def test_validation_error_indexes_lists_and_reports_unknown_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        TrainingRunSpec.model_validate(
            {"scheduling": {"tolerations": [{"operator": "Maybe"}]}, "learningRat": 1}
        )
    message = describe_validation_error(caught.value)
    assert "spec.scheduling.tolerations[0].operator:" in message
    assert "spec.learningRat: Extra inputs are not permitted" in message


def test_invalid_spec_status_is_stalled_with_one_event_per_distinct_problem() -> None:
    first = decide_invalid_spec(
        TrainingRunStatus(), phase="Failed", message="spec.ppo.gamma: bad", generation=2, now=T0
    )
    by_type = {c.type: c for c in first.status.conditions}
    assert (by_type["Stalled"].status, by_type["Stalled"].reason) == ("True", "InvalidSpec")
    assert by_type["Ready"].status == "False"
    assert (first.status.phase, first.status.observed_generation, first.status.message) == (
        "Failed",
        2,
        "spec.ppo.gamma: bad",
    )
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "InvalidSpec")]
    assert first.children == ()
    again = decide_invalid_spec(
        first.status, phase="Failed", message="spec.ppo.gamma: bad", generation=2, now=T1
    )
    assert again.events == ()
    assert again.status == first.status
    other = decide_invalid_spec(
        first.status, phase="Failed", message="spec.ppo.epochs: bad", generation=3, now=T1
    )
    assert len(other.events) == 1


def test_invalid_spec_works_for_a_status_without_message() -> None:
    plan = decide_invalid_spec(
        ModelPinStatus(), phase="Degraded", message="spec.models: x", generation=1, now=T0
    )
    assert plan.status.phase == "Degraded"
    assert "message" not in plan.status.model_dump()


def test_child_conflict_marks_the_object_stalled() -> None:
    plan: Plan[TrainingRunStatus] = Plan(status=TrainingRunStatus())
    conflicted = decide_child_conflicts(plan, ["ConfigMap x is not ours"], generation=1, now=T0)
    stalled = next(c for c in conflicted.status.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason, stalled.message) == (
        "True",
        "ChildConflict",
        "ConfigMap x is not ours",
    )
