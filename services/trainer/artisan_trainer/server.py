"""In-process HTTP endpoint: ``/metrics`` (Prometheus text format) and ``/healthz``.

Metric names keep the seeds' names, which users' dashboards and alerts already query
(``ppo_*``, ``rl_*``, ``data_curation_*``), plus ``artisan_trainer_*`` gauges the operator reads
to supervise the run (rollbacks exhausted, last and best checkpoint step).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from artisan_common.curation import QualityReport, RejectionReason
from artisan_common.gpu_metrics import GpuMemoryCollector
from artisan_trainer.config import TrainerConfig
from artisan_trainer.ppo import RollbackRecord, TrainingHooks, UpdateStats
from artisan_trainer.rollback import RollbackReason

REWARD_BUCKETS = (-10.0, -5.0, -2.0, -1.0, -0.5, -0.1, 0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
HISTOGRAM_SAMPLES_PER_UPDATE = 256
"""Rewards observed into the histograms per update (a uniform subsample keeps the cost flat)."""


class TrainerMetrics(TrainingHooks):
    """The trainer's Prometheus metrics, in their own registry (several trainers may share a process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        r.register(GpuMemoryCollector(torch.cuda))  # artisan_gpu_memory_*_bytes; none without CUDA
        self.entropy_coef = Gauge("ppo_entropy_coef", "Entropy bonus coefficient in use", registry=r)
        self.rl_entropy = Gauge("rl_entropy_coefficient", "Entropy bonus coefficient (seed name)", registry=r)
        # The alert "entropy stopped annealing" compares the coefficient with where it should end.
        self.rl_entropy_final = Gauge(
            "rl_entropy_coefficient_final", "Entropy coefficient at the end of its schedule", registry=r
        )
        self.learning_rate = Gauge("ppo_learning_rate", "Learning rate in use", registry=r)
        self.step = Gauge("ppo_training_step", "Environment steps done", registry=r)
        self.update = Gauge("ppo_update", "PPO updates done", registry=r)
        self.approx_kl = Gauge("ppo_approx_kl", "Approximate KL(old || new) of the last update", registry=r)
        self.clip_frac = Gauge("rl_clip_frac", "Share of samples clipped in the last update", registry=r)
        self.policy_loss = Gauge("ppo_policy_loss", "Clipped surrogate loss of the last update", registry=r)
        self.value_loss = Gauge("ppo_value_loss", "Value loss of the last update", registry=r)
        self.entropy = Gauge("ppo_entropy", "Mean policy entropy of the last update", registry=r)
        self.explained_variance = Gauge(
            "ppo_explained_variance", "Explained variance of the values", registry=r
        )
        self.sps = Gauge(
            "ppo_steps_per_second", "Environment steps per second of the last update", registry=r
        )
        self.normalizer_mean = Gauge(
            "rl_reward_normalizer_mean", "Rolling mean of the discounted return", registry=r
        )
        self.normalizer_std = Gauge(
            "rl_reward_normalizer_std", "Rolling std of the discounted return", registry=r
        )
        self.reward_ma = Gauge(
            "rl_reward_ma", "Mean episode return over the last N episodes", ["window"], registry=r
        )
        self.reward_raw = Histogram(
            "rl_reward_raw", "Per-step reward before normalization", buckets=REWARD_BUCKETS, registry=r
        )
        self.reward_norm = Histogram(
            "rl_reward_normalized", "Per-step reward after normalization", buckets=REWARD_BUCKETS, registry=r
        )
        self.checkpoints_saved = Counter("rl_checkpoint_saved", "Checkpoints written", registry=r)
        self.rollbacks = Counter("rl_checkpoint_rollback", "Automatic rollbacks", ["reason"], registry=r)
        self.rollbacks_exhausted = Gauge(
            "artisan_trainer_rollbacks_exhausted",
            "1 when maxRollbacks is used up (the run will fail)",
            registry=r,
        )
        self.last_checkpoint = Gauge("ppo_last_checkpoint_step", "Step of the newest checkpoint", registry=r)
        self.best_checkpoint = Gauge("ppo_best_checkpoint_step", "Step of the best checkpoint", registry=r)
        # Same names and labels as the ensemble's feedback intake, so one dashboard query covers both.
        self.curation_samples = Counter(
            "data_curation_samples",
            "Feedback samples by curation outcome (accepted or the rejection reason).",
            ["outcome"],
            registry=r,
        )
        self.curation_acceptance = Gauge(
            "data_curation_acceptance_rate", "Accepted share of the last curated batch", registry=r
        )
        # Every label value exists from the start, so rate() and absent() queries work before the first event.
        for reason in RollbackReason:
            self.rollbacks.labels(reason=reason.value)
        self.curation_samples.labels(outcome="accepted")
        for rejection in RejectionReason:
            self.curation_samples.labels(outcome=rejection.value)
        self.last_progress = time.monotonic()
        self._rng = np.random.default_rng(0)

    def on_config(self, config: TrainerConfig) -> None:
        """Values fixed for the run: the entropy schedule's final coefficient."""
        self.rl_entropy_final.set(config.ppo.entropy.final)

    # TrainingHooks ---------------------------------------------------------------------------
    def on_update(
        self, stats: UpdateStats, raw: npt.NDArray[np.float32], norm: npt.NDArray[np.float32]
    ) -> None:
        self.last_progress = time.monotonic()
        self.entropy_coef.set(stats.entropy_coef)
        self.rl_entropy.set(stats.entropy_coef)
        self.learning_rate.set(stats.learning_rate)
        self.step.set(stats.step)
        self.update.set(stats.update)
        self.approx_kl.set(stats.approx_kl)
        self.clip_frac.set(stats.clip_fraction)
        self.policy_loss.set(stats.policy_loss)
        self.value_loss.set(stats.value_loss)
        self.entropy.set(stats.entropy)
        self.explained_variance.set(stats.explained_variance)
        self.sps.set(stats.sps)
        self.normalizer_mean.set(stats.normalizer_mean)
        self.normalizer_std.set(stats.normalizer_std)
        flat_raw, flat_norm = raw.reshape(-1), norm.reshape(-1)
        picks = self._rng.choice(
            len(flat_raw), size=min(len(flat_raw), HISTOGRAM_SAMPLES_PER_UPDATE), replace=False
        )
        for i in picks:
            self.reward_raw.observe(float(flat_raw[i]))
            self.reward_norm.observe(float(flat_norm[i]))

    def on_episode_window(self, windows: dict[int, float]) -> None:
        for size, value in windows.items():
            self.reward_ma.labels(window=str(size)).set(value)

    def on_checkpoint(self, step: int, best_step: int | None) -> None:
        self.checkpoints_saved.inc()
        self.last_checkpoint.set(step)
        if best_step is not None:
            self.best_checkpoint.set(best_step)

    def on_rollback(self, record: RollbackRecord, total: int, exhausted: bool) -> None:
        if record.target_step >= 0:
            self.rollbacks.labels(reason=record.reason).inc()
            self.last_checkpoint.set(record.target_step)
        self.rollbacks_exhausted.set(1 if exhausted else 0)

    def on_curation(self, report: QualityReport) -> None:
        self.curation_samples.labels(outcome="accepted").inc(report.accepted)
        for reason, count in report.rejections.items():
            self.curation_samples.labels(outcome=reason).inc(count.count)
        self.curation_acceptance.set(report.acceptance_rate)


class MetricsServer:
    """A daemon-thread HTTP server; ``/healthz`` fails when no update finished for ``stall_seconds``."""

    def __init__(
        self, metrics: TrainerMetrics, host: str = "0.0.0.0", port: int = 0, stall_seconds: float = 900
    ) -> None:
        self.metrics = metrics
        self.stall_seconds = stall_seconds
        handler = self._handler()
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="artisan-metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def health(self) -> tuple[int, dict[str, Any]]:
        idle = time.monotonic() - self.metrics.last_progress
        healthy = idle < self.stall_seconds
        return (200 if healthy else 503), {
            "status": "ok" if healthy else "stalled",
            "secondsSinceProgress": idle,
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body = generate_latest(server.metrics.registry)
                    self._send(200, CONTENT_TYPE_LATEST, body)
                elif path == "/healthz":
                    code, payload = server.health()
                    self._send(code, "application/json", json.dumps(payload).encode())
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would flood the log

        return Handler

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
