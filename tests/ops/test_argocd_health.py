"""Argo CD health scripts (Lua), run with lupa against sample statuses of each kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lupa import LuaRuntime

SCRIPTS = Path(__file__).resolve().parents[2] / "charts" / "artisan" / "files" / "argocd"
KINDS = ("trainingrun", "modelpin", "canary", "abexperiment")


def conditions(**kinds: str | tuple[str, str]) -> list[dict[str, str]]:
    """conditions(Ready="True", Stalled=("True", "InvalidSpec: spec.x ...")) → metav1.Condition list."""
    result = []
    for type_, value in kinds.items():
        status, message = value if isinstance(value, tuple) else (value, "")
        result.append(
            {
                "type": type_,
                "status": status,
                "reason": "Reason" + type_,
                "message": message,
                "lastTransitionTime": "2025-01-01T00:00:00Z",
            }
        )
    return result


def health(kind: str, status: dict[str, Any] | None, generation: int = 3) -> dict[str, str]:
    lua = LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    obj: dict[str, Any] = {
        "apiVersion": "artisan.dev/v1alpha1",
        "metadata": {"name": "x", "generation": generation},
    }
    if status is not None:
        obj["status"] = status
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute((SCRIPTS / f"health-{kind}.lua").read_text())
    return dict(result.items())


def test_every_kind_has_a_script() -> None:
    assert sorted(p.name for p in SCRIPTS.glob("health-*.lua")) == sorted(f"health-{k}.lua" for k in KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_no_status_or_an_old_generation_is_progressing(kind: str) -> None:
    assert health(kind, None) == {
        "status": "Progressing",
        "message": "Waiting for the operator to report status",
    }
    old = {"observedGeneration": 2, "phase": "Healthy", "conditions": conditions(Ready="True")}
    assert health(kind, old) == {
        "status": "Progressing",
        "message": "Waiting for the operator to observe generation 3",
    }


@pytest.mark.parametrize("kind", KINDS)
def test_stalled_is_degraded_with_the_field_named(kind: str) -> None:
    phases = {"trainingrun": "Pending", "modelpin": "Pending", "canary": "Healthy", "abexperiment": "Running"}
    status = {
        "observedGeneration": 3,
        "phase": phases[kind],
        "conditions": conditions(
            Ready="False", Stalled=("True", "spec.ppo.entropy.final must be <= initial")
        ),
    }
    assert health(kind, status) == {
        "status": "Degraded",
        "message": "spec.ppo.entropy.final must be <= initial",
    }


def status_of(phase: str, **extra: Any) -> dict[str, Any]:
    return {"observedGeneration": 3, "phase": phase, **extra}


@pytest.mark.parametrize(
    ("kind", "status", "expected", "message"),
    [
        # TrainingRun
        (
            "trainingrun",
            status_of("Failed", message="3 rollbacks exceeded maxRollbacks"),
            "Degraded",
            "3 rollbacks",
        ),
        (
            "trainingrun",
            status_of("Suspended", conditions=conditions(Ready="False")),
            "Suspended",
            "spec.suspend",
        ),
        ("trainingrun", status_of("Succeeded", conditions=conditions(Ready="True")), "Healthy", "finished"),
        (
            "trainingrun",
            status_of("Running", conditions=conditions(Ready=("True", "step 4096"))),
            "Healthy",
            "4096",
        ),
        (
            "trainingrun",
            status_of("Pending", conditions=conditions(Ready="False", Reconciling=("True", "creating Job"))),
            "Progressing",
            "creating Job",
        ),
        # ModelPin
        (
            "modelpin",
            status_of("Ready", conditions=conditions(Ready=("True", "2/2 ready"))),
            "Healthy",
            "2/2",
        ),
        (
            "modelpin",
            status_of("Ready", conditions=conditions(Ready="True", Downshifted=("True", "creative down"))),
            "Healthy",
            "Serving downshifted: creative down",
        ),
        (
            "modelpin",
            status_of("Degraded", conditions=conditions(Ready=("False", "0/2 ready"))),
            "Degraded",
            "0/2",
        ),
        (
            "modelpin",
            status_of("Progressing", conditions=conditions(Ready="False")),
            "Progressing",
            "Progressing",
        ),
        # Canary
        (
            "canary",
            status_of(
                "Degraded", abortReason="latencyP95 failed 2 times", conditions=conditions(Ready="False")
            ),
            "Degraded",
            "latencyP95 failed",
        ),
        (
            "canary",
            status_of("Paused", message="paused at step 2 until promoted"),
            "Suspended",
            "until promoted",
        ),
        ("canary", status_of("Progressing", weight=40), "Progressing", "Canary weight 40%"),
        (
            "canary",
            status_of("Healthy", conditions=conditions(Ready=("True", "stable abc"))),
            "Healthy",
            "stable",
        ),
        # ABExperiment
        ("abexperiment", status_of("Invalid", message="variant weights sum to 90"), "Degraded", "sum to 90"),
        ("abexperiment", status_of("Running", message="120/100 samples"), "Progressing", "120/100"),
        (
            "abexperiment",
            status_of("Running", message="no difference yet", conditions=conditions(Ready="True")),
            "Healthy",
            "Running: no difference yet",
        ),
        (
            "abexperiment",
            status_of(
                "Running",
                message="statistics unavailable",
                conditions=conditions(Ready="False", Reconciling="True"),
            ),
            "Progressing",
            "statistics unavailable",
        ),
        (
            "abexperiment",
            status_of("Running", conditions=conditions(SRMDetected=("True", "p=1e-5"))),
            "Degraded",
            "Sample ratio mismatch: p=1e-5",
        ),
        ("abexperiment", status_of("Concluded", winner="treatment_a"), "Healthy", "Winner: treatment_a"),
        ("abexperiment", status_of("Inconclusive"), "Healthy", "no variant won"),
    ],
)
def test_phase_maps_to_argo_health(kind: str, status: dict[str, Any], expected: str, message: str) -> None:
    result = health(kind, status)
    assert result["status"] == expected
    assert message in result["message"]


def test_scripts_use_no_sandbox_escapes() -> None:
    # Argo CD runs health scripts in a restricted Lua VM: no os/io/require/load.
    for path in SCRIPTS.glob("*.lua"):
        source = path.read_text()
        for forbidden in ("os.", "io.", "require", "loadstring", "dofile"):
            assert forbidden not in source, (path.name, forbidden)
