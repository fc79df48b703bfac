"""decide_canary: every row of the docstring table as a scenario, plus restart safety and routers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from artisan_operator.api.canary import CanarySpec, CanaryStatus
from artisan_operator.policy import canary as canary_module
from artisan_operator.policy.analysis import MetricValue
from artisan_operator.policy.canary import (
    CanaryObservation,
    CanaryPlan,
    canary_replicas,
    decide_canary,
    serving_revision,
)
from artisan_operator.policy.model_pin import DeploymentObservation

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ERRORS = {
    "name": "errors",
    "interval": "10s",
    "successCondition": "result < 0.05",
    "provider": {"builtin": {"name": "errorRate"}},
}


def spec(steps: list[dict[str, object]], **extra: object) -> CanarySpec:
    return CanarySpec.model_validate({"targetRef": {"name": "fleet"}, "steps": steps, **extra})


Sampler = Callable[[str], MetricValue]


def ok(_: str) -> MetricValue:
    return MetricValue(0.01)


def bad(_: str) -> MetricValue:
    return MetricValue(0.5)


def decide(s: CanarySpec, obs: CanaryObservation, now: datetime, sampler: Sampler = ok) -> CanaryPlan:
    """What the handler does in one pass: decide, measure what is due, decide again."""
    plan = decide_canary(s, obs, now)
    for _ in range(5):
        if not plan.due:
            break
        samples = {**obs.samples, **{d.key: sampler(d.key) for d in plan.due}}
        obs = replace(obs, samples=samples)
        plan = decide_canary(s, obs, now)
    return plan


def rollout(
    previous: CanaryStatus | None = None, action: str | None = None, desired: str = "v2"
) -> CanaryObservation:
    return CanaryObservation(
        desired_revision=desired,
        stable_revision="v1",
        replicas=4,
        generation=1,
        previous=previous,
        action=action,
    )


def advance(
    s: CanarySpec, plan: CanaryPlan, now: datetime, sampler: Sampler = ok, **kw: object
) -> CanaryPlan:
    return decide(s, rollout(plan.status, **kw), now, sampler)  # type: ignore[arg-type]


def cond(plan: CanaryPlan, type_: str) -> str | None:
    return next((c.status for c in plan.status.conditions if c.type == type_), None)


STEPS = [
    {"setWeight": 10},
    {"pause": {"duration": "60s"}},
    {"analysis": {"metrics": [ERRORS]}},
    {"setWeight": 50},
    {"pause": {}},
]


def case_first_revision() -> None:
    plan = decide(spec(STEPS), CanaryObservation("v1", None, generation=1), T0)
    assert (plan.status.phase, plan.weight, plan.promote) == ("Healthy", None, "v1")
    assert [e.reason for e in plan.events] == ["Promoted"]


def case_in_sync() -> None:
    plan = decide(spec(STEPS), CanaryObservation("v1", "v1", generation=1), T0)
    assert (plan.status.phase, plan.weight, plan.promote, plan.canary_replicas) == ("Healthy", None, None, 0)
    assert cond(plan, "Ready") == "True"


def case_start() -> None:
    plan = decide(spec(STEPS), rollout(), T0)
    assert plan.status.phase == "Progressing"
    assert plan.status.canary_revision == "v2"
    assert plan.status.stable_revision == "v1"
    assert [e.reason for e in plan.events] == ["RolloutStarted", "WeightSet"]
    assert cond(plan, "Reconciling") == "True"


def case_set_weight() -> None:
    plan = decide(spec(STEPS), rollout(), T0)
    assert plan.weight == 10
    assert plan.status.current_step_index == 1  # the pause started at once
    assert plan.canary_replicas == 1


def case_timed_pause() -> None:
    s = spec(STEPS)
    plan = decide(s, rollout(), T0)
    plan = advance(s, plan, T0 + timedelta(seconds=10))
    assert plan.status.current_step_index == 1
    assert plan.requeue_after == pytest.approx(50)
    assert plan.weight == 10


def case_indefinite_pause() -> None:
    s = spec([{"setWeight": 20}, {"pause": {}}, {"setWeight": 40}])
    plan = decide(s, rollout(), T0)
    later = advance(s, plan, T0 + timedelta(hours=5))
    assert (later.status.phase, later.weight, later.status.current_step_index) == ("Paused", 20, 1)
    assert cond(later, "Paused") == "True"


def case_analysis_running() -> None:
    s = spec([{"setWeight": 10}, {"analysis": {"metrics": [{**ERRORS, "count": 3}]}}])
    plan = decide(s, rollout(), T0)
    assert plan.status.metrics[0].successful == 1
    assert plan.requeue_after == pytest.approx(10)
    plan = advance(s, plan, T0 + timedelta(seconds=5))
    assert plan.status.metrics[0].successful == 1  # not due yet: nothing measured
    plan = advance(s, plan, T0 + timedelta(seconds=10))
    assert plan.status.metrics[0].successful == 2
    assert plan.status.phase == "Progressing"


def case_analysis_passed() -> None:
    s = spec([{"setWeight": 10}, {"analysis": {"metrics": [ERRORS]}}, {"setWeight": 30}, {"pause": {}}])
    plan = decide(s, rollout(), T0)
    assert plan.weight == 30
    assert plan.status.current_step_index == 3
    assert "AnalysisPassed" in [e.reason for e in plan.events]


def case_metric_failed() -> None:
    s = spec(STEPS, abortScaleDownDelaySeconds=30)
    plan = decide(s, rollout(), T0)
    plan = advance(s, plan, T0 + timedelta(seconds=60), bad)
    assert (plan.status.phase, plan.weight) == ("Degraded", 0)
    assert plan.canary_replicas == 1  # kept for debugging until the delay passes
    assert plan.requeue_after == pytest.approx(30)
    assert "errors Failed" in (plan.status.abort_reason or "")
    assert cond(plan, "Aborted") == "True"
    assert cond(plan, "Stalled") == "True"
    assert [e.type for e in plan.events if e.reason == "Aborted"] == ["Warning"]


def case_inconclusive() -> None:
    s = spec([{"setWeight": 10}, {"analysis": {"metrics": [ERRORS]}}, {"setWeight": 30}])
    plan = decide(s, rollout(), T0, lambda _: MetricValue(None))
    assert (plan.status.phase, plan.weight) == ("Paused", 10)
    assert "Inconclusive" in (plan.status.message or "")


def case_background_failed() -> None:
    s = spec(
        STEPS,
        analysis={
            "startingStep": 1,
            "metrics": [{**ERRORS, "name": "latency", "successCondition": "result < 2"}],
        },
    )
    plan = decide(
        s, rollout(), T0, lambda key: MetricValue(5.0) if key == "background/latency" else MetricValue(0.0)
    )
    assert plan.status.phase == "Degraded"
    assert plan.weight == 0
    assert "background analysis" in (plan.status.abort_reason or "")


def case_all_steps_done() -> None:
    s = spec([{"setWeight": 10}, {"analysis": {"metrics": [ERRORS]}}, {"setWeight": 100}])
    plan = decide(s, rollout(), T0)
    # Promoted, but the canary keeps its traffic until the stable fleet serves the new pins.
    assert (plan.status.phase, plan.promote, plan.weight, plan.canary_replicas) == (
        "Progressing",
        "v2",
        100,
        4,
    )
    assert plan.status.current_step_index == 3
    assert cond(plan, "Promoted") == "True"
    assert "kept until the stable fleet serves it" in (plan.status.message or "")


def promoted_pin(previous: CanaryStatus, serving: str | None) -> CanaryObservation:
    """The ModelPin after the promotion: v2 is stable; its stable fleet serves ``serving``."""
    return CanaryObservation(
        "v2", "v2", replicas=4, generation=1, previous=previous, stable_ready_revision=serving
    )


def case_promoted_rolled() -> None:
    s = spec([{"setWeight": 10}, {"setWeight": 60}])
    plan = decide(s, rollout(), T0)
    assert (plan.promote, plan.weight) == ("v2", 60)
    # The stable fleet still rolls (it serves v1, or nothing fully): route and canary fleet stay.
    for serving in ("v1", None, "v1"):
        plan = decide(s, promoted_pin(plan.status, serving), T0 + timedelta(seconds=5))
        assert (plan.status.phase, plan.weight, plan.canary_replicas, plan.promote) == (
            "Progressing",
            60,
            3,
            None,
        )
        assert plan.status.canary_revision == "v2"
    assert plan.events == ()  # Promoted was posted once
    plan = decide(s, promoted_pin(plan.status, "v2"), T0 + timedelta(seconds=10))
    assert (plan.status.phase, plan.weight, plan.canary_replicas) == ("Healthy", None, 0)
    assert plan.status.canary_revision is None
    assert plan.status.current_step_index == 2
    later = decide(s, promoted_pin(plan.status, "v2"), T0 + timedelta(seconds=15))
    assert (later.status.phase, later.weight, later.status.current_step_index) == ("Healthy", None, 2)


def case_aborted() -> None:
    s = spec(STEPS, abortScaleDownDelaySeconds=30)
    plan = decide(s, rollout(action="abort"), T0)
    plan = advance(s, plan, T0 + timedelta(seconds=29), action="abort")
    assert (plan.status.phase, plan.weight, plan.canary_replicas) == ("Degraded", 0, 1)
    assert plan.events == ()  # the action was consumed once
    plan = advance(s, plan, T0 + timedelta(seconds=31))
    assert (plan.status.phase, plan.weight, plan.canary_replicas) == ("Degraded", 0, 0)
    assert plan.status.aborted_at == T0


def case_reverted() -> None:
    s = spec(STEPS)
    plan = decide(s, rollout(action="abort"), T0)
    plan = decide(
        s,
        CanaryObservation("v1", "v1", replicas=4, generation=1, previous=plan.status),
        T0 + timedelta(seconds=5),
    )
    assert (plan.status.phase, plan.weight, plan.status.aborted_at) == ("Healthy", None, None)
    assert [e.reason for e in plan.events] == ["Reverted"]


def case_retry() -> None:
    s = spec(STEPS)
    plan = decide(s, rollout(action="abort"), T0)
    plan = advance(s, plan, T0 + timedelta(seconds=5), action="retry")
    assert (plan.status.phase, plan.weight, plan.status.current_step_index) == ("Progressing", 10, 1)
    assert plan.status.aborted_at is None
    assert plan.events[0].reason == "Retried"


def case_retry_paused() -> None:
    s = spec(
        [
            {"setWeight": 10},
            {"analysis": {"metrics": [ERRORS, {**ERRORS, "name": "latency"}]}},
            {"setWeight": 30},
            {"pause": {}},
        ]
    )
    plan = decide(s, rollout(), T0, lambda key: MetricValue(None) if key == "errors" else MetricValue(0.01))
    assert (plan.status.phase, plan.weight) == ("Paused", 10)
    # A retry measures the inconclusive metric again; the passed one stands (not measured again).
    measured: list[str] = []

    def sampler(key: str) -> MetricValue:
        measured.append(key)
        return MetricValue(0.01)

    plan = advance(s, plan, T0 + timedelta(seconds=30), sampler, action="retry")
    assert measured == ["errors"]
    assert (plan.status.phase, plan.weight, plan.status.current_step_index) == ("Paused", 30, 3)
    assert [e.reason for e in plan.events][:1] == ["Retried"]
    assert "errors measured again" in plan.events[0].message
    assert plan.consumed_action


def test_retry_of_a_paused_inconclusive_metric_that_stays_inconclusive_pauses_again() -> None:
    s = spec([{"setWeight": 10}, {"analysis": {"metrics": [ERRORS]}}, {"setWeight": 30}])
    plan = decide(s, rollout(), T0, lambda _: MetricValue(None))
    plan = advance(s, plan, T0 + timedelta(seconds=30), lambda _: MetricValue(None), action="retry")
    assert (plan.status.phase, plan.weight) == ("Paused", 10)
    assert plan.status.metrics[0].inconclusive == 1  # counted afresh, not 2
    # The same annotation seen again (not yet removed) is not applied twice.
    again = advance(s, plan, T0 + timedelta(seconds=31), lambda _: MetricValue(0.01), action="retry")
    assert again.status.phase == "Paused"


def case_manual_abort() -> None:
    s = spec(STEPS)
    plan = decide(s, rollout(), T0)
    plan = advance(s, plan, T0 + timedelta(seconds=5), action="abort")
    assert (plan.status.phase, plan.weight, plan.status.abort_reason) == ("Degraded", 0, "manual abort")
    assert plan.consumed_action


def case_manual_promote() -> None:
    s = spec([{"setWeight": 20}, {"pause": {}}, {"setWeight": 40}, {"pause": {}}])
    plan = decide(s, rollout(), T0)
    plan = advance(s, plan, T0 + timedelta(seconds=5), action="promote")
    assert (plan.status.phase, plan.weight, plan.status.current_step_index) == ("Paused", 40, 3)
    # The same annotation seen again (not yet removed) is not applied twice.
    again = advance(s, plan, T0 + timedelta(seconds=6), action="promote")
    assert again.status.current_step_index == 3
    # A new one (suffix) is.
    third = advance(s, again, T0 + timedelta(seconds=7), action="promote@2")
    assert third.promote == "v2"


def case_promote_full() -> None:
    plan = decide(spec(STEPS), rollout(action="promote-full"), T0)
    assert (plan.status.phase, plan.promote, plan.weight) == ("Healthy", "v2", None)  # nothing routed yet
    plan = decide(spec(STEPS), rollout(), T0)
    plan = advance(spec(STEPS), plan, T0 + timedelta(seconds=5), action="promote-full")
    assert (plan.status.phase, plan.promote, plan.weight) == ("Progressing", "v2", 10)
    plan = decide(spec(STEPS), promoted_pin(plan.status, "v2"), T0 + timedelta(seconds=9))
    assert (plan.status.phase, plan.weight) == ("Healthy", None)


def test_serving_revision_needs_the_rollout_observed_and_every_replica_updated_and_ready() -> None:
    def fleet(**fields: object) -> DeploymentObservation:
        values: dict[str, object] = {
            "name": "pin-ensemble",
            "revision": "v2",
            "generation": 3,
            "observed_generation": 3,
            "replicas": 2,
            "updated_replicas": 2,
            "ready_replicas": 2,
            "available_replicas": 2,
        }
        return DeploymentObservation(**{**values, **fields})  # type: ignore[arg-type]

    assert serving_revision(fleet()) == "v2"
    assert serving_revision(None) is None
    assert serving_revision(fleet(observed_generation=2)) is None  # the controller has not seen it
    assert serving_revision(fleet(updated_replicas=1)) is None  # an old pod still serves
    assert serving_revision(fleet(ready_replicas=1)) is None
    assert serving_revision(fleet(replicas=3)) is None  # a surge pod of the old revision


CASES = {
    name[len("case_") :].replace("_", "-"): fn for name, fn in globals().items() if name.startswith("case_")
}


def test_every_docstring_row_has_a_scenario() -> None:
    rows = re.findall(r"^\| ([a-z-]+) +\|", canary_module.__doc__ or "", re.MULTILINE)
    assert rows
    assert set(rows) - {"case"} == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_worked_example(case: str) -> None:
    CASES[case]()


def test_full_rollout_under_a_restart_at_every_pass_neither_repeats_nor_skips() -> None:
    """Decisions depend on the recorded status only: replaying a pass gives the same plan."""
    s = spec(
        [
            {"setWeight": 10},
            {"pause": {"duration": "20s"}},
            {"analysis": {"metrics": [{**ERRORS, "count": 2}]}},
            {"setWeight": 60},
            {"pause": {"duration": "10s"}},
        ]
    )
    plan = decide(s, rollout(), T0)
    weights, events = [plan.weight], [e.reason for e in plan.events]
    now = T0
    while plan.promote is None:
        now += timedelta(seconds=5)
        replay = advance(s, plan, now)
        again = advance(s, plan, now)  # the operator died after deciding and decided again
        assert again == replay
        plan = replay
        weights.append(plan.weight)
        events += [e.reason for e in plan.events]
    assert events.count("WeightSet") == 2
    assert events.count("Promoted") == 1
    assert [w for w in weights if w is not None] == sorted(w for w in weights if w is not None)


def test_new_revision_mid_rollout_restarts_the_steps() -> None:
    s = spec(STEPS)
    plan = decide(s, rollout(), T0)
    plan = decide(s, rollout(plan.status, desired="v3"), T0 + timedelta(seconds=70))
    assert plan.status.canary_revision == "v3"
    assert plan.status.current_step_index == 1
    assert plan.events[0].reason == "RolloutStarted"


def test_provider_errors_become_error_and_abort() -> None:
    s = spec(
        [
            {"setWeight": 10},
            {"analysis": {"metrics": [{**ERRORS, "consecutiveErrorLimit": 1, "interval": "1s"}]}},
        ]
    )

    def down(_: str) -> MetricValue:
        return MetricValue(error="connection refused")

    plan = decide(s, rollout(), T0, down)
    assert plan.status.phase == "Progressing"
    plan = advance(s, plan, T0 + timedelta(seconds=1), down)
    assert (plan.status.phase, plan.weight) == ("Degraded", 0)
    assert "Error" in (plan.status.abort_reason or "")


def test_unknown_action_is_refused_with_a_warning() -> None:
    plan = decide(spec(STEPS), rollout(action="explode"), T0)
    assert plan.consumed_action
    assert ("UnknownAction", "Warning") in [(e.reason, e.type) for e in plan.events]
    assert plan.status.phase == "Progressing"


def test_target_missing_is_degraded() -> None:
    plan = decide(spec(STEPS), CanaryObservation(None, None), T0)
    assert plan.status.phase == "Degraded"
    assert plan.weight is None


@pytest.mark.parametrize(
    ("router", "weight", "replicas", "expected"),
    [
        ({}, 0, 4, 1),
        ({}, 30, 10, 3),
        ({"gatewayAPI": {"httpRoute": "r"}}, 31, 10, 4),
    ],
)
def test_canary_replicas(router: dict[str, object], weight: int, replicas: int, expected: int) -> None:
    assert canary_replicas(spec(STEPS, trafficRouting=router), weight, replicas) == expected


def test_measurements_are_capped_at_ten_per_metric() -> None:
    s = spec([{"setWeight": 10}, {"pause": {}}], analysis={"metrics": [{**ERRORS, "interval": "1s"}]})
    plan = decide(s, rollout(), T0)
    for i in range(1, 15):
        plan = advance(s, plan, T0 + timedelta(seconds=i))
    metric = plan.status.metrics[0]
    assert metric.name == "background/errors"
    assert metric.successful == 15
    assert len(metric.measurements) == 10


def test_a_provider_baseline_is_no_measurement_and_moves_the_first_one_an_interval_later() -> None:
    s = spec([{"setWeight": 10}, {"analysis": {"metrics": [ERRORS]}}, {"setWeight": 30}, {"pause": {}}])
    plan = decide(s, rollout(), T0, lambda _: MetricValue(baseline=True))
    assert (plan.status.phase, plan.weight) == ("Progressing", 10)
    assert plan.status.metrics[0].measurements == []
    assert plan.requeue_after == pytest.approx(10)
    with_baseline = replace(rollout(plan.status), baselines={"errors": T0})
    assert decide_canary(s, with_baseline, T0 + timedelta(seconds=9)).due == ()
    due = decide_canary(s, with_baseline, T0 + timedelta(seconds=10)).due
    assert [(d.key, d.since) for d in due] == [("errors", T0)]
    # A baseline older than the analysis (another step, a retry) does not delay it: due at once.
    stale = replace(rollout(plan.status), baselines={"errors": T0 - timedelta(seconds=1)})
    assert [d.key for d in decide_canary(s, stale, T0 + timedelta(seconds=1)).due] == ["errors"]


REPLICA_ROWS = re.findall(
    r"^\| (\d+) +\| (\d+) +\| (\d+)[^|]*\| (\d+)% +\|$", canary_module.__doc__ or "", re.MULTILINE
)


def test_replica_table_is_documented() -> None:
    assert len(REPLICA_ROWS) >= 6


@pytest.mark.parametrize(("weight", "replicas", "pods", "share"), REPLICA_ROWS)
def test_replica_router_pod_arithmetic_table(weight: str, replicas: str, pods: str, share: str) -> None:
    """Docstring rows: the canary's share of the pods is its weight, the stable fleet keeps R."""
    s = spec(STEPS, trafficRouting={"replicas": {}})
    canary = canary_replicas(s, int(weight), int(replicas))
    assert canary == int(pods)
    assert round(100 * canary / (canary + int(replicas))) == int(share)


@pytest.mark.parametrize("replicas", [1, 2, 3, 4, 5, 8, 10])
@pytest.mark.parametrize("weight", [1, 5, 10, 20, 25, 30, 40, 50])
def test_replica_router_share_is_at_least_the_weight_and_the_fewest_pods_that_give_it(
    weight: int, replicas: int
) -> None:
    s = spec(STEPS, trafficRouting={"replicas": {}})
    canary = canary_replicas(s, weight, replicas)
    assert canary / (canary + replicas) >= weight / 100
    assert (canary - 1) / (canary - 1 + replicas) < weight / 100  # one pod fewer is below the weight


def test_replica_router_abort_removes_the_canary_pods_at_once() -> None:
    s = spec(STEPS, trafficRouting={"replicas": {}}, abortScaleDownDelaySeconds=30)
    plan = decide(s, rollout(), T0)
    assert plan.canary_replicas == 1  # 10% of 4 replicas: 1 pod of 5
    plan = advance(s, plan, T0 + timedelta(seconds=5), action="abort")
    assert (plan.status.phase, plan.weight, plan.canary_replicas) == ("Degraded", 0, 0)
    assert plan.requeue_after is None  # nothing left to scale down later
