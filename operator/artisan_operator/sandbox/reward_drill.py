"""A reward-fault drill for the sandbox demo: a gymnasium wrapper whose reward can be corrupted on cue.

The TrainingRun of the demo names the env id ``artisan_operator.sandbox.reward_drill:RewardDrill-v0``
(gymnasium imports the module before ``make``, which registers the id) with the config::

    {envId: artisan/Fragrance-v0, armFile: <path>, penalty: 2.0}

While ``armFile`` exists, every reward is lowered by ``penalty``: the trainer sees its episode returns
drop, exactly what a broken reward feed looks like. The fault heals itself once the trainer restores
a checkpoint (the wrapper's step counter is part of the env state the trainer snapshots, so a restore
makes it jump back; the wrapper notices the jump through bookkeeping the snapshot does not hold). One
armed drill therefore produces one reward-drop rollback, not a cascade, however late the demo disarms.

This module is loaded only inside the trainer process the sandbox runs; the operator never imports it.
"""

from __future__ import annotations

import os
from typing import Any, SupportsFloat

import gymnasium as gym

DRILL_ENV_NAME = "RewardDrill-v0"
DRILL_ENV_ID = f"{__name__}:{DRILL_ENV_NAME}"


class RewardDrill(gym.Wrapper[Any, Any, Any, Any]):
    """Lowers rewards by ``penalty`` while ``arm_file`` exists, until the env state is restored."""

    def __init__(self, env: gym.Env[Any, Any], arm_file: str, penalty: float = 2.0) -> None:
        super().__init__(env)
        if penalty <= 0:
            raise ValueError(f"penalty must be positive, got {penalty}")
        self.arm_file = arm_file
        self.penalty = float(penalty)
        self.drill_steps = 0
        """Steps taken (plain data: the trainer's env snapshot holds it, so a restore rewinds it)."""
        # Lists are not plain data for the snapshot: this bookkeeping survives a restore.
        self._last_seen: list[int | None] = [None]
        self._healed: list[bool] = [False]

    @property
    def healed(self) -> bool:
        return self._healed[0]

    def corrupting(self) -> bool:
        return not self._healed[0] and os.path.exists(self.arm_file)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        last = self._last_seen[0]
        if last is not None and self.drill_steps != last:
            self._healed[0] = True  # the counter moved without us: a checkpoint was restored
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.drill_steps += 1
        self._last_seen[0] = self.drill_steps
        if self.corrupting():
            reward = float(reward) - self.penalty
        return observation, reward, terminated, truncated, info


def make_drill(env_id: str, arm_file: str, penalty: float = 2.0, **env_config: Any) -> RewardDrill:
    """gymnasium entry point: the inner env (with its own config) wrapped in the drill."""
    if not arm_file:
        raise ValueError("armFile must name the file that arms the drill")
    return RewardDrill(gym.make(env_id, **env_config), arm_file, penalty)


def _make_from_config(**config: Any) -> RewardDrill:
    # The TrainingRun passes its env.config verbatim (camelCase keys, as written in the resource).
    env_id = config.pop("envId", None) or config.pop("env_id", None)
    arm_file = config.pop("armFile", None) or config.pop("arm_file", None)
    penalty = float(config.pop("penalty", 2.0))
    if not isinstance(env_id, str) or not env_id:
        raise ValueError("env.config.envId must name the environment to wrap")
    if not isinstance(arm_file, str):
        raise ValueError("env.config.armFile must be a path")
    return make_drill(env_id, arm_file, penalty, **config)


if DRILL_ENV_NAME not in gym.registry:
    gym.register(id=DRILL_ENV_NAME, entry_point=_make_from_config)
