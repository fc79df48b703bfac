from __future__ import annotations

from pathlib import Path

import pytest

from artisan_common.training import RollbackSpec
from artisan_trainer.config import load_config
from artisan_trainer.ppo import PPOTrainer
from artisan_trainer.rollback import (
    Anomaly,
    DetectorSettings,
    DetectorState,
    RollbackReason,
    choose_rollback_target,
    detect_reward_drop,
    learning_rate_scale_after,
    observe_update,
)
from artisan_trainer.server import TrainerMetrics

SETTINGS = DetectorSettings(
    kl_threshold=0.03, kl_consecutive=2, loss_spike_factor=2.0, loss_consecutive=2, loss_floor=1e-3
)


def run(updates: list[tuple[int, float, float]]) -> list[Anomaly | None]:
    state, out = DetectorState(), []
    for step, kl, loss in updates:
        state, anomaly = observe_update(state, step, kl, loss, SETTINGS)
        out.append(anomaly)
    return out


def test_kl_needs_consecutive_updates_worked_example() -> None:
    result = run([(4096, 0.01, 1.0), (6144, 0.05, 1.0), (8192, 0.06, 1.0)])
    assert result[:2] == [None, None]
    assert result[2] is not None
    assert result[2].reason is RollbackReason.KL_DIVERGENCE
    assert result[2].since_step == 6144
    assert choose_rollback_target([0, 2048, 4096, 6144], result[2].since_step, 1) == 4096
    assert choose_rollback_target([0, 2048, 4096, 6144], result[2].since_step, 2) == 2048
    # one spike between normal updates never fires
    assert run([(1, 0.01, 1), (2, 0.2, 1), (3, 0.01, 1), (4, 0.2, 1), (5, 0.01, 1)]) == [None] * 5


def test_value_loss_spike_against_ema_with_floor() -> None:
    normal = [(i, 0.0, 1.0 + 0.1 * (i % 2)) for i in range(1, 6)]
    result = run([*normal, (6, 0.0, 5.0), (7, 0.0, 6.0)])
    assert result[-2] is None
    assert result[-1] is not None
    assert result[-1].reason is RollbackReason.VALUE_LOSS_SPIKE
    assert result[-1].since_step == 6
    # a near-zero baseline does not fire on tiny absolute changes (the floor)
    tiny = [(i, 0.0, 1e-6) for i in range(1, 6)] + [(6, 0.0, 1e-4), (7, 0.0, 1e-4)]
    assert all(a is None for a in run(tiny))
    # a NaN loss is an anomaly at once (after the consecutive count)
    assert run([(1, 0.0, float("nan")), (2, 0.0, float("nan"))])[-1] is not None


@pytest.mark.parametrize(
    ("baseline", "recent", "fires"),
    [
        (100.0, 60.0, True),
        (100.0, 80.0, False),
        (-10.0, -14.0, True),
        (-10.0, -12.0, False),
        (0.0, 0.0, False),
    ],
)
def test_reward_drop_is_sign_aware(baseline: float, recent: float, fires: bool) -> None:
    spec = RollbackSpec(window=10, baseline_window=30, reward_drop_fraction=0.3)
    returns = [baseline + (0.1 if i % 2 else -0.1) for i in range(30)] + [recent] * 10
    steps = list(range(100, 100 + 40 * 10, 10))
    anomaly = detect_reward_drop(returns, steps, spec)
    assert (anomaly is not None) is fires
    if anomaly is not None:
        assert anomaly.reason is RollbackReason.REWARD_DROP
        assert anomaly.since_step == steps[30]


def test_reward_drop_ignores_noise() -> None:
    spec = RollbackSpec(window=10, baseline_window=30, reward_drop_fraction=0.3)
    noisy = [10.0, -6.0] * 15 + [1.0, -3.5] * 5  # mean 2 → −1.25, within 3 standard errors of the difference
    assert detect_reward_drop(noisy, list(range(40)), spec) is None


def test_learning_rate_factor_is_cumulative() -> None:
    assert [learning_rate_scale_after(n, 0.5) for n in range(4)] == [1.0, 0.5, 0.25, 0.125]


