"""The operator's own metrics, named like controller-runtime's so existing dashboards fit."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from artisan_operator.metrics.control_metrics import ControlMetrics

# Reconcile results: success, error (an exception, retried) and requeue (asked to look again soon).
RESULTS = ("success", "error", "requeue")


class OperatorMetrics:
    """One registry per operator instance (several operators can run in one test process)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reconcile_total = Counter(
            "artisan_reconcile",
            "Reconciliations per kind and result (success, error, requeue).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.reconcile_time = Histogram(
            "artisan_reconcile_time_seconds",
            "Duration of one reconciliation (observe, decide, apply, write status).",
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "artisan_reconcile_errors",
            "Failed reconciliations per kind and reason (HTTP status or exception type).",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.control = ControlMetrics(self.registry)
        """Gauges of the control loops (canary weight and abort, SRM, downshift, rollbacks)."""

    def record(self, kind: str, result: str, seconds: float) -> None:
        self.reconcile_total.labels(kind=kind, result=result).inc()
        self.reconcile_time.labels(kind=kind).observe(seconds)

    def record_error(self, kind: str, reason: str) -> None:
        self.reconcile_errors.labels(kind=kind, reason=reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
