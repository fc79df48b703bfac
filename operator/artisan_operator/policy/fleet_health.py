"""Fleet health and downshift (pure): lower the ModelPin's mode ceiling when a model is down fleet-wide.

Each ensemble pod reports ``model_health_status{model, role}`` (1 healthy, 0 down) for each pinned model
it runs; the fleet is judged per ``role`` (roles are fixed, model names are user strings).
When a model is down on at least ``downshift.unhealthyPodFraction`` of the pods for
``downshift.unhealthyForSeconds``, the fleet's mode ceiling (``pin.json`` ``mode_ceiling`` in the
routing table) is lowered to the richest mode that does not need that model; after ``holdSeconds``
with every model healthy it is restored. A manual downshift (annotation
``artisan.dev/downshift: fast/10m``) overrides the automatic one until it expires (``off`` ends it).

| model down fleet-wide | needs mode ≤ |
|-----------------------|--------------|
| creative              | balanced     |
| validator             | fast         |
| primary               | fast         |

| case            | observation                                          | ceiling  | Downshifted            |
|-----------------|------------------------------------------------------|----------|------------------------|
| healthy         | every model up                                       | creative | False (Healthy)        |
| brief-outage    | creative down on 2/2 pods for less than unhealthyFor | creative | False (Healthy)        |
| outage          | creative down on 2/2 pods for unhealthyFor           | balanced | True (ModelUnhealthy)  |
| minority        | creative down on 1/4 pods (fraction 0.5)             | creative | False (Healthy)        |
| worse           | validator down too, for unhealthyFor                 | fast     | True (ModelUnhealthy)  |
| holding         | healthy again for less than holdSeconds              | kept     | True (ModelUnhealthy)  |
| recovered       | healthy again for holdSeconds                        | creative | False (Recovered)      |
| manual          | annotation fast/10m                                  | fast     | True (ManualDownshift) |
| manual-expired  | 10m later                                            | creative | False (Recovered)      |
| manual-off      | annotation off                                       | creative | False (Recovered)      |
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, get_args

from artisan_common.model import parse_duration
from artisan_common.serving import MODES, DownshiftPolicy, Mode, ModelsSpec
from artisan_operator.api.common import Condition
from artisan_operator.api.model_pin import (
    DOWNSHIFTED,
    MANUAL_DOWNSHIFT,
    MODEL_UNHEALTHY,
    RECOVERED,
    DownshiftRecord,
    ModelHealth,
)
from artisan_operator.policy.conditions import ConditionStatus, set_condition
from artisan_operator.policy.plan import EventNote

Role = Literal["primary", "validator", "creative"]
ROLE_CEILING: dict[Role, Mode] = {"creative": "balanced", "validator": "fast", "primary": "fast"}
"""The richest mode that still works without the model of this role."""


@dataclass(frozen=True)
class FleetObservation:
    pods: Mapping[str, Mapping[str, bool]]
    """Pod name → role → healthy (from each pod's model_health_status{role})."""
    downshift: DownshiftRecord | None = None
    """The record in the ModelPin status (a record of a past action)."""
    model_health: Sequence[ModelHealth] = ()
    """The previous per-model health (for the unhealthy-since times)."""
    conditions: Sequence[Condition] = ()
    annotation: str | None = None
    """Value of the artisan.dev/downshift annotation, if present."""
    generation: int | None = None


@dataclass(frozen=True)
class FleetPlan:
    mode_ceiling: Mode
    downshift: DownshiftRecord | None
    model_health: list[ModelHealth]
    conditions: list[Condition]
    events: tuple[EventNote, ...] = ()
    consumed_annotation: bool = False
    requeue_after: float | None = None
    annotation_error: str | None = field(default=None)


_MANUAL = re.compile(r"^(?P<mode>[a-z]+)/(?P<duration>[0-9hms]+)$")


def parse_manual(value: str) -> tuple[Mode, float] | None:
    """("fast", 600.0) for "fast/10m"; None for "off"; ValueError naming the problem otherwise."""
    text = value.strip()
    if text == "off":
        return None
    match = _MANUAL.fullmatch(text)
    if match is None or match["mode"] not in get_args(Mode):
        raise ValueError(
            f"artisan.dev/downshift must be <mode>/<duration> (mode one of {', '.join(MODES)}) or off"
        )
    seconds = parse_duration(match["duration"])
    if seconds <= 0:
        raise ValueError("artisan.dev/downshift duration must be positive")
    return match["mode"], seconds  # type: ignore[return-value]


def _lowest(modes: Sequence[Mode]) -> Mode:
    return min(modes, key=MODES.index, default="creative")


def assess_fleet(
    models: ModelsSpec, policy: DownshiftPolicy, obs: FleetObservation, now: datetime
) -> FleetPlan:
    """The fleet's ceiling, downshift record, per-model health and Downshifted condition now."""
    previous_since = {h.role: h.unhealthy_since for h in obs.model_health}
    health: list[ModelHealth] = []
    wake: list[datetime] = []
    needed: list[Mode] = []
    any_unhealthy = False
    for role in get_args(Role):
        ref = getattr(models, role)
        if ref is None:
            continue
        reports = [pod[role] for pod in obs.pods.values() if role in pod]
        healthy = sum(reports)
        total = len(reports)
        down = total > 0 and (total - healthy) / total >= policy.unhealthy_pod_fraction
        since = (previous_since.get(role) or now) if down else None
        any_unhealthy = any_unhealthy or down
        if since is not None:
            ready_at = since + timedelta(seconds=policy.unhealthy_for_seconds)
            if now >= ready_at:
                needed.append(ROLE_CEILING[role])
            else:
                wake.append(ready_at)
        health.append(
            ModelHealth(
                role=role, name=ref.name, healthy_pods=healthy, total_pods=total, unhealthy_since=since
            )
        )

    events: list[EventNote] = []
    record = obs.downshift
    annotation_error = None
    consumed = obs.annotation is not None
    if obs.annotation is not None:
        try:
            manual = parse_manual(obs.annotation)
        except ValueError as error:
            annotation_error = str(error)
            events.append(EventNote("InvalidDownshift", annotation_error, "Warning"))
        else:
            if manual is None:
                if record is not None and record.manual:
                    events.append(EventNote(RECOVERED, "manual downshift ended (off)"))
                    record = None
            else:
                mode, seconds = manual
                already = (
                    record is not None
                    and record.manual
                    and record.mode == mode
                    and record.until
                    and record.until > now
                )
                if not already:
                    until = now + timedelta(seconds=seconds)
                    record = DownshiftRecord(
                        mode=mode, reason=MANUAL_DOWNSHIFT, since=now, until=until, manual=True
                    )
                    events.append(
                        EventNote(
                            DOWNSHIFTED, f"manual downshift to {mode} until {until.isoformat()}", "Warning"
                        )
                    )

    if record is not None and record.manual and record.until is not None and now >= record.until:
        events.append(EventNote(RECOVERED, f"manual downshift to {record.mode} expired"))
        record = None

    if record is None or not record.manual:
        target = _lowest(needed)
        if target != "creative":
            reason_models = [h.name for h in health if h.unhealthy_since is not None]
            if record is None or MODES.index(target) < MODES.index(record.mode):
                events.append(
                    EventNote(
                        DOWNSHIFTED,
                        f"fleet ceiling lowered to {target}: {', '.join(reason_models)} down",
                        "Warning",
                    )
                )
                record = DownshiftRecord(
                    mode=target, reason=MODEL_UNHEALTHY, since=record.since if record else now
                )
            elif record.healthy_since is not None:
                record = record.model_copy(update={"healthy_since": None})
        elif record is not None:
            healthy_since = None if any_unhealthy else (record.healthy_since or now)
            if healthy_since is not None and now >= healthy_since + timedelta(seconds=policy.hold_seconds):
                events.append(
                    EventNote(RECOVERED, f"every model healthy for {policy.hold_seconds}s: ceiling restored")
                )
                record = None
            else:
                record = record.model_copy(update={"healthy_since": healthy_since})
                if healthy_since is not None:
                    wake.append(healthy_since + timedelta(seconds=policy.hold_seconds))
    if record is not None and record.until is not None:
        wake.append(record.until)

    ceiling: Mode = record.mode if record is not None else "creative"
    if record is not None:
        detail = f"until {record.until.isoformat()}" if record.manual and record.until else record.reason
        condition: tuple[ConditionStatus, str, str] = (
            "True",
            record.reason,
            f"mode ceiling {record.mode} ({detail})",
        )
    elif obs.downshift is not None:
        condition = ("False", RECOVERED, "every mode available again")
    else:
        previous = next((c for c in obs.conditions if c.type == DOWNSHIFTED), None)
        reason = previous.reason if previous is not None and previous.status == "False" else "Healthy"
        condition = ("False", reason, "every mode available")
    conditions = set_condition(
        obs.conditions,
        DOWNSHIFTED,
        condition[0],
        condition[1],
        condition[2],
        now=now,
        generation=obs.generation,
    )
    requeue = min(((t - now).total_seconds() for t in wake), default=None)
    return FleetPlan(
        mode_ceiling=ceiling,
        downshift=record,
        model_health=health,
        conditions=conditions,
        events=tuple(events),
        consumed_annotation=consumed,
        requeue_after=None if requeue is None else max(0.0, requeue),
        annotation_error=annotation_error,
    )
