"""Canary end to end: sandbox API, simulated runtime, the operator, a real Prometheus and an exporter."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from artisan_operator.sandbox.prometheus import ControlledExporter, PrometheusServer
from artisan_operator.sandbox.testing import wait_for

from .conftest import NS, Control, condition, stable_pin

pytestmark = pytest.mark.e2e


def gauge_metric(
    query: str, *, count: int | None = None, condition_: str = "result < 0.05", **extra: Any
) -> dict[str, Any]:
    metric: dict[str, Any] = {
        "name": "errors",
        "interval": "1s",
        "successCondition": condition_,
        "provider": {"prometheus": {"query": query}},
        **extra,
    }
    if count is not None:
        metric["count"] = count
    return metric


def canary(name: str, pin: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "artisan.dev/v1alpha1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"targetRef": {"name": pin}, "steps": steps, "abortScaleDownDelaySeconds": 1, **spec},
    }


def new_revision(control: Control, pin: str, revision: str = "2.5.2") -> None:
    control.patch("modelpins", pin, {"spec": {"models": {"primary": {"revision": revision}}}})


def watch_weights(
    control: Control, pin: str, until: Callable[[], Any], timeout: float = 40.0
) -> list[int | None]:
    """Distinct canary weights seen in the routing table (in order) until ``until()`` holds."""
    seen: list[int | None] = []
    deadline = time.monotonic() + timeout
    while True:
        weight = control.canary_weight(pin)
        if not seen or seen[-1] != weight:
            seen.append(weight)
        if until():
            return seen
        assert time.monotonic() < deadline, f"timed out; weights seen {seen}"
        time.sleep(0.05)


def canary_healthy(control: Control, name: str) -> bool:
    status = control.get("canaries", name).get("status") or {}
    return status.get("phase") == "Healthy" and status.get("canaryRevision") is None


def wait_for_a_passing_measurement(control: Control, timeout: float, name: str = "cny") -> None:
    """Until the Canary's status records one successful measurement of any metric."""

    def metrics() -> list[dict[str, Any]]:
        return list((control.get("canaries", name).get("status") or {}).get("metrics", []))

    wait_for(
        lambda: any(m["successful"] >= 1 for m in metrics()),
        timeout=timeout,
        message="a passing measurement",
    )


def test_canary_is_promoted_through_all_its_steps(control: Control, exporter: ControlledExporter) -> None:
    exporter.set("e2e_error_rate", 0.01, test="promote")
    old = stable_pin(control, "pin")
    query = 'e2e_error_rate{test="promote"}'
    steps = [
        {"setWeight": 20},
        {"analysis": {"metrics": [gauge_metric(query, count=2)]}},
        {"setWeight": 60},
        {"pause": {"duration": "1s"}},
        {"analysis": {"metrics": [gauge_metric(query, count=1)]}},
    ]
    control.create(canary("cny", "pin", steps))
    wait_for(lambda: canary_healthy(control, "cny"), timeout=15, message="canary idle")

    new_revision(control, "pin")
    wait_for(lambda: control.canary_weight("pin") == 20, timeout=15, message="first step")
    # The stable fleet keeps the stable pins at full size while the canary fleet runs the new ones.
    stable = control.deployment("pin-ensemble")
    assert stable is not None
    assert stable["metadata"]["labels"]["artisan.dev/revision"] == old
    assert stable["spec"]["replicas"] == 2
    canary_fleet = control.deployment("pin-ensemble-canary")
    assert canary_fleet is not None
    assert canary_fleet["spec"]["template"]["metadata"]["labels"]["artisan.dev/track"] == "canary"
    assert canary_fleet["metadata"]["labels"]["artisan.dev/revision"] != old

    def promoted() -> bool:
        return (
            control.get("modelpins", "pin")["status"]["stable"]["revision"] != old
        ) and control.canary_weight("pin") is None

    seen = watch_weights(control, "pin", promoted)
    assert [w for w in seen if w is not None] == [20, 60]

    pin = control.get("modelpins", "pin")
    assert pin["status"]["history"][-1]["revision"] == old
    new = pin["status"]["stable"]["revision"]
    status = wait_for(lambda: (c := control.get("canaries", "cny"))["status"]["phase"] == "Healthy" and c)
    assert condition(status, "Promoted")["status"] == "True"  # type: ignore[index]
    assert condition(status, "Ready")["status"] == "True"  # type: ignore[index]
    # The stable fleet now runs the promoted pins; the canary fleet is scaled away.
    wait_for(
        lambda: control.deployment("pin-ensemble")["metadata"]["labels"]["artisan.dev/revision"] == new,  # type: ignore[index]
        message="stable fleet rolled",
    )
    wait_for(lambda: control.deployment("pin-ensemble-canary")["spec"]["replicas"] == 0)  # type: ignore[index]
    weights = [e["message"] for e in control.posted_events("cny", "WeightSet", count=2)]
    assert len(weights) == 2, weights
    assert len(control.posted_events("cny", "Promoted")) == 1
    # The dashboards' operator metrics: the step reached and each object's generation.
    registry = control.contexts[-1].metrics.registry
    assert registry.get_sample_value("artisan_canary_step_index", {"namespace": NS, "name": "cny"}) == 5
    generation = {"kind": "ModelPin", "namespace": NS, "name": "pin"}
    assert (
        registry.get_sample_value("artisan_resource_generation", generation) == pin["metadata"]["generation"]
    )
    assert (
        registry.get_sample_value(
            "artisan_resource_generation", {**generation, "kind": "Canary", "name": "cny"}
        )
        == 1
    )


