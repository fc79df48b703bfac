from __future__ import annotations

import math

import pytest

from artisan_common.training import EntropySchedule, LearningRateSchedule
from artisan_trainer.schedules import entropy_coef_at, learning_rate_at, scheduled_value

STEPS = (0, 2500, 5000, 7500, 10000)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("linear", (0.02, 0.01625, 0.0125, 0.00875, 0.005)),
        ("cosine", tuple(0.005 + 0.015 * 0.5 * (1 + math.cos(math.pi * s / 10000)) for s in STEPS)),
        ("exponential", tuple(0.02 * 0.25 ** (s / 10000) for s in STEPS)),
        ("constant", (0.02,) * 5),
    ],
)
def test_closed_forms(kind: str, expected: tuple[float, ...]) -> None:
    values = [scheduled_value(kind, 0.02, 0.005, 10_000, s) for s in STEPS]  # type: ignore[arg-type]
    assert values == pytest.approx(expected, rel=1e-12)


def test_cosine_midpoint_and_exponential_quarter_by_hand() -> None:
    assert scheduled_value("cosine", 0.02, 0.005, 10_000, 5000) == pytest.approx(0.0125)
    assert scheduled_value("exponential", 0.02, 0.005, 10_000, 5000) == pytest.approx(0.01)


def test_constant_after_decay_and_clamped_before_zero() -> None:
    spec = EntropySchedule(initial=0.02, final=0.005, schedule="linear", decay_steps=10_000)
    assert entropy_coef_at(spec, 50_000) == pytest.approx(0.005)
    assert entropy_coef_at(spec, -5) == pytest.approx(0.02)
    lr = LearningRateSchedule(initial=3e-4, final=1e-4, schedule="cosine", decay_steps=10_000)
    assert learning_rate_at(lr, 10_000) == pytest.approx(1e-4)
    assert learning_rate_at(lr, 0) == pytest.approx(3e-4)
    assert learning_rate_at(LearningRateSchedule(schedule="constant"), 7777) == pytest.approx(3e-4)


def test_exponential_needs_positive_final() -> None:
    with pytest.raises(ValueError, match="final > 0"):
        scheduled_value("exponential", 0.02, 0.0, 100, 5)
