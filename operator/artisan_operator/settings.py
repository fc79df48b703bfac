"""Operator settings from the environment (``ARTISAN_OPERATOR_*``); the Helm chart sets them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TRAINER_IMAGE = "registry.example.com/artisan-dev/artisan-trainer:0.1.0"
DEFAULT_ENSEMBLE_IMAGE = "registry.example.com/artisan-dev/artisan-ensemble:0.1.0"


class Settings(BaseSettings):
    """Everything the operator process can be told; every value has a production default."""

    model_config = SettingsConfigDict(env_prefix="ARTISAN_OPERATOR_", extra="forbid", frozen=True)

    kubeconfig: Path | None = None
    """Kubeconfig file to connect with; in-cluster service account credentials when unset."""
    namespace: str | None = None
    """Watch only this namespace (namespaced mode, a Role suffices); cluster-wide when unset."""

    metrics_enabled: bool = True
    """Serve /metrics, /healthz and /readyz."""
    metrics_host: str = "0.0.0.0"
    """Address the metrics server binds (all interfaces: probes and Prometheus reach the pod IP)."""
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    """Port of /metrics, /healthz and /readyz; 0 picks a free port (tests)."""

    trainer_image: str = DEFAULT_TRAINER_IMAGE
    """Trainer image for TrainingRuns that name none."""
    ensemble_image: str = DEFAULT_ENSEMBLE_IMAGE
    """Ensemble image for ModelPins that name none."""
    prometheus_url: str | None = None
    """Prometheus HTTP API for metric analysis; metrics are scraped directly when unset."""
    metric_query_timeout_seconds: float = Field(default=5, gt=0)
    """Timeout of one metric query (Prometheus) or scrape; a timeout counts as a provider error."""
    experiment_interval_seconds: float = Field(default=30, gt=0)
    """How often an ABExperiment's statistics are read and analysed."""
    fleet_interval_seconds: float = Field(default=10, gt=0)
    """How often the ensemble pods' model health is read for the fleet downshift."""
    training_stall_seconds: float = Field(default=600, gt=0)
    """A trainer whose step does not advance for this long is restarted from its last checkpoint."""
    training_crash_loop_restarts: int = Field(default=3, ge=1)
    """Container restarts of a trainer pod counted as a crash loop (then restarted from a checkpoint)."""

    # Watch timeouts. The server-side timeout makes the API server end each watch regularly, so a
    # stream silently cut by a load balancer or proxy is replaced within minutes, not never.
    watch_server_timeout_seconds: float = Field(default=300, gt=0)
    """The API server ends a watch after this long (kopf then re-lists and re-watches)."""
    # The client-side timeout is a safety net slightly above the server's: if the server's end of a
    # watch never arrives (a hung connection), the client gives up on its own.
    watch_client_timeout_seconds: float = Field(default=330, gt=0)
    """The client abandons a watch after this long even without the server's end."""
    # The connect timeout keeps an unreachable API server from stalling kopf: it fails fast and
    # retries with backoff instead of hanging on a TCP connect.
    watch_connect_timeout_seconds: float = Field(default=10, gt=0)
    """Connecting to the API server fails after this long (then retried)."""

    resync_interval_seconds: float = Field(default=60, gt=0)
    """Every object is reconciled at least this often (level-triggered), even if nothing changed."""
    timer_interval_seconds: float = Field(default=5, gt=0)
    """The finest requeue: a reconcile asking to look again sooner than this waits this long."""
    timer_idle_seconds: float = Field(default=1, ge=0)
    """Not used any more (passes are scheduled by the work queue, one at a time per object, each
    requeued from its own end); still accepted so that existing configurations stay valid."""

    api_threads: int = Field(default=32, ge=1, le=128)
    """Threads (and connections) for blocking Kubernetes API calls, and so reconcile passes of
    different objects in flight at once (reads and later passes: a brand-new object's first pass
    only writes, and runs on the event loop, see ``cluster.aio``; it shares the connection count)."""
    api_request_timeout_seconds: float = Field(default=30, gt=0)
    """Timeout of one Kubernetes API request made by the reconcilers."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the operator process."""
    event_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level of kopf's log lines that are also posted as Kubernetes Events."""
