"""assess_fleet: every row of the docstring table, manual overrides, restart safety."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from artisan_common.serving import DownshiftPolicy, ModelsSpec
from artisan_operator.policy import fleet_health as module
from artisan_operator.policy.fleet_health import FleetObservation, FleetPlan, assess_fleet, parse_manual

T0 = datetime(2025, 1, 1, tzinfo=UTC)
MODELS = ModelsSpec.model_validate(
    {
        "primary": {"name": "qwen", "source": "/m/q", "revision": "1"},
        "validator": {"name": "mistral", "source": "/m/m", "revision": "1"},
        "creative": {"name": "llama", "source": "/m/l", "revision": "1"},
    }
)
POLICY = DownshiftPolicy(unhealthy_pod_fraction=0.5, unhealthy_for_seconds=30, hold_seconds=60)


def pods(n: int, down: dict[str, int] | None = None) -> dict[str, dict[str, bool]]:
    """n pods' health by role (the ``role`` label of model_health_status); ``down``: role → pods down."""
    down = down or {}
    roles = ("primary", "validator", "creative")
    return {f"pod-{i}": {r: i >= down.get(r, 0) for r in roles} for i in range(n)}


def assess(
    obs_pods: dict[str, dict[str, bool]],
    now: datetime,
    previous: FleetPlan | None = None,
    annotation: str | None = None,
) -> FleetPlan:
    obs = FleetObservation(
        pods=obs_pods,
        downshift=previous.downshift if previous else None,
        model_health=previous.model_health if previous else (),
        conditions=previous.conditions if previous else (),
        annotation=annotation,
        generation=1,
    )
    return assess_fleet(MODELS, POLICY, obs, now)


def downshifted(plan: FleetPlan) -> tuple[str, str]:
    c = next(c for c in plan.conditions if c.type == "Downshifted")
    return c.status, c.reason


def outage() -> FleetPlan:
    plan = assess(pods(2, {"creative": 2}), T0)
    return assess(pods(2, {"creative": 2}), T0 + timedelta(seconds=30), plan)


def case_healthy() -> None:
    plan = assess(pods(3), T0)
    assert plan.mode_ceiling == "creative"
    assert downshifted(plan) == ("False", "Healthy")
    assert [(h.role, h.healthy_pods, h.total_pods) for h in plan.model_health] == [
        ("primary", 3, 3),
        ("validator", 3, 3),
        ("creative", 3, 3),
    ]


def case_brief_outage() -> None:
    plan = assess(pods(2, {"creative": 2}), T0)
    plan = assess(pods(2, {"creative": 2}), T0 + timedelta(seconds=29), plan)
    assert plan.mode_ceiling == "creative"
    assert plan.requeue_after == pytest.approx(1)
    assert plan.model_health[2].unhealthy_since == T0


def case_outage() -> None:
    plan = outage()
    assert plan.mode_ceiling == "balanced"
    assert downshifted(plan) == ("True", "ModelUnhealthy")
    assert [(e.reason, e.type) for e in plan.events] == [("Downshifted", "Warning")]
    assert "llama" in plan.events[0].message


def case_minority() -> None:
    plan = assess(pods(4, {"creative": 1}), T0)
    plan = assess(pods(4, {"creative": 1}), T0 + timedelta(minutes=5), plan)
    assert plan.mode_ceiling == "creative"


def case_worse() -> None:
    plan = outage()
    plan = assess(pods(2, {"creative": 2, "validator": 1}), T0 + timedelta(seconds=31), plan)
    plan = assess(pods(2, {"creative": 2, "validator": 1}), T0 + timedelta(seconds=61), plan)
    assert plan.mode_ceiling == "fast"
    assert plan.downshift is not None
    assert plan.downshift.since == T0 + timedelta(seconds=30)


def case_holding() -> None:
    plan = assess(pods(2), T0 + timedelta(seconds=40), outage())
    plan = assess(pods(2), T0 + timedelta(seconds=99), plan)
    assert plan.mode_ceiling == "balanced"
    assert plan.requeue_after == pytest.approx(1)


