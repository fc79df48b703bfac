"""TrainingRun handlers: create/update/resume nudge a pass at once; the timer keeps it level-triggered."""

from __future__ import annotations

from typing import Any

import kopf

from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.api.training_run import KIND, PLURAL, TrainingRunSpec, TrainingRunStatus
from artisan_operator.cluster import observe_training_run
from artisan_operator.handlers.reconcile import PassInput, Reconciler, reconcile, reconcile_when_due
from artisan_operator.policy.plan import Plan
from artisan_operator.policy.training_run import decide_training_run
from artisan_operator.settings import Settings


def observe_and_decide(given: PassInput[TrainingRunSpec, TrainingRunStatus]) -> Plan[TrainingRunStatus]:
    observation = observe_training_run(given.cluster, given.owner.namespace, given.owner.name)
    return decide_training_run(
        given.owner,
        given.spec,
        observation,
        given.previous,
        image=given.settings.trainer_image,
        now=given.now,
    )


RECONCILER = Reconciler(
    kind=KIND,
    plural=PLURAL,
    spec_model=TrainingRunSpec,
    status_model=TrainingRunStatus,
    invalid_phase="Failed",
    decide=observe_and_decide,
)


async def training_run_reconcile(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    await reconcile(RECONCILER, body, memo, logger)


async def training_run_timer(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    await reconcile_when_due(RECONCILER, body, memo, logger)


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    resource = (GROUP, VERSION, PLURAL)
    kopf.on.create(*resource, id="training_run_create", registry=registry)(training_run_reconcile)
    kopf.on.update(*resource, id="training_run_update", registry=registry)(training_run_reconcile)
    kopf.on.resume(*resource, id="training_run_resume", registry=registry)(training_run_reconcile)
    kopf.timer(
        *resource,
        id="training_run_timer",
        interval=settings.timer_interval_seconds,
        idle=settings.timer_idle_seconds or None,
        registry=registry,
    )(training_run_timer)
