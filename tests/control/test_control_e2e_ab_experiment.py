"""ABExperiment end to end: the gateway's per-variant counters in an exporter, Prometheus, the operator."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from artisan_common.routing import EXPERIMENT_KEY, compose
from artisan_ensemble.gateway.decide import DEFAULT_VARIANT, NO_EXPERIMENT, decide_route
from artisan_operator.sandbox.prometheus import ControlledExporter, PrometheusServer
from artisan_operator.sandbox.testing import wait_for

from .conftest import NS, Control, ab_experiment, condition, stable_pin

pytestmark = pytest.mark.e2e


@pytest.fixture
def ab_control(control_factory: Callable[..., Control], prometheus: PrometheusServer) -> Control:
    return control_factory(prometheus.url, experiment_interval_seconds=1.0)


def plant(
    exporter: ControlledExporter, experiment: str, variant: str, values: Any, metric: str = "rating"
) -> None:
    """What the gateway's counters would say after observing ``values`` for this variant."""
    array = np.asarray(values, dtype=float)
    labels = {"experiment": experiment, "variant": variant, "metric": metric}
    exporter.set("artisan_variant_observations_total", float(array.size), **labels)
    exporter.set("artisan_variant_sum_total", float(array.sum()), **labels)
    exporter.set("artisan_variant_sum_squares_total", float((array**2).sum()), **labels)


def assign(exporter: ControlledExporter, experiment: str, variant: str, requests: int) -> None:
    """The gateway's assignment counter: requests assigned to this variant (the SRM test's input)."""
    exporter.set("artisan_variant_assignments_total", float(requests), experiment=experiment, variant=variant)


def routed_entry(control: Control) -> dict[str, Any] | None:
    raw = control.routing("pin").get(EXPERIMENT_KEY, "null")
    entry: dict[str, Any] | None = json.loads(raw)
    return entry


def test_planted_effect_finds_the_winner_and_promotes_it(
    ab_control: Control, exporter: ControlledExporter
) -> None:
    rng = np.random.default_rng(7)
    plant(exporter, "abx-effect", "control", rng.normal(3.5, 1.0, 400).clip(0))
    plant(exporter, "abx-effect", "treatment", rng.normal(3.9, 1.0, 400).clip(0))
    assign(exporter, "abx-effect", "control", 1010)
    assign(exporter, "abx-effect", "treatment", 990)
    stable_pin(ab_control, "pin")
    ab_control.create(ab_experiment("abx-effect", promote=True))

    status = wait_for(
        lambda: (
            (s := ab_control.get("abexperiments", "abx-effect").get("status") or {}).get("phase")
            == "Concluded"
            and s
        ),
        timeout=30,
        message="concluded",
    )
    assert status["winner"] == "treatment"
    assert status["improvementPercent"] == pytest.approx(100 * (3.9 - 3.5) / 3.5, abs=5)
    treatment = status["variants"][1]
    assert treatment["n"] == 400
    assert treatment["pValue"] <= 0.05
    assert treatment["ciLower"] > 0  # the interval of the difference excludes 0
    assert "primary metric's counts" not in status["message"]  # SRM on the assignment counter
    entry = wait_for(lambda: (e := routed_entry(ab_control)) and e.get("promoted") == "treatment" and e)
    assert entry["experiment"] == "abx-effect"
    assert len(ab_control.posted_events("abx-effect", "WinnerFound")) == 1


def test_a_a_test_finds_no_winner(ab_control: Control, exporter: ControlledExporter) -> None:
    rng = np.random.default_rng(11)
    plant(exporter, "abx-aa", "control", rng.normal(3.5, 1.0, 400).clip(0))
    plant(exporter, "abx-aa", "treatment", rng.normal(3.5, 1.0, 400).clip(0))
    assign(exporter, "abx-aa", "control", 1000)
    assign(exporter, "abx-aa", "treatment", 1000)
    stable_pin(ab_control, "pin")
    ab_control.create(ab_experiment("abx-aa"))
    analysed = wait_for(
        lambda: (
            (s := ab_control.get("abexperiments", "abx-aa").get("status") or {}).get("variants")
            and s["variants"][1].get("n") == 400
            and s.get("srmPValue") is not None
            and s
        ),
        timeout=30,
        message="analysed",
    )
    passes = ab_control.contexts[-1].metrics.reconcile_total.labels(kind="ABExperiment", result="requeue")
    seen = passes._value.get()
    wait_for(lambda: passes._value.get() >= seen + 3, timeout=15, message="three more analyses")
    status = ab_control.get("abexperiments", "abx-aa")["status"]
    assert status["phase"] == "Running"
    assert status.get("winner") is None
    assert analysed["variants"][1]["pValue"] > 0.05
    entry = routed_entry(ab_control)
    assert entry is not None
    assert entry.get("promoted") is None  # serving all variants, none promoted


