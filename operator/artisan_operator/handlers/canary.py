"""Canary handlers: validation and an honest initial status (the control loop replaces the decision).

Deleting a Canary clears the ``canary.json`` routing entry it wrote into its target's routing
ConfigMap (that entry has no owner reference to the Canary, so garbage collection cannot).
"""

from __future__ import annotations

from typing import Any

import kopf

from artisan_common.routing import CANARY_KEY
from artisan_operator.api.canary import KIND, PLURAL, CanarySpec, CanaryStatus
from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.cluster import clear_routing_entry, observe_target
from artisan_operator.handlers.context import operator_context
from artisan_operator.handlers.reconcile import PassInput, Reconciler, reconcile, reconcile_when_due
from artisan_operator.policy.initial_status import decide_canary_initial
from artisan_operator.policy.plan import Plan
from artisan_operator.settings import Settings


def observe_and_decide(given: PassInput[CanarySpec, CanaryStatus]) -> Plan[CanaryStatus]:
    target = observe_target(given.cluster, given.owner.namespace, given.spec.target_ref.name)
    return decide_canary_initial(
        given.spec, target, given.previous, generation=given.owner.generation, now=given.now
    )


RECONCILER = Reconciler(
    kind=KIND,
    plural=PLURAL,
    spec_model=CanarySpec,
    status_model=CanaryStatus,
    invalid_phase="Degraded",
    decide=observe_and_decide,
)


async def canary_reconcile(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    await reconcile(RECONCILER, body, memo, logger)


async def canary_timer(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    await reconcile_when_due(RECONCILER, body, memo, logger)


async def canary_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    target = ((body.get("spec") or {}).get("targetRef") or {}).get("name")
    if not target:
        return
    cluster = operator_context(memo).require_cluster()
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
    if cleared:
        kopf.event(body, type="Normal", reason="RoutingCleared", message=f"cleared {CANARY_KEY} of {target}")


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    resource = (GROUP, VERSION, PLURAL)
    kopf.on.create(*resource, id="canary_create", registry=registry)(canary_reconcile)
    kopf.on.update(*resource, id="canary_update", registry=registry)(canary_reconcile)
    kopf.on.resume(*resource, id="canary_resume", registry=registry)(canary_reconcile)
    kopf.on.delete(*resource, id="canary_delete", registry=registry)(canary_delete)
    kopf.timer(
        *resource,
        id="canary_timer",
        interval=settings.timer_interval_seconds,
        idle=settings.timer_idle_seconds or None,
        registry=registry,
    )(canary_timer)
