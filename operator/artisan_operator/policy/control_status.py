"""Small pieces the control loops share (pure): planned Events and condition updates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from artisan_operator.api.common import READY, RECONCILING, STALLED, Condition

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class PlannedEvent:
    """A Kubernetes Event the handler emits on the resource after applying the plan."""

    reason: str
    message: str
    type: Literal["Normal", "Warning"] = "Normal"


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None = None,
) -> list[Condition]:
    """The conditions with `type_` set; lastTransitionTime moves only when the status changes."""
    previous = next((c for c in conditions if c.type == type_), None)
    since = previous.last_transition_time if previous is not None and previous.status == status else now
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    kept = [c for c in conditions if c.type != type_]
    position = next((i for i, c in enumerate(conditions) if c.type == type_), len(kept))
    kept.insert(position, updated)
    return kept


def kstatus(
    conditions: Sequence[Condition],
    *,
    ready: bool,
    reconciling: bool,
    stalled: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Set the kstatus trio (Ready / Reconciling / Stalled) consistently."""

    def flag(value: bool) -> ConditionStatus:
        return "True" if value else "False"

    result = set_condition(conditions, READY, flag(ready), reason, message, now=now, generation=generation)
    result = set_condition(
        result, RECONCILING, flag(reconciling), reason, message, now=now, generation=generation
    )
    return set_condition(result, STALLED, flag(stalled), reason, message, now=now, generation=generation)


def condition_status(conditions: Sequence[Condition], type_: str) -> ConditionStatus | None:
    return next((c.status for c in conditions if c.type == type_), None)