def test_canary_aborts_on_a_metric_breach_with_weight_zero_at_once(
    control: Control, exporter: ControlledExporter
) -> None:
    exporter.set("e2e_error_rate", 0.01, test="abort")
    old = stable_pin(control, "pin")
    steps = [
        {"setWeight": 30},
        {"analysis": {"metrics": [gauge_metric('e2e_error_rate{test="abort"}', count=30)]}},
        {"setWeight": 100},
    ]
    control.create(canary("cny", "pin", steps))
    new_revision(control, "pin")
    wait_for(lambda: control.canary_weight("pin") == 30, timeout=15, message="first step")
    wait_for_a_passing_measurement(control, timeout=10)

    exporter.set("e2e_error_rate", 0.5, test="abort")
    breached = time.monotonic()
    wait_for(lambda: control.canary_weight("pin") == 0, timeout=10, message="weight 0")
    reaction = time.monotonic() - breached
    assert reaction < 1 + 1 + 3, reaction  # interval + scrape + slack

    # The router is written first, the Canary's status right after.
    status = wait_for(lambda: (c := control.get("canaries", "cny"))["status"]["phase"] == "Degraded" and c)
    assert condition(status, "Aborted")["status"] == "True"  # type: ignore[index]
    assert "Failed" in status["status"]["abortReason"]
    assert control.get("modelpins", "pin")["status"]["stable"]["revision"] == old
    assert len(control.posted_events("cny", "Aborted")) == 1
    # After abortScaleDownDelaySeconds the canary fleet goes to zero; the weight stays 0.
    wait_for(lambda: control.deployment("pin-ensemble-canary")["spec"]["replicas"] == 0, timeout=10)  # type: ignore[index]
    assert control.canary_weight("pin") == 0


def test_prometheus_outage_mid_analysis_is_an_error_and_aborts(
    control_factory: Callable[..., Control], exporter: ControlledExporter, tmp_path: Any
) -> None:
    exporter.set("e2e_error_rate", 0.0, test="outage")
    server = PrometheusServer(tmp_path / "prometheus", [exporter.target]).start()
    try:
        server.wait_for_sample('e2e_error_rate{test="outage"}', timeout=60)
        control = control_factory(server.url)
        stable_pin(control, "pin")
        metric = gauge_metric('e2e_error_rate{test="outage"}', count=30, consecutiveErrorLimit=2)
        control.create(canary("cny", "pin", [{"setWeight": 25}, {"analysis": {"metrics": [metric]}}]))
        new_revision(control, "pin")
        wait_for_a_passing_measurement(control, timeout=20)
        assert control.canary_weight("pin") == 25
        server.stop()
        wait_for(lambda: control.canary_weight("pin") == 0, timeout=15, message="abort on Error")
    finally:
        server.stop()
    status = wait_for(lambda: (c := control.get("canaries", "cny")["status"])["phase"] == "Degraded" and c)
    assert "Error" in status["abortReason"]
    errors = status["metrics"][0]
    assert errors["consecutiveErrors"] == 3  # consecutiveErrorLimit=2 tolerated, the third is Error
    assert "unreachable" in errors["measurements"][-1]["message"]


