"""Honest statuses for Canary and ABExperiment until their control loops take over (pure).

These kinds own no children here: the operator validates them, looks at their target ModelPin and
says truthfully what is (not) happening. The metric-driven control loops replace these decisions.

Canary (``decide_canary_initial``):

| target ModelPin           | phase       | reason              | kstatus     |
|---------------------------|-------------|---------------------|-------------|
| absent                    | Degraded    | TargetNotFound      | progressing |
| present, not Ready        | Progressing | WaitingForTarget    | progressing |
| present, Ready            | Healthy     | NoRolloutInProgress | ready       |

(``TargetNotFound`` is progressing, not stalled: with GitOps the target often appears a moment later.)

ABExperiment (``decide_ab_experiment_initial``):

| target ModelPin | phase   | reason         | kstatus     |
|-----------------|---------|----------------|-------------|
| absent          | Running | TargetNotFound | progressing |
| present         | Running | WaitingForData | progressing |
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from artisan_operator.api.ab_experiment import ABExperimentSpec, ABExperimentStatus, VariantResult
from artisan_operator.api.canary import CanaryPhase, CanarySpec, CanaryStatus
from artisan_operator.policy.conditions import KState, kstatus, merge_conditions, transition_events
from artisan_operator.policy.plan import Plan

TARGET_NOT_FOUND = "TargetNotFound"
WAITING_FOR_TARGET = "WaitingForTarget"
NO_ROLLOUT_IN_PROGRESS = "NoRolloutInProgress"
WAITING_FOR_DATA = "WaitingForData"

RECHECK_SECONDS = 15.0


@dataclass(frozen=True)
class TargetObservation:
    """The target ModelPin as its own status reports it (``None`` fields: not reported yet)."""

    name: str
    exists: bool
    phase: str | None = None
    revision: str | None = None
    stable_revision: str | None = None


def decide_canary_initial(
    spec: CanarySpec,
    target: TargetObservation,
    previous: CanaryStatus,
    *,
    generation: int | None,
    now: datetime,
) -> Plan[CanaryStatus]:
    phase: CanaryPhase
    state: KState
    if not target.exists:
        phase, state, reason = "Degraded", "progressing", TARGET_NOT_FOUND
        message = f"ModelPin {target.name} not found"
    elif target.phase != "Ready":
        phase, state, reason = "Progressing", "progressing", WAITING_FOR_TARGET
        message = f"ModelPin {target.name} is {target.phase or 'not reconciled yet'}"
    else:
        phase, state, reason = "Healthy", "ready", NO_ROLLOUT_IN_PROGRESS
        message = f"ModelPin {target.name} serves revision {target.stable_revision or target.revision}"
    status = previous.model_copy(
        update={
            "observed_generation": generation,
            "phase": phase,
            "conditions": merge_conditions(
                previous.conditions, kstatus(state, reason, message), now=now, generation=generation
            ),
            "weight": 0,
            "stable_revision": target.stable_revision,
            "message": message,
        }
    )
    return Plan(
        status=status,
        events=transition_events(previous.conditions, reason, message, state),
        requeue_after=RECHECK_SECONDS,
    )


def decide_ab_experiment_initial(
    spec: ABExperimentSpec,
    target: TargetObservation,
    previous: ABExperimentStatus,
    *,
    generation: int | None,
    now: datetime,
) -> Plan[ABExperimentStatus]:
    if not target.exists:
        reason, message = TARGET_NOT_FOUND, f"ModelPin {target.name} not found"
    else:
        reason = WAITING_FOR_DATA
        message = f"waiting for at least {spec.analysis.min_samples_per_variant} samples per variant"
    status = previous.model_copy(
        update={
            "observed_generation": generation,
            "phase": "Running",
            "conditions": merge_conditions(
                previous.conditions, kstatus("progressing", reason, message), now=now, generation=generation
            ),
            "variants": [VariantResult(name=v.name) for v in spec.variants],
            # The start time is a record of a past action: kept once set.
            "start_time": previous.start_time or now,
            "message": message,
        }
    )
    return Plan(
        status=status,
        events=transition_events(previous.conditions, reason, message, "progressing"),
        requeue_after=RECHECK_SECONDS,
    )
