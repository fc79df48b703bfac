"""ModelPin decision (pure): the ensemble fleet's children and the status, from Deployment readiness.

:func:`decide_model_pin` ensures the pin ConfigMap, the ensemble Deployment and Service, and the
``pin.json`` key of the routing ConfigMap, and reads the phase from the observed Deployment
(``desired`` is ``spec.replicas``; ``revision`` is the hash of the pinned set):

| deployment observed                                | phase       | reason                   | kstatus     |
|----------------------------------------------------|-------------|--------------------------|-------------|
| absent                                             | Pending     | DeploymentCreated        | progressing |
| Progressing=False, ProgressDeadlineExceeded        | Degraded    | ProgressDeadlineExceeded | stalled     |
| observedGeneration < generation, other revision    | Progressing | RollingOut               | progressing |
| updated, ready or available < desired              | Progressing | RollingOut               | progressing |
| more pods than desired (old ones terminating)      | Progressing | RollingOut               | progressing |
| otherwise                                          | Ready       | AllReplicasReady         | ready       |
| any, with ``artisan.dev/emergency-stop: "true"``   | Degraded    | EmergencyStopped         | idle        |

Fleet overrides (annotations, never spec; ``manifests.ensemble.fleet_overrides``) apply to the
stable Deployment here and to the canary Deployment in the Canary loop: an emergency stop scales
both to 0 and sets the ``EmergencyStopped`` condition (True; False with ``Resumed`` once the
annotation is gone), and ``artisan.dev/restartedAt`` stamps the pod template (a rolling restart).
While stopped no revision becomes stable (nothing serves it).

When the fleet is Ready on a revision that is not yet ``status.stable``, that revision becomes
stable (recorded with its time) and the previous stable one moves to ``history`` (newest last,
at most 10): records of past actions, the only part of the status read back.

When a Canary targets the ModelPin (``observation.canary_guarded``) and a stable revision exists,
the stable fleet keeps serving ``status.stable``'s pins (models, policy, image) at full capacity and
the spec's pins run only in the Canary's canary fleet; ``status.stable`` then changes only when the
Canary promotes (it writes the record), never here. When that Canary routes by replica ratio
(``observation.replica_routed``), the Service selects the pods of both tracks, so traffic splits
by pod count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from artisan_operator.api.model_pin import (
    EMERGENCY_STOPPED,
    ModelPinPhase,
    ModelPinSpec,
    ModelPinStatus,
    PinnedRevision,
)
from artisan_operator.manifests.common import Owner
from artisan_operator.manifests.ensemble import (
    FleetOverrides,
    build_ensemble_deployment,
    build_ensemble_service,
    build_pin_configmap,
    build_routing_configmap,
    pin_revision,
    resolved_image,
    with_fleet_overrides,
)
from artisan_operator.policy.conditions import (
    ConditionUpdate,
    KState,
    kstatus,
    merge_conditions,
    transition_events,
)
from artisan_operator.policy.plan import EnsureChild, Plan

DEPLOYMENT_CREATED = "DeploymentCreated"
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
ROLLING_OUT = "RollingOut"
RESUMED = "Resumed"
ALL_REPLICAS_READY = "AllReplicasReady"
HISTORY_LIMIT = 10

REQUEUE_SECONDS: dict[ModelPinPhase, float | None] = {
    "Pending": 5.0,
    "Progressing": 5.0,
    "Ready": None,
    "Degraded": 30.0,
}
NO_OVERRIDES = FleetOverrides()
EMERGENCY_STOP_MESSAGE = (
    "emergency stop: every ensemble Deployment is scaled to 0 (kubectl artisan resume restores it)"
)

ModelPinPlan = Plan[ModelPinStatus]


@dataclass(frozen=True)
class DeploymentObservation:
    name: str
    generation: int | None = None
    observed_generation: int | None = None
    revision: str | None = None
    """The ``artisan.dev/revision`` label the Deployment carries."""
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    progress_deadline_exceeded: bool = False
    progress_message: str | None = None


@dataclass(frozen=True)
class ModelPinObservation:
    deployment: DeploymentObservation | None = None
    canary_guarded: bool = False
    """A Canary targets this ModelPin: spec changes reach the stable fleet only through it."""
    replica_routed: bool = False
    """A Canary with ``trafficRouting.replicas`` targets it: the Service selects both tracks."""


def serving_spec(spec: ModelPinSpec, previous: ModelPinStatus, guarded: bool) -> ModelPinSpec:
    """The spec the stable fleet runs: the stable record's pins while a Canary guards the ModelPin."""
    stable = previous.stable
    if not guarded or stable is None:
        return spec
    return spec.model_copy(update={"models": stable.models, "policy": stable.policy, "image": stable.image})


@dataclass(frozen=True)
class FleetVerdict:
    phase: ModelPinPhase
    state: KState
    reason: str
    message: str


