"""What every handler reaches through ``memo``: settings, the cluster client, the metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from artisan_operator.cluster import ClusterClient
from artisan_operator.cluster.aio import AsyncApi
from artisan_operator.handlers.workqueue import WorkQueue
from artisan_operator.metrics.operator_metrics import OperatorMetrics
from artisan_operator.metrics.server import MetricsServer
from artisan_operator.settings import Settings

CONTEXT_KEY = "artisan"


@dataclass
class OperatorContext:
    settings: Settings
    metrics: OperatorMetrics
    cluster: ClusterClient | None = None
    """Set by the startup handler (it needs the login settings first)."""
    metrics_server: MetricsServer | None = None
    """The /metrics server, when enabled (its ``port`` is the bound one)."""
    work: WorkQueue | None = None
    """The per-object reconcile loops (TrainingRun, ModelPin, fleet health); set by the startup handler."""
    async_api: AsyncApi | None = None
    """Writes on the event loop (a brand-new object's first pass); None: every write on the thread
    pool (not set up yet, or the API is reached through a proxy)."""

    def require_cluster(self) -> ClusterClient:
        if self.cluster is None:
            raise RuntimeError("the cluster client is not set up: the startup handler has not run")
        return self.cluster

    def require_work(self) -> WorkQueue:
        if self.work is None:
            raise RuntimeError("the work queue is not set up: the startup handler has not run")
        return self.work


def operator_context(memo: Any) -> OperatorContext:
    context = memo[CONTEXT_KEY]
    if not isinstance(context, OperatorContext):
        raise TypeError(f"memo[{CONTEXT_KEY!r}] is not an OperatorContext")
    return context
