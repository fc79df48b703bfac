"""Status conditions (pure): merge desired conditions into the previous ones, the kstatus trio.

A decision says *what* each condition should be now (:class:`ConditionUpdate`: type, status,
reason, message); :func:`merge_conditions` turns that into ``metav1.Condition`` entries, keeping
``lastTransitionTime`` when the status did not change (only reason or message moved), so
``kubectl wait``, Flux and Argo CD see stable transition times. Condition types a decision does not
mention (e.g. ``RolledBack`` written by another control loop) are kept as they are.

The kstatus trio (https://github.com/kubernetes-sigs/cli-utils/tree/master/pkg/kstatus):

| state         | Ready | Reconciling | Stalled | meaning                                    |
|---------------|-------|-------------|---------|--------------------------------------------|
| ``ready``     | True  | False       | False   | the observed world matches the spec        |
| ``progressing`` | False | True      | False   | working towards the spec; look again soon  |
| ``stalled``   | False | False       | True    | cannot progress without a user's change    |
| ``idle``      | False | False       | False   | deliberately not ready (e.g. suspended)    |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from artisan_operator.api.common import INVALID_SPEC, READY, RECONCILING, STALLED, Condition
from artisan_operator.policy.plan import CHILD_CONFLICT, EventNote, Plan

StatusT = TypeVar("StatusT", bound=BaseModel)

ConditionStatus = Literal["True", "False", "Unknown"]
KState = Literal["ready", "progressing", "stalled", "idle"]


@dataclass(frozen=True)
class ConditionUpdate:
    """What one condition should say now (no timestamps: :func:`merge_conditions` adds them)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def kstatus(state: KState, reason: str, message: str = "") -> tuple[ConditionUpdate, ...]:
    """The Ready / Reconciling / Stalled updates for one kstatus state (table in the module doc)."""
    ready: ConditionStatus = "True" if state == "ready" else "False"
    reconciling: ConditionStatus = "True" if state == "progressing" else "False"
    stalled: ConditionStatus = "True" if state == "stalled" else "False"
    return (
        ConditionUpdate(READY, ready, reason, message),
        ConditionUpdate(RECONCILING, reconciling, reason, message),
        ConditionUpdate(STALLED, stalled, reason, message),
    )


def merge_conditions(
    previous: Sequence[Condition],
    updates: Iterable[ConditionUpdate],
    *,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Previous conditions with ``updates`` applied; order: previous order, then new types.

    | previous (type, status)   | update (status, reason) | lastTransitionTime    |
    |---------------------------|-------------------------|-----------------------|
    | absent                    | True, Running           | now                   |
    | Ready True at t0          | True, Succeeded         | t0 (status unchanged) |
    | Ready True at t0          | False, Failed           | now                   |
    | RolledBack True at t0     | (not mentioned)         | t0, entry kept as is  |
    """
    by_type: dict[str, Condition] = {c.type: c for c in previous}
    order = [c.type for c in previous]
    for update in updates:
        old = by_type.get(update.type)
        transition = now if old is None or old.status != update.status else old.last_transition_time
        by_type[update.type] = Condition(
            type=update.type,
            status=update.status,
            reason=update.reason,
            message=update.message,
            last_transition_time=transition,
            observed_generation=generation,
        )
        if old is None:
            order.append(update.type)
    return [by_type[t] for t in order]


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    *,
    now: datetime,
    generation: int | None = None,
) -> list[Condition]:
    """``conditions`` with one condition set (a one-update :func:`merge_conditions`)."""
    update = ConditionUpdate(type_, status, reason, message)
    return merge_conditions(conditions, (update,), now=now, generation=generation)


def set_kstatus(
    conditions: Sequence[Condition],
    state: KState,
    reason: str,
    message: str = "",
    *,
    now: datetime,
    generation: int | None = None,
) -> list[Condition]:
    """``conditions`` with the kstatus trio set for ``state`` (table in the module doc)."""
    return merge_conditions(conditions, kstatus(state, reason, message), now=now, generation=generation)


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_condition_true(conditions: Sequence[Condition], type_: str) -> bool:
    found = find_condition(conditions, type_)
    return found is not None and found.status == "True"


def parse_conditions(raw: Any) -> list[Condition]:
    """Conditions from a stored status; malformed entries (someone else's typo) are dropped."""
    if not isinstance(raw, list):
        return []
    parsed: list[Condition] = []
    for item in raw:
        try:
            parsed.append(Condition.model_validate(item))
        except ValidationError:
            continue
    return parsed


def transition_events(
    previous: Sequence[Condition], reason: str, message: str, state: KState
) -> tuple[EventNote, ...]:
    """One Event when the Ready reason changes (a new phase or cause), none while it holds."""
    old = find_condition(previous, READY)
    if old is not None and old.reason == reason:
        return ()
    return (EventNote(reason, message, "Warning" if state == "stalled" else "Normal"),)


def describe_validation_error(error: ValidationError, *, root: str = "spec") -> str:
    """One line per problem, each naming the field path in wire form: ``spec.ppo.clipRange: ...``.

    Pydantic reports locations with the aliases the input used (camelCase), list indexes as ints.
    """
    problems: list[str] = []
    for item in error.errors(include_url=False):
        path = root
        for part in item["loc"]:
            path = f"{path}[{part}]" if isinstance(part, int) else f"{path}.{part}"
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{path}: {message}")
    return "; ".join(problems)


def _conditions_of(status: BaseModel) -> list[Condition]:
    conditions = getattr(status, "conditions", None)
    if not isinstance(conditions, list):
        raise TypeError(f"{type(status).__name__} has no conditions list")
    return conditions


def _with_message(model: type[BaseModel], update: dict[str, Any], message: str) -> dict[str, Any]:
    """Also set ``status.message`` for kinds whose status has one."""
    return {**update, "message": message} if "message" in model.model_fields else update


def decide_invalid_spec(
    previous: StatusT, *, phase: str, message: str, generation: int | None, now: datetime
) -> Plan[StatusT]:
    """An invalid spec: Stalled=True InvalidSpec naming the fields, no children touched, no retry.

    One Warning Event when the problem first appears or changes, none while it stays the same.
    """
    old = find_condition(_conditions_of(previous), STALLED)
    conditions = merge_conditions(
        _conditions_of(previous), kstatus("stalled", INVALID_SPEC, message), now=now, generation=generation
    )
    update: dict[str, Any] = {"observed_generation": generation, "phase": phase, "conditions": conditions}
    status = previous.model_copy(update=_with_message(type(previous), update, message))
    unchanged = old is not None and old.reason == INVALID_SPEC and old.message == message
    events = () if unchanged else (EventNote(INVALID_SPEC, message, "Warning"),)
    return Plan(status=status, events=events)


def decide_child_conflicts(
    plan: Plan[StatusT], conflicts: Sequence[str], *, generation: int | None, now: datetime
) -> Plan[StatusT]:
    """A child exists but belongs to someone else: the object cannot converge until a user acts."""
    message = "; ".join(conflicts)
    conditions = merge_conditions(
        _conditions_of(plan.status),
        kstatus("stalled", CHILD_CONFLICT, message),
        now=now,
        generation=generation,
    )
    update = _with_message(type(plan.status), {"conditions": conditions}, message)
    return replace(plan, status=plan.status.model_copy(update=update))
