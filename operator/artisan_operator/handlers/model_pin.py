"""ModelPin handlers: watch events nudge a pass at once; the work queue keeps it level-triggered.

A pass observes the ensemble Deployment and the Canaries that target the ModelPin, except the
first pass of a brand-new ModelPin (no status at all, ``PassInput.blind``): no Deployment of ours
exists yet, and a Canary changes nothing before a stable revision is recorded in the status
(``guarded`` needs one; canary pods need one), except the Service's both-track selector of a
replica-routed Canary, which the next pass sets (the Pending phase asks for one in seconds).
"""

from __future__ import annotations

import kopf

from artisan_operator.api.model_pin import KIND, PLURAL, ModelPinSpec, ModelPinStatus
from artisan_operator.cluster import observe_model_pin
from artisan_operator.handlers.fleet_health import FLEET_LOOP
from artisan_operator.handlers.reconcile import (
    PassInput,
    Reconciler,
    register_reconciler,
)
from artisan_operator.manifests.ensemble import fleet_overrides
from artisan_operator.policy.model_pin import ModelPinObservation, decide_model_pin
from artisan_operator.policy.plan import Plan
from artisan_operator.settings import Settings


def observe_and_decide(given: PassInput[ModelPinSpec, ModelPinStatus]) -> Plan[ModelPinStatus]:
    if given.blind:
        observation = ModelPinObservation()
    else:
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


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    register_reconciler(registry, RECONCILER, "model_pin_event", also=[FLEET_LOOP])
