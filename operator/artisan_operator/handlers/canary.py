"""Canary control loop: a daemon per Canary runs :func:`canary_pass`; create/update/resume only nudge it.

One pass (blocking API calls on the thread pool, metric queries async):

1. read the Canary and its target ModelPin afresh; an invalid spec gets ``InvalidSpec`` and no action;
2. ``decide_canary``; if metrics are due, query them (Prometheus, or a direct scrape of the pods) and
   decide again with the same ``now`` and the samples;
3. apply, in the order that keeps users safe: a weight that goes down (an abort: weight 0) is written
   to the router first, before anything else; the canary fleet (pin config, Deployment, Service owned
   by the Canary) is ensured; a weight that goes up is written after the fleet exists; a promotion is
   recorded in the ModelPin's ``status.stable`` (the ModelPin loop then rolls the stable fleet to it),
   and the canary route and fleet stay until the stable Deployment serves the promoted revision;
4. the Canary status (the record of the step reached, the measurements, abort, promotion), then the
   removal of a consumed ``artisan.dev/action`` annotation, then the Events.

Every write compares first, so a pass repeated after a crash at any point changes nothing twice.
Deleting a Canary clears the ``canary.json`` routing entry it wrote (it has no owner reference).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from artisan_common.model import parse_duration
from artisan_common.routing import CANARY_KEY, Backend, CanaryRoute, serialize
from artisan_operator.api.canary import (
    ACTION_ANNOTATION,
    KIND,
    PLURAL,
    CanarySpec,
    CanaryStatus,
    MetricSpec,
)
from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.api.model_pin import PLURAL as MODEL_PIN_PLURAL
from artisan_operator.api.model_pin import ModelPinSpec, PinnedRevision
from artisan_operator.cluster import (
    ClusterClient,
    apply_plan,
    clear_routing_entry,
    patch_status,
    status_patch,
)
from artisan_operator.cluster.control import (
    patch_httproute_weights,
    patch_model_pin_status,
    patch_routing_key,
    pod_metrics_urls,
    read_routing,
    remove_annotation,
    scale_deployment_if_exists,
)
from artisan_operator.cluster.observe import read_stable_fleet
from artisan_operator.cluster.status import read_custom_object
from artisan_operator.handlers.context import OperatorContext, operator_context
from artisan_operator.handlers.control_loop import (
    metric_provider,
    nudge,
    post_events_with_kopf,
    run_control_loop,
)
from artisan_operator.handlers.reconcile import owner_from_body, parse_previous_status, utc_now
from artisan_operator.manifests.canary import (
    build_canary_deployment,
    build_canary_pin_configmap,
    build_canary_service,
    canary_deployment_name,
    canary_selector,
    canary_service_name,
    canary_url,
)
from artisan_operator.manifests.common import Owner
from artisan_operator.manifests.ensemble import (
    HTTP_PORT,
    FleetOverrides,
    ensemble_service_name,
    fleet_overrides,
    pin_revision,
    resolved_image,
    with_fleet_overrides,
)
from artisan_operator.metrics.providers import BUILTIN_PROMQL, ScrapeProvider, render_query
from artisan_operator.policy.analysis import MetricValue
from artisan_operator.policy.canary import (
    CanaryObservation,
    CanaryPlan,
    DueMetric,
    decide_canary,
    serving_revision,
)
from artisan_operator.policy.conditions import decide_invalid_spec, describe_validation_error
from artisan_operator.policy.initial_status import TargetObservation, decide_canary_initial
from artisan_operator.policy.plan import EnsureChild, EventNote
from artisan_operator.settings import Settings

SCRAPER_KEY = "canary_scraper"
MIN_QUERY_WINDOW_SECONDS = 30
"""Range of rate()/increase() in builtin queries: at least this, so a window holds several scrapes."""


def query_window(metric: MetricSpec) -> str:
    return f"{max(int(parse_duration(metric.interval)), MIN_QUERY_WINDOW_SECONDS)}s"


def canary_scraper(memo: Any) -> ScrapeProvider:
    """This Canary's scrape provider (kopf's memo is per object): it keeps the counter baselines."""
    scraper: ScrapeProvider = memo.setdefault(SCRAPER_KEY, ScrapeProvider(targets=list))
    return scraper


async def measure(
    context: OperatorContext,
    memo: Any,
    due: tuple[DueMetric, ...],
    substitutions: Mapping[str, str],
    scrape_targets: list[str],
    *,
    now: datetime,
) -> dict[str, MetricValue]:
    """Query every due metric concurrently; a provider failure is a sample with an error.

    Without Prometheus the canary fleet's pods are scraped (``scrape_targets``): the builtin
    errorRate is computed from their own request counters (see ``metrics.providers``).
    """
    scraper = canary_scraper(memo)
    scraper.targets = lambda: scrape_targets
    scraper.timeout = context.settings.metric_query_timeout_seconds

    async def one(item: DueMetric) -> MetricValue:
        metric = item.metric
        values = {**substitutions, "window": query_window(metric)}
        if metric.provider.prometheus is not None:
            query = render_query(metric.provider.prometheus.query, values)
            provider = metric_provider(context, metric.provider.prometheus.address)
            return await (provider or scraper).query(query)
        assert metric.provider.builtin is not None
        name = metric.provider.builtin.name
        provider = metric_provider(context)
        if provider is None:
            return await scraper.builtin(name, item.key, now=now, since=item.since)
        return await provider.query(render_query(BUILTIN_PROMQL[name], values))

    samples = await asyncio.gather(*(one(item) for item in due))
    return {item.key: sample for item, sample in zip(due, samples, strict=True)}


def observe(
    cluster: ClusterClient, settings: Settings, namespace: str, name: str
) -> tuple[dict[str, Any], dict[str, Any] | None, str | None] | None:
    """The Canary, its target ModelPin and the revision the stable fleet serves (``serving_revision``),
    read afresh (None: the Canary is gone or deleting)."""
    body = read_custom_object(cluster, PLURAL, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    target = ((body.get("spec") or {}).get("targetRef") or {}).get("name")
    pin = read_custom_object(cluster, MODEL_PIN_PLURAL, namespace, target) if target else None
    fleet = read_stable_fleet(cluster, namespace, str(target)) if pin is not None else None
    serving = serving_revision(fleet)
    return body, pin, serving


def observation_of(
    body: Mapping[str, Any], pin: Mapping[str, Any] | None, settings: Settings, previous: CanaryStatus
) -> tuple[CanaryObservation, ModelPinSpec | None]:
    meta = body["metadata"]
    action = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
    generation = meta.get("generation")
    pin_spec: ModelPinSpec | None = None
    desired = stable = None
    replicas = 1
    if pin is not None:
        try:
            pin_spec = ModelPinSpec.model_validate(pin.get("spec") or {})
        except ValidationError:
            pin_spec = None  # the ModelPin reports its own InvalidSpec; nothing to roll out
        if pin_spec is not None:
            desired = pin_revision(pin_spec, resolved_image(pin_spec, settings.ensemble_image))
            replicas = pin_spec.replicas
        stable = ((pin.get("status") or {}).get("stable") or {}).get("revision")
    return (
        CanaryObservation(
            desired_revision=desired,
            stable_revision=stable,
            replicas=replicas,
            generation=int(generation) if generation is not None else None,
            previous=previous,
            action=action,
        ),
        pin_spec,
    )


def target_observation(name: str, pin: Mapping[str, Any] | None) -> TargetObservation:
    if pin is None:
        return TargetObservation(name=name, exists=False)
    status = pin.get("status") or {}
    return TargetObservation(
        name=name,
        exists=True,
        phase=status.get("phase"),
        revision=status.get("revision"),
        stable_revision=(status.get("stable") or {}).get("revision"),
    )


def apply_router(
    cluster: ClusterClient, spec: CanarySpec, owner: Owner, pin: str, plan: CanaryPlan
) -> list[EventNote]:
    """Write the canary weight to the router of the spec (the replica router needs nothing)."""
    notes: list[EventNote] = []
    router = spec.traffic_routing.router
    if router == "gateway":
        route = None
        if plan.weight is not None and plan.status.canary_revision is not None:
            route = CanaryRoute(
                backend=Backend(url=canary_url(pin, owner.namespace), revision=plan.status.canary_revision),
                weight=plan.weight,
                canary=owner.name,
            )
        if route is None:
            # Only clear our own entry (another Canary may target the same ModelPin by mistake).
            current = (read_routing(cluster, owner.namespace, pin) or {}).get(CANARY_KEY, "null")
            if current != "null" and f'"canary":"{owner.name}"' not in current:
                return notes
        patch_routing_key(cluster, owner.namespace, pin, CANARY_KEY, serialize(route))
    elif router == "gatewayAPI":
        assert spec.traffic_routing.gateway_api is not None
        try:
            patch_httproute_weights(
                cluster,
                owner.namespace,
                spec.traffic_routing.gateway_api.http_route,
                stable=ensemble_service_name(pin),
                canary=canary_service_name(pin),
                weight=plan.weight or 0,
            )
        except LookupError as error:
            notes.append(EventNote("RouterNotReady", str(error), "Warning"))
    return notes


def canary_children(
    owner: Owner,
    pin: str,
    pin_spec: ModelPinSpec,
    settings: Settings,
    replicas: int,
    *,
    overrides: FleetOverrides,
) -> tuple[EnsureChild, ...]:
    """The canary fleet; the ModelPin's fleet overrides (emergency stop, restart) apply to it too."""
    image = resolved_image(pin_spec, settings.ensemble_image)
    deployment = build_canary_deployment(owner, pin, pin_spec, image=image, replicas=replicas)
    return (
        EnsureChild(build_canary_pin_configmap(owner, pin, pin_spec)),
        EnsureChild(with_fleet_overrides(deployment, overrides)),
        EnsureChild(build_canary_service(owner, pin)),
    )


