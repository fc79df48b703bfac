"""Rollbacks caused by real anomalies, through PPOTrainer's own detectors (nothing injected).

``StepReward`` is a tiny env whose reward changes after a set number of steps, so a reward drop
or a value-loss spike happens at a known step; a huge learning rate makes the KL blow up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import pytest

from artisan_trainer.config import load_config
from artisan_trainer.ppo import PPOTrainer, RollbackRecord, TrainingHooks, UpdateStats
from artisan_trainer.rollback import RollbackReason, rollback_candidates
from artisan_trainer.server import TrainerMetrics

ENV_ID = "artisan-test/StepReward-v0"


class StepReward(gym.Env[npt.NDArray[np.float32], np.int64]):
    """Episodes of ``length`` steps; reward ``before`` per step, ``after`` after ``switch_at`` steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int = 8, switch_at: int = 10**9, before: float = 1.0, after: float = 1.0):
        self.length, self.switch_at, self.before, self.after = length, switch_at, before, after
        self.t = 0
        self.steps_taken = 0  # plain data: checkpointed with the env, so a rollback rewinds it too

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: np.int64) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        self.t += 1
        self.steps_taken += 1
        reward = self.before if self.steps_taken <= self.switch_at else self.after
        return np.zeros(1, dtype=np.float32), reward, self.t >= self.length, False, {}


def make_step_reward(**kwargs: Any) -> StepReward:
    return StepReward(**kwargs)


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=make_step_reward)

# 2 envs × 32 steps = one update of 64 steps, and a checkpoint after every update.
BASE = [
    "runtime.numEnvs=2",
    "ppo.stepsPerUpdate=64",
    "ppo.batchSize=16",
    "ppo.epochs=4",
    "checkpoints.interval=64",
    "checkpoints.keep=10",
    "rollback.maxRollbacks=2",
    "rewardNormalization.enabled=false",
]
# 8-step episodes, +1 per step until each env's 96th step (global step 192), then −1: returns 8 → −8.
DROP = [f"env.id={ENV_ID}", "env.config={length: 8, switch_at: 96, before: 1.0, after: -1.0}"]


class Recorder(TrainingHooks):
    def __init__(self) -> None:
        self.rollbacks: list[tuple[RollbackRecord, int, bool]] = []
        self.updates: list[UpdateStats] = []

    def on_update(self, stats: UpdateStats, raw: object, norm: object) -> None:
        self.updates.append(stats)

    def on_rollback(self, record: RollbackRecord, total: int, exhausted: bool) -> None:
        self.rollbacks.append((record, total, exhausted))


def trainer_for(tmp_path: Path, *overrides: str, hooks: TrainingHooks | None = None) -> PPOTrainer:
    return PPOTrainer(load_config(overrides=[*BASE, *overrides], environ={}), tmp_path, hooks=hooks)


def test_reward_drop_detected_rolls_back_to_the_checkpoint_before_it(tmp_path: Path) -> None:
    metrics = TrainerMetrics()
    trainer = trainer_for(tmp_path, *DROP, "rollback.window=5", "rollback.baselineWindow=10", hooks=metrics)
    summary = trainer.train(64 * 8)
    trainer.close()
    # Update 4 (steps 193–256) holds 8 episodes of −8: the recent 5 begin with the one ending at 224,
    # so the checkpoint at 192 is the newest before the drop. The env rewinds with it, the drop repeats,
    # and the second repeat finds maxRollbacks (2) used up.
    assert [(r.step, r.reason, r.target_step) for r in summary.rollbacks] == [
        (256, "reward_drop", 192),
        (256, "reward_drop", 192),
    ]
    assert summary.rollbacks[0].target_checkpoint == "ckpt-000000000192.pt"
    assert summary.status == "rollbacks_exhausted"
    assert summary.message.startswith("rollbacks exhausted at step 256: reward_drop")
    assert metrics.registry.get_sample_value("rl_checkpoint_rollback_total", {"reason": "reward_drop"}) == 2
    assert metrics.registry.get_sample_value("artisan_trainer_rollbacks_exhausted") == 1


