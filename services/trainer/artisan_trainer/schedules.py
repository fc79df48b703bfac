"""Learning-rate and entropy-coefficient schedules: closed forms of the environment step (pure).

With ``t = min(step / decaySteps, 1)``:

| schedule    | value at t                                        |
|-------------|---------------------------------------------------|
| constant    | initial                                           |
| linear      | initial + (final − initial) · t                   |
| cosine      | final + (initial − final) · (1 + cos(π t)) / 2    |
| exponential | initial · (final / initial) ** t   (final > 0)    |

Every schedule reaches ``final`` at ``decaySteps`` and stays there. Example: linear 0.02 → 0.005
over 10 000 steps gives 0.01625 at step 2 500.
"""

from __future__ import annotations

import math
from typing import Literal

from artisan_common.training import EntropySchedule, LearningRateSchedule

ScheduleKind = Literal["constant", "linear", "cosine", "exponential"]


def scheduled_value(kind: ScheduleKind, initial: float, final: float, decay_steps: int, step: int) -> float:
    """The value of a ``kind`` schedule at ``step`` (see the module table)."""
    if decay_steps <= 0:
        raise ValueError("decay_steps must be positive")
    t = min(max(step, 0) / decay_steps, 1.0)
    if kind == "constant":
        return initial
    if kind == "linear":
        return initial + (final - initial) * t
    if kind == "cosine":
        return final + (initial - final) * 0.5 * (1.0 + math.cos(math.pi * t))
    if kind == "exponential":
        if initial <= 0 or final <= 0:
            raise ValueError("exponential schedule needs initial > 0 and final > 0")
        return float(initial * (final / initial) ** t)
    raise ValueError(f"unknown schedule {kind!r}")


def learning_rate_at(spec: LearningRateSchedule, step: int) -> float:
    return scheduled_value(spec.schedule, spec.initial, spec.final, spec.decay_steps, step)


def entropy_coef_at(spec: EntropySchedule, step: int) -> float:
    return scheduled_value(spec.schedule, spec.initial, spec.final, spec.decay_steps, step)
