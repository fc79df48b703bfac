"""ModelPin handlers: create/update/resume nudge a pass at once; the timer keeps it level-triggered."""

from __future__ import annotations

from typing import Any

import kopf

from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.api.model_pin import KIND, PLURAL, ModelPinSpec, ModelPinStatus
from artisan_operator.cluster import observe_model_pin
from artisan_operator.handlers.reconcile import PassInput, Reconciler, reconcile, reconcile_when_due
from artisan_operator.manifests.ensemble import fleet_overrides
from artisan_operator.policy.model_pin import decide_model_pin
from artisan_operator.policy.plan import Plan
from artisan_operator.settings import Settings


def observe_and_decide(given: PassInput[ModelPinSpec, ModelPinStatus]) -> Plan[ModelPinStatus]:
    observation = observe_model_pin(given.cluster, given.owner.namespace, given.owner.name)
    return decide_model_pin(
        given.owner,
        given.spec,
        observation,
        given.previous,
        image=given.settings.ensemble_image,
        now=given.now,
        overrides=fleet_overrides(given.annotations),
    )


RECONCILER = Reconciler(
    kind=KIND,
    plural=PLURAL,
    spec_model=ModelPinSpec,
    status_model=ModelPinStatus,
    invalid_phase="Degraded",
    decide=observe_and_decide,
)


async def model_pin_reconcile(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    await reconcile(RECONCILER, body, memo, logger)


async def model_pin_timer(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    await reconcile_when_due(RECONCILER, body, memo, logger)


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    resource = (GROUP, VERSION, PLURAL)
    kopf.on.create(*resource, id="model_pin_create", registry=registry)(model_pin_reconcile)
    kopf.on.update(*resource, id="model_pin_update", registry=registry)(model_pin_reconcile)
    kopf.on.resume(*resource, id="model_pin_resume", registry=registry)(model_pin_reconcile)
    kopf.timer(
        *resource,
        id="model_pin_timer",
        interval=settings.timer_interval_seconds,
        idle=settings.timer_idle_seconds or None,
        registry=registry,
    )(model_pin_timer)
