"""Hyperparameter suggestions from curated user ratings (pure).

Once ``retuning.minSamples`` curated samples exist, the newest ``retuning.maxSamples`` are read
and these rules fire (each independently; every change is a bounded step):

| signal                       | suggestion                | step                           | bound        |
|------------------------------|---------------------------|--------------------------------|--------------|
| mean rating < 3              | raise the entropy bonus   | initial and final × 1.5        | ≤ 0.1        |
| rating std > 1.5             | lower the learning rate   | initial and final × 0.5        | ≥ 1e-6       |
| mean rating ≥ 4              | lower the clip range      | − 0.05                         | ≥ 0.05       |

Low ratings mean the policy settled on formulas users dislike → explore more. Widely spread
ratings mean the updates are noisy → smaller steps. High ratings mean the policy is good →
protect it with smaller policy changes. A suggestion whose bound leaves nothing to change is
not made. Every suggestion carries its reason and the statistics behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from artisan_common.training import RetuningSpec, TrainingConfig


@dataclass(frozen=True)
class RetuningRules:
    low_mean_rating: float = 3.0
    high_rating_std: float = 1.5
    high_mean_rating: float = 4.0
    entropy_factor: float = 1.5
    entropy_max: float = 0.1
    learning_rate_factor: float = 0.5
    learning_rate_min: float = 1e-6
    clip_step: float = 0.05
    clip_min: float = 0.05


class Suggestion(BaseModel):
    model_config = ConfigDict(frozen=True)

    parameter: str
    """Dotted camelCase path in the TrainingRun spec, e.g. ``ppo.entropy.initial``."""
    current: float
    suggested: float
    reason: str
    """Why, with the numbers that triggered it."""


class RetuningReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    samples: int
    """Curated ratings considered."""
    mean_rating: float | None
    rating_std: float | None
    suggestions: tuple[Suggestion, ...]
    skipped_reason: str | None = None
    """Why no rule was evaluated (too few samples, disabled)."""


def suggest_retuning(
    ratings: Sequence[float],
    config: TrainingConfig,
    spec: RetuningSpec | None = None,
    rules: RetuningRules = RetuningRules(),
) -> RetuningReport:
    """Suggestions for ``config`` from curated ratings (oldest first; the newest maxSamples are used)."""
    spec = spec or config.feedback.retuning
    if not spec.enabled:
        return RetuningReport(
            samples=0, mean_rating=None, rating_std=None, suggestions=(), skipped_reason="retuning disabled"
        )
    window = np.asarray(list(ratings)[-spec.max_samples :], dtype=np.float64)
    if len(window) < spec.min_samples:
        return RetuningReport(
            samples=len(window),
            mean_rating=None,
            rating_std=None,
            suggestions=(),
            skipped_reason=f"{len(window)} curated samples, {spec.min_samples} needed",
        )
    mean, std = float(window.mean()), float(window.std())
    stats = f"mean rating {mean:.2f}, std {std:.2f} over {len(window)} samples"
    ppo = config.ppo
    out: list[Suggestion] = []

    def suggest(parameter: str, current: float, suggested: float, reason: str) -> None:
        if abs(suggested - current) > 1e-15:
            out.append(Suggestion(parameter=parameter, current=current, suggested=suggested, reason=reason))

    if mean < rules.low_mean_rating:
        why = f"{stats}: mean < {rules.low_mean_rating} → raise entropy to explore more"
        for name in ("initial", "final"):
            current = float(getattr(ppo.entropy, name))
            raised = min(rules.entropy_max, max(current * rules.entropy_factor, current))
            suggest(f"ppo.entropy.{name}", current, raised, why)
    if std > rules.high_rating_std:
        why = f"{stats}: std > {rules.high_rating_std} → lower the learning rate for steadier updates"
        for name in ("initial", "final"):
            current = float(getattr(ppo.learning_rate, name))
            lowered = max(rules.learning_rate_min, min(current * rules.learning_rate_factor, current))
            suggest(f"ppo.learningRate.{name}", current, lowered, why)
    if mean >= rules.high_mean_rating:
        why = f"{stats}: mean ≥ {rules.high_mean_rating} → lower the clip range to protect a good policy"
        current = ppo.clip_range
        suggest("ppo.clipRange", current, max(rules.clip_min, min(current - rules.clip_step, current)), why)
    return RetuningReport(samples=len(window), mean_rating=mean, rating_std=std, suggestions=tuple(out))


def apply_suggestions(config: TrainingConfig, suggestions: Sequence[Suggestion]) -> TrainingConfig:
    """A new config with the suggestions applied (validated like any config)."""
    wire = config.to_wire()
    for suggestion in suggestions:
        node: dict[str, object] = wire
        *parents, leaf = suggestion.parameter.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"{suggestion.parameter}: {part} is not a section")
            node = child
        node[leaf] = suggestion.suggested
    return TrainingConfig.model_validate(wire)
