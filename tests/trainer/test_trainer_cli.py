from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest
import yaml

from artisan_common.training import TrainingConfig
from artisan_trainer import cli
from artisan_trainer.server import MetricsServer, TrainerMetrics

SEED_METRICS = (
    "ppo_entropy_coef",
    "ppo_learning_rate",
    "ppo_training_step",
    "ppo_approx_kl",
    "ppo_value_loss",
    "ppo_policy_loss",
    "rl_entropy_coefficient",
    "rl_reward_normalizer_mean",
    "rl_reward_normalizer_std",
    "rl_checkpoint_saved_total",
    "rl_clip_frac",
    'rl_reward_ma{window="100"}',
    "rl_reward_raw_bucket",
    "rl_reward_normalized_bucket",
    "artisan_trainer_rollbacks_exhausted",
    "ppo_last_checkpoint_step",
    "ppo_best_checkpoint_step",
    'rl_checkpoint_rollback_total{reason="kl_divergence"} 0.0',
    'data_curation_samples_total{outcome="rate_limited"} 0.0',
    'data_curation_samples_total{outcome="accepted"} 0.0',
    "data_curation_acceptance_rate",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_train_end_to_end_writes_summary_and_serves_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The operator's file: the TrainingRun's algorithm part in the TrainingConfig wire shape.
    wire = TrainingConfig.model_validate(
        {"ppo": {"stepsPerUpdate": 256, "batchSize": 64, "epochs": 2}, "checkpoints": {"interval": 256}}
    ).to_wire()
    config_file = tmp_path / "trainer.yaml"
    config_file.write_text(yaml.safe_dump(wire))
    port = free_port()
    scraped: dict[str, str] = {}
    original_stop = MetricsServer.stop

    def scrape_then_stop(self: MetricsServer) -> None:  # scrape while the server still runs
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            scraped["metrics"] = response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            scraped["healthz"] = response.read().decode()
        original_stop(self)

    monkeypatch.setattr(MetricsServer, "stop", scrape_then_stop)
    summary_file = tmp_path / "out" / "summary.json"
    code = cli.main(
        [
            "train",
            "--config", str(config_file),
            "--env", "CartPole-v1",
            "--total-steps", "768",
            "--checkpoint-dir", str(tmp_path / "ckpt"),
            "--metrics-port", str(port),
            "--metrics-host", "127.0.0.1",
            "--summary-json", str(summary_file),
            "--set", "runtime.num_envs=2",
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(summary_file.read_text())
    assert summary["env"] == "CartPole-v1"
    assert summary["total_steps"] == 768
    assert summary["mean_return_last_100"] > 0
    assert summary["sps"] > 0
    assert summary["rollbacks"] == []
    assert summary["checkpoints"]["latest_step"] == 768
    assert (tmp_path / "ckpt" / "manifest.json").exists()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines].count("update") == 3
    assert lines[-1]["event"] == "summary"
    for name in SEED_METRICS:
        assert name in scraped["metrics"], name
    assert "ppo_training_step 768.0" in scraped["metrics"]
    assert json.loads(scraped["healthz"])["status"] == "ok"


def test_invalid_override_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["train", "--checkpoint-dir", str(tmp_path), "--set", "ppo.clipRang=0.1"])
    assert code == 2
    assert "ppo.clipRang: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()


def test_unknown_env_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["train", "--checkpoint-dir", str(tmp_path), "--env", "NoSuchEnv-v9"])
    assert code == 2
    assert "NoSuchEnv-v9" in capsys.readouterr().err


def test_env_var_equivalents(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ARTISAN_TRAINER_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("ARTISAN_TRAINER_TOTAL_STEPS", "1234")
    monkeypatch.setenv("ARTISAN_TRAINER_ENV", "CartPole-v1")
    monkeypatch.setenv("ARTISAN_TRAINER_NUM_ENVS", "2")
    args = cli.build_parser().parse_args(["train"])
    config = cli.resolve_config(args)
    assert (config.ppo.total_steps, config.env.id, config.runtime.num_envs) == (1234, "CartPole-v1", 2)
    assert args.checkpoint_dir == tmp_path


def test_healthz_reports_a_stall() -> None:
    metrics = TrainerMetrics()
    server = MetricsServer(metrics, "127.0.0.1", 0, stall_seconds=0.0).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        assert info.value.code == 503
        info.value.close()
    finally:
        server.stop()


def test_fit_reward_model_from_the_feedback_store(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from artisan_common.catalog import load_catalog
    from artisan_common.curation import FeedbackSample
    from artisan_common.feedback_store import SQLiteFeedbackStore
    from artisan_trainer.env import LinearRewardModel

    catalog = load_catalog()
    rng = np.random.default_rng(0)
    with SQLiteFeedbackStore(tmp_path / "fb.db") as store:
        for i in range(120):
            p = rng.dirichlet(np.full(len(catalog), 0.3))
            store.add(
                FeedbackSample(
                    sample_id=f"s{i}",
                    user_id=f"u{i % 40}",
                    rating=float(1 + i % 3),
                    reward=float(i % 3) - 1,
                    response_seconds=20,
                    ifra_compliant=True,
                    created_at=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=20 * i),
                    brief={"families": {"woody": 1.0}, "style": "woody"},
                    formula=dict(zip(catalog.ids, p.tolist(), strict=True)),
                )
            )
    out, report_file = tmp_path / "rm" / "model.json", tmp_path / "report.json"
    code = cli.main(
        [
            "fit-reward-model",
            "--feedback-db",
            str(tmp_path / "fb.db"),
            "--out",
            str(out),
            "--report-json",
            str(report_file),
        ]
    )
    assert code == 0
    LinearRewardModel.from_json(out.read_text())
    report = json.loads(report_file.read_text())
    assert report["quality"]["total"] == 120
    assert report["quality"]["accepted"] == 120
    assert report["retuning"]["mean_rating"] == pytest.approx(2.0, abs=0.02)
    assert "ppo.entropy.initial" in [s["parameter"] for s in report["retuning"]["suggestions"]]
