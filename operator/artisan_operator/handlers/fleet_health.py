"""Fleet health loop: a work-queue loop per ModelPin reads each ensemble pod's model health and downshifts.

Every ``fleet_interval_seconds`` (sooner when a hold or an outage timer ends) one pass:

1. reads the ModelPin afresh and every stable-fleet pod's ``model_health_status{role}`` for each pinned
   role (the ensemble labels each pinned model's series with its ``role`` and ``model`` name): from
   Prometheus (series labelled ``namespace``, ``service="<pin>-ensemble"`` and ``pod``, as a
   ServiceMonitor labels them) or, with no Prometheus configured, by scraping each pod's /metrics;
2. ``assess_fleet`` → mode ceiling, downshift record, per-model health, ``Downshifted`` condition;
3. writes the ceiling into ``pin.json`` of the routing table at once (the gateway caps modes by it),
   then those ModelPin status fields (the ModelPin reconcile carries them and keeps ``pin.json`` in
   step), removes a consumed ``artisan.dev/downshift`` annotation, and posts the Events.

A metric provider error changes nothing (no health data is not evidence of an outage).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from artisan_common.routing import PIN_KEY
from artisan_operator.api.model_pin import (
    DOWNSHIFT_ANNOTATION,
    KIND,
    PLURAL,
    ModelPinSpec,
    ModelPinStatus,
)
from artisan_operator.cluster import ClusterClient
from artisan_operator.cluster.control import (
    patch_model_pin_status,
    patch_routing_key,
    pods_metrics_urls_by_name,
    read_routing,
    remove_annotation,
)
from artisan_operator.cluster.status import read_custom_object
from artisan_operator.handlers.context import OperatorContext
from artisan_operator.handlers.control_loop import measured, metric_provider, post_events_with_kopf
from artisan_operator.handlers.reconcile import ObjectLoop, parse_previous_status
from artisan_operator.manifests.common import Owner, selector_labels
from artisan_operator.manifests.ensemble import APP_NAME, HTTP_PORT, TRACK_LABEL, ensemble_service_name
from artisan_operator.metrics.providers import ScrapeProvider
from artisan_operator.policy.fleet_health import FleetObservation, FleetPlan, assess_fleet

HEALTH_METRIC = "model_health_status"
RETRY_SECONDS = 10.0
CONFLICT_RETRY_SECONDS = 0.2  # another writer updated the ModelPin in between: look again soon

PodHealth = dict[str, dict[str, bool]]


def pinned_roles(spec: ModelPinSpec) -> list[str]:
    """The roles with a pinned model: the ``role`` label values of their health series."""
    return [role for role in ("primary", "validator", "creative") if getattr(spec.models, role) is not None]


async def health_from_prometheus(
    context: OperatorContext, namespace: str, pin: str, roles: list[str]
) -> PodHealth | str:
    provider = metric_provider(context)
    assert provider is not None
    service = ensemble_service_name(pin)
    pods: PodHealth = {}
    replies = await asyncio.gather(
        *(
            provider.query_by(
                f'{HEALTH_METRIC}{{namespace="{namespace}",service="{service}",role="{role}"}}', "pod"
            )
            for role in roles
        )
    )
    for role, reply in zip(roles, replies, strict=True):
        if isinstance(reply, str):
            return reply
        for pod, value in reply.items():
            pods.setdefault(pod, {})[role] = value >= 1
    return pods


async def health_from_scrape(
    context: OperatorContext, namespace: str, pin: str, roles: list[str]
) -> PodHealth | str:
    cluster = context.require_cluster()
    identity = Owner("ModelPin", pin, namespace, "")
    selector = {**selector_labels(identity, name=APP_NAME, component="ensemble"), TRACK_LABEL: "stable"}
    urls = await cluster.run(pods_metrics_urls_by_name, cluster, namespace, selector, HTTP_PORT)
    pods: PodHealth = {}
    for pod, url in urls.items():
        scraper = ScrapeProvider(
            targets=functools.partial(list, [url]), timeout=context.settings.metric_query_timeout_seconds
        )
        reply = await scraper.query_by(HEALTH_METRIC, "role")
        if isinstance(reply, str):
            continue  # an unreachable pod reports nothing (its readiness probe handles it)
        pods[pod] = {role: value >= 1 for role, value in reply.items() if role in roles}
    return pods


def status_fields(plan: FleetPlan) -> dict[str, Any]:
    """The ModelPin status fields the fleet loop owns, in wire form."""
    status = ModelPinStatus(
        mode_ceiling=plan.mode_ceiling,
        downshift=plan.downshift,
        model_health=plan.model_health,
        conditions=plan.conditions,
    ).model_dump(mode="json", by_alias=True, exclude_none=True)
    return {
        "modeCeiling": status["modeCeiling"],
        "downshift": status.get("downshift"),
        "modelHealth": status.get("modelHealth", []),
        "conditions": status.get("conditions", []),
    }


def apply_fleet_plan(cluster: ClusterClient, body: Mapping[str, Any], plan: FleetPlan) -> bool:
    """Write the plan; False when the ModelPin changed since ``body`` was read (nothing recorded:
    the caller looks again at once, so a condition another writer just set is never dropped)."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    routing = read_routing(cluster, namespace, name) or {}
    if PIN_KEY in routing:
        route = json.loads(routing[PIN_KEY])
        if route.get("modeCeiling") != plan.mode_ceiling:
            route["modeCeiling"] = plan.mode_ceiling
            patch_routing_key(
                cluster, namespace, name, PIN_KEY, json.dumps(route, sort_keys=True, separators=(",", ":"))
            )
    fields = status_fields(plan)
    current = body.get("status") or {}
    if any(current.get(key) != value for key, value in fields.items()) and not patch_model_pin_status(
        cluster, namespace, name, fields, resource_version=meta.get("resourceVersion")
    ):
        return False
    if plan.consumed_annotation:
        remove_annotation(cluster, PLURAL, namespace, name, DOWNSHIFT_ANNOTATION)
    return True


