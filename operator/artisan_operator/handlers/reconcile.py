"""The one reconcile pass every kind shares: parse, observe + decide, apply, write status, report.

A kind plugs in a :class:`Reconciler`: its spec and status models, the phase that an invalid spec
gets, and ``decide`` (observe with ``cluster/``, decide with ``policy/``; blocking, runs on the API
thread pool). Everything else (invalid specs, applying children, Events, status writes, metrics,
the requeue delay) happens here, the same way for every kind; :func:`register_object_loops` drives
the passes from the operator's work queue (one at a time per object, see
:mod:`artisan_operator.handlers.workqueue`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.cluster import (
    ApiException,
    ApplyOutcome,
    ClusterClient,
    aio,
    apply_plan,
    outcome_events,
    patch_status,
    read_custom_object,
    status_patch,
)
from artisan_operator.cluster.events import post_events
from artisan_operator.handlers.context import OperatorContext, operator_context
from artisan_operator.handlers.control_loop import post_events_with_kopf
from artisan_operator.handlers.workqueue import GONE, PassOutcome, event_fingerprint
from artisan_operator.manifests.common import Owner
from artisan_operator.policy.conditions import (
    decide_child_conflicts,
    decide_invalid_spec,
    describe_validation_error,
    parse_conditions,
)
from artisan_operator.policy.plan import CHILD_CREATED, EventNote, Plan
from artisan_operator.settings import Settings

SpecT = TypeVar("SpecT", bound=BaseModel)
StatusT = TypeVar("StatusT", bound=BaseModel)

WATCHED_BODY_KEY = "watched_body"
"""Loop state: the newest watched body, kept only until the object's first pass in this process."""
CREATED_ON_THE_LOOP_KEY = "created_on_the_loop"
"""Loop state: the children a first pass on the event loop created before one that already existed
sent the object to a full pass (which tells them in its ChildCreated Event)."""

