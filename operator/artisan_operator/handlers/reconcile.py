"""The one reconcile pass every kind shares: parse, observe + decide, apply, write status, report.

A kind plugs in a :class:`Reconciler`: its spec and status models, the phase that an invalid spec
gets, and ``decide`` (observe with ``cluster/``, decide with ``policy/``; blocking, runs on the API
thread pool). Everything else (invalid specs, applying children, Events, status writes, metrics,
requeue bookkeeping, one pass at a time per object) happens here, the same way for every kind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from artisan_operator.cluster import (
    ApiException,
    ClusterClient,
    apply_plan,
    patch_status,
    read_custom_object,
    status_patch,
)
from artisan_operator.handlers.context import OperatorContext, operator_context
from artisan_operator.manifests.common import Owner
from artisan_operator.policy.conditions import (
    decide_child_conflicts,
    decide_invalid_spec,
    describe_validation_error,
    parse_conditions,
)
from artisan_operator.policy.plan import EventNote, Plan
from artisan_operator.settings import Settings

SpecT = TypeVar("SpecT", bound=BaseModel)
StatusT = TypeVar("StatusT", bound=BaseModel)

LOCK_KEY = "reconcile_lock"
NEXT_DUE_KEY = "reconcile_next_due"
RETRY_DELAY_SECONDS = 5.0


@dataclass(frozen=True)
class PassInput(Generic[SpecT, StatusT]):
    """What a kind's ``decide`` gets: the client to observe with, the parsed object, the time."""

    cluster: ClusterClient
    owner: Owner
    spec: SpecT
    previous: StatusT
    settings: Settings
    now: datetime
    annotations: Mapping[str, str] = field(default_factory=dict)
    """The object's annotations (manual actions such as ``artisan.dev/rollback-to``)."""
    raw_status: Mapping[str, Any] = field(default_factory=dict)
    """The stored status as read this pass (for a decision that must write before it acts)."""
    memo: MutableMapping[str, Any] = field(default_factory=dict)
    """Per-object scratch kept across passes of this operator process (lost on restart)."""


@dataclass(frozen=True)
class Reconciler(Generic[SpecT, StatusT]):
    kind: str
    plural: str
    spec_model: type[SpecT]
    status_model: type[StatusT]
    invalid_phase: str
    decide: Callable[[PassInput[SpecT, StatusT]], Plan[StatusT]]


@dataclass
class PassResult:
    events: list[EventNote] = field(default_factory=list)
    requeue_after: float | None = None
    status_written: bool = False


def utc_now() -> datetime:
    """Second precision, like every Kubernetes timestamp."""
    return datetime.now(tz=UTC).replace(microsecond=0)


def owner_from_body(kind: str, body: Mapping[str, Any]) -> Owner:
    meta = body["metadata"]
    generation = meta.get("generation")
    return Owner(
        kind=kind,
        name=str(meta["name"]),
        namespace=str(meta["namespace"]),
        uid=str(meta.get("uid") or ""),
        generation=int(generation) if generation is not None else None,
    )


def parse_previous_status(model: type[StatusT], raw: Any) -> StatusT:
    """The stored status, for its records of past actions; unreadable parts are dropped, not fatal."""
    raw = raw if isinstance(raw, dict) else {}
    try:
        return model.model_validate(raw)
    except ValidationError:
        return model.model_validate(
            {"conditions": [c.to_wire() for c in parse_conditions(raw.get("conditions"))]}
        )


def reconcile_pass(
    reconciler: Reconciler[SpecT, StatusT],
    cluster: ClusterClient,
    settings: Settings,
    *,
    namespace: str,
    name: str,
    memo: MutableMapping[str, Any] | None = None,
) -> PassResult:
    """One complete, blocking pass (runs on the API thread pool).

    The object is read afresh: kopf's cached body can lag behind the status this operator just
    wrote, and a stale status would repeat Events and lose records of past actions.
    """
    body = read_custom_object(cluster, reconciler.plural, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return PassResult()
    now = utc_now()
    owner = owner_from_body(reconciler.kind, body)
    raw_status = body.get("status") if isinstance(body.get("status"), dict) else {}
    previous = parse_previous_status(reconciler.status_model, raw_status)
    result = PassResult()
    try:
        spec = reconciler.spec_model.model_validate(body.get("spec") or {})
    except ValidationError as error:
        # Bad input changes nothing: no child is touched, the status says which field is wrong.
        plan = decide_invalid_spec(
            previous,
            phase=reconciler.invalid_phase,
            message=describe_validation_error(error),
            generation=owner.generation,
            now=now,
        )
    else:
        annotations = body["metadata"].get("annotations") or {}
        plan = reconciler.decide(
            PassInput(
                cluster,
                owner,
                spec,
                previous,
                settings,
                now,
                annotations={str(k): str(v) for k, v in annotations.items()},
                raw_status=raw_status or {},
                memo=memo if memo is not None else {},
            )
        )
        outcomes = apply_plan(cluster, plan.children, owner.uid)
        result.events.extend(e for e in (o.event() for o in outcomes) if e is not None)
        conflicts = [o.message for o in outcomes if o.action == "conflict"]
        if conflicts:
            plan = decide_child_conflicts(plan, conflicts, generation=owner.generation, now=now)
    result.events.extend(plan.events)
    result.requeue_after = plan.requeue_after
    desired = plan.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    patch = status_patch(raw_status or {}, desired)
    if patch is not None:
        patch_status(cluster, reconciler.plural, owner.namespace, owner.name, patch)
        result.status_written = True
    return result


async def reconcile(reconciler: Reconciler[Any, Any], body: kopf.Body, memo: Any, logger: Any) -> PassResult:
    """Run one pass for ``body``: at most one at a time per object, measured, with Events posted."""
    context: OperatorContext = operator_context(memo)
    cluster = context.require_cluster()
    lock: asyncio.Lock = memo.setdefault(LOCK_KEY, asyncio.Lock())
    async with lock:
        started = time.monotonic()
        try:
            meta = body["metadata"]
            result = await cluster.run(
                reconcile_pass,
                reconciler,
                cluster,
                context.settings,
                namespace=meta["namespace"],
                name=meta["name"],
                memo=memo,
            )
        except ApiException as error:
            context.metrics.record(reconciler.kind, "error", time.monotonic() - started)
            context.metrics.record_error(reconciler.kind, f"HTTP{error.status}")
            raise kopf.TemporaryError(
                f"Kubernetes API error {error.status} {error.reason}", delay=RETRY_DELAY_SECONDS
            ) from error
        except Exception as error:
            context.metrics.record(reconciler.kind, "error", time.monotonic() - started)
            context.metrics.record_error(reconciler.kind, type(error).__name__)
            raise
        elapsed = time.monotonic() - started
        for note in result.events:
            kopf.event(body, type=note.type, reason=note.reason, message=note.message)
        context.metrics.record(reconciler.kind, "requeue" if result.requeue_after else "success", elapsed)
        resync = context.settings.resync_interval_seconds
        delay = min(result.requeue_after, resync) if result.requeue_after else resync
        memo[NEXT_DUE_KEY] = time.monotonic() + delay
        logger.debug(f"reconciled in {elapsed:.3f}s; next look in {delay:.0f}s")
        return result


async def reconcile_when_due(
    reconciler: Reconciler[Any, Any], body: kopf.Body, memo: Any, logger: Any
) -> None:
    """The timer's body: reconcile only when the object's requeue time has come."""
    if time.monotonic() < memo.get(NEXT_DUE_KEY, 0.0):
        return
    await reconcile(reconciler, body, memo, logger)