def test_planted_traffic_imbalance_is_flagged_as_srm(
    ab_control: Control, exporter: ControlledExporter
) -> None:
    """The imbalance is in the assignments (1000 vs 850 requests at 50/50 weights); the ratings are
    balanced (400 each), so only the assignment counter reveals it."""
    rng = np.random.default_rng(3)
    plant(exporter, "abx-srm", "control", rng.normal(3.5, 1.0, 400).clip(0))
    plant(exporter, "abx-srm", "treatment", rng.normal(3.5, 1.0, 400).clip(0))
    assign(exporter, "abx-srm", "control", 1000)
    assign(exporter, "abx-srm", "treatment", 850)
    stable_pin(ab_control, "pin")
    ab_control.create(ab_experiment("abx-srm"))
    status = wait_for(
        lambda: (
            (s := ab_control.get("abexperiments", "abx-srm").get("status") or {}).get("phase") == "Invalid"
            and s
        ),
        timeout=30,
        message="SRM",
    )
    assert status["srmPValue"] < 0.001
    srm = condition({"status": status}, "SRMDetected")
    assert srm is not None
    assert srm["status"] == "True"
    assert "assignment counts {'control': 1000, 'treatment': 850}" in status["message"]
    wait_for(lambda: routed_entry(ab_control) is None, timeout=5)  # stopped: no routing entry
    gauge = ab_control.contexts[-1].metrics.control.experiment_srm.labels(NS, "abx-srm")
    assert gauge._value.get() == 1


def test_without_the_assignment_counter_srm_falls_back_to_primary_counts_and_says_so(
    ab_control: Control, exporter: ControlledExporter
) -> None:
    rng = np.random.default_rng(5)
    plant(exporter, "abx-old-gateway", "control", rng.normal(3.5, 1.0, 400).clip(0))
    plant(exporter, "abx-old-gateway", "treatment", rng.normal(3.5, 1.0, 300).clip(0))  # 50/50 weights
    stable_pin(ab_control, "pin")
    ab_control.create(ab_experiment("abx-old-gateway"))
    status = wait_for(
        lambda: (
            (s := ab_control.get("abexperiments", "abx-old-gateway").get("status") or {}).get("phase")
            == "Invalid"
            and s
        ),
        timeout=30,
        message="SRM on the primary counts",
    )
    assert status["srmPValue"] < 0.001
    assert "primary-metric counts" in status["message"]
    assert "no artisan_variant_assignments_total" in status["message"]


def finished_passes(control: Control, kind: str) -> float:
    """Passes the current operator finished (not errors): a restarted one counts from zero."""
    total = control.contexts[-1].metrics.reconcile_total
    return float(
        sum(total.labels(kind=kind, result=result)._value.get() for result in ("success", "requeue"))
    )