def assess_fleet(desired: int, revision: str, deployment: DeploymentObservation | None) -> FleetVerdict:
    """The row of the module table that matches the observed Deployment."""
    if deployment is None:
        return FleetVerdict("Pending", "progressing", DEPLOYMENT_CREATED, "creating the ensemble Deployment")
    if deployment.progress_deadline_exceeded:
        detail = deployment.progress_message or "the rollout made no progress before its deadline"
        return FleetVerdict("Degraded", "stalled", PROGRESS_DEADLINE_EXCEEDED, detail)
    stale = (
        deployment.generation is not None and (deployment.observed_generation or 0) < deployment.generation
    )
    if stale or deployment.revision != revision:
        return FleetVerdict("Progressing", "progressing", ROLLING_OUT, f"rolling out revision {revision}")
    counts = (deployment.updated_replicas, deployment.ready_replicas, deployment.available_replicas)
    if min(counts) < desired or deployment.replicas > desired:
        return FleetVerdict(
            "Progressing",
            "progressing",
            ROLLING_OUT,
            f"{deployment.ready_replicas}/{desired} replicas ready, {deployment.updated_replicas} updated",
        )
    return FleetVerdict("Ready", "ready", ALL_REPLICAS_READY, f"{desired}/{desired} replicas ready")


def promote_stable(
    previous: ModelPinStatus, spec: ModelPinSpec, revision: str, image: str, now: datetime
) -> tuple[PinnedRevision, list[PinnedRevision]]:
    """The stable record and history once ``revision`` serves; unchanged if it is already stable."""
    if previous.stable is not None and previous.stable.revision == revision:
        return previous.stable, list(previous.history)
    stable = PinnedRevision(revision=revision, models=spec.models, policy=spec.policy, image=image, time=now)
    history = list(previous.history)
    if previous.stable is not None:
        history = [*history, previous.stable][-HISTORY_LIMIT:]
    return stable, history


def decide_model_pin(
    owner: Owner,
    spec: ModelPinSpec,
    observation: ModelPinObservation,
    previous: ModelPinStatus,
    *,
    image: str,
    now: datetime,
    overrides: FleetOverrides = NO_OVERRIDES,
) -> ModelPinPlan:
    """Children and status of one ModelPin (see the module table)."""
    spec_revision = pin_revision(spec, resolved_image(spec, image))
    guarded = observation.canary_guarded and previous.stable is not None
    serving = serving_spec(spec, previous, guarded)
    image = resolved_image(serving, image)
    revision = pin_revision(serving, image)
    verdict = assess_fleet(spec.replicas, revision, observation.deployment)
    stop_updates: tuple[ConditionUpdate, ...] = ()
    was_stopped = any(c.type == EMERGENCY_STOPPED and c.status == "True" for c in previous.conditions)
    if overrides.emergency_stop:
        verdict = FleetVerdict("Degraded", "idle", EMERGENCY_STOPPED, EMERGENCY_STOP_MESSAGE)
        stop_updates = (
            ConditionUpdate(EMERGENCY_STOPPED, "True", EMERGENCY_STOPPED, EMERGENCY_STOP_MESSAGE),
        )
    elif was_stopped:
        stop_updates = (
            ConditionUpdate(EMERGENCY_STOPPED, "False", RESUMED, "the emergency stop was lifted"),
        )
    deployment_manifest = with_fleet_overrides(
        build_ensemble_deployment(owner, serving, image=image), overrides
    )
    children = (
        EnsureChild(build_pin_configmap(owner, serving)),
        EnsureChild(deployment_manifest),
        EnsureChild(
            build_ensemble_service(owner, both_tracks=observation.replica_routed),
            replaced_maps=("spec.selector",),
        ),
        # Only the pin.json key: the Canary and ABExperiment loops own the other keys.
        EnsureChild(
            build_routing_configmap(owner, serving, revision=revision, mode_ceiling=previous.mode_ceiling),
            patchable=("metadata.labels", "metadata.annotations", "data"),
        ),
    )
    stable, history = previous.stable, list(previous.history)
    if verdict.phase == "Ready" and not guarded:
        stable, history = promote_stable(previous, spec, revision, image, now)
    deployment = observation.deployment
    status = previous.model_copy(
        update={
            "observed_generation": owner.generation,
            "phase": verdict.phase,
            "conditions": merge_conditions(
                previous.conditions,
                (*kstatus(verdict.state, verdict.reason, verdict.message), *stop_updates),
                now=now,
                generation=owner.generation,
            ),
            "revision": spec_revision,
            "stable": stable,
            "history": history,
            "replicas": deployment.replicas if deployment else 0,
            "ready_replicas": deployment.ready_replicas if deployment else 0,
        }
    )
    return Plan(
        status=status,
        children=children,
        events=transition_events(previous.conditions, verdict.reason, verdict.message, verdict.state),
        requeue_after=REQUEUE_SECONDS[verdict.phase],
    )
