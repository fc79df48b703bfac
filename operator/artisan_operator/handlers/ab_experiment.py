"""ABExperiment handlers: validation and an honest initial status (the control loop replaces the decision).

Deleting an ABExperiment clears the ``experiment.json`` routing entry it wrote into its target's routing
ConfigMap (that entry has no owner reference to the ABExperiment, so garbage collection cannot).
"""

from __future__ import annotations

from typing import Any

import kopf

from artisan_common.routing import EXPERIMENT_KEY
from artisan_operator.api.ab_experiment import KIND, PLURAL, ABExperimentSpec, ABExperimentStatus
from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.cluster import clear_routing_entry, observe_target
from artisan_operator.handlers.context import operator_context
from artisan_operator.handlers.reconcile import PassInput, Reconciler, reconcile, reconcile_when_due
from artisan_operator.policy.initial_status import decide_ab_experiment_initial
from artisan_operator.policy.plan import Plan
from artisan_operator.settings import Settings


def observe_and_decide(given: PassInput[ABExperimentSpec, ABExperimentStatus]) -> Plan[ABExperimentStatus]:
    target = observe_target(given.cluster, given.owner.namespace, given.spec.target_ref.name)
    return decide_ab_experiment_initial(
        given.spec, target, given.previous, generation=given.owner.generation, now=given.now
    )


RECONCILER = Reconciler(
    kind=KIND,
    plural=PLURAL,
    spec_model=ABExperimentSpec,
    status_model=ABExperimentStatus,
    invalid_phase="Invalid",
    decide=observe_and_decide,
)


async def ab_experiment_reconcile(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    await reconcile(RECONCILER, body, memo, logger)


async def ab_experiment_timer(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    await reconcile_when_due(RECONCILER, body, memo, logger)


async def ab_experiment_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
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
    kopf.on.create(*resource, id="ab_experiment_create", registry=registry)(ab_experiment_reconcile)
    kopf.on.update(*resource, id="ab_experiment_update", registry=registry)(ab_experiment_reconcile)
    kopf.on.resume(*resource, id="ab_experiment_resume", registry=registry)(ab_experiment_reconcile)
    kopf.on.delete(*resource, id="ab_experiment_delete", registry=registry)(ab_experiment_delete)
    kopf.timer(
        *resource,
        id="ab_experiment_timer",
        interval=settings.timer_interval_seconds,
        idle=settings.timer_idle_seconds or None,
        registry=registry,
    )(ab_experiment_timer)