@pytest.mark.parametrize(("keep_best", "target", "source"), [(True, 64, "best.pt"), (False, 192, None)])
def test_reward_drop_older_than_every_kept_checkpoint_still_has_a_target(
    tmp_path: Path, keep_best: bool, target: int, source: str | None
) -> None:
    # keep=1 and a 12-episode window: the drop is dated to step 176, but only the checkpoint at 192
    # is kept. The best one (step 64, the first with a mean return) predates it; without keepBest the
    # oldest kept checkpoint is the fallback. Before the fix this ended the run as "exhausted".
    recorder = Recorder()
    trainer = trainer_for(
        tmp_path,
        *DROP,
        "checkpoints.keep=1",
        f"checkpoints.keepBest={str(keep_best).lower()}",
        "rollback.window=12",
        "rollback.baselineWindow=20",
        "rollback.maxRollbacks=1",
        hooks=recorder,
    )
    summary = trainer.train(64 * 5)
    trainer.close()
    first, total, exhausted = recorder.rollbacks[0]
    assert (first.step, first.reason, first.target_step) == (256, "reward_drop", target)
    assert (total, exhausted) == (1, True)
    assert first.target_checkpoint == (source or f"ckpt-{target:012d}.pt")
    assert summary.rollbacks == [first]


def test_no_loadable_checkpoint_is_reported_as_no_target_not_exhausted(tmp_path: Path) -> None:
    class Corrupt(Recorder):
        def on_update(self, stats: UpdateStats, raw: object, norm: object) -> None:
            if stats.update == 4:  # the drop is detected after this update: damage every checkpoint first
                for path in tmp_path.glob("ckpt-*.pt"):
                    path.write_bytes(b"garbage")

    metrics, recorder = TrainerMetrics(), Corrupt()

    class Both(TrainingHooks):
        def on_update(self, stats: UpdateStats, raw: Any, norm: Any) -> None:
            recorder.on_update(stats, raw, norm)
            metrics.on_update(stats, raw, norm)

        def on_rollback(self, record: RollbackRecord, total: int, exhausted: bool) -> None:
            recorder.on_rollback(record, total, exhausted)
            metrics.on_rollback(record, total, exhausted)

    trainer = trainer_for(
        tmp_path, *DROP, "checkpoints.keep=1", "checkpoints.keepBest=false", "rollback.window=12",
        "rollback.baselineWindow=20", hooks=Both(),
    )  # fmt: skip
    summary = trainer.train(64 * 6)
    trainer.close()
    assert summary.status == "no_rollback_target"
    assert summary.rollbacks == []
    assert summary.failed_rollback is not None
    assert summary.failed_rollback.target_step == -1
    assert summary.message.startswith("no rollback target at step 256: reward_drop")
    assert "tried steps: 192" in summary.message
    assert "does not match the manifest" in summary.checkpoints["refused"][0]
    assert [(total, exhausted) for _, total, exhausted in recorder.rollbacks] == [(0, False)]
    assert metrics.registry.get_sample_value("artisan_trainer_rollbacks_exhausted") == 0
    assert metrics.registry.get_sample_value("rl_checkpoint_rollback_total", {"reason": "reward_drop"}) == 0


def constant_learning_rate(value: str) -> list[str]:
    return [
        "ppo.learningRate.schedule=constant",
        f"ppo.learningRate.initial={value}",
        f"ppo.learningRate.final={value}",
    ]


