"""Canary progression (pure): steps, metric analysis, abort, promotion and manual actions.

:func:`decide_canary` is a function of (spec, observation, now). The observation carries the target
ModelPin's desired pin-set revision (its spec) and its stable revision (its status), the previous
Canary status (trusted only for records of past actions: the step reached and when, measurements
taken, abort and promotion) and the manual action annotation. Measurements are taken in two calls
within one pass: the first plan lists the metrics ``due`` now; the handler queries them and decides
again with the same ``now`` and the samples, which makes the second plan final.

| case              | observation                           | phase       | weight | effect                |
|-------------------|---------------------------------------|-------------|--------|-----------------------|
| first-revision    | no stable revision yet                | Healthy     | –      | promote desired pins  |
| in-sync           | desired == stable                     | Healthy     | –      | no canary             |
| start             | desired != stable, new to this Canary | Progressing | step's | steps run from 0      |
| set-weight        | at a setWeight step                   | Progressing | w      | next step at once     |
| timed-pause       | pause 60s started 10s ago             | Progressing | kept   | look again in 50s     |
| indefinite-pause  | pause without duration                | Paused      | kept   | wait for promote      |
| analysis-running  | inline analysis, measurements to take | Progressing | kept   | query when due        |
| analysis-passed   | every inline metric Successful        | Progressing | kept   | next step             |
| metric-failed     | a metric Failed (or Error)            | Degraded    | 0      | abort, scale down later|
| inconclusive      | a metric Inconclusive                 | Paused      | kept   | wait: promote or retry|
| background-failed | background metric Failed              | Degraded    | 0      | abort                 |
| all-steps-done    | the last step completed               | Progressing | kept   | promote desired pins  |
| promoted-rolled   | promoted, stable fleet ready on it    | Healthy     | –      | canary removed        |
| aborted           | aborted earlier, desired unchanged    | Degraded    | 0      | canary 0 after delay  |
| reverted          | aborted, desired reverted to stable   | Healthy     | –      | no canary             |
| retry             | aborted, action retry                 | Progressing | step's | steps again from 0    |
| retry-paused      | paused Inconclusive, action retry     | Progressing | kept   | measure those again   |
| manual-abort      | action abort                          | Degraded    | 0      | abort                 |
| manual-promote    | action promote while paused           | Progressing | kept   | skip the current step |
| promote-full      | action promote-full                   | Progressing | kept   | promote at once       |

A promotion records the desired pins as stable in the ModelPin's status; the ModelPin loop then rolls
the stable fleet to them. Until the stable Deployment serves them (``stable_ready_revision``: its
observedGeneration current and every replica updated and ready) the canary keeps its weight and its
fleet, so no user is sent back to the old revision meanwhile; then the route and the fleet go.

A manual action is the value of the ``artisan.dev/action`` annotation (``promote``, ``promote-full``,
``abort``, ``retry``, optionally suffixed ``@<anything>`` to repeat the same action). It is applied
once: the status records it in ``lastAction`` and the handler then removes the annotation.

Replicas: the stable fleet always keeps all its R replicas (100% capacity). With a traffic router the
canary Deployment runs ceil(w% × R) pods (at least one, so analysis can start before traffic moves).
With the replica router (no router: the ModelPin's Service selects the pods of both tracks) the share
of pods is the share of traffic, so the canary runs c = ceil(w·R / (100 − w)) pods next to the R
stable ones, making c / (R + c) ≥ w%, capped at R (a 50/50 split: more canary pods than stable ones
would cost a GPU fleet many times over for a few points of traffic; the promotion moves the rest).
An abort removes the replica router's canary pods at once (its traffic can only be removed with
them); the other routers keep them for ``abortScaleDownDelaySeconds``.

| w (replicas router) | R | canary pods | canary share of pods |
|---------------------|---|-------------|----------------------|
| 0                   | 4 | 0           | 0%                   |
| 10                  | 4 | 1           | 20%                  |
| 25                  | 4 | 2           | 33%                  |
| 50                  | 4 | 4           | 50%                  |
| 20                  | 8 | 2           | 20%                  |
| 75                  | 4 | 4 (cap R)   | 50%                  |
| 100                 | 4 | 4           | 50%                  |
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import get_args

from artisan_common.model import parse_duration
from artisan_operator.api.canary import (
    ABORTED,
    PAUSED,
    PROMOTED,
    CanaryAction,
    CanaryPhase,
    CanarySpec,
    CanaryStatus,
    MeasurementPhase,
    MetricResult,
    MetricSpec,
)
from artisan_operator.policy.analysis import MetricValue, empty_result, next_due, record
from artisan_operator.policy.conditions import KState, set_condition, set_kstatus
from artisan_operator.policy.model_pin import DeploymentObservation
from artisan_operator.policy.plan import EventNote

BACKGROUND_PREFIX = "background/"
PHASE_STATES: dict[CanaryPhase, KState] = {
    "Healthy": "ready",
    "Progressing": "progressing",
    "Paused": "progressing",
    "Degraded": "stalled",
}
"""The kstatus trio of each Canary phase (Paused waits for a person: still reconciling)."""
INLINE_DEFAULT_COUNT = 1
"""An inline analysis metric without `count` is measured once (it must end for the step to pass)."""


@dataclass(frozen=True)
class CanaryObservation:
    desired_revision: str | None
    """Pin-set hash of the target ModelPin's spec; None when the target does not exist."""
    stable_revision: str | None
    """Pin-set hash recorded as stable in the ModelPin's status; None before the first promotion."""
    replicas: int = 1
    """Replicas of the target's stable fleet."""
    generation: int | None = None
    previous: CanaryStatus | None = None
    action: str | None = None
    """Value of the artisan.dev/action annotation, if present."""
    stable_ready_revision: str | None = None
    """The revision the stable Deployment serves with every replica updated and ready (its
    observedGeneration current); None while it rolls, or when it is absent."""
    samples: Mapping[str, MetricValue] = field(default_factory=dict)
    """Fresh measurements of the metrics listed as due by the previous call, by metric key."""
    baselines: Mapping[str, datetime] = field(default_factory=dict)
    """Metric key → when the provider took the starting point of its counter delta (direct scrape of
    the builtin errorRate; in this process's memory). The first measurement of a metric whose
    baseline was taken since its analysis started is due one interval after the baseline."""


