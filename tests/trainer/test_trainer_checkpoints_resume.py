from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from artisan_trainer.checkpoints import CheckpointError, CheckpointManager
from artisan_trainer.config import TrainerConfig, load_config
from artisan_trainer.ppo import PPOTrainer, TrainingHooks, UpdateStats


def tiny_config(*extra: str) -> TrainerConfig:
    return load_config(
        overrides=[
            "env.id=CartPole-v1",
            "runtime.numEnvs=2",
            "ppo.stepsPerUpdate=128",
            "ppo.batchSize=32",
            "ppo.epochs=2",
            "checkpoints.interval=128",
            "checkpoints.keep=3",
            "rewardNormalization.minSamples=10",
            "rollback.enabled=false",
            *extra,
        ],
        environ={},
    )


class Recorder(TrainingHooks):
    def __init__(self) -> None:
        self.updates: list[UpdateStats] = []

    def on_update(self, stats: UpdateStats, raw: object, norm: object) -> None:
        self.updates.append(stats)


def losses(rec: Recorder) -> list[tuple[float, float, float, float]]:
    return [(u.policy_loss, u.value_loss, u.entropy, u.approx_kl) for u in rec.updates]


def test_manager_retention_best_and_atomic_manifest(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep=2)
    for step, score in [(1, 1.0), (2, 5.0), (3, 2.0), (4, 3.0)]:
        manager.save({"w": torch.tensor([float(step)])}, step, score)
    assert manager.steps == [3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.pt",
        "ckpt-000000000003.pt",
        "ckpt-000000000004.pt",
        "manifest.json",
    ]
    assert manager.best is not None
    assert manager.best.step == 2
    assert manager.load_best()["w"].item() == 2.0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [c["step"] for c in manifest["checkpoints"]] == [3, 4]
    reopened = CheckpointManager(tmp_path, keep=2)
    assert reopened.load_latest_valid()["step"] == 4  # type: ignore[index]
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "pickle"])
def test_damaged_checkpoint_is_refused_and_the_previous_used(tmp_path: Path, damage: str) -> None:
    manager = CheckpointManager(tmp_path, keep=3)
    manager.save({"w": torch.tensor([1.0])}, 10, None)
    record = manager.save({"w": torch.tensor([2.0])}, 20, None)
    path = tmp_path / record.file
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    else:
        # A pickle that would run code: refused by weights_only even when the hash is forged to match.
        import hashlib
        import pickle

        class Evil:
            def __reduce__(self) -> tuple[object, tuple[str]]:
                return (print, ("pwned",))

        evil = pickle.dumps({"format": 1, "step": 20, "x": Evil()})
        path.write_bytes(evil)
        manifest = json.loads((tmp_path / "manifest.json").read_text())
        manifest["checkpoints"][-1]["sha256"] = hashlib.sha256(evil).hexdigest()
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
        manager = CheckpointManager(tmp_path, keep=3)
    state = manager.load_latest_valid()
    assert state is not None
    assert state["step"] == 10
    assert len(manager.refused) == 1
    expected = "weights_only" if damage == "pickle" else "does not match the manifest"
    assert expected in manager.refused[0]
    with pytest.raises(CheckpointError, match="ckpt-000000000020"):
        manager.load_step(20)


def test_unreadable_manifest_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable checkpoint manifest"):
        CheckpointManager(tmp_path, keep=1)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "artisan/Fragrance-v0"])
def test_resume_continues_exactly(tmp_path: Path, env_id: str) -> None:
    config = tiny_config(f"env.id={env_id}")
    straight = Recorder()
    trainer = PPOTrainer(config, tmp_path / "a", hooks=straight)
    trainer.train(128 * 5)
    trainer.close()

    first = Recorder()
    trainer = PPOTrainer(config, tmp_path / "b", hooks=first)
    trainer.train(128 * 3)
    trainer.close()
    resumed = Recorder()
    trainer = PPOTrainer(config, tmp_path / "b", resume=True, hooks=resumed)
    assert trainer.step == 128 * 3
    trainer.train(128 * 5)
    trainer.close()
    assert losses(first) + losses(resumed) == losses(straight)
    assert [u.step for u in resumed.updates] == [128 * 4, 128 * 5]


def test_resume_skips_a_corrupted_latest_checkpoint(tmp_path: Path) -> None:
    config = tiny_config()
    trainer = PPOTrainer(config, tmp_path)
    trainer.train(128 * 3)
    trainer.close()
    latest = tmp_path / "ckpt-000000000384.pt"
    latest.write_bytes(b"garbage")
    trainer = PPOTrainer(config, tmp_path, resume=True)
    assert trainer.step == 256
    assert "does not match the manifest" in trainer.checkpoints.refused[0]
    trainer.close()


def test_fresh_start_in_a_used_directory_is_refused_naming_it(tmp_path: Path) -> None:
    config = tiny_config()
    trainer = PPOTrainer(config, tmp_path)
    trainer.train(128)
    trainer.close()
    manifest = (tmp_path / "manifest.json").read_bytes()
    with pytest.raises(CheckpointError, match=r"--checkpoint-dir .*pass --resume"):
        PPOTrainer(config, tmp_path)
    assert (tmp_path / "manifest.json").read_bytes() == manifest  # nothing touched


def test_fresh_start_in_a_used_directory_exits_2_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from artisan_trainer import cli

    args = ["train", "--env", "CartPole-v1", "--total-steps", "128", "--checkpoint-dir", str(tmp_path)]
    args += ["--set", "ppo.stepsPerUpdate=128", "--set", "checkpoints.interval=128"]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(args) == 2
    assert f"--checkpoint-dir {tmp_path}: already holds checkpoints" in capsys.readouterr().err
    assert cli.main([*args, "--resume"]) == 0


def test_resume_with_nothing_valid_starts_fresh_and_sets_the_manifest_aside(tmp_path: Path) -> None:
    config = tiny_config("checkpoints.keepBest=false")
    trainer = PPOTrainer(config, tmp_path)
    trainer.train(128 * 3)
    trainer.close()
    for path in tmp_path.glob("ckpt-*.pt"):
        path.write_bytes(b"garbage")
    old_manifest = (tmp_path / "manifest.json").read_text()
    trainer = PPOTrainer(config, tmp_path, resume=True)
    trainer.close()
    assert trainer.step == 0
    (aside,) = tmp_path.glob("manifest.json.invalid-*")
    assert aside.read_text() == old_manifest
    assert [c["step"] for c in json.loads((tmp_path / "manifest.json").read_text())["checkpoints"]] == [0]
    assert str(aside) in trainer.notice
    assert len(trainer.checkpoints.refused) == 3


def test_resume_falls_back_to_a_valid_best_checkpoint(tmp_path: Path) -> None:
    config = tiny_config()
    trainer = PPOTrainer(config, tmp_path)
    trainer.train(128 * 3)
    trainer.close()
    best = trainer.checkpoints.best
    assert best is not None
    for path in tmp_path.glob("ckpt-*.pt"):
        path.write_bytes(b"garbage")
    trainer = PPOTrainer(config, tmp_path, resume=True)
    trainer.close()
    assert trainer.step == best.step
    assert trainer.notice == ""
    assert not list(tmp_path.glob("manifest.json.invalid-*"))
    assert all(step <= best.step for step in trainer.checkpoints.steps)  # refused newer ones dropped