def stable_record(
    pin_spec: ModelPinSpec, revision: str, settings: Settings, pin: Mapping[str, Any]
) -> dict[str, Any]:
    """The ModelPin status fields that make ``revision`` stable (the old one moves to history)."""
    now = utc_now()
    record = PinnedRevision(
        revision=revision,
        models=pin_spec.models,
        policy=pin_spec.policy,
        image=resolved_image(pin_spec, settings.ensemble_image),
        time=now,
    )
    status = pin.get("status") or {}
    history = list(status.get("history") or [])
    if status.get("stable"):
        history = [*history, status["stable"]][-10:]
    return {"stable": record.model_dump(mode="json", by_alias=True, exclude_none=True), "history": history}


def apply_canary_plan(
    cluster: ClusterClient,
    *,
    settings: Settings,
    body: dict[str, Any],
    pin_body: Mapping[str, Any] | None,
    pin_spec: ModelPinSpec | None,
    spec: CanarySpec,
    plan: CanaryPlan,
) -> list[EventNote]:
    """Apply one plan (see the module docstring for the order); returns the Events to post."""
    owner = owner_from_body(KIND, body)
    pin = spec.target_ref.name
    previous = parse_previous_status(CanaryStatus, body.get("status"))
    notes: list[EventNote] = []
    going_down = plan.weight is None or plan.weight < previous.weight
    if going_down:
        notes += apply_router(cluster, spec, owner, pin, plan)
    if pin_spec is not None and (plan.canary_replicas > 0 or plan.weight is not None or plan.promote):
        overrides = fleet_overrides((pin_body or {}).get("metadata", {}).get("annotations"))
        children = canary_children(owner, pin, pin_spec, settings, plan.canary_replicas, overrides=overrides)
        apply_plan(cluster, children, owner.uid)
    else:
        # No canary: an existing canary fleet is scaled to zero (none is created just to be empty).
        scale_deployment_if_exists(cluster, owner.namespace, canary_deployment_name(pin), 0)
    if not going_down:
        notes += apply_router(cluster, spec, owner, pin, plan)
    if plan.promote is not None and pin_spec is not None and pin_body is not None:
        stable = ((pin_body.get("status") or {}).get("stable") or {}).get("revision")
        if stable != plan.promote:
            patch_model_pin_status(
                cluster, owner.namespace, pin, stable_record(pin_spec, plan.promote, settings, pin_body)
            )
    desired = plan.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    patch = status_patch(body.get("status") or {}, desired)
    if patch is not None:
        patch_status(cluster, PLURAL, owner.namespace, owner.name, patch)
    return notes