@dataclass(frozen=True)
class DueMetric:
    key: str
    """``<metric>`` for inline analysis, ``background/<metric>`` for the background analysis."""
    metric: MetricSpec
    since: datetime | None = None
    """When the metric's analysis started: a provider baseline older than this is stale."""


@dataclass(frozen=True)
class CanaryPlan:
    status: CanaryStatus
    weight: int | None
    """Canary traffic weight to apply; None means no canary route at all."""
    canary_replicas: int
    """Desired replicas of the canary Deployment."""
    promote: str | None = None
    """Revision to record as stable in the target ModelPin's status."""
    due: tuple[DueMetric, ...] = ()
    """Metrics to measure now (then decide again with their samples)."""
    events: tuple[EventNote, ...] = ()
    requeue_after: float | None = None
    """Seconds until something is due (a measurement, a pause end, the post-abort scale-down)."""
    consumed_action: bool = False
    """The action annotation has been applied (or refused): the handler removes it."""


def serving_revision(deployment: DeploymentObservation | None) -> str | None:
    """The revision a Deployment serves once rolled out: its controller saw the newest spec
    (observedGeneration) and every replica is updated and ready; None before that, or when absent."""
    if deployment is None or deployment.revision is None:
        return None
    if deployment.generation is not None and (deployment.observed_generation or 0) < deployment.generation:
        return None
    if not deployment.updated_replicas == deployment.ready_replicas == deployment.replicas:
        return None
    return deployment.revision


