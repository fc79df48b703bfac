"""Fleet downshift end to end: per-pod model health in an exporter, Prometheus, the operator."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from artisan_common.routing import PIN_KEY
from artisan_operator.sandbox.prometheus import ControlledExporter, PrometheusServer
from artisan_operator.sandbox.testing import wait_for

from .conftest import NS, Control, condition, stable_pin

pytestmark = pytest.mark.e2e

PODS = ("pin-ensemble-a", "pin-ensemble-b")


ROLE_OF = {"qwen": "primary", "llama": "creative"}


def report(exporter: ControlledExporter, model: str, healthy: bool, pods: tuple[str, ...] = PODS) -> None:
    """The ensemble's series: one per pinned model, labelled with its name and its role."""
    for pod in pods:
        exporter.set(
            "model_health_status",
            1.0 if healthy else 0.0,
            namespace=NS,
            service="pin-ensemble",
            pod=pod,
            model=model,
            role=ROLE_OF[model],
        )


def ceiling(control: Control) -> str:
    route = json.loads(control.routing("pin")[PIN_KEY])
    return str(route["modeCeiling"])


CREATIVE = {"name": "llama", "source": "/models/llama", "revision": "3.1.1"}


def healthy_fleet(
    control_factory: Callable[..., Control],
    prometheus: PrometheusServer,
    exporter: ControlledExporter,
    fleet_interval: float,
    downshift: dict[str, Any],
) -> Control:
    """Both models healthy on every pod (and scraped), then the operator and a stable pin of them."""
    for model in ("qwen", "llama"):
        report(exporter, model, healthy=True)
    prometheus.wait_for_sample(
        f'model_health_status{{namespace="{NS}",role="creative",pod="{PODS[1]}"}}', expect=1
    )
    control = control_factory(prometheus.url, fleet_interval_seconds=fleet_interval)
    stable_pin(
        control,
        "pin",
        models={
            "primary": {"name": "qwen", "source": "/models/qwen", "revision": "2.5.1"},
            "creative": CREATIVE,
        },
        downshift=downshift,
    )
    return control


def test_model_outage_downshifts_the_fleet_and_it_recovers(
    control_factory: Callable[..., Control], prometheus: PrometheusServer, exporter: ControlledExporter
) -> None:
    control = healthy_fleet(
        control_factory, prometheus, exporter, 1.0, {"unhealthyForSeconds": 2, "holdSeconds": 2}
    )
    health = wait_for(
        lambda: (
            (h := control.get("modelpins", "pin").get("status", {}).get("modelHealth")) and len(h) == 2 and h
        ),
        timeout=15,
        message="model health in status",
    )
    assert {(h["name"], h["healthyPods"], h["totalPods"]) for h in health} == {
        ("qwen", 2, 2),
        ("llama", 2, 2),
    }
    assert ceiling(control) == "creative"

    report(exporter, "llama", healthy=False)
    down = time.monotonic()
    wait_for(lambda: ceiling(control) == "balanced", timeout=20, message="downshift to balanced")
    assert time.monotonic() - down >= 2  # only after unhealthyForSeconds
    # The routing table first (it protects users), then the status.
    pin = wait_for(
        lambda: (p := control.get("modelpins", "pin"))["status"].get("modeCeiling") == "balanced" and p,
        timeout=10,
    )
    shifted = condition(pin, "Downshifted")
    assert shifted is not None
    assert (shifted["status"], shifted["reason"]) == ("True", "ModelUnhealthy")
    assert pin["status"]["modeCeiling"] == "balanced"
    assert control.contexts[-1].metrics.control.downshifted.labels(NS, "pin")._value.get() == 1
    assert len(control.posted_events("pin", "Downshifted")) == 1

    report(exporter, "llama", healthy=True)
    healthy = time.monotonic()
    wait_for(lambda: ceiling(control) == "creative", timeout=20, message="recovered")
    assert time.monotonic() - healthy >= 2  # only after holdSeconds of health
    restored = wait_for(
        lambda: (p := control.get("modelpins", "pin"))["status"].get("modeCeiling") == "creative" and p,
        timeout=10,
    )
    recovered = condition(restored, "Downshifted")
    assert recovered is not None
    assert (recovered["status"], recovered["reason"]) == ("False", "Recovered")
    assert len(control.posted_events("pin", "Recovered")) == 1


