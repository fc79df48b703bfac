"""``artisan-trainer train``: the process the TrainingRun's Job runs.

Every flag has an ``ARTISAN_TRAINER_*`` environment equivalent (``ARTISAN_TRAINER_CONFIG``,
``ARTISAN_TRAINER_ENV``, ``ARTISAN_TRAINER_TOTAL_STEPS``, ``ARTISAN_TRAINER_CHECKPOINT_DIR``,
``ARTISAN_TRAINER_METRICS_PORT``, ``ARTISAN_TRAINER_SUMMARY_JSON``, ``ARTISAN_TRAINER_RESUME``,
``ARTISAN_TRAINER_ROLLBACK_ID``, ``ARTISAN_TRAINER_TERMINATION_LOG``);
runtime fields too (``ARTISAN_TRAINER_NUM_ENVS``, ``ARTISAN_TRAINER_SEED``, ...).

Exit codes (the operator reads them, and the termination message, to set the run's phase):

| code | meaning                                                                              |
|------|--------------------------------------------------------------------------------------|
| 0    | done, or stopped by SIGTERM after a checkpoint                                       |
| 1    | unexpected error (the termination message says which)                               |
| 2    | invalid configuration, unknown env, or unusable checkpoint directory                 |
| 3    | rollbacks exhausted: an anomaly after ``maxRollbacks`` rollbacks (the run Failed)     |
| 4    | no rollback target: an anomaly, but no checkpoint could be loaded to go back to      |
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from prometheus_client import generate_latest
from pythonjsonlogger.json import JsonFormatter

from artisan_trainer.checkpoints import (
    CheckpointError,
    applied_rollback_ids,
    atomic_write_bytes,
    record_applied_rollback,
)
from artisan_trainer.config import ConfigError, TrainerConfig, apply_override, load_config
from artisan_trainer.ppo import PPOTrainer, RollbackRecord, TrainingHooks, TrainingSummary, UpdateStats
from artisan_trainer.server import MetricsServer, TrainerMetrics
from artisan_trainer.termination import (
    STATUS_OUTCOMES,
    Outcome,
    RollbackEntry,
    build_termination_message,
    termination_path,
    write_termination_message,
)

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_ROLLBACKS_EXHAUSTED, EXIT_NO_ROLLBACK_TARGET = 0, 1, 2, 3, 4
STATUS_EXIT_CODES = {
    "rollbacks_exhausted": EXIT_ROLLBACKS_EXHAUSTED,
    "no_rollback_target": EXIT_NO_ROLLBACK_TARGET,
}
log = logging.getLogger("artisan_trainer")

EXIT_CODES_HELP = """exit codes:
  0  done, or stopped by SIGTERM after a checkpoint
  1  unexpected error
  2  invalid configuration, unknown env, or unusable checkpoint directory
  3  rollbacks exhausted (an anomaly after maxRollbacks rollbacks)
  4  no rollback target (an anomaly, and no checkpoint could be loaded)
At exit a JSON summary goes to --termination-log (see artisan_trainer.termination)."""


def json_safe(value: Any) -> Any:
    """``value`` with NaN and ±inf replaced by None, so it encodes as strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def json_line(document: dict[str, Any]) -> str:
    """One strict-JSON log line (explained variance, for one, is NaN when the returns are constant)."""
    return json.dumps(json_safe(document), allow_nan=False, default=str)