def remove_action(cluster: ClusterClient, namespace: str, name: str) -> None:
    remove_annotation(cluster, PLURAL, namespace, name, ACTION_ANNOTATION)


async def canary_pass(context: OperatorContext, namespace: str, name: str, memo: Any) -> float | None:
    """One pass of the Canary loop; returns the seconds until the next one."""
    cluster = context.require_cluster()
    settings = context.settings
    seen = await cluster.run(observe, cluster, settings, namespace, name)
    if seen is None:
        return None
    body, pin_body, serving = seen
    # Full precision (not second-truncated): measurement intervals of a second or two stay exact.
    now = datetime.now(tz=UTC)
    previous = parse_previous_status(CanaryStatus, body.get("status"))
    owner = owner_from_body(KIND, body)
    context.metrics.control.generation(KIND, namespace, name, owner.generation)
    try:
        spec = CanarySpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        invalid = decide_invalid_spec(
            previous,
            phase="Degraded",
            message=describe_validation_error(error),
            generation=owner.generation,
            now=now,
        )
        desired = invalid.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        patch = status_patch(body.get("status") or {}, desired)
        if patch is not None:
            await cluster.run(patch_status, cluster, PLURAL, namespace, name, patch)
        post_events_with_kopf(body, invalid.events)
        return None
    observation, pin_spec = observation_of(body, pin_body, settings, previous)
    observation = replace(
        observation, baselines=canary_scraper(memo).baselines(), stable_ready_revision=serving
    )
    if observation.desired_revision is None or observation.stable_revision is None:
        # No target yet, or its first revision is not serving: nothing to roll out, nothing to route.
        target = target_observation(spec.target_ref.name, pin_body)
        initial = decide_canary_initial(spec, target, previous, generation=owner.generation, now=now)
        desired = initial.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        patch = status_patch(body.get("status") or {}, desired)
        if patch is not None:
            await cluster.run(patch_status, cluster, PLURAL, namespace, name, patch)
        post_events_with_kopf(body, initial.events)
        return initial.requeue_after
    plan = decide_canary(spec, observation, now)
    if plan.due:
        pin = spec.target_ref.name
        targets = await cluster.run(pod_metrics_urls, cluster, namespace, canary_selector(pin), HTTP_PORT)
        substitutions = {
            "namespace": namespace,
            "modelpin": pin,
            "canary": observation.desired_revision or "",
            "stable": observation.stable_revision or "",
        }
        samples = await measure(context, memo, plan.due, substitutions, targets, now=now)
        plan = decide_canary(spec, replace(observation, samples=samples), now)
    notes = await cluster.run(
        apply_canary_plan,
        cluster,
        settings=settings,
        body=body,
        pin_body=pin_body,
        pin_spec=pin_spec,
        spec=spec,
        plan=plan,
    )
    if plan.consumed_action:
        await cluster.run(remove_action, cluster, namespace, name)
    record_gauges(context, namespace, name, plan)
    post_events_with_kopf(body, [*plan.events, *notes])
    return plan.requeue_after


