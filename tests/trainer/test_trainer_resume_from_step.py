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


def test_rollback_id_applies_the_drop_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from artisan_trainer import cli

    def run(*extra: str) -> list[dict[str, object]]:
        args = ["train", "--env", "CartPole-v1", "--checkpoint-dir", str(tmp_path), "--resume"]
        args += ["--set", "ppo.stepsPerUpdate=128", "--set", "checkpoints.interval=128", *extra]
        assert cli.main(args) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    def first_update_step(lines: list[dict[str, object]]) -> object:
        return next(line["step"] for line in lines if line["event"] == "update")

    run("--total-steps", "512")
    monkeypatch.setenv("ARTISAN_TRAINER_ROLLBACK_ID", "trainer-2@256")
    # The rollback's pod: back to 256 (384 and 512 dropped), then on to 512 again.
    assert first_update_step(run("--total-steps", "512", "--resume-from-step", "256")) == 384
    # A second pod of the same Job (same flags, same id) continues from 512 instead of dropping again.
    assert first_update_step(run("--total-steps", "640", "--resume-from-step", "256")) == 640
    # A new rollback (new id) applies its drop.
    monkeypatch.setenv("ARTISAN_TRAINER_ROLLBACK_ID", "trainer-3@256")
    assert first_update_step(run("--total-steps", "640", "--resume-from-step", "256")) == 384