def test_operator_restarts_mid_canary_resume_without_repeating_or_skipping(
    control: Control, exporter: ControlledExporter
) -> None:
    exporter.set("e2e_error_rate", 0.0, test="restart")
    old = stable_pin(control, "pin")
    steps = [
        {"setWeight": 10},
        {"pause": {"duration": "2s"}},
        {"setWeight": 40},
        {"pause": {"duration": "2s"}},
        {"analysis": {"metrics": [gauge_metric('e2e_error_rate{test="restart"}', count=1)]}},
        {"setWeight": 70},
        {"pause": {"duration": "1s"}},
    ]
    control.create(canary("cny", "pin", steps))
    wait_for(lambda: canary_healthy(control, "cny"), timeout=15)
    new_revision(control, "pin")
    seen: list[int | None] = []
    for weight in (10, 40):
        seen += watch_weights(control, "pin", lambda w=weight: control.canary_weight("pin") == w, timeout=20)
        control.restart()  # killed in the middle of the pause that follows

    def promoted() -> bool:
        return control.get("modelpins", "pin")["status"]["stable"]["revision"] != old

    seen += watch_weights(control, "pin", promoted, timeout=30)
    distinct = [w for i, w in enumerate(seen) if w is not None and (i == 0 or seen[i - 1] != w)]
    assert distinct == [10, 40, 70], seen

    pin = control.get("modelpins", "pin")["status"]
    assert [h["revision"] for h in pin["history"]] == [old]  # promoted exactly once
    for step, weight in ((0, 10), (2, 40), (5, 70)):
        sets = [e for e in control.events("cny", "WeightSet") if f"step {step}:" in e["message"]]
        assert len(sets) <= 1, (weight, sets)
    assert len(control.posted_events("cny", "Promoted")) == 1
    assert len(control.events("cny", "RolloutStarted")) <= 1  # an Event may be lost in a kill, never doubled


def labelled(control: Control, path: str, selector: str) -> list[str]:
    """Names of the objects under ``path`` (e.g. ``/apis/apps/v1/namespaces/default/deployments``)
    that carry the label ``selector`` (``key=value``)."""
    listed = control.raw(f"{path}?labelSelector={selector}") or {"items": []}
    return sorted(item["metadata"]["name"] for item in listed["items"])


def test_operator_restart_during_the_abort_scale_down_delay_neither_repeats_nor_restarts_the_abort(
    control: Control, exporter: ControlledExporter
) -> None:
    """Killed while the aborted canary fleet waits out abortScaleDownDelaySeconds: the fresh operator
    keeps the abort (one Aborted Event, the same abortedAt, weight 0, no new measurement) and scales
    the fleet down when the delay counted from the abort ends, not one delay after the restart."""
    exporter.set("e2e_error_rate", 0.01, test="restart-abort")
    old = stable_pin(control, "pin")
    query = 'e2e_error_rate{test="restart-abort"}'
    steps: list[dict[str, Any]] = [
        {"setWeight": 30},
        {"analysis": {"metrics": [gauge_metric(query, count=30)]}},
        {"setWeight": 100},
    ]
    delay = 5.0
    control.create(canary("cny", "pin", steps, abortScaleDownDelaySeconds=int(delay)))
    new_revision(control, "pin")
    wait_for(lambda: control.canary_weight("pin") == 30, timeout=15, message="first step")
    wait_for_a_passing_measurement(control, timeout=10)

    exporter.set("e2e_error_rate", 0.5, test="restart-abort")
    wait_for(lambda: control.canary_weight("pin") == 0, timeout=10, message="weight 0")
    zeroed = time.monotonic()
    before = wait_for(
        lambda: (s := control.get("canaries", "cny")["status"])["phase"] == "Degraded" and s,
        timeout=10,
        message="Degraded",
    )
    # Every Event of the pass is out before the kill, so each count below must stay exactly 1.
    control.posted_events("cny", "Aborted")
    control.posted_events("cny", "WeightSet")
    control.posted_events("cny", "RolloutStarted")
    # Mid-delay: the canary fleet still runs (only its weight is 0).
    wait_for(lambda: time.monotonic() - zeroed >= delay / 2, timeout=delay, message="mid-delay")
    canary_fleet = control.deployment("pin-ensemble-canary")
    assert canary_fleet is not None
    assert canary_fleet["spec"]["replicas"] >= 1
    control.restart()

    weights = watch_weights(
        control,
        "pin",
        lambda: control.deployment("pin-ensemble-canary")["spec"]["replicas"] == 0,  # type: ignore[index]
        timeout=15,
    )
    scaled_down = time.monotonic() - zeroed
    assert weights == [0], weights  # the restarted operator never routed traffic to the canary again
    # The delay runs from the recorded abortedAt: a delay restarted at the kill would end after
    # delay / 2 + delay. (abortedAt precedes the weight-0 read, so at most a pass earlier than `delay`.)
    assert delay - 1.0 <= scaled_down < delay * 1.5 - 0.5, scaled_down

    # Two more passes of the fresh operator before judging what it did.
    total = control.contexts[-1].metrics.reconcile_total  # the fresh operator's: counted from zero
    wait_for(
        lambda: sum(total.labels(kind="Canary", result=r)._value.get() for r in ("success", "requeue")) >= 2,
        timeout=10,
        message="two passes after the restart",
    )
    after = control.get("canaries", "cny")["status"]
    assert after["phase"] == "Degraded"
    assert (after["abortedAt"], after["abortReason"]) == (before["abortedAt"], before["abortReason"])
    assert after["metrics"] == before["metrics"]  # no measurement after the abort, none repeated
    assert condition({"status": after}, "Aborted")["status"] == "True"  # type: ignore[index]
    assert control.canary_weight("pin") == 0
    pin = control.get("modelpins", "pin")["status"]
    assert pin["stable"]["revision"] == old
    assert pin.get("history", []) == []  # nothing was promoted
    for reason in ("Aborted", "WeightSet", "RolloutStarted"):
        assert len(control.events("cny", reason)) == 1, (reason, control.events("cny", reason))
    # One canary fleet: the restart re-ensured the children, it did not duplicate them.
    selector = "artisan.dev%2Fcanary%3Dcny"
    assert labelled(control, f"/apis/apps/v1/namespaces/{NS}/deployments", selector) == [
        "pin-ensemble-canary"
    ]
    assert labelled(control, f"/api/v1/namespaces/{NS}/configmaps", selector) == ["pin-canary-pin-config"]
    assert labelled(control, f"/api/v1/namespaces/{NS}/services", selector) == ["pin-ensemble-canary"]
    stable = control.deployment("pin-ensemble")
    assert stable is not None
    assert stable["metadata"]["labels"]["artisan.dev/revision"] == old


