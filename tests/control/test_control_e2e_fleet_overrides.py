"""Emergency stop and resume of a ModelPin's fleet end to end (annotations, never spec)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from artisan_operator.sandbox.testing import wait_for

from .conftest import Control, condition, stable_pin

pytestmark = pytest.mark.e2e


def replicas(control: Control, name: str) -> Any:
    return (control.deployment(name) or {}).get("spec", {}).get("replicas")


def test_emergency_stop_scales_the_fleet_to_zero_and_resume_restores_it(
    control_factory: Callable[..., Control],
) -> None:
    control = control_factory(None)
    stable_pin(control, "pin", replicas=2)
    assert replicas(control, "pin-ensemble") == 2
    control.patch("modelpins", "pin", {"metadata": {"annotations": {"artisan.dev/emergency-stop": "true"}}})
    wait_for(lambda: replicas(control, "pin-ensemble") == 0, timeout=10, message="scaled to 0")
    stopped = wait_for(
        lambda: (p := control.get("modelpins", "pin"))["status"]["phase"] == "Degraded" and p,
        timeout=10,
        message="Degraded",
    )
    assert condition(stopped, "EmergencyStopped")["status"] == "True"  # type: ignore[index]
    assert condition(stopped, "Ready")["reason"] == "EmergencyStopped"  # type: ignore[index]
    assert stopped["spec"]["replicas"] == 2  # spec untouched

    control.patch("modelpins", "pin", {"metadata": {"annotations": {"artisan.dev/emergency-stop": None}}})
    wait_for(lambda: replicas(control, "pin-ensemble") == 2, timeout=10, message="restored")
    resumed = wait_for(
        lambda: (p := control.get("modelpins", "pin"))["status"]["phase"] == "Ready" and p,
        timeout=10,
        message="Ready again",
    )
    lifted = condition(resumed, "EmergencyStopped")
    assert lifted is not None
    assert (lifted["status"], lifted["reason"]) == ("False", "Resumed")