LoopFn = Callable[[OperatorContext, str, str, MutableMapping[str, Any]], Awaitable[PassOutcome]]
"""A loop's pass: ``(context, namespace, name, state)`` -> when to run again (see the work queue)."""


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
    blind: bool = False
    """The object has no status at all (brand-new): ``decide`` may skip the reads whose answer can
    only be "no child exists yet". The pass then only creates children, and if one exists anyway
    (a pass interrupted before its status write) it decides again with ``blind`` False."""


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
    owner: Owner | None = None
    """The object reconciled; None when it is gone (deleted, or being deleted)."""
    events: list[EventNote] = field(default_factory=list)
    """The Events of the pass (see :func:`pass_events`), posted by the pass itself."""
    unposted: list[EventNote] = field(default_factory=list)
    """Those the API refused: for kopf's poster, which retries with backoff."""
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
    wrote, and a stale status would repeat Events and lose records of past actions. The one
    exception is the object's very first pass in this process (``memo[WATCHED_BODY_KEY]``, see
    :func:`register_object_loops`): nothing has been written by this process yet, so the newest
    watched body is as good as a read.

    A brand-new object (no status at all) gets a blind first decision (``PassInput.blind``): a
    status is written by every pass that gets past its children, so without one no pass of ours
    got that far, and its children are created without being observed or read first. Any child
    that answers 409 (an interrupted pass, or someone else's object with that name) means the
    guess was wrong: the pass decides again from a full observation and applies that plan.
    """
    watched = memo.pop(WATCHED_BODY_KEY, None) if memo is not None else None
    earlier: list[ApplyOutcome] = memo.pop(CREATED_ON_THE_LOOP_KEY, []) if memo is not None else []
    body = watched or read_custom_object(cluster, reconciler.plural, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return PassResult()  # children go with it (owner references): nothing left to do
    now = utc_now()
    owner = owner_from_body(reconciler.kind, body)
    raw_status = body.get("status") if isinstance(body.get("status"), dict) else {}
    previous = parse_previous_status(reconciler.status_model, raw_status)
    result = PassResult(owner=owner)
    applied: list[EventNote] = []
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
        given = PassInput(
            cluster,
            owner,
            spec,
            previous,
            settings,
            now,
            annotations={str(k): str(v) for k, v in annotations.items()},
            raw_status=raw_status or {},
            memo=memo if memo is not None else {},
            blind=not raw_status,
        )
        plan = reconciler.decide(given)
        # Never reconciled (no observedGeneration yet): its children most likely do not exist.
        fresh = raw_status.get("observedGeneration") is None if raw_status else True
        outcomes = apply_plan(
            cluster, plan.children, owner.uid, expect_missing=fresh, create_only=given.blind
        )
        if outcomes and outcomes[-1].action == "exists":
            plan = reconciler.decide(replace(given, blind=False))
            created = [o for o in outcomes if o.action == "created"]
            outcomes = created + apply_plan(cluster, plan.children, owner.uid)
        applied = outcome_events(earlier + outcomes)
        conflicts = [o.message for o in outcomes if o.action == "conflict"]
        if conflicts:
            plan = decide_child_conflicts(plan, conflicts, generation=owner.generation, now=now)
    result.requeue_after = plan.requeue_after
    desired = plan.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    patch = status_patch(raw_status or {}, desired)
    if patch is not None:
        patch_status(cluster, reconciler.plural, owner.namespace, owner.name, patch)
        result.status_written = True
    # Posted once the status is written (a failed write is retried by a pass that decides again).
    result.events = pass_events(applied, plan.events)
    result.unposted = post_events(cluster, event_reference(owner, body["apiVersion"]), result.events, now)
    return result


def brand_new_body(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The watched body kept for the first pass (see :func:`register_object_loops`) when it is of a
    brand-new object: no status (no pass of ours got past its children), not being deleted, and no
    manual action in its ``artisan.dev/`` annotations (a rollback request is observed first)."""
    body = state.get(WATCHED_BODY_KEY)
    if not isinstance(body, dict) or body.get("status"):
        return None
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if meta.get("deletionTimestamp") or any(str(key).startswith(f"{GROUP}/") for key in annotations):
        return None
    return body


async def first_pass_on_the_loop(
    reconciler: Reconciler[SpecT, StatusT],
    context: OperatorContext,
    api: aio.AsyncApi,
    state: MutableMapping[str, Any],
    body: dict[str, Any],
) -> PassResult | None:
    """A brand-new object's first pass, all on the event loop (see :mod:`artisan_operator.cluster.aio`).

    The same pass as :func:`reconcile_pass` gives a brand-new object (a blind decision: nothing is
    read; all children created at once; the status; the Events), without a thread. None when it
    cannot finish here: an invalid spec (the full pass reports it), or a child that already exists
    (an interrupted earlier pass, or a stranger's object): the full pass on the thread pool then
    decides again from an observation, with the watched body, and tells the children created here.
    """
    try:
        spec = reconciler.spec_model.model_validate(body.get("spec") or {})
    except ValidationError:
        return None
    now = utc_now()
    owner = owner_from_body(reconciler.kind, body)
    previous = parse_previous_status(reconciler.status_model, {})
    annotations = body["metadata"].get("annotations") or {}
    given = PassInput(
        context.require_cluster(),
        owner,
        spec,
        previous,
        context.settings,
        now,
        annotations={str(k): str(v) for k, v in annotations.items()},
        memo=state,
        blind=True,
    )
    plan = reconciler.decide(given)  # blind, no manual action: no request (it runs on the loop)
    state.pop(WATCHED_BODY_KEY, None)
    outcomes = await aio.create_children(api, plan.children)
    if outcomes and outcomes[-1].action == "exists":
        state[WATCHED_BODY_KEY] = body
        state[CREATED_ON_THE_LOOP_KEY] = [o for o in outcomes if o.action == "created"]
        return None
    result = PassResult(owner=owner, requeue_after=plan.requeue_after)
    patch = status_patch({}, plan.status.model_dump(mode="json", by_alias=True, exclude_none=True))
    if patch is not None:
        await aio.patch_status(api, reconciler.plural, owner.namespace, owner.name, patch)
        result.status_written = True
    result.events = pass_events(outcome_events(outcomes), plan.events)
    result.unposted = await aio.post_events(
        api, event_reference(owner, body["apiVersion"]), result.events, now
    )
    return result


def pass_events(applied: Sequence[EventNote], decided: Sequence[EventNote]) -> list[EventNote]:
    """A pass's Events: what it did to the children (``applied``), then what the decision said.

    The pass that creates children is mostly the one whose phase changes because of them (a new
    object: ``JobCreated``, ``DeploymentCreated``), so the first Normal note of the decision is told
    in the ``ChildCreated`` Event rather than in one of its own: one API write instead of two, and
    ``kubectl describe`` still shows both (the phase's reason is in the status conditions too).
    Warnings always get their own Event. (Notes: ``Reason "message"``, Normal unless marked.)

    | applied          | decided                 | posted                                    |
    |------------------|-------------------------|-------------------------------------------|
    | ChildCreated "a" | JobCreated "b"          | ChildCreated "a; JobCreated: b"           |
    | ChildCreated "a" | JobFailed "b" (Warning) | ChildCreated "a", JobFailed "b" (Warning) |
    | ChildUpdated "a" | RollingOut "b"          | ChildUpdated "a", RollingOut "b"          |
    | -                | Running "b"             | Running "b"                               |
    """
    created = next((n for n in applied if n.reason == CHILD_CREATED), None)
    told = next((n for n in decided if n.type == "Normal"), None)
    if created is None or told is None:
        return [*applied, *decided]
    merged = EventNote(CHILD_CREATED, f"{created.message}; {told.reason}: {told.message}")
    return [merged if n is created else n for n in applied] + [n for n in decided if n is not told]


def event_reference(owner: Owner, api_version: str) -> dict[str, Any]:
    """Enough of the object for kopf to post an Event about it."""
    return {
        "apiVersion": api_version,
        "kind": owner.kind,
        "metadata": {"name": owner.name, "namespace": owner.namespace, "uid": owner.uid},
    }


async def reconcile_object(
    reconciler: Reconciler[Any, Any],
    context: OperatorContext,
    namespace: str,
    name: str,
    state: MutableMapping[str, Any],
) -> PassOutcome:
    """One pass from the work queue: measured, Events posted, the next pass's delay returned.

    The queue runs one pass at a time per object. ``state`` is the object's scratch across passes
    of this operator process. A Kubernetes API error is recorded and raised (the queue retries
    with backoff).
    """
    cluster = context.require_cluster()
    started = time.monotonic()
    api = context.async_api
    body = brand_new_body(state) if api is not None else None
    try:
        result = None
        if api is not None and body is not None:
            result = await first_pass_on_the_loop(reconciler, context, api, state, body)
        if result is None:
            result = await cluster.run(
                reconcile_pass,
                reconciler,
                cluster,
                context.settings,
                namespace=namespace,
                name=name,
                memo=state,
            )
    except ApiException as error:
        context.metrics.record(reconciler.kind, "error", time.monotonic() - started)
        context.metrics.record_error(reconciler.kind, f"HTTP{error.status}")
        raise
    except Exception as error:
        context.metrics.record(reconciler.kind, "error", time.monotonic() - started)
        context.metrics.record_error(reconciler.kind, type(error).__name__)
        raise
    if result.owner is None:
        context.metrics.control.forget_generation(reconciler.kind, namespace, name)
        return GONE
    context.metrics.control.generation(reconciler.kind, namespace, name, result.owner.generation)
    elapsed = time.monotonic() - started
    post_events_with_kopf(event_reference(result.owner, f"{GROUP}/{VERSION}"), result.unposted)
    context.metrics.record(reconciler.kind, "requeue" if result.requeue_after else "success", elapsed)
    if result.requeue_after is None:
        return None  # the resync interval
    # The finest requeue: a plan asking for "now" must not spin.
    return max(result.requeue_after, context.settings.timer_interval_seconds)


@dataclass(frozen=True)
class ObjectLoop:
    """One loop the work queue runs per object of a kind (see :func:`register_object_loops`)."""

    name: str
    run: LoopFn
    first_delay: Callable[[Settings], float] = lambda _: 0.0
    """How long after the object is first seen (created, or listed after a restart) it first runs."""
    keep_first_body: bool = False
    """Until the object's first pass (any loop) has started in this process, keep the newest watched
    body in this loop's state for that pass (it saves one read per new object, and per object after
    a restart); see :func:`reconcile_pass`."""


def register_object_loops(
    registry: kopf.OperatorRegistry, *, plural: str, kind: str, handler_id: str, loops: Sequence[ObjectLoop]
) -> None:
    """Drive ``loops`` for every object of ``plural`` from the operator's work queue.

    One ``kopf.on.event`` handler per kind, ``handler_id`` named ``<kind>_event`` (e.g.
    ``training_run_event``), however many loops the kind has: kopf's cost of invoking a handler is
    paid once per watch event. The handler (no finalizer, no annotations, no patch) turns watch
    events into nudges: a new object, a spec change (generation), an annotation change or a
    deletion. Status-only changes, mostly this operator's own writes, do not nudge; the queue's
    resync still looks.
    """

    async def on_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        context = operator_context(memo)
        queue = context.require_work()
        meta = body.get("metadata") or {}
        key = (kind, str(meta.get("namespace") or ""), str(meta.get("name")))
        if event.get("type") == "DELETED":
            queue.forget(key)
            return
        fingerprint = event_fingerprint(body)
        first_pass_pending = not queue.has_run(key)
        for loop in loops:
            queue.offer(
                key,
                loop.name,
                functools.partial(loop.run, context),
                fingerprint,
                first_delay=loop.first_delay(context.settings),
            )
            state = queue.state(key, loop.name)
            if loop.keep_first_body and first_pass_pending and state is not None:
                state[WATCHED_BODY_KEY] = event.get("object")

    kopf.on.event(GROUP, VERSION, plural, id=handler_id, registry=registry)(on_event)


def reconcile_loop(reconciler: Reconciler[Any, Any]) -> ObjectLoop:
    """The loop whose every pass is :func:`reconcile_object` with ``reconciler`` (TrainingRun,
    ModelPin), named after the kind and fed the watched body on its first pass."""

    async def run(
        context: OperatorContext, namespace: str, name: str, state: MutableMapping[str, Any]
    ) -> PassOutcome:
        return await reconcile_object(reconciler, context, namespace, name, state)

    return ObjectLoop(name=reconciler.kind, run=run, keep_first_body=True)


def register_reconciler(
    registry: kopf.OperatorRegistry,
    reconciler: Reconciler[Any, Any],
    handler_id: str,
    *,
    also: Sequence[ObjectLoop] = (),
) -> None:
    """A kind reconciled by :func:`reconcile_loop`, plus the kind's other loops (``also``)."""
    register_object_loops(
        registry,
        plural=reconciler.plural,
        kind=reconciler.kind,
        handler_id=handler_id,
        loops=[reconcile_loop(reconciler), *also],
    )
