"""assess_experiment: the rows of its docstring table, on synthetic per-variant statistics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from artisan_operator.api.ab_experiment import ABExperimentSpec
from artisan_operator.policy.ab_experiment import ExperimentObservation, assess_experiment
from artisan_operator.policy.statistics import SufficientStats

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def spec(**overrides: object) -> ABExperimentSpec:
    fields: dict[str, object] = {
        "targetRef": {"name": "fleet"},
        "variants": [
            {"name": "control", "weight": 50},
            {"name": "treatment", "weight": 50, "mode": "creative"},
        ],
        "analysis": {"minSamplesPerVariant": 100},
    }
    fields.update(overrides)
    return ABExperimentSpec.model_validate(fields)


def normal(mean: float, n: int, seed: int) -> SufficientStats:
    return SufficientStats.of(np.random.default_rng(seed).normal(mean, 1.0, n))


def observe(control: SufficientStats, treatment: SufficientStats, **kw: object) -> ExperimentObservation:
    return ExperimentObservation(primary={"control": control, "treatment": treatment}, generation=1, **kw)  # type: ignore[arg-type]


def condition(plan_status: object, type_: str) -> str | None:
    return next((c.status for c in plan_status.conditions if c.type == type_), None)  # type: ignore[attr-defined]


def test_collecting_samples_is_running_with_the_route() -> None:
    plan = assess_experiment(spec(), "exp", observe(normal(3, 50, 1), normal(4, 50, 2)), T0)
    assert plan.status.phase == "Running"
    assert plan.status.winner is None
    assert plan.route is not None
    assert [v.name for v in plan.route.variants] == ["control", "treatment"]
    assert plan.route.promoted is None
    assert "50 of 100" in (plan.status.message or "")


def test_planted_effect_concludes_with_winner_and_promotes() -> None:
    s = spec(onConclusion={"promote": True})
    plan = assess_experiment(s, "exp", observe(normal(3.0, 400, 1), normal(3.5, 400, 2)), T0)
    assert plan.status.phase == "Concluded"
    assert plan.status.winner == "treatment"
    assert plan.status.improvement_percent is not None
    assert 10 < plan.status.improvement_percent < 25
    assert plan.route is not None
    assert plan.route.promoted == "treatment"
    assert plan.status.promoted is True
    assert condition(plan.status, "WinnerFound") == "True"
    assert [e.reason for e in plan.events] == ["WinnerFound"]
    treatment = plan.status.variants[1]
    assert treatment.e_value is not None
    assert treatment.e_value >= 20
    assert treatment.ci_lower is not None
    assert treatment.ci_lower > 0


def test_decrease_direction_prefers_lower_means() -> None:
    s = spec(metrics={"primary": {"name": "latency", "direction": "decrease"}})
    plan = assess_experiment(s, "exp", observe(normal(3.0, 400, 1), normal(3.5, 400, 2)), T0)
    assert plan.status.winner == "control"


def test_aa_experiment_keeps_running_then_is_inconclusive_at_max_duration() -> None:
    s = spec(analysis={"minSamplesPerVariant": 100, "maxDurationSeconds": 3600})
    obs = observe(normal(3.0, 500, 1), normal(3.0, 500, 2))
    plan = assess_experiment(s, "exp", obs, T0)
    assert plan.status.phase == "Running"
    later = ExperimentObservation(primary=obs.primary, generation=1, previous=plan.status)
    plan = assess_experiment(s, "exp", later, T0 + timedelta(seconds=3600))
    assert plan.status.phase == "Inconclusive"
    assert plan.route is None
    assert condition(plan.status, "MaxDurationReached") == "True"


def test_planted_imbalance_is_srm_and_stops_the_experiment() -> None:
    obs = observe(normal(3.0, 500, 1), normal(3.0, 500, 2), assignments={"control": 5600, "treatment": 4400})
    plan = assess_experiment(spec(), "exp", obs, T0)
    assert plan.status.phase == "Invalid"
    assert plan.status.srm_p_value is not None
    assert plan.status.srm_p_value < 0.001
    assert condition(plan.status, "SRMDetected") == "True"
    assert condition(plan.status, "Stalled") == "True"
    assert plan.route is None
    assert plan.events[0].type == "Warning"


def test_guardrail_vetoes_the_winner() -> None:
    s = spec(metrics={"guardrails": [{"name": "latencyP95", "max": 5.0}]})
    guardrails = {"control": {"latencyP95": 2.0}, "treatment": {"latencyP95": 7.5}}
    plan = assess_experiment(
        s, "exp", observe(normal(3.0, 400, 1), normal(3.5, 400, 2), guardrails=guardrails), T0
    )
    assert plan.status.phase == "Running"
    assert plan.status.winner is None
    assert condition(plan.status, "GuardrailBreached") == "True"
    ok = {"control": {"latencyP95": 2.0}, "treatment": {"latencyP95": 4.0}}
    plan = assess_experiment(s, "exp", observe(normal(3.0, 400, 1), normal(3.5, 400, 2), guardrails=ok), T0)
    assert plan.status.winner == "treatment"


def test_fixed_method_without_effect_is_inconclusive_at_the_horizon() -> None:
    s = spec(analysis={"method": "fixed", "minSamplesPerVariant": 300})
    plan = assess_experiment(s, "exp", observe(normal(3.0, 300, 1), normal(3.0, 300, 2)), T0)
    assert plan.status.phase == "Inconclusive"
    treatment = plan.status.variants[1]
    assert treatment.p_value is not None
    assert treatment.p_value > 0.05
    assert treatment.e_value is None


def test_holm_across_three_variants() -> None:
    s = spec(
        variants=[
            {"name": "control", "weight": 50},
            {"name": "a", "weight": 40},
            {"name": "b", "weight": 10},
        ]
    )
    obs = ExperimentObservation(
        primary={"control": normal(3.0, 500, 1), "a": normal(3.0, 400, 2), "b": normal(3.6, 200, 3)},
        assignments={"control": 500, "a": 400, "b": 100},
        generation=1,
    )
    plan = assess_experiment(s, "exp", obs, T0)
    # b was assigned only 100 where 10% of 1000 expected: fine; a has no effect; b wins.
    assert plan.status.winner == "b"


def test_conclusion_is_a_record_kept_until_the_spec_changes() -> None:
    s = spec(onConclusion={"promote": True})
    first = assess_experiment(s, "exp", observe(normal(3.0, 400, 1), normal(3.5, 400, 2)), T0)
    # Later data (even A/A-like) does not undo a conclusion of the same generation.
    again = assess_experiment(
        s,
        "exp",
        observe(normal(3.0, 10, 1), normal(3.0, 10, 2), previous=first.status),
        T0 + timedelta(hours=1),
    )
    assert again.status == first.status
    assert again.route is not None
    assert again.route.promoted == "treatment"
    assert again.events == ()
    changed = ExperimentObservation(primary={}, generation=2, previous=first.status)
    restarted = assess_experiment(s, "exp", changed, T0 + timedelta(hours=2))
    assert restarted.status.phase == "Running"
    assert restarted.status.start_time == T0 + timedelta(hours=2)


def test_srm_uses_the_assignment_counts_when_the_gateway_exports_them() -> None:
    balanced = (normal(3.5, 400, 1), normal(3.5, 400, 2))
    # Ratings balanced, assignments 1000 vs 850 at 50/50: an SRM only the assignments show.
    plan = assess_experiment(
        spec(), "exp", observe(*balanced, assignments={"control": 1000, "treatment": 850}), T0
    )
    assert plan.status.phase == "Invalid"
    assert "assignment counts {'control': 1000, 'treatment': 850}" in (plan.status.message or "")
    assert "primary metric's counts" not in (plan.status.message or "")
    # Ratings imbalanced, assignments balanced: users assigned evenly rated unevenly; no SRM.
    skewed = (normal(3.5, 400, 1), normal(3.5, 300, 2))
    plan = assess_experiment(
        spec(), "exp", observe(*skewed, assignments={"control": 1000, "treatment": 1000}), T0
    )
    assert plan.status.phase == "Running"
    assert condition(plan.status, "SRMDetected") == "False"


def test_srm_falls_back_to_the_primary_counts_and_says_so() -> None:
    skewed = (normal(3.5, 400, 1), normal(3.5, 300, 2))
    plan = assess_experiment(spec(), "exp", observe(*skewed), T0)
    assert plan.status.phase == "Invalid"
    assert "primary-metric counts" in (plan.status.message or "")
    running = assess_experiment(spec(), "exp", observe(normal(3.5, 400, 1), normal(3.5, 400, 2)), T0)
    assert "SRM checked on the primary metric's counts" in (running.status.message or "")