def case_recovered() -> None:
    plan = assess(pods(2), T0 + timedelta(seconds=40), outage())
    plan = assess(pods(2), T0 + timedelta(seconds=100), plan)
    assert plan.mode_ceiling == "creative"
    assert plan.downshift is None
    assert downshifted(plan) == ("False", "Recovered")
    assert [e.reason for e in plan.events] == ["Recovered"]
    # A relapse during the hold restarts the hold.
    relapse = assess(pods(2), T0 + timedelta(seconds=40), outage())
    relapse = assess(pods(2, {"creative": 2}), T0 + timedelta(seconds=50), relapse)
    relapse = assess(pods(2), T0 + timedelta(seconds=101), relapse)
    assert relapse.mode_ceiling == "balanced"


def case_manual() -> None:
    plan = assess(pods(2), T0, annotation="fast/10m")
    assert plan.mode_ceiling == "fast"
    assert plan.consumed_annotation
    assert downshifted(plan) == ("True", "ManualDownshift")
    assert plan.downshift is not None
    assert plan.downshift.until == T0 + timedelta(minutes=10)
    # Seen again before the handler removed it: not re-applied (the expiry does not move).
    again = assess(pods(2), T0 + timedelta(minutes=1), plan, annotation="fast/10m")
    assert again.downshift == plan.downshift
    assert again.events == ()


def case_manual_expired() -> None:
    plan = assess(pods(2), T0, annotation="fast/10m")
    plan = assess(pods(2), T0 + timedelta(minutes=10), plan)
    assert plan.mode_ceiling == "creative"
    assert downshifted(plan) == ("False", "Recovered")


def case_manual_off() -> None:
    plan = assess(pods(2), T0, annotation="balanced/1h")
    plan = assess(pods(2), T0 + timedelta(minutes=1), plan, annotation="off")
    assert plan.mode_ceiling == "creative"


CASES = {n[5:].replace("_", "-"): f for n, f in globals().items() if n.startswith("case_")}


def test_every_docstring_row_has_a_scenario() -> None:
    rows = set(re.findall(r"^\| ([a-z-]+) +\| [^|]*\| [a-z]+ +\| [TF]", module.__doc__ or "", re.MULTILINE))
    assert rows == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_worked_example(case: str) -> None:
    CASES[case]()


def test_manual_overrides_automatic_both_ways() -> None:
    plan = assess(pods(2, {"creative": 2}), T0, outage(), annotation="creative/5m")
    assert plan.mode_ceiling == "creative"
    plan = assess(pods(2, {"creative": 2}), T0 + timedelta(minutes=5), plan)
    assert plan.mode_ceiling == "balanced"


@pytest.mark.parametrize("value", ["turbo/5m", "fast", "fast/0s", "fast/abc"])
def test_bad_annotation_is_reported_and_changes_nothing(value: str) -> None:
    with pytest.raises(ValueError, match=r"artisan\.dev/downshift"):
        parse_manual(value)
    plan = assess(pods(2), T0, annotation=value)
    assert plan.mode_ceiling == "creative"
    assert plan.annotation_error is not None
    assert plan.events[0].type == "Warning"


def test_health_is_matched_by_role_not_by_the_user_chosen_model_name() -> None:
    """Pods report per role: a report keyed by a model name (or an unpinned role) is not evidence."""
    named = {f"pod-{i}": {"llama": False, "qwen": False} for i in range(2)}
    plan = assess(named, T0)
    plan = assess(named, T0 + timedelta(seconds=31), plan)
    assert plan.mode_ceiling == "creative"
    assert [(h.role, h.total_pods) for h in plan.model_health] == [
        ("primary", 0),
        ("validator", 0),
        ("creative", 0),
    ]
    by_role = {f"pod-{i}": {"creative": False} for i in range(2)}
    plan = assess(by_role, T0)
    plan = assess(by_role, T0 + timedelta(seconds=31), plan)
    assert plan.mode_ceiling == "balanced"
    assert [(h.role, h.name, h.healthy_pods, h.total_pods) for h in plan.model_health][2] == (
        "creative",
        "llama",
        0,
        2,
    )