async def fleet_pass(context: OperatorContext, namespace: str, name: str, memo: Any) -> float | None:
    cluster = context.require_cluster()
    body = await cluster.run(read_custom_object, cluster, PLURAL, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec = ModelPinSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None  # the ModelPin reconcile reports InvalidSpec
    roles = pinned_roles(spec)
    if context.settings.prometheus_url:
        pods = await health_from_prometheus(context, namespace, name, roles)
    else:
        pods = await health_from_scrape(context, namespace, name, roles)
    if isinstance(pods, str):
        context.metrics.record_error("ModelPinFleet", "MetricsUnavailable")
        return RETRY_SECONDS
    previous = parse_previous_status(ModelPinStatus, body.get("status"))
    generation = body["metadata"].get("generation")
    observation = FleetObservation(
        pods=pods,
        downshift=previous.downshift,
        model_health=previous.model_health,
        conditions=previous.conditions,
        annotation=(body["metadata"].get("annotations") or {}).get(DOWNSHIFT_ANNOTATION),
        generation=int(generation) if generation is not None else None,
    )
    # Full precision (not second-truncated): unhealthyForSeconds and holdSeconds of a second or two
    # stay exact whenever in the second the pass runs.
    plan = assess_fleet(spec.models, spec.downshift, observation, datetime.now(tz=UTC))
    if not await cluster.run(apply_fleet_plan, cluster, body, plan):
        return CONFLICT_RETRY_SECONDS  # Events are posted by the pass whose status write lands
    context.metrics.control.downshifted.labels(namespace, name).set(1 if plan.downshift else 0)
    post_events_with_kopf(body, plan.events)
    interval = context.settings.fleet_interval_seconds
    return interval if plan.requeue_after is None else min(plan.requeue_after, interval)


fleet_health_pass = measured("ModelPinFleet", fleet_pass)


FLEET_LOOP = ObjectLoop(
    name="ModelPinFleet",
    run=fleet_health_pass,
    # Nothing to assess before the fleet has pods: a new ModelPin's first look is one interval away.
    first_delay=lambda current: current.fleet_interval_seconds,
)
"""The fleet-health loop of every ModelPin (registered with its reconcile loop, one kopf handler)."""


__all__ = ["FLEET_LOOP", "KIND", "fleet_health_pass"]
