"""Automatic rollback: pure detectors of unstable training and the choice of where to go back.

Each trigger is built to ignore noise:

| trigger            | fires when                                                                    |
|--------------------|-------------------------------------------------------------------------------|
| ``kl_divergence``  | approx KL > ``klThreshold`` on ``klConsecutiveUpdates`` updates in a row      |
| ``value_loss_spike`` | relative value loss > ``lossSpikeFactor`` × max(its EMA, floor), on        |
|                    | ``lossSpikeConsecutiveUpdates`` updates in a row. Only the value loss is      |
|                    | judged (policy loss sits near 0); it is taken relative to the mean square of  |
|                    | its targets, so returns that grow as the policy improves (CartPole reaching   |
|                    | 500 steps) are not a spike, and the floor keeps a tiny baseline from firing   |
| ``reward_drop``    | mean return of the last ``window`` episodes is below the mean of the          |
|                    | ``baselineWindow`` episodes before them by more than ``rewardDropFraction`` × |
|                    | |baseline| (sign-aware) *and* by more than 3 standard errors of the difference |
|                    | of the two means (noisy returns need a bigger drop)                           |

Where to go back: checkpoints saved at or after the step where the anomaly began are suspect;
``stepsBack = 1`` picks the newest checkpoint before that step, 2 the one before it, and so on.
When none precedes it, the best checkpoint (if older) or else the oldest kept one is used (see
:func:`rollback_candidates`); only a directory with no loadable checkpoint has no target.
After a rollback the learning rate is multiplied by ``rollbackLrFactor`` (0.5 by default,
cumulative), so the same blow-up is not replayed at the same step size.

Worked example (klThreshold 0.03, 2 consecutive, checkpoints at 0, 2048, 4096, 6144):

| update ends at step | approx KL | streak | action                               |
|---------------------|-----------|--------|--------------------------------------|
| 4096                | 0.01      | 0      | —                                    |
| 6144                | 0.05      | 1      | — (one spike is noise)               |
| 8192                | 0.06      | 2      | rollback to 4096 (6144 is suspect)   |
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from artisan_common.training import RollbackSpec

EMA_ALPHA = 0.1
"""Weight of the newest value loss in its baseline EMA."""
MIN_UPDATES_FOR_LOSS_BASELINE = 3
"""Value-loss spikes are judged only after this many updates have built the baseline."""
NOISE_STANDARD_ERRORS = 3.0
"""A reward drop must also exceed this many standard errors of (baseline mean − recent mean)."""


class RollbackReason(enum.StrEnum):
    KL_DIVERGENCE = "kl_divergence"
    VALUE_LOSS_SPIKE = "value_loss_spike"
    REWARD_DROP = "reward_drop"


@dataclass(frozen=True)
class Anomaly:
    reason: RollbackReason
    since_step: int
    """First step whose checkpoint is suspect."""
    detail: str


@dataclass(frozen=True)
class DetectorState:
    kl_streak: int = 0
    kl_since: int | None = None
    loss_streak: int = 0
    loss_since: int | None = None
    loss_ema: float | None = None
    updates: int = 0


@dataclass(frozen=True)
class DetectorSettings:
    kl_threshold: float
    kl_consecutive: int
    loss_spike_factor: float
    loss_consecutive: int
    loss_floor: float

    @classmethod
    def from_spec(
        cls, spec: RollbackSpec, kl_consecutive: int = 2, loss_consecutive: int = 2, loss_floor: float = 0.05
    ) -> DetectorSettings:
        return cls(spec.kl_threshold, kl_consecutive, spec.loss_spike_factor, loss_consecutive, loss_floor)


def relative_value_loss(value_loss: float, mean_square_return: float) -> float:
    """Value loss over the mean square of its targets: scale-free, so growing returns do not spike it."""
    return value_loss / max(mean_square_return, 1e-8)


def observe_update(
    state: DetectorState, step: int, kl: float, value_loss: float, settings: DetectorSettings
) -> tuple[DetectorState, Anomaly | None]:
    """Fold one update's KL and (relative) value loss into the detector; an Anomaly when a trigger fires.

    ``step`` is the environment step at which the update's checkpoint would be saved; ``value_loss``
    is what is judged, normally :func:`relative_value_loss`.
    """
    kl_high = not math.isfinite(kl) or kl > settings.kl_threshold
    kl_streak = state.kl_streak + 1 if kl_high else 0
    kl_since = (state.kl_since if state.kl_streak else step) if kl_high else None

    baseline = max(state.loss_ema if state.loss_ema is not None else 0.0, settings.loss_floor)
    judged = state.updates >= MIN_UPDATES_FOR_LOSS_BASELINE
    spike = not math.isfinite(value_loss) or (judged and value_loss > settings.loss_spike_factor * baseline)
    loss_streak = state.loss_streak + 1 if spike else 0
    loss_since = (state.loss_since if state.loss_streak else step) if spike else None
    # A spike does not move the baseline, so a blow-up cannot raise the bar it is judged against.
    ema = state.loss_ema
    if not spike and math.isfinite(value_loss):
        ema = value_loss if ema is None else (1 - EMA_ALPHA) * ema + EMA_ALPHA * value_loss

    new_state = DetectorState(kl_streak, kl_since, loss_streak, loss_since, ema, state.updates + 1)
    if kl_streak >= settings.kl_consecutive and kl_since is not None:
        detail = f"approx KL {kl:.4f} > {settings.kl_threshold} on {kl_streak} consecutive updates"
        return new_state, Anomaly(RollbackReason.KL_DIVERGENCE, kl_since, detail)
    if loss_streak >= settings.loss_consecutive and loss_since is not None:
        detail = (
            f"value loss {value_loss:.4g} > {settings.loss_spike_factor} × baseline {baseline:.4g} "
            f"on {loss_streak} consecutive updates"
        )
        return new_state, Anomaly(RollbackReason.VALUE_LOSS_SPIKE, loss_since, detail)
    return new_state, None


def reset_streaks(state: DetectorState) -> DetectorState:
    """After a rollback: forget the streaks, keep the learned loss baseline."""
    return replace(state, kl_streak=0, kl_since=None, loss_streak=0, loss_since=None)


def detect_reward_drop(
    returns: Sequence[float], end_steps: Sequence[int], spec: RollbackSpec
) -> Anomaly | None:
    """Compare the last ``window`` episode returns with the ``baselineWindow`` before them.

    ``end_steps[i]`` is the step at which episode i ended; the anomaly begins at the first episode
    of the recent window. Needs at least ``window`` baseline episodes.
    """
    window = spec.window
    if len(returns) < 2 * window:
        return None
    values = np.asarray(returns, dtype=np.float64)
    recent = values[-window:]
    baseline = values[-window - spec.baseline_window : -window]
    base_mean, recent_mean = float(baseline.mean()), float(recent.mean())
    drop = base_mean - recent_mean
    standard_error = math.sqrt(float(baseline.var()) / len(baseline) + float(recent.var()) / window)
    noise = NOISE_STANDARD_ERRORS * standard_error
    if drop > spec.reward_drop_fraction * abs(base_mean) and drop > noise:
        detail = (
            f"mean return {recent_mean:.4g} over {window} episodes < baseline {base_mean:.4g} "
            f"over {len(baseline)} by {drop:.4g} (> {spec.reward_drop_fraction:.0%} and > {noise:.3g} noise)"
        )
        return Anomaly(RollbackReason.REWARD_DROP, int(end_steps[-window]), detail)
    return None


def rollback_candidates(
    checkpoint_steps: Sequence[int], since_step: int, steps_back: int, best_step: int | None = None
) -> list[int]:
    """The checkpoint steps to try restoring, in order (the next one is tried when one is refused).

    1. kept checkpoints saved before ``since_step``: the ``steps_back``-th newest first (the oldest
       when fewer are kept), then the older ones, then the newer ones still before ``since_step``;
    2. the best checkpoint, when it was saved before ``since_step``;
    3. fallback when nothing before ``since_step`` loads (a reward drop dated from the first of its
       ``window`` episodes can precede every kept checkpoint): the kept checkpoints oldest first
       (the earliest holds the least of the anomaly), then the best one.

    Worked examples:

    | kept             | best | since | stepsBack | candidates            | why                              |
    |------------------|------|-------|-----------|-----------------------|----------------------------------|
    | 0, 2048, 4096    | —    | 4096  | 1         | 2048, 0, 4096         | newest before the anomaly first  |
    | 0, 2048, 4096    | —    | 4096  | 2         | 0, 2048, 4096         | second newest, then the newer    |
    | 8192, 10240      | 2048 | 6000  | 1         | 2048, 8192, 10240     | only best predates the anomaly   |
    | 8192, 10240      | —    | 6000  | 1         | 8192, 10240           | nothing predates it: oldest kept |
    | 8192, 10240      | 9000 | 6000  | 1         | 8192, 10240, 9000     | best is suspect too: last        |
    | —                | —    | 6000  | 1         | —                     | no target at all                 |
    """
    kept = sorted(set(checkpoint_steps))
    eligible = [step for step in kept if step < since_step]
    first = max(len(eligible) - steps_back, 0)
    ordered = eligible[first::-1] + eligible[first + 1 :]
    if best_step is not None and best_step < since_step and best_step not in ordered:
        ordered.append(best_step)
    ordered += [step for step in kept if step >= since_step]
    if best_step is not None and best_step not in ordered:
        ordered.append(best_step)
    return ordered


def choose_rollback_target(
    checkpoint_steps: Sequence[int], since_step: int, steps_back: int, best_step: int | None = None
) -> int | None:
    """The first of :func:`rollback_candidates` (None when there is no checkpoint at all)."""
    candidates = rollback_candidates(checkpoint_steps, since_step, steps_back, best_step)
    return candidates[0] if candidates else None


def can_roll_back(rollbacks_done: int, spec: RollbackSpec) -> bool:
    return spec.enabled and rollbacks_done < spec.max_rollbacks


def learning_rate_scale_after(rollbacks_done: int, factor: float) -> float:
    """The multiplier applied to the scheduled learning rate after ``rollbacks_done`` rollbacks."""
    return float(factor**rollbacks_done)
