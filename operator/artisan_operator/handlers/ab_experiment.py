"""ABExperiment control loop: a daemon per experiment analyses the gateway's per-variant statistics.

Every ``experiment_interval_seconds`` (and at once after a create/update nudge) one pass:

1. reads the ABExperiment and its target ModelPin afresh (no target: the honest initial status);
2. reads n, Σx, Σx² per variant of the primary metric, and of the metrics the guardrails need, from
   Prometheus (``sum by (variant)`` over the gateway's ``artisan_variant_*_total`` counters) or, with no
   Prometheus configured, from a direct scrape of the gateway pods; and the requests assigned to
   each variant (``artisan_variant_assignments_total``) for the sample-ratio-mismatch test (the
   primary metric's counts stand in when the gateway does not export it, as the status says);
3. ``assess_experiment`` → status, routing entry, Events; the entry is written to ``experiment.json``
   of the target's routing table (only our own entry is ever cleared), then the status, then Events.

A provider error leaves everything as it is and retries (the statistics are cumulative counters, so
nothing is lost by waiting). Deleting an ABExperiment clears the entry it wrote.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from artisan_common.routing import EXPERIMENT_KEY, serialize
from artisan_operator.api.ab_experiment import KIND, PLURAL, ABExperimentSpec, ABExperimentStatus
from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.api.model_pin import PLURAL as MODEL_PIN_PLURAL
from artisan_operator.cluster import ClusterClient, clear_routing_entry, patch_status, status_patch
from artisan_operator.cluster.control import patch_routing_key, pod_metrics_urls, read_routing
from artisan_operator.cluster.status import read_custom_object
from artisan_operator.handlers.context import OperatorContext, operator_context
from artisan_operator.handlers.control_loop import (
    metric_provider,
    nudge,
    post_events_with_kopf,
    run_control_loop,
)
from artisan_operator.handlers.reconcile import owner_from_body, parse_previous_status, utc_now
from artisan_operator.metrics.providers import (
    MetricProvider,
    ScrapeProvider,
    variant_assignments,
    variant_statistics,
)
from artisan_operator.policy.ab_experiment import (
    GUARDRAIL_SOURCES,
    ExperimentObservation,
    ExperimentPlan,
    assess_experiment,
    guardrail_values,
)
from artisan_operator.policy.conditions import decide_invalid_spec, describe_validation_error
from artisan_operator.policy.initial_status import TargetObservation, decide_ab_experiment_initial
from artisan_operator.policy.statistics import SufficientStats
from artisan_operator.settings import Settings

GATEWAY_SELECTOR = {"app.kubernetes.io/name": "artisan-gateway"}
"""Pods scraped for the per-variant counters when no Prometheus is configured."""
GATEWAY_PORT = 8080
RETRY_SECONDS = 10.0


def observe(cluster: ClusterClient, namespace: str, name: str) -> tuple[dict[str, Any], bool] | None:
    body = read_custom_object(cluster, PLURAL, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    target = ((body.get("spec") or {}).get("targetRef") or {}).get("name")
    exists = (
        isinstance(target, str)
        and read_custom_object(cluster, MODEL_PIN_PLURAL, namespace, target) is not None
    )
    return body, exists


async def read_statistics(
    provider: MetricProvider, spec: ABExperimentSpec, name: str, prometheus: bool
) -> dict[str, dict[str, SufficientStats]] | str:
    """Recorded metric → variant → statistics, for the primary metric and the guardrails' sources."""
    wanted = {spec.metrics.primary.name, *(GUARDRAIL_SOURCES[g.name] for g in spec.metrics.guardrails)}
    recorded: dict[str, dict[str, SufficientStats]] = {}
    for metric in sorted(wanted):
        stats = await variant_statistics(provider, name, metric, prometheus=prometheus)
        if isinstance(stats, str):
            return stats
        recorded[metric] = stats
    return recorded


def apply_experiment_plan(
    cluster: ClusterClient, body: Mapping[str, Any], spec: ABExperimentSpec, plan: ExperimentPlan
) -> None:
    owner = owner_from_body(KIND, body)
    pin = spec.target_ref.name
    route = plan.route
    if route is not None:  # an empty spec salt stands for "<namespace>/<name>" (see AssignmentSpec.salt)
        route = route.model_copy(update={"salt": spec.assignment.effective_salt(owner.namespace, owner.name)})
    value = serialize(route)
    current = (read_routing(cluster, owner.namespace, pin) or {}).get(EXPERIMENT_KEY, "null")
    ours = current == "null" or _entry_owner(current) == owner.name
    if ours:
        patch_routing_key(cluster, owner.namespace, pin, EXPERIMENT_KEY, value)
    desired = plan.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    patch = status_patch(body.get("status") or {}, desired)
    if patch is not None:
        patch_status(cluster, PLURAL, owner.namespace, owner.name, patch)


def _entry_owner(raw: str) -> str | None:
    try:
        entry = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return str(entry.get("experiment")) if isinstance(entry, dict) else None


