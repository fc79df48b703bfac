"""Rolling reward normalization (numpy, no torch).

**What is normalized, and why.** The reward fed to GAE is divided by the standard deviation of
the *discounted return* ``G_t = γ·G_{t−1} + r_t`` (reset at episode ends) over the last ``window``
values, then clipped to ±``clip``:

    r̂_t = clip(r_t / (std(G) + ε), −clip, +clip)

- Scaling by the return's spread keeps the value targets (which are returns) near unit scale, so
  one learning rate and one value-loss weight work across environments and as the reward model
  changes. Scaling by the spread of single rewards would not: CartPole's rewards are all 1 (std 0).
- No mean is subtracted: shifting every reward changes which policy is optimal in episodic tasks
  (a per-step bonus rewards surviving, a per-step cost rewards dying early).
- A rolling window, not an all-time average, follows a reward scale that drifts (a refitted reward
  model, a policy that survives longer). Until ``minSamples`` returns are seen, rewards pass
  through unscaled.

Each update is O(1): a ring buffer with running sums of G and G², plus an exact re-summation once
per ``window`` pushes so float round-off cannot accumulate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from artisan_common.training import RewardNormalizationSpec

FloatArray = npt.NDArray[np.float64]


class RollingStats:
    """Mean and std of the last ``window`` pushed values in O(1) per push."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be ≥ 1")
        self.window = window
        self.buffer = np.zeros(window, dtype=np.float64)
        self.count = 0  # values in the buffer (≤ window)
        self.head = 0  # next slot to write
        self.total = 0.0
        self.total_sq = 0.0
        self.pushes_since_resum = 0

    def push(self, value: float) -> None:
        if self.count == self.window:
            old = float(self.buffer[self.head])
            self.total -= old
            self.total_sq -= old * old
        else:
            self.count += 1
        self.buffer[self.head] = value
        self.total += value
        self.total_sq += value * value
        self.head = (self.head + 1) % self.window
        self.pushes_since_resum += 1
        if self.pushes_since_resum >= self.window:  # amortized O(1): one O(window) pass per window pushes
            self._resum()

    def _resum(self) -> None:
        """Recompute the running sums exactly (drops accumulated round-off)."""
        live = self.buffer if self.count == self.window else self.buffer[: self.count]
        self.total = float(live.sum())
        self.total_sq = float((live * live).sum())
        self.pushes_since_resum = 0

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def std(self) -> float:
        if not self.count:
            return 0.0
        mean = self.mean
        return math.sqrt(max(self.total_sq / self.count - mean * mean, 0.0))

    def state_dict(self) -> dict[str, Any]:
        return {
            "buffer": self.buffer.tolist(),
            "count": self.count,
            "head": self.head,
            "pushes_since_resum": self.pushes_since_resum,
            "total": self.total,
            "total_sq": self.total_sq,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        buffer = np.asarray(state["buffer"], dtype=np.float64)
        if buffer.shape != (self.window,):
            raise ValueError(f"normalizer window mismatch: saved {buffer.shape[0]}, configured {self.window}")
        self.buffer = buffer
        self.count = int(state["count"])
        self.head = int(state["head"])
        self.pushes_since_resum = int(state["pushes_since_resum"])
        # The running sums are restored as saved (not re-summed) so a resumed run is bit-exact.
        self.total = float(state["total"])
        self.total_sq = float(state["total_sq"])


class RewardNormalizer:
    """Scales rewards by the rolling std of the discounted return (see the module docstring)."""

    def __init__(self, spec: RewardNormalizationSpec, num_envs: int, gamma: float) -> None:
        self.spec = spec
        self.gamma = gamma
        self.stats = RollingStats(spec.window)
        self.returns = np.zeros(num_envs, dtype=np.float64)

    @property
    def active(self) -> bool:
        return self.spec.enabled and self.stats.count >= self.spec.min_samples

    @property
    def mean(self) -> float:
        return self.stats.mean

    @property
    def std(self) -> float:
        return self.stats.std

    def __call__(self, rewards: FloatArray, dones: npt.NDArray[np.bool_]) -> FloatArray:
        """Record this step's rewards and return them normalized (unchanged while inactive)."""
        if not self.spec.enabled:
            return rewards
        self.returns = self.returns * self.gamma + rewards
        for value in self.returns:
            self.stats.push(float(value))
        self.returns[dones] = 0.0
        return self.normalize(rewards)

    def normalize(self, rewards: FloatArray) -> FloatArray:
        if not self.active:
            return rewards
        clip = self.spec.clip
        return np.clip(rewards / (self.stats.std + self.spec.epsilon), -clip, clip)

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats.state_dict(), "returns": self.returns.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats.load_state_dict(state["stats"])
        returns = np.asarray(state["returns"], dtype=np.float64)
        if returns.shape != self.returns.shape:
            raise ValueError("normalizer num_envs mismatch")
        self.returns = returns