def tiny_trainer(tmp_path: Path, *extra: str, hooks: TrainerMetrics | None = None) -> PPOTrainer:
    config = load_config(
        overrides=[
            "env.id=CartPole-v1",
            "runtime.numEnvs=2",
            "ppo.stepsPerUpdate=128",
            "ppo.batchSize=64",
            "ppo.epochs=1",
            "checkpoints.interval=128",
            "checkpoints.keep=10",
            "rollback.maxRollbacks=2",
            *extra,
        ],
        environ={},
    )
    return PPOTrainer(config, tmp_path, hooks=hooks)


@pytest.mark.parametrize("reason", list(RollbackReason))
def test_injected_anomaly_rolls_back_to_the_target(tmp_path: Path, reason: RollbackReason) -> None:
    metrics = TrainerMetrics()
    trainer = tiny_trainer(tmp_path, hooks=metrics)
    # update 4 ends at step 512; the anomaly began at step 384, so the target is the checkpoint at 256
    trainer.injected_anomalies[4] = Anomaly(reason, since_step=384, detail="injected")
    summary = trainer.train(128 * 6)
    trainer.close()
    (record,) = summary.rollbacks
    assert (record.step, record.reason, record.target_step) == (512, reason.value, 256)
    assert record.target_checkpoint == "ckpt-000000000256.pt"
    assert trainer.lr_scale == 0.5
    assert summary.total_steps == 128 * 6
    assert summary.status == "completed"
    sample = metrics.registry.get_sample_value
    assert sample("rl_checkpoint_rollback_total", {"reason": reason.value}) == 1.0
    assert sample("artisan_trainer_rollbacks_exhausted") == 0.0
    assert sample("ppo_last_checkpoint_step") == 768.0


def test_rollbacks_exhausted_stops_the_run(tmp_path: Path) -> None:
    metrics = TrainerMetrics()
    trainer = tiny_trainer(tmp_path, "rollback.maxRollbacks=1", "rollback.stepsBack=2", hooks=metrics)
    trainer.injected_anomalies[3] = Anomaly(RollbackReason.KL_DIVERGENCE, since_step=384, detail="x")
    trainer.injected_anomalies[4] = Anomaly(RollbackReason.REWARD_DROP, since_step=384, detail="y")
    summary = trainer.train(128 * 10)
    trainer.close()
    assert [r.target_step for r in summary.rollbacks] == [128]  # stepsBack=2: two before 384
    assert summary.status == "rollbacks_exhausted"
    assert metrics.registry.get_sample_value("artisan_trainer_rollbacks_exhausted") == 1.0
    assert summary.total_steps < 128 * 10


def test_healthy_cartpole_run_learns_without_rollback(tmp_path: Path) -> None:
    config = load_config(
        overrides=[
            "env.id=CartPole-v1",
            "runtime.numEnvs=4",
            "ppo.stepsPerUpdate=512",
            "ppo.batchSize=128",
            "ppo.learningRate.initial=2.5e-3",
            "ppo.learningRate.final=2.5e-4",
            "rollback.window=20",
            "rollback.baselineWindow=100",
        ],
        environ={},
    )
    trainer = PPOTrainer(config, tmp_path)
    summary = trainer.train(8192)
    trainer.close()
    assert summary.rollbacks == []
    first = trainer.returns[0]
    assert summary.mean_return_last_100 is not None
    assert summary.mean_return_last_100 > 40  # random play averages ~22
    assert first < summary.mean_return_last_100


def test_relative_value_loss_ignores_growing_returns_but_not_divergence() -> None:
    from artisan_trainer.rollback import relative_value_loss

    # Returns grow 10× (episodes get longer) and the value loss grows with their square: no spike.
    growing = [(i, 0.0, relative_value_loss(0.02 * (1 + i) ** 2, (1 + i) ** 2)) for i in range(10)]
    assert all(a is None for a in run(growing))
    # The value function diverges while the returns stay put: a spike.
    diverging = [
        *growing[:5],
        (5, 0.0, relative_value_loss(50.0, 25.0)),
        (6, 0.0, relative_value_loss(80.0, 36.0)),
    ]
    result = run(diverging)
    assert result[-1] is not None
    assert result[-1].reason is RollbackReason.VALUE_LOSS_SPIKE