def test_value_loss_spike_from_rewards_scaled_1000x(tmp_path: Path) -> None:
    # One-step episodes with reward 1: the critic fits it within a few updates. From each env's 193rd
    # step (update 7, steps 385–448) the reward is 1000: the relative value loss jumps ~100× its
    # baseline on updates 7 and 8, so the spike dates from 448 and the target is the checkpoint at 384.
    recorder = Recorder()
    trainer = trainer_for(
        tmp_path,
        f"env.id={ENV_ID}",
        "env.config={length: 1, switch_at: 192, before: 1.0, after: 1000.0}",
        *constant_learning_rate("1e-2"),
        "runtime.clipValueLoss=false",
        "rollback.maxRollbacks=1",
        hooks=recorder,
    )
    summary = trainer.train(64 * 10)
    trainer.close()
    record = summary.rollbacks[0]
    assert (record.step, record.reason, record.target_step) == (512, "value_loss_spike", 384)
    assert record.detail.startswith("value loss")
    before = [u.relative_value_loss for u in recorder.updates[3:6]]
    assert max(before) < 0.05 < min(u.relative_value_loss for u in recorder.updates[6:8])


def test_kl_blow_up_from_a_huge_learning_rate(tmp_path: Path) -> None:
    # Learning rate 0.2 on CartPole: the policy jumps (approx KL ≫ 0.03) on the first two updates,
    # so the anomaly dates from step 64 and the only earlier checkpoint is the one at step 0.
    recorder = Recorder()
    trainer = trainer_for(
        tmp_path,
        "env.id=CartPole-v1",
        *constant_learning_rate("0.2"),
        hooks=recorder,
    )
    summary = trainer.train(64 * 4)
    trainer.close()
    first = summary.rollbacks[0]
    assert (first.step, first.reason, first.target_step) == (128, RollbackReason.KL_DIVERGENCE.value, 0)
    assert recorder.updates[0].approx_kl > 0.3
    assert recorder.updates[1].approx_kl > 0.03
    # after the rollback the run restarts from step 0 at half the learning rate
    restarted = recorder.updates[2]
    assert restarted.step == 64
    assert restarted.learning_rate == pytest.approx(0.1)


def test_rollback_history_and_learning_rate_cut_survive_a_crash_right_after(tmp_path: Path) -> None:
    class Crash(TrainingHooks):
        def on_rollback(self, record: RollbackRecord, total: int, exhausted: bool) -> None:
            raise RuntimeError("killed right after the rollback")

    config_overrides = [*DROP, "rollback.window=5", "rollback.baselineWindow=10"]
    trainer = trainer_for(tmp_path, *config_overrides, hooks=Crash())
    with pytest.raises(RuntimeError, match="killed"):
        trainer.train(64 * 8)
    trainer.close()
    resumed = PPOTrainer(load_config(overrides=[*BASE, *config_overrides], environ={}), tmp_path, resume=True)
    assert resumed.step == 192
    assert [(r.step, r.reason, r.target_step) for r in resumed.rollbacks] == [(256, "reward_drop", 192)]
    assert resumed.lr_scale == 0.5
    # one more rollback is allowed (maxRollbacks 2), then the run is exhausted: the count held
    summary = resumed.train(64 * 8)
    resumed.close()
    assert len(summary.rollbacks) == 2
    assert summary.status == "rollbacks_exhausted"


@pytest.mark.parametrize(
    ("kept", "best", "since", "steps_back", "expected"),
    [  # the worked examples of rollback_candidates' docstring
        ([0, 2048, 4096], None, 4096, 1, [2048, 0, 4096]),
        ([0, 2048, 4096], None, 4096, 2, [0, 2048, 4096]),
        ([8192, 10240], 2048, 6000, 1, [2048, 8192, 10240]),
        ([8192, 10240], None, 6000, 1, [8192, 10240]),
        ([8192, 10240], 9000, 6000, 1, [8192, 10240, 9000]),
        ([], None, 6000, 1, []),
    ],
)
def test_rollback_candidates_worked_examples(
    kept: list[int], best: int | None, since: int, steps_back: int, expected: list[int]
) -> None:
    assert rollback_candidates(kept, since, steps_back, best) == expected