def record_gauges(context: OperatorContext, namespace: str, name: str, plan: CanaryPlan) -> None:
    context.metrics.control.canary(
        namespace,
        name,
        weight=plan.weight or 0,
        aborted=plan.status.aborted_at is not None,
        step=plan.status.current_step_index or 0,
    )


async def canary_daemon(
    name: str, namespace: str | None, memo: kopf.Memo, stopped: kopf.DaemonStopped, logger: Any, **_: Any
) -> None:
    assert namespace is not None  # Canaries are namespaced
    await run_control_loop(
        KIND, canary_pass, namespace=namespace, name=name, memo=memo, stopped=stopped, logger=logger
    )


async def canary_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    target = ((body.get("spec") or {}).get("targetRef") or {}).get("name")
    if not target:
        return
    context = operator_context(memo)
    cluster = context.require_cluster()
    meta = body["metadata"]
    cleared = await cluster.run(
        clear_routing_entry,
        cluster,
        meta["namespace"],
        target,
        key=CANARY_KEY,
        field="canary",
        owner_name=meta["name"],
    )
    context.metrics.control.forget_canary(meta["namespace"], meta["name"])
    if cleared:
        kopf.event(body, type="Normal", reason="RoutingCleared", message=f"cleared {CANARY_KEY} of {target}")


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    resource = (GROUP, VERSION, PLURAL)
    kopf.on.create(*resource, id="canary_create", registry=registry)(nudge)
    kopf.on.update(*resource, id="canary_update", registry=registry)(nudge)
    kopf.on.resume(*resource, id="canary_resume", registry=registry)(nudge)
    kopf.on.delete(*resource, id="canary_delete", registry=registry)(canary_delete)
    kopf.daemon(*resource, id="canary_daemon", cancellation_timeout=5.0, registry=registry)(canary_daemon)
