"""The PPO math as small pure tensor functions (each tested against a hand computation)."""

from __future__ import annotations

import torch
from torch import Tensor


def compute_gae(
    rewards: Tensor,
    values: Tensor,
    dones: Tensor,
    last_values: Tensor,
    *,
    gamma: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation over a rollout of shape [T, N].

    ``dones[t]`` is 1 where the episode ended with the action taken at step t (no bootstrap past
    it; a time-limit truncation is handled by the caller by adding γ·V(final obs) to that reward).
    ``last_values`` is V(obs after the last step). Returns (advantages, returns = advantages + values).
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    not_done = 1.0 - dones.to(rewards.dtype)
    next_values = torch.cat([values[1:], last_values.unsqueeze(0)], dim=0)
    deltas = rewards + gamma * next_values * not_done - values
    discounts = gamma * gae_lambda * not_done
    running = torch.zeros_like(last_values)
    for t in range(steps - 1, -1, -1):
        running = deltas[t] + discounts[t] * running
        advantages[t] = running
    return advantages, advantages + values


def normalize_advantages(advantages: Tensor, eps: float = 1e-8) -> Tensor:
    """Zero mean, unit std (a single-element batch is only centred)."""
    if advantages.numel() < 2:
        return advantages - advantages.mean()
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def clipped_surrogate_loss(
    new_logp: Tensor, old_logp: Tensor, advantages: Tensor, clip_range: float
) -> Tensor:
    """PPO's policy loss: −E[min(ρ·A, clip(ρ, 1−ε, 1+ε)·A)] with ρ = π_new/π_old."""
    ratio = (new_logp - old_logp).exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages
    return -torch.min(unclipped, clipped).mean()


def value_loss(
    new_values: Tensor, old_values: Tensor, returns: Tensor, clip_range: float | None = None
) -> Tensor:
    """½·E[(V − R)²]; with ``clip_range`` the pessimistic max of the clipped and unclipped errors."""
    unclipped = (new_values - returns).pow(2)
    if clip_range is None:
        return 0.5 * unclipped.mean()
    clipped_values = old_values + (new_values - old_values).clamp(-clip_range, clip_range)
    clipped = (clipped_values - returns).pow(2)
    return 0.5 * torch.max(unclipped, clipped).mean()


def approx_kl(old_logp: Tensor, new_logp: Tensor) -> Tensor:
    """KL(π_old ‖ π_new) estimated from samples of π_old: E[(ρ − 1) − log ρ] (≥ 0, low variance)."""
    log_ratio = new_logp - old_logp
    return ((log_ratio.exp() - 1.0) - log_ratio).mean()


def clip_fraction(new_logp: Tensor, old_logp: Tensor, clip_range: float) -> Tensor:
    """Share of samples whose ratio left [1−ε, 1+ε]."""
    ratio = (new_logp - old_logp).exp()
    return ((ratio - 1.0).abs() > clip_range).to(new_logp.dtype).mean()


def explained_variance(predicted: Tensor, target: Tensor) -> float:
    """1 − Var(target − predicted)/Var(target): 1 is perfect, 0 no better than a constant; NaN if Var=0."""
    variance = target.var(unbiased=False)
    if variance.item() == 0:
        return float("nan")
    return float(1.0 - (target - predicted).var(unbiased=False) / variance)


def categorical_logp_entropy(logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """Log-probability of ``actions`` and the entropy of a categorical given by ``logits``."""
    log_probs = logits.log_softmax(dim=-1)
    logp = log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return logp, entropy


_LOG_SQRT_2PI = 0.9189385332046727  # log(√(2π))


def gaussian_logp_entropy(mean: Tensor, log_std: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """Log-probability and entropy of a diagonal Gaussian, summed over action dimensions."""
    log_std = log_std.expand_as(mean)
    z = (actions - mean) * (-log_std).exp()
    logp = (-0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI).sum(-1)
    entropy = (log_std + 0.5 + _LOG_SQRT_2PI).sum(-1)
    return logp, entropy
