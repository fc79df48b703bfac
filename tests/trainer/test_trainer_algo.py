from __future__ import annotations

import math

import pytest
import torch

from artisan_trainer.algo import (
    approx_kl,
    categorical_logp_entropy,
    clip_fraction,
    clipped_surrogate_loss,
    compute_gae,
    explained_variance,
    gaussian_logp_entropy,
    normalize_advantages,
    value_loss,
)


def naive_gae(rewards, values, dones, last, gamma, lam):  # type: ignore[no-untyped-def]
    steps, n = len(rewards), len(rewards[0])
    adv = [[0.0] * n for _ in range(steps)]
    for e in range(n):
        acc = 0.0
        for t in reversed(range(steps)):
            nv = last[e] if t == steps - 1 else values[t + 1][e]
            nd = 1.0 - dones[t][e]
            delta = rewards[t][e] + gamma * nv * nd - values[t][e]
            acc = delta + gamma * lam * nd * acc
            adv[t][e] = acc
    return adv


def test_gae_matches_hand_loop() -> None:
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(7, 3, generator=g)
    values = torch.randn(7, 3, generator=g)
    dones = (torch.rand(7, 3, generator=g) > 0.7).float()
    last = torch.randn(3, generator=g)
    adv, ret = compute_gae(rewards, values, dones, last, gamma=0.9, gae_lambda=0.8)
    expected = naive_gae(rewards.tolist(), values.tolist(), dones.tolist(), last.tolist(), 0.9, 0.8)
    assert torch.allclose(adv, torch.tensor(expected), atol=1e-5)
    assert torch.allclose(ret, adv + values)


def test_gae_single_step_by_hand() -> None:
    adv, _ = compute_gae(
        torch.tensor([[1.0]]),
        torch.tensor([[0.5]]),
        torch.tensor([[0.0]]),
        torch.tensor([2.0]),
        gamma=0.9,
        gae_lambda=0.95,
    )
    assert adv.item() == pytest.approx(1.0 + 0.9 * 2.0 - 0.5)


def test_clipped_surrogate_by_hand() -> None:
    old = torch.zeros(2)
    new = torch.log(torch.tensor([1.5, 0.5]))
    adv = torch.tensor([1.0, -1.0])
    # sample 0: min(1.5·1, 1.2·1) = 1.2; sample 1: min(0.5·−1, 0.8·−1) = −0.8
    assert clipped_surrogate_loss(new, old, adv, 0.2).item() == pytest.approx(-(1.2 - 0.8) / 2)
    assert clip_fraction(new, old, 0.2).item() == pytest.approx(1.0)
    assert clip_fraction(torch.log(torch.tensor([1.1, 1.0])), old, 0.2).item() == pytest.approx(0.0)


def test_value_loss_plain_and_clipped() -> None:
    new, old, ret = torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([3.0])
    assert value_loss(new, old, ret).item() == pytest.approx(0.5)
    # clipped value is 0.2 → error 2.8² is larger, so the pessimistic max is taken
    assert value_loss(new, old, ret, 0.2).item() == pytest.approx(0.5 * 2.8**2)


def test_approx_kl_and_explained_variance() -> None:
    old = torch.zeros(3)
    assert approx_kl(old, old).item() == 0.0
    new = torch.tensor([0.1, -0.2, 0.3])
    expected = sum((math.exp(x) - 1 - x) for x in new.tolist()) / 3
    assert approx_kl(old, new).item() == pytest.approx(expected, rel=1e-5)
    target = torch.tensor([1.0, 2.0, 3.0])
    assert explained_variance(target, target) == pytest.approx(1.0)
    assert explained_variance(torch.full((3,), 2.0), target) == pytest.approx(0.0)
    assert math.isnan(explained_variance(target, torch.ones(3)))


def test_logp_and_entropy_match_torch_distributions() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 4, generator=g)
    actions = torch.tensor([0, 1, 2, 3, 1])
    logp, ent = categorical_logp_entropy(logits, actions)
    dist = torch.distributions.Categorical(logits=logits)
    assert torch.allclose(logp, dist.log_prob(actions))
    assert torch.allclose(ent, dist.entropy())
    mean, log_std = torch.randn(5, 3, generator=g), torch.randn(3, generator=g) * 0.3
    act = torch.randn(5, 3, generator=g)
    logp, ent = gaussian_logp_entropy(mean, log_std, act)
    normal = torch.distributions.Normal(mean, log_std.exp())
    assert torch.allclose(logp, normal.log_prob(act).sum(-1), atol=1e-5)
    assert torch.allclose(ent, normal.entropy().sum(-1), atol=1e-5)


def test_normalize_advantages() -> None:
    out = normalize_advantages(torch.tensor([1.0, 2.0, 3.0]))
    assert out.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert out.std().item() == pytest.approx(1.0, rel=1e-5)
    assert normalize_advantages(torch.tensor([5.0])).tolist() == [0.0]
