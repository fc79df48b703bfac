"""``--resume-from-step``: the operator's rollback to a named checkpoint (sha256-verified, newer dropped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from artisan_trainer.checkpoints import CheckpointError
from artisan_trainer.cli import build_parser
from artisan_trainer.config import TrainerConfig, load_config
from artisan_trainer.ppo import PPOTrainer


def tiny_config() -> TrainerConfig:
    return load_config(
        overrides=[
            "env.id=CartPole-v1",
            "runtime.numEnvs=2",
            "ppo.stepsPerUpdate=128",
            "ppo.batchSize=32",
            "ppo.epochs=1",
            "checkpoints.interval=128",
            "checkpoints.keep=5",
            "rollback.enabled=false",
        ],
        environ={},
    )


def test_resume_from_step_loads_that_checkpoint_and_drops_the_newer_ones(tmp_path: Path) -> None:
    config = tiny_config()
    trainer = PPOTrainer(config, tmp_path)
    trainer.train(128 * 4)
    trainer.close()
    assert trainer.checkpoints.steps[-3:] == [256, 384, 512]
    resumed = PPOTrainer(config, tmp_path, resume=True, resume_at_or_before=300)
    assert resumed.step == 256
    assert resumed.checkpoints.steps[-1] == 256
    assert not (tmp_path / "ckpt-000000000384.pt").exists()
    resumed.close()
    # A plain --resume afterwards (a later crash) stays on the rolled-back branch.
    again = PPOTrainer(config, tmp_path, resume=True)
    assert again.step == 256
    again.close()


def test_a_damaged_target_falls_back_to_the_previous_verified_one(tmp_path: Path) -> None:
    config = tiny_config()
    trainer = PPOTrainer(config, tmp_path)
    trainer.train(128 * 3)
    trainer.close()
    (tmp_path / "ckpt-000000000256.pt").write_bytes(b"tampered")
    resumed = PPOTrainer(config, tmp_path, resume=True, resume_at_or_before=256)
    assert resumed.step == 128
    assert "does not match the manifest" in resumed.checkpoints.refused[0]
    resumed.close()


def test_no_checkpoint_at_or_before_the_step_is_an_error(tmp_path: Path) -> None:
    config = tiny_config()
    PPOTrainer(config, tmp_path).close()  # writes step 0 only
    (tmp_path / "ckpt-000000000000.pt").write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="--resume-from-step 0"):
        PPOTrainer(config, tmp_path, resume=True, resume_at_or_before=0)


def test_the_cli_flag_implies_resume() -> None:
    args = build_parser().parse_args(["train", "--checkpoint-dir", "/c", "--resume-from-step", "1500"])
    assert (args.resume_from_step, args.resume) == (1500, False)