def fleet_passes(control: Control) -> float:
    """Fleet passes the current operator finished (a restarted one counts from zero)."""
    total = control.contexts[-1].metrics.reconcile_total
    return float(
        sum(total.labels(kind="ModelPinFleet", result=r)._value.get() for r in ("success", "requeue"))
    )


def test_operator_restarts_while_downshifted_and_during_the_hold_and_acts_once_each_way(
    control_factory: Callable[..., Control], prometheus: PrometheusServer, exporter: ControlledExporter
) -> None:
    """Killed while the fleet is downshifted, the fresh operator keeps the downshift (same record, no
    second Downshifted Event); killed again in the hold after the model recovers, it upshifts once,
    when holdSeconds counted from the recorded healthySince end."""
    hold = 3.0
    control = healthy_fleet(
        control_factory, prometheus, exporter, 0.5, {"unhealthyForSeconds": 1, "holdSeconds": int(hold)}
    )
    wait_for(
        lambda: len(control.get("modelpins", "pin").get("status", {}).get("modelHealth") or []) == 2,
        timeout=15,
        message="model health in status",
    )
    assert ceiling(control) == "creative"

    report(exporter, "llama", healthy=False)
    down = wait_for(
        lambda: (s := control.get("modelpins", "pin")["status"]).get("modeCeiling") == "balanced" and s,
        timeout=20,
        message="downshift recorded",
    )
    record = down["downshift"]
    assert (record["mode"], record["reason"]) == ("balanced", "ModelUnhealthy")
    control.posted_events("pin", "Downshifted")  # out before the kill: the count must stay 1
    control.restart()

    def ceilings_until(until: Callable[[], object], timeout: float) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while not until():
            if not seen or seen[-1] != ceiling(control):
                seen.append(ceiling(control))
            assert time.monotonic() < deadline, f"timed out; ceilings seen {seen}"
            time.sleep(0.05)
        return seen

    # Still down after the restart: the fresh operator keeps the record it finds, through several passes.
    assert ceilings_until(lambda: fleet_passes(control) >= 3, timeout=15) == ["balanced"]
    kept = control.get("modelpins", "pin")["status"]
    assert kept["downshift"] == record
    assert condition({"status": kept}, "Downshifted")["status"] == "True"  # type: ignore[index]
    assert len(control.events("pin", "Downshifted")) == 1

    report(exporter, "llama", healthy=True)
    holding = wait_for(
        lambda: (s := control.get("modelpins", "pin")["status"]["downshift"]).get("healthySince") and s,
        timeout=10,
        message="the hold started",
    )
    held = time.monotonic()
    assert ceilings_until(lambda: time.monotonic() - held >= hold / 2, timeout=hold) == ["balanced"]
    control.restart()  # in the middle of holdSeconds
    seen = ceilings_until(lambda: ceiling(control) == "creative", timeout=hold + 10)
    upshifted = time.monotonic() - held
    assert seen in ([], ["balanced"]), seen
    # The hold runs from the recorded healthySince: a hold restarted by the kill would end 1.5 holds
    # after it began.
    assert hold - 0.5 <= upshifted < hold * 1.5 - 0.5, upshifted
    restored = wait_for(
        lambda: (s := control.get("modelpins", "pin")["status"]).get("modeCeiling") == "creative" and s,
        timeout=10,
    )
    assert restored.get("downshift") is None
    assert holding["since"] == record["since"]
    recovered = condition({"status": restored}, "Downshifted")
    assert recovered is not None
    assert (recovered["status"], recovered["reason"]) == ("False", "Recovered")
    assert len(control.posted_events("pin", "Recovered")) == 1
    passes = fleet_passes(control)
    wait_for(lambda: fleet_passes(control) >= passes + 3, timeout=10, message="three more passes")
    assert ceiling(control) == "creative"
    assert len(control.events("pin", "Recovered")) == 1
    assert len(control.events("pin", "Downshifted")) == 1