async def ab_experiment_pass(context: OperatorContext, namespace: str, name: str, memo: Any) -> float | None:
    cluster = context.require_cluster()
    settings = context.settings
    seen = await cluster.run(observe, cluster, namespace, name)
    if seen is None:
        return None
    body, target_exists = seen
    now = utc_now()
    owner = owner_from_body(KIND, body)
    context.metrics.control.generation(KIND, namespace, name, owner.generation)
    previous = parse_previous_status(ABExperimentStatus, body.get("status"))
    try:
        spec = ABExperimentSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        invalid = decide_invalid_spec(
            previous,
            phase="Invalid",
            message=describe_validation_error(error),
            generation=owner.generation,
            now=now,
        )
        await _write_status(cluster, body, invalid.status)
        post_events_with_kopf(body, invalid.events)
        return None
    if not target_exists:
        target = TargetObservation(name=spec.target_ref.name, exists=False)
        initial = decide_ab_experiment_initial(spec, target, previous, generation=owner.generation, now=now)
        await _write_status(cluster, body, initial.status)
        post_events_with_kopf(body, initial.events)
        return initial.requeue_after
    provider = metric_provider(context)
    prometheus = provider is not None
    if provider is None:
        targets = await cluster.run(pod_metrics_urls, cluster, namespace, GATEWAY_SELECTOR, GATEWAY_PORT)
        provider = ScrapeProvider(targets=lambda: targets, timeout=settings.metric_query_timeout_seconds)
    recorded = await read_statistics(provider, spec, name, prometheus)
    assigned = await variant_assignments(provider, name, prometheus)
    if isinstance(assigned, str) and not isinstance(recorded, str):
        recorded = assigned
    if isinstance(recorded, str) or isinstance(assigned, str):
        context.metrics.record_error(KIND, "MetricsUnavailable")
        if not any(v.n for v in previous.variants) and previous.phase == "Running":
            # Nothing measured yet: say so honestly (the statistics are cumulative; nothing is lost).
            target = TargetObservation(name=spec.target_ref.name, exists=True)
            initial = decide_ab_experiment_initial(
                spec, target, previous, generation=owner.generation, now=now
            )
            message = f"{initial.status.message}; statistics unavailable: {recorded}"
            await _write_status(cluster, body, initial.status.model_copy(update={"message": message}))
            post_events_with_kopf(body, initial.events)
        return RETRY_SECONDS
    observation = ExperimentObservation(
        primary=recorded.get(spec.metrics.primary.name, {}),
        guardrails=guardrail_values(spec, recorded),
        # Absent counter: None, and the SRM test falls back to the primary metric's counts.
        assignments=assigned or None,
        generation=owner.generation,
        previous=previous if body.get("status") else None,
    )
    plan = assess_experiment(spec, name, observation, now)
    await cluster.run(apply_experiment_plan, cluster, body, spec, plan)
    context.metrics.control.experiment_srm.labels(namespace, name).set(
        1 if plan.status.phase == "Invalid" and plan.status.srm_p_value is not None else 0
    )
    post_events_with_kopf(body, plan.events)
    if plan.status.phase != "Running":
        return None  # concluded: the resync keeps the routing entry asserted
    return settings.experiment_interval_seconds


async def _write_status(cluster: ClusterClient, body: Mapping[str, Any], status: ABExperimentStatus) -> None:
    meta = body["metadata"]
    desired = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    patch = status_patch(body.get("status") or {}, desired)
    if patch is not None:
        await cluster.run(patch_status, cluster, PLURAL, meta["namespace"], meta["name"], patch)


async def ab_experiment_daemon(
    name: str, namespace: str | None, memo: kopf.Memo, stopped: kopf.DaemonStopped, logger: Any, **_: Any
) -> None:
    assert namespace is not None  # ABExperiments are namespaced
    await run_control_loop(
        KIND, ab_experiment_pass, namespace=namespace, name=name, memo=memo, stopped=stopped, logger=logger
    )


async def ab_experiment_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    target = ((body.get("spec") or {}).get("targetRef") or {}).get("name")
    if not target:
        return
    context = operator_context(memo)
    cluster = context.require_cluster()
    meta = body["metadata"]
    context.metrics.control.forget_generation(KIND, meta["namespace"], meta["name"])
    cleared = await cluster.run(
        clear_routing_entry,
        cluster,
        meta["namespace"],
        target,
        key=EXPERIMENT_KEY,
        field="experiment",
        owner_name=meta["name"],
    )
    if cleared:
        kopf.event(
            body, type="Normal", reason="RoutingCleared", message=f"cleared {EXPERIMENT_KEY} of {target}"
        )


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    resource = (GROUP, VERSION, PLURAL)
    kopf.on.create(*resource, id="ab_experiment_create", registry=registry)(nudge)
    kopf.on.update(*resource, id="ab_experiment_update", registry=registry)(nudge)
    kopf.on.resume(*resource, id="ab_experiment_resume", registry=registry)(nudge)
    kopf.on.delete(*resource, id="ab_experiment_delete", registry=registry)(ab_experiment_delete)
    kopf.daemon(*resource, id="ab_experiment_daemon", cancellation_timeout=5.0, registry=registry)(
        ab_experiment_daemon
    )
