"""Fleet downshift end to end: per-pod model health in an exporter, Prometheus, the operator."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

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


def test_model_outage_downshifts_the_fleet_and_it_recovers(
    control_factory: Callable[..., Control], prometheus: PrometheusServer, exporter: ControlledExporter
) -> None:
    for model in ("qwen", "llama"):
        report(exporter, model, healthy=True)
    prometheus.wait_for_sample(
        f'model_health_status{{namespace="{NS}",role="creative",pod="{PODS[1]}"}}', expect=1
    )
    control = control_factory(prometheus.url, fleet_interval_seconds=1.0)
    creative = {"name": "llama", "source": "/models/llama", "revision": "3.1.1"}
    stable_pin(
        control,
        "pin",
        models={
            "primary": {"name": "qwen", "source": "/models/qwen", "revision": "2.5.1"},
            "creative": creative,
        },
        downshift={"unhealthyForSeconds": 2, "holdSeconds": 2},
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