def start_with_60_samples(
    ab_control: Control,
    exporter: ControlledExporter,
    experiment: dict[str, Any],
    values: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """Plant the first 60 of each variant's values (150 requests each), create the pin and the
    experiment, and return its status once those samples (and the SRM test) are analysed."""
    name = experiment["metadata"]["name"]
    for variant, planted in zip(("control", "treatment"), values, strict=True):
        plant(exporter, name, variant, planted[:60])
        assign(exporter, name, variant, 150)
    stable_pin(ab_control, "pin")
    ab_control.create(experiment)
    status: dict[str, Any] = wait_for(
        lambda: (
            (s := ab_control.get("abexperiments", name).get("status") or {}).get("variants")
            and [v.get("n") for v in s["variants"]] == [60, 60]
            and s.get("srmPValue") is not None
            and s
        ),
        timeout=30,
        message="60 samples per variant analysed",
    )
    assert status["phase"] == "Running"
    return status


def send_the_rest(
    ab_control: Control,
    exporter: ControlledExporter,
    name: str,
    values: tuple[np.ndarray, np.ndarray],
    requests: tuple[int, int],
    phase: str,
) -> dict[str, Any]:
    """Plant all of each variant's values and its requests; the status once the phase is reached."""
    for variant, planted, assigned in zip(("control", "treatment"), values, requests, strict=True):
        plant(exporter, name, variant, planted)
        assign(exporter, name, variant, assigned)
    status: dict[str, Any] = wait_for(
        lambda: (s := ab_control.get("abexperiments", name).get("status") or {}).get("phase") == phase and s,
        timeout=30,
        message=f"phase {phase}",
    )
    return status


def test_operator_restarts_before_and_after_the_conclusion_and_the_winner_is_found_once(
    ab_control: Control, exporter: ControlledExporter
) -> None:
    name = "abx-restart"
    rng = np.random.default_rng(7)
    control_values, treatment_values = rng.normal(3.5, 1.0, 400).clip(0), rng.normal(3.9, 1.0, 400).clip(0)
    # Samples accumulate, fewer than minSamplesPerVariant yet: still Running when the operator dies.
    experiment = ab_experiment(name, promote=True)
    running = start_with_60_samples(ab_control, exporter, experiment, (control_values, treatment_values))
    assert "collecting samples: 60 of 100" in running["message"]
    entry = routed_entry(ab_control)
    assert entry is not None
    assert entry.get("promoted") is None
    before = ab_control.get("abexperiments", name)
    ab_control.restart()

    # The rest of the samples arrive while the fresh operator runs: it concludes, once.
    concluded = send_the_rest(
        ab_control, exporter, name, (control_values, treatment_values), (1010, 990), "Concluded"
    )
    assert concluded["winner"] == "treatment"
    assert concluded["startTime"] == running["startTime"]  # the same experiment, not a new one
    assert len(ab_control.posted_events(name, "WinnerFound")) == 1
    found = condition({"status": concluded}, "WinnerFound")
    assert found is not None
    assert found["status"] == "True"

    ab_control.restart()  # and once more, after the conclusion
    wait_for(lambda: finished_passes(ab_control, "ABExperiment") >= 2, timeout=15, message="two passes")
    after = ab_control.get("abexperiments", name)
    assert after["status"] == concluded  # nothing re-concluded or rewritten (same winner, same times)
    assert len(ab_control.events(name, "WinnerFound")) == 1
    # The operator never writes spec: the promotion lives in the routing table only.
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    entry = routed_entry(ab_control)
    assert entry is not None
    assert (entry["experiment"], entry["promoted"]) == (name, "treatment")
    table = compose(ab_control.routing("pin"))
    assert {decide_route(table, f"user-{i}", None).variant for i in range(200)} == {"treatment"}


def after_the_second_of(timestamp: str) -> None:
    """Wait until the wall clock is past ``timestamp`` (whole seconds, as status writes them), so a
    record re-made by a restarted operator could not carry the same time by chance."""
    recorded = datetime.fromisoformat(timestamp)
    wait_for(lambda: datetime.now(tz=UTC).replace(microsecond=0) > recorded, timeout=2, message=timestamp)


def test_operator_restarts_before_and_after_srm_and_the_experiment_is_stopped_once(
    ab_control: Control, exporter: ControlledExporter
) -> None:
    """Killed while samples accumulate (balanced so far), the fresh operator detects the planted
    imbalance once; killed again after the stop, it keeps the record: still Invalid, the same
    condition and times, one SRMDetected Event, no routing entry, spec untouched."""
    name = "abx-srm-restart"
    rng = np.random.default_rng(3)
    control_values, treatment_values = rng.normal(3.5, 1.0, 400).clip(0), rng.normal(3.5, 1.0, 400).clip(0)
    running = start_with_60_samples(
        ab_control, exporter, ab_experiment(name), (control_values, treatment_values)
    )
    assert condition({"status": running}, "SRMDetected")["status"] == "False"  # type: ignore[index]
    after_the_second_of(running["startTime"])
    ab_control.restart()

    # The imbalance (1000 vs 850 requests at 50/50 weights) arrives while the fresh operator runs.
    invalid = send_the_rest(
        ab_control, exporter, name, (control_values, treatment_values), (1000, 850), "Invalid"
    )
    assert invalid["startTime"] == running["startTime"]  # the same experiment, not a new one
    assert invalid["srmPValue"] < 0.001
    assert invalid.get("winner") is None
    srm = condition({"status": invalid}, "SRMDetected")
    assert srm is not None
    assert srm["status"] == "True"
    assert len(ab_control.posted_events(name, "SRMDetected")) == 1
    wait_for(lambda: routed_entry(ab_control) is None, timeout=5, message="stopped: no routing entry")
    before = ab_control.get("abexperiments", name)

    ab_control.restart()  # and once more, after the stop
    wait_for(lambda: finished_passes(ab_control, "ABExperiment") >= 2, timeout=15, message="two passes")
    after = ab_control.get("abexperiments", name)
    assert after["status"] == invalid  # nothing re-detected or rewritten (same condition, same times)
    assert len(ab_control.events(name, "SRMDetected")) == 1
    assert ab_control.events(name, "WinnerFound") == []
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert routed_entry(ab_control) is None  # nothing promoted: every user gets the stable pins
    table = compose(ab_control.routing("pin"))
    assert table.experiment is None
    routes = {(r.experiment, r.variant) for r in (decide_route(table, f"user-{i}", None) for i in range(200))}
    assert routes == {(NO_EXPERIMENT, DEFAULT_VARIANT)}


@pytest.mark.parametrize(("method", "phase"), [("sequential", "Running"), ("fixed", "Inconclusive")])
def test_a_a_test_with_a_restart_midway_never_finds_a_winner(
    ab_control: Control, exporter: ControlledExporter, method: str, phase: str
) -> None:
    """No difference planted; the operator is killed while samples accumulate. The sequential test
    keeps running (maxDurationSeconds is days away), the fixed one ends Inconclusive at its horizon;
    neither finds a winner, and the fresh operator keeps the recorded startTime."""
    name = f"abx-aa-restart-{method}"
    rng = np.random.default_rng(11)
    control_values, treatment_values = rng.normal(3.5, 1.0, 400).clip(0), rng.normal(3.5, 1.0, 400).clip(0)
    experiment = ab_experiment(name, method=method)
    running = start_with_60_samples(ab_control, exporter, experiment, (control_values, treatment_values))
    after_the_second_of(running["startTime"])
    ab_control.restart()

    plant(exporter, name, "control", control_values)
    plant(exporter, name, "treatment", treatment_values)
    assign(exporter, name, "control", 1000)
    assign(exporter, name, "treatment", 1000)
    analysed = wait_for(
        lambda: (
            (s := ab_control.get("abexperiments", name).get("status") or {}).get("variants")
            and [v.get("n") for v in s["variants"]] == [400, 400]
            and s
        ),
        timeout=30,
        message="400 samples per variant analysed",
    )
    passes = finished_passes(ab_control, "ABExperiment")
    wait_for(
        lambda: finished_passes(ab_control, "ABExperiment") >= passes + 3,
        timeout=15,
        message="three more passes",
    )
    status = ab_control.get("abexperiments", name)["status"]
    assert status["phase"] == phase
    assert status.get("winner") is None
    assert status["startTime"] == running["startTime"]  # the record survived the restart
    assert analysed["variants"][1]["pValue"] > 0.05
    assert condition({"status": status}, "WinnerFound") is None
    assert ab_control.events(name, "WinnerFound") == []
    entry = routed_entry(ab_control)
    if phase == "Running":
        assert entry is not None
        assert entry.get("promoted") is None  # serving all variants, none promoted
    else:
        assert entry is None  # ended: the entry is cleared, nothing promoted
        assert len(ab_control.posted_events(name, "NoSignificantDifference")) == 1
