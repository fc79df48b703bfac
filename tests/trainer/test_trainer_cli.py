from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

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


TERMINATION_KEYS = [
    "step", "rewardMA", "lastCheckpoint", "bestCheckpoint", "rollbacks", "outcome", "message"
]  # fmt: skip


def strict_json(text: str) -> Any:
    """json.loads that refuses NaN and Infinity (Python's json accepts them; JSON does not)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


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
            "--termination-log", str(tmp_path / "termination-log"),
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
    lines = [strict_json(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines].count("update") == 3
    assert lines[-1]["event"] == "summary"
    for name in SEED_METRICS:
        assert name in scraped["metrics"], name
    assert "ppo_training_step 768.0" in scraped["metrics"]
    assert "rl_entropy_coefficient_final 0.001" in scraped["metrics"]  # the default ppo.entropy.final
    assert json.loads(scraped["healthz"])["status"] == "ok"
    ending = strict_json((tmp_path / "termination-log").read_text())
    assert list(ending) == TERMINATION_KEYS
    assert (ending["step"], ending["lastCheckpoint"], ending["outcome"]) == (768, 768, "Succeeded")
    assert ending["rewardMA"] == pytest.approx(summary["mean_return_last_100"])
    assert ending["bestCheckpoint"] == summary["checkpoints"]["best_step"]
    assert (ending["rollbacks"], ending["message"]) == ([], "completed 768 steps")


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
        for i in range(6):  # stored as curated, but this run's thresholds reject them (2–600 s)
            store.add(
                FeedbackSample(
                    sample_id=f"fast{i}",
                    user_id=f"v{i}",
                    rating=5.0,
                    reward=1.0,
                    response_seconds=0.5,
                    ifra_compliant=True,
                    created_at=datetime(2025, 2, 1, tzinfo=UTC),
                    brief={"style": "woody"},
                    formula={catalog.ids[0]: 1.0},
                )
            )
    out, report_file = tmp_path / "rm" / "model.json", tmp_path / "report.json"
    metrics_file = tmp_path / "metrics" / "curation.prom"
    code = cli.main(
        [
            "fit-reward-model",
            "--feedback-db",
            str(tmp_path / "fb.db"),
            "--out",
            str(out),
            "--report-json",
            str(report_file),
            "--metrics-file",
            str(metrics_file),
        ]
    )
    assert code == 0
    LinearRewardModel.from_json(out.read_text())
    report = json.loads(report_file.read_text())
    assert report["quality"]["total"] == 126
    assert report["quality"]["accepted"] == 120
    assert report["quality"]["rejections"]["response_too_fast"]["count"] == 6
    curation = {
        (sample.name, sample.labels.get("outcome")): sample.value
        for family in text_string_to_metric_families(metrics_file.read_text())
        for sample in family.samples
        if sample.name.startswith("data_curation_")
    }
    assert curation[("data_curation_samples_total", "accepted")] == 120
    assert curation[("data_curation_samples_total", "response_too_fast")] == 6
    assert curation[("data_curation_samples_total", "rate_limited")] == 0
    assert curation[("data_curation_acceptance_rate", None)] == pytest.approx(120 / 126)
    assert report["retuning"]["mean_rating"] == pytest.approx(2.0, abs=0.02)
    assert "ppo.entropy.initial" in [s["parameter"] for s in report["retuning"]["suggestions"]]


def tiny_cli_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--env", "CartPole-v1",
        "--checkpoint-dir", str(tmp_path / "ckpt"),
        "--set", "runtime.numEnvs=2",
        "--set", "ppo.stepsPerUpdate=64",
        "--set", "ppo.batchSize=16",
        "--set", "checkpoints.interval=64",
        *extra,
    ]  # fmt: skip


def test_rollbacks_exhausted_exits_3_with_its_termination_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Learning rate 0.2: the KL blows up at once (rollback to step 0 at half the rate), and again.
    ending_file = tmp_path / "ending.json"
    monkeypatch.setenv("ARTISAN_TRAINER_TERMINATION_LOG", str(ending_file))
    code = cli.main(
        tiny_cli_args(
            tmp_path,
            "--total-steps", "640",
            "--set", "ppo.learningRate={initial: 0.2, final: 0.2, schedule: constant}",
            "--set", "rollback.maxRollbacks=1",
        )
    )  # fmt: skip
    assert code == cli.EXIT_ROLLBACKS_EXHAUSTED == 3
    lines = [strict_json(line) for line in capsys.readouterr().out.splitlines()]
    summary = lines[-1]
    (rollback,) = summary["rollbacks"]
    ending = strict_json(ending_file.read_text())
    assert list(ending) == TERMINATION_KEYS
    assert ending["outcome"] == "RollbacksExhausted"
    expected = {"step": rollback["step"], "reason": "kl_divergence", "toStep": rollback["target_step"]}
    assert ending["rollbacks"] == [expected]
    assert rollback["target_step"] < rollback["step"]
    assert ending["message"].startswith(
        f"rollbacks exhausted at step {summary['total_steps']}: kl_divergence"
    )
    assert ending["step"] == summary["total_steps"]
    assert ending["lastCheckpoint"] == summary["checkpoints"]["latest_step"]  # its sha256 matches
    assert ending["bestCheckpoint"] == summary["checkpoints"]["best_step"]


def test_a_resumed_process_reports_only_its_own_rollbacks(tmp_path: Path) -> None:
    high_lr = ["--set", "ppo.learningRate={initial: 0.2, final: 0.2, schedule: constant}"]
    first = tmp_path / "first.json"
    args = tiny_cli_args(tmp_path, "--total-steps", "640", *high_lr, "--set", "rollback.maxRollbacks=1")
    assert cli.main([*args, "--termination-log", str(first)]) == 3
    assert len(strict_json(first.read_text())["rollbacks"]) == 1
    second = tmp_path / "second.json"
    args = tiny_cli_args(tmp_path, "--total-steps", "640", *high_lr, "--set", "rollback.maxRollbacks=2")
    assert cli.main([*args, "--resume", "--termination-log", str(second)]) == 3
    ending = strict_json(second.read_text())
    assert [r["reason"] for r in ending["rollbacks"]] == ["kl_divergence"]  # one new one, not two


def test_invalid_config_leaves_an_error_termination_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ending_file = tmp_path / "ending.json"
    code = cli.main(
        [
            "train",
            "--checkpoint-dir",
            str(tmp_path),
            "--set",
            "ppo.gamma=7",
            "--termination-log",
            str(ending_file),
        ]
    )
    assert code == 2
    ending = strict_json(ending_file.read_text())
    assert (ending["outcome"], ending["step"], ending["lastCheckpoint"]) == ("Error", 0, None)
    assert ending["message"].startswith("invalid configuration: ppo.gamma")


def test_termination_message_fits_its_limit() -> None:
    from artisan_trainer.termination import LIMIT, RollbackEntry, build_termination_message

    rollbacks = [RollbackEntry(i * 64, "value_loss_spike", None if i % 2 else i) for i in range(30)]
    data = build_termination_message(
        step=2048, reward_ma=float("nan"), last_checkpoint=1024, best_checkpoint=None,
        rollbacks=rollbacks, outcome="Error", message="é" * 5000,
    )  # fmt: skip
    assert len(data) <= LIMIT
    document = strict_json(data.decode())
    assert document["rewardMA"] is None
    assert document["message"].endswith("…")
    assert len(document["rollbacks"]) == 20
    assert document["rollbacks"][-1] == {"step": 29 * 64, "reason": "value_loss_spike", "toStep": None}
    short = strict_json(
        build_termination_message(
            step=1, reward_ma=2.5, last_checkpoint=None, best_checkpoint=None, rollbacks=rollbacks,
            outcome="Succeeded", message="ok",
        ).decode()
    )  # fmt: skip
    assert (short["message"], len(short["rollbacks"]), short["rollbacks"][0]["step"]) == ("ok", 20, 640)


def test_termination_message_written_in_place_when_a_rename_cannot_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from artisan_trainer import termination

    def busy(path: Path, data: bytes) -> None:  # what a rename over a bind-mounted file gets
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(termination, "atomic_write_bytes", busy)
    target = tmp_path / "termination-log"
    target.write_text("old and longer content")
    termination.write_termination_message(target, b'{"step":1}')
    assert target.read_bytes() == b'{"step":1}'


def test_termination_path_precedence(tmp_path: Path) -> None:
    from artisan_trainer.termination import termination_path

    flag, env = tmp_path / "flag", tmp_path / "env"
    assert termination_path(flag, {"ARTISAN_TRAINER_TERMINATION_LOG": str(env)}) == flag
    assert termination_path(None, {"ARTISAN_TRAINER_TERMINATION_LOG": str(env)}) == env


def test_json_lines_are_strict_json(capsys: pytest.CaptureFixture[str]) -> None:
    from artisan_trainer.ppo import UpdateStats

    assert cli.json_line({"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}}) == (
        '{"a": null, "b": [null, 1.5], "c": {"d": null}}'
    )
    values: dict[str, Any] = dict.fromkeys(UpdateStats.__dataclass_fields__, 1.0)
    values.update(update=1, step=64, episodes=0, explained_variance=float("nan"))
    stats = UpdateStats(**values)
    cli.JsonLogHooks(every=1).on_update(stats, np.zeros(1, np.float32), np.zeros(1, np.float32))
    line = strict_json(capsys.readouterr().out)
    assert line["explained_variance"] is None
    assert line["step"] == 64


def test_log_records_are_json(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import logging

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    stream = io.StringIO()
    cli.configure_logging(stream)
    logging.getLogger("artisan_trainer.checkpoints").error('refused "ckpt-1.pt": sha256 %s', "abc")
    record = strict_json(stream.getvalue())
    assert record["level"] == "ERROR"
    assert record["name"] == "artisan_trainer.checkpoints"
    assert record["message"] == 'refused "ckpt-1.pt": sha256 abc'


def test_progress_bar_is_closed_at_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[bool] = []
    original = cli.BarHooks.close

    def close(self: cli.BarHooks) -> None:
        original(self)
        closed.append(True)

    monkeypatch.setattr(cli.BarHooks, "close", close)
    assert cli.main(tiny_cli_args(tmp_path, "--total-steps", "128", "--progress", "bar")) == 0
    assert closed == [True]


def test_entropy_final_gauge_follows_the_config() -> None:
    from artisan_trainer.config import load_config

    metrics = TrainerMetrics()
    metrics.on_config(load_config(overrides=["ppo.entropy.final=0.002"], environ={}))
    assert metrics.registry.get_sample_value("rl_entropy_coefficient_final") == 0.002
