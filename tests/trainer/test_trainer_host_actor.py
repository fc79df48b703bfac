"""The rollout's numpy acting path (HostActor) against the torch one (Agent.act)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from artisan_trainer.ppo import Agent, HostActor

SPACES: list[gym.Space[Any]] = [gym.spaces.Discrete(4), gym.spaces.Box(-1.0, 1.0, shape=(3,))]


def make_agent(space: gym.Space[Any]) -> Agent:
    torch.manual_seed(0)
    agent = Agent(5, space, [16, 16])
    with torch.no_grad():
        agent.log_std.copy_(torch.tensor([-0.5, 0.0, 0.7, 0.2])[: agent.log_std.shape[0]])
        for layer in agent._actor_layers:  # away from the tiny initial output layer: real logits
            layer.weight.mul_(30.0)
    return agent


@pytest.mark.parametrize("space", SPACES, ids=["discrete", "box"])
def test_host_actor_draws_the_same_noise_and_matches_act(space: gym.Space[Any]) -> None:
    agent = make_agent(space)
    obs = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    before = torch.get_rng_state()
    with torch.no_grad():
        action, logp, value = agent.act(torch.from_numpy(obs))
    after = torch.get_rng_state()

    torch.set_rng_state(before)
    host_action, host_logp, host_value = HostActor(agent).act(obs)
    assert torch.equal(torch.get_rng_state(), after)  # the same draws from the same generator
    if agent.discrete:
        assert np.array_equal(host_action, action.numpy())
        assert len(set(host_action.tolist())) > 1  # the test can tell a wrong sampler apart
    else:
        np.testing.assert_allclose(host_action, action.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(host_logp, logp.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(host_value, value.numpy(), rtol=1e-5, atol=1e-5)
    assert host_logp.dtype == np.float32
    assert host_value.shape == (8,)


def test_host_actor_sees_parameter_updates_in_place() -> None:
    agent = make_agent(SPACES[1])
    host = HostActor(agent)
    obs = np.ones((1, 5), dtype=np.float32)
    value_before = host.act(obs)[2]
    with torch.no_grad():
        agent._critic_layers[-1].bias.add_(1.0)  # as an optimizer step writes it
    assert host.act(obs)[2] == pytest.approx(value_before + 1.0)
