from __future__ import annotations

import pytest

from artisan_common.retuning import apply_suggestions, suggest_retuning
from artisan_common.training import TrainingConfig


def params(report: object) -> dict[str, float]:
    return {s.parameter: s.suggested for s in report.suggestions}  # type: ignore[attr-defined]


def test_too_few_samples_suggest_nothing() -> None:
    report = suggest_retuning([1.0] * 99, TrainingConfig())
    assert report.suggestions == ()
    assert report.skipped_reason == "99 curated samples, 100 needed"


def test_low_mean_raises_entropy_bounded() -> None:
    config = TrainingConfig()
    report = suggest_retuning([2.0, 2.5] * 60, config)
    assert params(report) == {
        "ppo.entropy.initial": pytest.approx(0.015),
        "ppo.entropy.final": pytest.approx(0.0015),
    }
    assert "mean < 3.0" in report.suggestions[0].reason
    high = TrainingConfig.model_validate({"ppo": {"entropy": {"initial": 0.09, "final": 0.01}}})
    assert params(suggest_retuning([2.0] * 100, high))["ppo.entropy.initial"] == pytest.approx(0.1)
    capped = TrainingConfig.model_validate({"ppo": {"entropy": {"initial": 0.1, "final": 0.1}}})
    assert suggest_retuning([2.0] * 100, capped).suggestions == ()


def test_spread_lowers_learning_rate_and_high_mean_lowers_clip() -> None:
    config = TrainingConfig()
    spread = suggest_retuning([1.0, 5.0] * 100, config)  # mean 3, std 2
    assert params(spread) == {
        "ppo.learningRate.initial": pytest.approx(1.5e-4),
        "ppo.learningRate.final": pytest.approx(5e-5),
    }
    happy = suggest_retuning([4.0, 5.0] * 100, config)
    assert params(happy) == {"ppo.clipRange": pytest.approx(0.15)}
    floor = TrainingConfig.model_validate({"ppo": {"clipRange": 0.05}})
    assert suggest_retuning([5.0] * 100, floor).suggestions == ()


def test_only_the_newest_max_samples_count() -> None:
    ratings = [1.0] * 1000 + [4.5] * 300  # old bad ratings are beyond maxSamples=300
    report = suggest_retuning(ratings, TrainingConfig())
    assert report.samples == 300
    assert params(report) == {"ppo.clipRange": pytest.approx(0.15)}


def test_apply_suggestions_returns_a_valid_config() -> None:
    config = TrainingConfig()
    report = suggest_retuning([1.0, 2.0, 1.0, 5.0] * 50, config)
    updated = apply_suggestions(config, report.suggestions)
    assert updated.ppo.entropy.initial == pytest.approx(0.015)
    assert updated.ppo.learning_rate.initial == pytest.approx(1.5e-4)
    assert config.ppo.entropy.initial == 0.01  # the original is unchanged
