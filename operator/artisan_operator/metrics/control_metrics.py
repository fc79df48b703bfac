"""Gauges of the control loops, for alerts (the chart's rules query these names).

| metric                                         | meaning                                   |
|------------------------------------------------|-------------------------------------------|
| ``artisan_canary_weight{namespace,canary}``    | percent of traffic the canary receives    |
| ``artisan_canary_aborted{namespace,canary}``   | 1 while the rollout is aborted            |
| ``artisan_abexperiment_srm{namespace,experiment}`` | 1 when a sample ratio mismatch stopped it |
| ``artisan_modelpin_downshifted{namespace,modelpin}`` | 1 while the fleet's mode ceiling is lowered |
| ``artisan_training_operator_rollbacks_total{namespace,trainingrun}`` | operator-level rollbacks |
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge


class ControlMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.canary_weight = Gauge(
            "artisan_canary_weight",
            "Percent of traffic the canary receives now.",
            ["namespace", "canary"],
            registry=registry,
        )
        self.canary_aborted = Gauge(
            "artisan_canary_aborted",
            "1 while the Canary's rollout is aborted (stable serves all traffic).",
            ["namespace", "canary"],
            registry=registry,
        )
        self.experiment_srm = Gauge(
            "artisan_abexperiment_srm",
            "1 when a sample ratio mismatch invalidated the ABExperiment.",
            ["namespace", "experiment"],
            registry=registry,
        )
        self.downshifted = Gauge(
            "artisan_modelpin_downshifted",
            "1 while the ModelPin fleet's mode ceiling is lowered.",
            ["namespace", "modelpin"],
            registry=registry,
        )
        self.operator_rollbacks = Counter(
            "artisan_training_operator_rollbacks",
            "Operator-level rollbacks (trainer restarted from a checkpoint).",
            ["namespace", "trainingrun"],
            registry=registry,
        )

    def canary(self, namespace: str, name: str, *, weight: int, aborted: bool) -> None:
        self.canary_weight.labels(namespace, name).set(weight)
        self.canary_aborted.labels(namespace, name).set(1 if aborted else 0)

    def forget_canary(self, namespace: str, name: str) -> None:
        for gauge in (self.canary_weight, self.canary_aborted):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)
