"""Each mode of ModelPin.spec.modes has its own defaults: a mode given with only some fields keeps
that mode's values for the rest (in the model and in the CRD, where the API server applies them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from artisan_common.serving import MODE_DEFAULTS, MODES, Mode, ModeParams, ModesSpec
from artisan_operator.api.model_pin import ModelPinSpec

pytestmark = pytest.mark.timeout(2)

ROOT = Path(__file__).resolve().parents[2]
# The seeds' values (ARCHITECTURE.md §2.1).
SEEDS: dict[str, dict[str, float]] = {
    "fast": {"maxNewTokens": 256, "temperature": 0.3, "topP": 0.8, "timeoutSeconds": 8},
    "balanced": {"maxNewTokens": 512, "temperature": 0.7, "topP": 0.9, "timeoutSeconds": 12},
    "creative": {"maxNewTokens": 1024, "temperature": 0.8, "topP": 0.95, "timeoutSeconds": 20},
}


@pytest.mark.parametrize("mode", MODES)
def test_a_partly_given_mode_keeps_its_own_defaults(mode: Mode) -> None:
    modes = ModesSpec.model_validate({mode: {"temperature": 0.2}})
    assert modes.params(mode).to_wire() == {**SEEDS[mode], "temperature": 0.2}
    for other in MODES:
        if other != mode:
            assert modes.params(other).to_wire() == SEEDS[other]


def test_the_issue_example() -> None:
    fast = ModesSpec.model_validate({"fast": {"temperature": 0.2}}).fast
    assert (fast.max_new_tokens, fast.timeout_seconds, fast.top_p) == (256, 8, 0.8)


def test_model_pin_defaults_and_mode_models() -> None:
    spec = ModelPinSpec.model_validate(
        {
            "models": {"primary": {"name": "q", "source": "/m", "revision": "1"}},
            "modes": {"creative": {"topP": 0.5}},
        }
    )
    assert spec.modes.creative.to_wire() == {**SEEDS["creative"], "topP": 0.5}
    assert spec.modes.fast.to_wire() == SEEDS["fast"]
    for mode, model in MODE_DEFAULTS.items():
        assert issubclass(model, ModeParams)
        assert model().to_wire() == SEEDS[mode]


def crd_modes() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / "modelpins.artisan.dev.yaml").read_text(encoding="utf-8"))
    (version,) = crd["spec"]["versions"]
    modes: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["modes"]
    return modes


@pytest.mark.parametrize("mode", MODES)
def test_the_crd_defaults_each_mode_with_its_own_values(mode: str) -> None:
    """What the API server fills in for a mode given with some fields only."""
    schema = crd_modes()["properties"][mode]
    defaults = {name: prop["default"] for name, prop in schema["properties"].items()}
    assert defaults == SEEDS[mode]