def parse_action(value: str | None) -> CanaryAction | None:
    """The action named by an annotation value (``promote`` or ``promote@2``); None if unknown."""
    if value is None:
        return None
    name = value.split("@", 1)[0].strip()
    return name if name in get_args(CanaryAction) else None  # type: ignore[return-value]


def canary_replicas(spec: CanarySpec, weight: int, replicas: int) -> int:
    """Canary pods for this weight (see the module docstring)."""
    if spec.traffic_routing.router == "replicas":
        if weight >= 100:
            return replicas
        return min(replicas, math.ceil(weight * replicas / (100 - weight)))
    return max(1, math.ceil(weight * replicas / 100))


@dataclass
class _Pass:
    """Mutable scratch state of one decision (never escapes decide_canary)."""

    spec: CanarySpec
    obs: CanaryObservation
    now: datetime
    index: int
    weight: int
    step_started_at: datetime
    results: dict[str, MetricResult]
    events: list[EventNote] = field(default_factory=list)
    due: list[DueMetric] = field(default_factory=list)
    wake: list[datetime] = field(default_factory=list)
    paused_reason: str | None = None
    abort_reason: str | None = None

    def measure(self, key: str, metric: MetricSpec, started: datetime, count: int | None) -> MeasurementPhase:
        """Advance one metric: record a fresh sample, or list it as due; return its phase."""
        result = self.results.get(key)
        due_at = next_due(metric, result, started)
        baseline = self.obs.baselines.get(key)
        last = result.measurements[-1] if result is not None and result.measurements else None
        last_at = (last.finished_at or last.started_at) if last is not None else None
        fresh = baseline is not None and baseline >= started and (last_at is None or baseline > last_at)
        if due_at is not None and baseline is not None and fresh:
            # A baseline newer than the last measurement: measure one full interval after it.
            due_at = max(due_at, baseline + timedelta(seconds=parse_duration(metric.interval)))
        if due_at is not None and due_at <= self.now:
            sample = self.obs.samples.get(key)
            if sample is None:
                self.due.append(DueMetric(key, metric, started))
            elif sample.baseline:
                # Only the counters' starting point: the first measurement is one interval away.
                due_at = self.now + timedelta(seconds=parse_duration(metric.interval))
            else:
                result = record(metric, result, sample, self.now, count=count, name=key)
                self.results[key] = result
                due_at = next_due(metric, result, started)
        if result is None:
            result = empty_result(metric, key)
            self.results[key] = result
        if due_at is not None:
            self.wake.append(max(due_at, self.now))
        return result.phase

    def analyse(self, metrics: Sequence[MetricSpec], prefix: str, started: datetime, inline: bool) -> str:
        """Run an analysis; returns Failed, Error, Inconclusive, Successful or Running."""
        phases: dict[str, MeasurementPhase] = {}
        for metric in metrics:
            count = metric.count if metric.count is not None else (INLINE_DEFAULT_COUNT if inline else None)
            phases[metric.name] = self.measure(prefix + metric.name, metric, started, count)
        for verdict in ("Failed", "Error", "Inconclusive"):
            names = [n for n, p in phases.items() if p == verdict]
            if names:
                what = "background analysis" if prefix else f"analysis of step {self.index}"
                detail = "; ".join(_last_message(self.results[prefix + n]) for n in names)
                message = f"{what}: metric {', '.join(names)} {verdict}" + (f" ({detail})" if detail else "")
                if verdict == "Inconclusive":
                    self.paused_reason = message
                else:
                    self.abort_reason = message
                return verdict
        return "Successful" if all(p == "Successful" for p in phases.values()) else "Running"


def _last_message(result: MetricResult) -> str:
    if not result.measurements:
        return ""
    last = result.measurements[-1]
    value = f"value {last.value:g}" if last.value is not None else ""
    return ", ".join(part for part in (value, last.message or "") if part)