def test_operator_restart_during_a_prometheus_outage_keeps_counting_the_errors_in_a_row(
    control_factory: Callable[..., Control], exporter: ControlledExporter, tmp_path: Any
) -> None:
    """Killed while Prometheus is down and errors accumulate (fewer than consecutiveErrorLimit), the
    fresh operator continues the recorded count (the measurements are the record the Canary status
    keeps, see ``policy.canary``): the abort comes with the (limit + 1)th error in a row counted over
    both operators, neither reset to zero nor counted twice; one Aborted Event, weight 0."""
    limit = 4
    exporter.set("e2e_error_rate", 0.0, test="outage-restart")
    server = PrometheusServer(tmp_path / "prometheus", [exporter.target]).start()
    try:
        server.wait_for_sample('e2e_error_rate{test="outage-restart"}', timeout=60)
        control = control_factory(server.url)
        old = stable_pin(control, "pin")
        metric = gauge_metric('e2e_error_rate{test="outage-restart"}', count=30, consecutiveErrorLimit=limit)
        control.create(canary("cny", "pin", [{"setWeight": 25}, {"analysis": {"metrics": [metric]}}]))
        new_revision(control, "pin")
        wait_for_a_passing_measurement(control, timeout=20)
        assert control.canary_weight("pin") == 25
        server.stop()
        wait_for(
            lambda: control.get("canaries", "cny")["status"]["metrics"][0]["consecutiveErrors"] >= 2,
            timeout=10,
            message="two errors in a row recorded",
        )
        killed_at = datetime.now(tz=UTC)
        control.restart()
        wait_for(lambda: control.canary_weight("pin") == 0, timeout=15, message="abort on Error")
    finally:
        server.stop()
    status = wait_for(lambda: (c := control.get("canaries", "cny")["status"])["phase"] == "Degraded" and c)
    assert "Error" in status["abortReason"]
    aborted_at = datetime.fromisoformat(status["abortedAt"])
    assert aborted_at > killed_at  # the fresh operator aborted, on the count it inherited
    result = status["metrics"][0]
    assert (result["phase"], result["consecutiveErrors"], result["error"]) == ("Error", limit + 1, limit + 1)
    errors = [m for m in result["measurements"] if m["phase"] == "Error"]
    started = [datetime.fromisoformat(m["startedAt"]) for m in errors]
    before_kill = [t for t in started if t < killed_at]
    # Both operators measured: at least the two recorded before the kill, at least one after.
    assert len(before_kill) >= 2, started
    assert len(started) - len(before_kill) >= 1, started
    assert all("unreachable" in m["message"] for m in errors)
    # Errors are retried once per interval (1 s): none taken twice, none taken early after the restart.
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(started)]
    assert all(gap >= 0.9 for gap in gaps), gaps
    assert len(control.posted_events("cny", "Aborted")) == 1

    total = control.contexts[-1].metrics.reconcile_total  # the fresh operator's passes, from zero
    passes = sum(total.labels(kind="Canary", result=r)._value.get() for r in ("success", "requeue"))
    wait_for(
        lambda: (
            sum(total.labels(kind="Canary", result=r)._value.get() for r in ("success", "requeue"))
            >= passes + 2
        ),
        timeout=10,
        message="two more passes",
    )
    after = control.get("canaries", "cny")["status"]
    assert (after["abortedAt"], after["metrics"]) == (status["abortedAt"], status["metrics"])
    assert len(control.events("cny", "Aborted")) == 1
    assert control.canary_weight("pin") == 0
    assert control.get("modelpins", "pin")["status"]["stable"]["revision"] == old
