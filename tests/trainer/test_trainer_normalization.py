from __future__ import annotations

import numpy as np
import pytest

from artisan_common.training import RewardNormalizationSpec
from artisan_trainer.normalization import RewardNormalizer, RollingStats


def test_rolling_stats_match_naive_window() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(5.0, 3.0, size=3500) * rng.choice([1, 100], size=3500)
    stats = RollingStats(window=1000)
    for i, value in enumerate(values):
        stats.push(float(value))
        if i % 97 == 0 or i == len(values) - 1:
            window = values[max(0, i - 999) : i + 1]
            assert stats.count == len(window)
            assert stats.mean == pytest.approx(window.mean(), rel=1e-9, abs=1e-9)
            assert stats.std == pytest.approx(window.std(), rel=1e-9)


def test_push_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each push touches one slot and two running sums; the O(window) exact re-summation runs only
    # once per `window` pushes, so the amortized cost does not grow with the window.
    stats = RollingStats(window=1000)
    calls: list[int] = []
    original = RollingStats._resum

    def counting(self: RollingStats) -> None:
        calls.append(1)
        original(self)

    monkeypatch.setattr(RollingStats, "_resum", counting)
    for i in range(5000):
        stats.push(float(i))
    assert len(calls) == 5
    assert stats.mean == pytest.approx(np.arange(4000, 5000).mean())


def test_normalizer_scales_by_return_std_after_min_samples_and_clips() -> None:
    spec = RewardNormalizationSpec(window=50, min_samples=10, clip=2.0)
    norm = RewardNormalizer(spec, num_envs=2, gamma=0.5)
    dones = np.array([False, False])
    out = norm(np.array([1.0, 2.0]), dones)
    assert out.tolist() == [1.0, 2.0]  # fewer than minSamples returns: passthrough
    returns = [1.0, 2.0]
    g = np.array([1.0, 2.0])
    for _ in range(10):
        out = norm(np.array([1.0, 2.0]), dones)
        g = 0.5 * g + np.array([1.0, 2.0])
        returns += g.tolist()
    std = float(np.std(returns))
    assert norm.std == pytest.approx(std)
    assert out.tolist() == pytest.approx([min(1.0 / (std + 1e-8), 2.0), min(2.0 / (std + 1e-8), 2.0)])
    # episode end resets that env's discounted return
    norm(np.array([1.0, 1.0]), np.array([True, False]))
    assert norm.returns[0] == 0.0
    assert norm.returns[1] > 0


def test_disabled_normalizer_is_identity_and_state_round_trips() -> None:
    off = RewardNormalizer(RewardNormalizationSpec(enabled=False), 1, 0.99)
    assert off(np.array([3.0]), np.array([False])).tolist() == [3.0]
    spec = RewardNormalizationSpec(window=20, min_samples=5)
    a = RewardNormalizer(spec, 1, 0.9)
    for r in range(30):
        a(np.array([float(r % 7)]), np.array([r % 5 == 0]))
    b = RewardNormalizer(spec, 1, 0.9)
    b.load_state_dict(a.state_dict())
    x = np.array([2.5])
    assert b(x, np.array([False])).tolist() == a(x, np.array([False])).tolist()
    with pytest.raises(ValueError, match="window mismatch"):
        RewardNormalizer(RewardNormalizationSpec(window=21), 1, 0.9).load_state_dict(a.state_dict())