def decide_canary(spec: CanarySpec, obs: CanaryObservation, now: datetime) -> CanaryPlan:
    """The Canary's plan for this pass (see the module table)."""
    previous = obs.previous or CanaryStatus()
    fresh_action = obs.action is not None and obs.action != previous.last_action
    action = parse_action(obs.action) if fresh_action else None
    events: list[EventNote] = []
    if fresh_action and action is None:
        events.append(EventNote("UnknownAction", f"ignored unknown action {obs.action!r}", "Warning"))
    consumed = obs.action is not None
    generation = obs.generation
    conditions = list(previous.conditions)

    def finish(
        phase: CanaryPhase,
        message: str,
        *,
        weight: int | None,
        replicas: int,
        status_update: dict[str, object],
        promote: str | None = None,
        due: Sequence[DueMetric] = (),
        wake: Sequence[datetime] = (),
        reason: str | None = None,
    ) -> CanaryPlan:
        nonlocal conditions
        reason = reason or phase
        conditions = set_kstatus(
            conditions, PHASE_STATES[phase], reason, message, now=now, generation=generation
        )
        conditions = set_condition(
            conditions,
            PAUSED,
            "True" if phase == "Paused" else "False",
            reason if phase == "Paused" else "NotPaused",
            message if phase == "Paused" else "",
            now=now,
            generation=generation,
        )
        fields: dict[str, object] = {
            "observed_generation": generation,
            "phase": phase,
            "message": message,
            "weight": weight or 0,
            "last_action": obs.action,
            "stable_revision": obs.stable_revision,
            **status_update,
        }
        status = previous.model_copy(update=fields)
        status = status.model_copy(update={"conditions": conditions})
        requeue = min(((t - now).total_seconds() for t in wake), default=None)
        return CanaryPlan(
            status=CanaryStatus.model_validate(status.model_dump()),
            weight=weight,
            canary_replicas=replicas,
            promote=promote,
            due=tuple(due),
            events=tuple(events),
            requeue_after=None if requeue is None else max(0.0, requeue),
            consumed_action=consumed,
        )

    desired, stable = obs.desired_revision, obs.stable_revision
    if desired is None:
        return finish(
            "Degraded",
            f"target ModelPin {spec.target_ref.name!r} not found",
            weight=None,
            replicas=0,
            status_update={"canary_revision": None},
            reason="TargetNotFound",
        )

    def holding(weight: int) -> bool:
        """The promoted revision is routed to the canary until the stable fleet serves it."""
        return weight > 0 and obs.stable_ready_revision != desired

    def hold_message(weight: int) -> str:
        return (
            f"revision {desired} promoted; canary weight {weight}% kept until the stable fleet "
            "serves it (every replica updated and ready)"
        )

    def promoted_status(message: str, weight: int = 0) -> CanaryPlan:
        nonlocal conditions
        conditions = set_condition(
            conditions, PROMOTED, "True", PROMOTED, message, now=now, generation=generation
        )
        conditions = set_condition(
            conditions, ABORTED, "False", "NotAborted", "", now=now, generation=generation
        )
        events.append(EventNote(PROMOTED, message))
        hold = holding(weight)
        return finish(
            "Progressing" if hold else "Healthy",
            hold_message(weight) if hold else message,
            weight=weight if hold else None,
            replicas=canary_replicas(spec, weight, obs.replicas) if hold else 0,
            status_update={
                "current_step_index": len(spec.steps),
                "canary_revision": desired,
                "stable_revision": desired,
                "step_started_at": None,
                "metrics": [],
                "aborted_at": None,
                "abort_reason": None,
                "promoted_at": now,
            },
            promote=desired,
            reason=PROMOTED,
        )

    if stable is None:
        return promoted_status(f"revision {desired} is the first one: recorded as stable without a canary")

    if desired == stable:
        just_promoted = previous.canary_revision == desired and previous.promoted_at is not None
        if just_promoted and holding(previous.weight):
            return finish(
                "Progressing",
                hold_message(previous.weight),
                weight=previous.weight,
                replicas=canary_replicas(spec, previous.weight, obs.replicas),
                status_update={"canary_revision": desired},
                reason=PROMOTED,
            )
        reverted = previous.aborted_at is not None and previous.canary_revision not in (None, desired)
        if reverted:
            events.append(EventNote("Reverted", f"target reverted to the stable revision {stable}"))
        conditions = set_condition(
            conditions, ABORTED, "False", "NotAborted", "", now=now, generation=generation
        )
        # Promoted (this pass clears the canary, or an earlier one did): the steps stay done.
        done = previous.canary_revision == desired or (
            previous.canary_revision is None and previous.current_step_index == len(spec.steps)
        )
        return finish(
            "Healthy",
            f"stable revision {stable} serves all traffic",
            weight=None,
            replicas=0,
            status_update={
                "current_step_index": len(spec.steps) if done else None,
                "canary_revision": None,
                "step_started_at": None,
                "metrics": [],
                "aborted_at": None,
                "abort_reason": None,
            },
        )

    # A rollout of `desired` over `stable`.
    new_rollout = previous.canary_revision != desired
    retried = action == "retry" and previous.aborted_at is not None and not new_rollout
    if new_rollout or retried:
        events.append(
            EventNote(
                "Retried" if retried else "RolloutStarted",
                f"rolling out revision {desired} over stable {stable} in {len(spec.steps)} steps",
            )
        )
        index, weight, started, results = 0, 0, now, {}
        aborted_at: datetime | None = None
        conditions = set_condition(
            conditions, PROMOTED, "False", "Progressing", "", now=now, generation=generation
        )
        conditions = set_condition(
            conditions, ABORTED, "False", "NotAborted", "", now=now, generation=generation
        )
    else:
        index = previous.current_step_index or 0
        weight = previous.weight
        started = previous.step_started_at or now
        results = {r.name: r for r in previous.metrics}
        aborted_at = previous.aborted_at
        inconclusive = [k for k, r in results.items() if r.phase == "Inconclusive"]
        if action == "retry" and aborted_at is None and inconclusive:
            # Their counters start again; the step's other results (passed metrics) stand.
            results = {k: r for k, r in results.items() if k not in inconclusive}
            events.append(
                EventNote(
                    "Retried",
                    f"step {index}: inconclusive metric {', '.join(inconclusive)} measured again",
                )
            )

    def aborted(reason: str, since: datetime) -> CanaryPlan:
        nonlocal conditions
        scale_down_at = since + timedelta(seconds=spec.abort_scale_down_delay_seconds)
        if spec.traffic_routing.router == "replicas":
            scale_down_at = since  # its canary pods are its traffic: removed at once
        replicas = 0 if now >= scale_down_at else canary_replicas(spec, max(weight, 1), obs.replicas)
        conditions = set_condition(
            conditions, ABORTED, "True", ABORTED, reason, now=now, generation=generation
        )
        return finish(
            "Degraded",
            f"rollout of {desired} aborted: {reason}; stable {stable} serves all traffic "
            "(revert the ModelPin or retry)",
            weight=0,
            replicas=replicas,
            status_update={
                "current_step_index": index,
                "canary_revision": desired,
                "step_started_at": started,
                "metrics": list(results.values()),
                "aborted_at": since,
                "abort_reason": reason,
            },
            wake=[scale_down_at] if replicas else [],
            reason=ABORTED,
        )

    if aborted_at is not None:
        return aborted(previous.abort_reason or "aborted", aborted_at)

    def abort_now(reason: str) -> CanaryPlan:
        events.append(
            EventNote(ABORTED, f"rollout of {desired} aborted, weight set to 0: {reason}", "Warning")
        )
        return aborted(reason, now)

    if action == "abort":
        return abort_now("manual abort")
    if action == "promote-full":
        return promoted_status(f"revision {desired} promoted to stable (promote --full)", weight)

    run = _Pass(spec, obs, now, index, weight, started, results)
    if action == "promote":
        run.events.append(EventNote("ManualPromote", f"step {index} skipped by a manual promote"))
        run.index += 1
        run.step_started_at = now
        run.results = {k: v for k, v in run.results.items() if k.startswith(BACKGROUND_PREFIX)}
        # A pause on an inconclusive background metric is lifted: its counters start again.
        for key, result in list(run.results.items()):
            if result.phase == "Inconclusive":
                del run.results[key]

    # An inconclusive background metric holds the rollout where it is until promote or retry.
    background = spec.analysis
    held = [
        k for k, r in run.results.items() if k.startswith(BACKGROUND_PREFIX) and r.phase == "Inconclusive"
    ]
    if held:
        run.paused_reason = f"background analysis: metric {', '.join(held)} Inconclusive"

    phase: CanaryPhase = "Progressing"
    message = ""
    while run.index < len(spec.steps) and run.paused_reason is None:
        step = spec.steps[run.index]
        if step.set_weight is not None:
            run.weight = step.set_weight
            run.events.append(
                EventNote("WeightSet", f"step {run.index}: canary weight set to {step.set_weight}%")
            )
        elif step.pause is not None:
            if step.pause.duration is None:
                phase, message = "Paused", f"step {run.index}: paused until promoted"
                break
            ends = run.step_started_at + timedelta(seconds=parse_duration(step.pause.duration))
            if now < ends:
                message = f"step {run.index}: pausing for {step.pause.duration}"
                run.wake.append(ends)
                break
            run.events.append(
                EventNote("PauseEnded", f"step {run.index}: pause of {step.pause.duration} ended")
            )
        elif step.analysis is not None:
            verdict = run.analyse(step.analysis.metrics, "", run.step_started_at, inline=True)
            if verdict in ("Failed", "Error"):
                events.extend(run.events)
                results, index, weight = run.results, run.index, run.weight
                return abort_now(run.abort_reason or "analysis failed")
            if verdict != "Successful":
                message = f"step {run.index}: analysis running"
                break
            run.events.append(EventNote("AnalysisPassed", f"step {run.index}: every metric Successful"))
            run.results = {k: v for k, v in run.results.items() if k.startswith(BACKGROUND_PREFIX)}
        run.index += 1
        run.step_started_at = now

    if background is not None and background.starting_step <= run.index < len(spec.steps) and not held:
        verdict = run.analyse(background.metrics, BACKGROUND_PREFIX, run.step_started_at, inline=False)
        if verdict in ("Failed", "Error"):
            events.extend(run.events)
            results, index, weight = run.results, run.index, run.weight
            return abort_now(run.abort_reason or "background analysis failed")

    events.extend(run.events)
    if run.index >= len(spec.steps):
        return promoted_status(
            f"revision {desired} promoted to stable after {len(spec.steps)} steps", run.weight
        )
    if run.paused_reason is not None:
        phase, message = "Paused", f"{run.paused_reason}; promote to continue or retry"
        if previous.phase != "Paused":
            events.append(EventNote(PAUSED, message, "Warning"))
    elif phase == "Paused" and previous.phase != "Paused":
        events.append(EventNote(PAUSED, message))
    return finish(
        phase,
        f"{message}; canary weight {run.weight}%",
        weight=run.weight,
        replicas=canary_replicas(spec, run.weight, obs.replicas),
        status_update={
            "current_step_index": run.index,
            "canary_revision": desired,
            "step_started_at": run.step_started_at,
            "metrics": list(run.results.values()),
            "aborted_at": None,
            "abort_reason": None,
        },
        due=run.due,
        wake=run.wake,
    )