def configure_logging(stream: IO[str] | None = None) -> None:
    """JSON log records on stderr (the event lines go to stdout).

    Like ``logging.basicConfig``, it leaves a root logger that already has handlers alone (an
    embedding application, or pytest, configured logging itself).
    """
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level"},
            json_ensure_ascii=False,
        )
    )
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"ARTISAN_TRAINER_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="artisan-trainer",
        description="PPO trainer for Artisan",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train a policy with PPO",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_default = _env("CONFIG")
    train.add_argument(
        "--config",
        action="append",
        type=Path,
        default=[Path(config_default)] if config_default else [],
        help="YAML in the TrainingConfig wire shape (repeatable; later files win)",
    )
    train.add_argument("--env", default=_env("ENV"), help="gymnasium env id (overrides env.id)")
    total = _env("TOTAL_STEPS")
    train.add_argument(
        "--total-steps", type=int, default=int(total) if total else None, help="overrides ppo.totalSteps"
    )
    train.add_argument(
        "--checkpoint-dir", type=Path, default=_env("CHECKPOINT_DIR"), required=_env("CHECKPOINT_DIR") is None
    )
    train.add_argument("--resume", action="store_true", default=_env("RESUME", "") in {"1", "true", "yes"})
    train.add_argument(
        "--resume-from-step",
        type=int,
        default=None,
        metavar="STEP",
        help="resume from the newest verified checkpoint at or before STEP; newer ones are dropped",
    )
    train.add_argument(
        "--rollback-id",
        default=_env("ROLLBACK_ID"),
        metavar="ID",
        help="with --resume-from-step: apply that drop once per ID (recorded beside the checkpoints); "
        "a later pod with the same ID just resumes",
    )
    port = _env("METRICS_PORT")
    train.add_argument(
        "--metrics-port", type=int, default=int(port) if port else None, help="serve /metrics and /healthz"
    )
    train.add_argument("--metrics-host", default=_env("METRICS_HOST", "0.0.0.0"))
    summary = _env("SUMMARY_JSON")
    train.add_argument("--summary-json", type=Path, default=Path(summary) if summary else None)
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    train.add_argument("--progress", choices=["auto", "bar", "json"], default="auto")
    train.add_argument(
        "--termination-log",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the exit summary JSON here (default: $ARTISAN_TRAINER_TERMINATION_LOG, else "
        "/dev/termination-log when it exists and is writable)",
    )

    fit = sub.add_parser(
        "fit-reward-model", help="curate stored feedback, fit the Fragrance reward model, suggest retuning"
    )
    db = _env("FEEDBACK_DB")
    fit.add_argument(
        "--feedback-db", type=Path, default=db, required=db is None, help="SQLite feedback store"
    )
    fit.add_argument("--out", type=Path, required=True, help="where to write the reward model JSON")
    fit.add_argument(
        "--config", action="append", type=Path, default=[Path(config_default)] if config_default else []
    )
    fit.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    fit.add_argument(
        "--report-json", type=Path, default=None, help="write curation and retuning reports here"
    )
    metrics_file = _env("METRICS_FILE")
    fit.add_argument(
        "--metrics-file",
        type=Path,
        default=Path(metrics_file) if metrics_file else None,
        help="write the data_curation_* metrics here in Prometheus text format (textfile collector)",
    )
    return parser


class JsonLogHooks(TrainingHooks):
    """One JSON line per update (on stdout) plus lines for checkpoints and rollbacks."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_update(
        self, stats: UpdateStats, raw: npt.NDArray[np.float32], norm: npt.NDArray[np.float32]
    ) -> None:
        if stats.update % self.every == 0:
            print(json_line({"event": "update", **stats.__dict__}), flush=True)

    def on_checkpoint(self, step: int, best_step: int | None) -> None:
        print(json_line({"event": "checkpoint", "step": step, "best_step": best_step}), flush=True)

    def on_rollback(self, record: RollbackRecord, total: int, exhausted: bool) -> None:
        print(
            json_line({"event": "rollback", **record.__dict__, "total": total, "exhausted": exhausted}),
            flush=True,
        )


class BarHooks(TrainingHooks):
    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="step", dynamic_ncols=True)

    def on_update(
        self, stats: UpdateStats, raw: npt.NDArray[np.float32], norm: npt.NDArray[np.float32]
    ) -> None:
        self.bar.n = min(stats.step, int(self.bar.total or stats.step))
        ret = "-" if stats.mean_return is None else f"{stats.mean_return:.1f}"
        self.bar.set_postfix(
            ret=ret, kl=f"{stats.approx_kl:.4f}", lr=f"{stats.learning_rate:.2e}", refresh=False
        )
        self.bar.refresh()

    def on_rollback(self, record: RollbackRecord, total: int, exhausted: bool) -> None:
        target = f"step {record.target_step}" if record.target_step >= 0 else "none (the run stops)"
        self.bar.write(f"rollback #{total} at step {record.step}: {record.reason} → {target}")

    def close(self) -> None:
        self.bar.close()


class FanOut(TrainingHooks):
    def __init__(self, *hooks: TrainingHooks) -> None:
        self.hooks = hooks

    def on_update(
        self, stats: UpdateStats, raw: npt.NDArray[np.float32], norm: npt.NDArray[np.float32]
    ) -> None:
        for hook in self.hooks:
            hook.on_update(stats, raw, norm)

    def on_checkpoint(self, step: int, best_step: int | None) -> None:
        for hook in self.hooks:
            hook.on_checkpoint(step, best_step)

    def on_rollback(self, record: RollbackRecord, total: int, exhausted: bool) -> None:
        for hook in self.hooks:
            hook.on_rollback(record, total, exhausted)

    def on_episode_window(self, windows: dict[int, float]) -> None:
        for hook in self.hooks:
            hook.on_episode_window(windows)


def resolve_config(args: argparse.Namespace) -> TrainerConfig:
    overrides = list(args.overrides)
    if args.env:
        overrides.insert(0, f"env.id={args.env}")
    if args.total_steps is not None:
        overrides.insert(0, f"ppo.totalSteps={args.total_steps}")
    for text in overrides:  # fail fast on a malformed key before reading anything else
        apply_override({}, text)
    return load_config(args.config, overrides)


def termination_document(trainer: PPOTrainer | None, outcome: Outcome, message: str) -> bytes:
    """The exit summary for the operator (:mod:`artisan_trainer.termination`)."""
    if trainer is None:  # failed before training began
        return build_termination_message(
            step=0, reward_ma=None, last_checkpoint=None, best_checkpoint=None, rollbacks=[],
            outcome=outcome, message=message,
        )  # fmt: skip
    checkpoints = trainer.checkpoints
    last = checkpoints.newest_verified()
    best = checkpoints.best if checkpoints.verified(checkpoints.best) else None
    return build_termination_message(
        step=trainer.step,
        reward_ma=trainer.mean_return,
        last_checkpoint=last.step if last else None,
        best_checkpoint=best.step if best else None,
        rollbacks=[
            RollbackEntry(r.step, r.reason, r.target_step if r.target_step >= 0 else None)
            for r in trainer.process_rollbacks
        ],
        outcome=outcome,
        message=message,
    )


def _terminate(args: argparse.Namespace, trainer: PPOTrainer | None, outcome: Outcome, message: str) -> None:
    """Leave the exit summary where the operator reads it; a failure here never hides the run's result."""
    path = termination_path(args.termination_log)
    if path is None:
        return
    try:
        write_termination_message(path, termination_document(trainer, outcome, message))
    except Exception:
        log.exception("cannot write the termination message to %s", path)


def _final_message(summary: TrainingSummary) -> str:
    if summary.message:
        return summary.message
    if summary.status == "interrupted":
        return f"stopped by SIGTERM at step {summary.total_steps} after a checkpoint; resume with --resume"
    return f"completed {summary.total_steps} steps"


def train(args: argparse.Namespace) -> int:
    try:
        config = resolve_config(args)
    except ConfigError as exc:
        print(f"artisan-trainer: invalid configuration: {exc}", file=sys.stderr)
        _terminate(args, None, "Error", f"invalid configuration: {exc}")
        return EXIT_CONFIG
    metrics = TrainerMetrics()
    metrics.on_config(config)
    server = (
        MetricsServer(metrics, args.metrics_host, args.metrics_port).start()
        if args.metrics_port is not None
        else None
    )
    use_bar = args.progress == "bar" or (args.progress == "auto" and sys.stdout.isatty())
    progress: TrainingHooks = (
        BarHooks(config.ppo.total_steps) if use_bar else JsonLogHooks(config.runtime.log_every_updates)
    )
    stop = {"requested": False}

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop["requested"] = True  # finish the update, checkpoint, then exit

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    trainer: PPOTrainer | None = None
    resume_from = args.resume_from_step
    if resume_from is not None and args.rollback_id in applied_rollback_ids(args.checkpoint_dir):
        log.info("rollback %s to step %d was applied before; resuming", args.rollback_id, resume_from)
        resume_from = None
    try:
        trainer = PPOTrainer(
            config,
            args.checkpoint_dir,
            resume=args.resume or args.resume_from_step is not None,
            resume_at_or_before=resume_from,
            hooks=FanOut(metrics, progress),
            stop_requested=lambda: stop["requested"],
        )
        if resume_from is not None and args.rollback_id:
            record_applied_rollback(args.checkpoint_dir, args.rollback_id)
        try:
            summary = trainer.train(config.ppo.total_steps)
        finally:
            trainer.close()
    except (CheckpointError, ValueError) as exc:
        print(f"artisan-trainer: {exc}", file=sys.stderr)
        _terminate(args, trainer, "Error", str(exc))
        return EXIT_CONFIG
    except Exception as exc:
        log.exception("training failed")
        _terminate(args, trainer, "Error", f"{type(exc).__name__}: {exc}")
        return EXIT_ERROR
    finally:
        signal.signal(signal.SIGTERM, previous)
        if isinstance(progress, BarHooks):
            progress.close()
        if server is not None:
            server.stop()
    document: dict[str, Any] = json_safe(summary.to_json())
    if args.summary_json is not None:
        atomic_write_bytes(args.summary_json, (json.dumps(document, indent=2) + "\n").encode())
    print(json_line({"event": "summary", **document}), flush=True)
    _terminate(args, trainer, STATUS_OUTCOMES.get(summary.status, "Error"), _final_message(summary))
    return STATUS_EXIT_CODES.get(summary.status, EXIT_OK)


def fit_reward_model_command(args: argparse.Namespace, metrics: TrainerMetrics | None = None) -> int:
    """Re-curate the stored feedback with this run's thresholds, fit, write atomically, suggest retuning.

    The curation outcome is counted in ``data_curation_*`` (``metrics``), written to ``--metrics-file``
    when given.
    """
    from artisan_common.catalog import load_catalog
    from artisan_common.curation import curate
    from artisan_common.feedback_store import SQLiteFeedbackStore
    from artisan_common.retuning import suggest_retuning
    from artisan_trainer.env import fit_reward_model

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"artisan-trainer: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    with SQLiteFeedbackStore(args.feedback_db) as store:
        stored = store.curated()
    kept, quality = curate(stored, config.feedback.curation)
    metrics = metrics or TrainerMetrics()
    metrics.on_curation(quality)
    if args.metrics_file is not None:
        atomic_write_bytes(args.metrics_file, generate_latest(metrics.registry))
    retuning = suggest_retuning([s.rating for s in kept], config.training_config())
    report: dict[str, Any] = {
        "quality": quality.model_dump(),
        "retuning": retuning.model_dump(),
        "model": None,
    }
    try:
        model = fit_reward_model(kept, load_catalog())
    except ValueError as exc:
        report["model_error"] = str(exc)
    else:
        atomic_write_bytes(args.out, model.to_json().encode())
        report["model"] = str(args.out)
    if args.report_json is not None:
        atomic_write_bytes(args.report_json, (json.dumps(json_safe(report), indent=2) + "\n").encode())
    print(json_line({"event": "fit-reward-model", **report}), flush=True)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    args = build_parser().parse_args(argv)
    if args.command == "train":
        return train(args)
    if args.command == "fit-reward-model":
        return fit_reward_model_command(args)
    return EXIT_CONFIG  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
