"""Gauges of the control loops, for alerts (the chart's rules query these names).

| metric                                         | meaning                                   |
|------------------------------------------------|-------------------------------------------|
| ``artisan_canary_weight{namespace,canary}``    | percent of traffic the canary receives    |
| ``artisan_canary_aborted{namespace,canary}``   | 1 while the rollout is aborted            |
| ``artisan_canary_step_index{namespace,name}``  | the step the rollout has reached          |
| ``artisan_resource_generation{kind,namespace,name}`` | metadata.generation of each object |
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
        self.canary_step = Gauge(
            "artisan_canary_step_index",
            "Index of the step the Canary's rollout has reached (the number of steps once promoted).",
            ["namespace", "name"],
            registry=registry,
        )
        self.resource_generation = Gauge(
            "artisan_resource_generation",
            "metadata.generation of each reconciled object (a spec change increments it).",
            ["kind", "namespace", "name"],
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

    def canary(self, namespace: str, name: str, *, weight: int, aborted: bool, step: int = 0) -> None:
        self.canary_weight.labels(namespace, name).set(weight)
        self.canary_aborted.labels(namespace, name).set(1 if aborted else 0)
        self.canary_step.labels(namespace, name).set(step)

    def forget_canary(self, namespace: str, name: str) -> None:
        for gauge in (self.canary_weight, self.canary_aborted, self.canary_step):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)
        self.forget_generation("Canary", namespace, name)

    def generation(self, kind: str, namespace: str, name: str, generation: int | None) -> None:
        """Record an object's metadata.generation (nothing when the server set none)."""
        if generation is not None:
            self.resource_generation.labels(kind, namespace, name).set(generation)

    def forget_generation(self, kind: str, namespace: str, name: str) -> None:
        with contextlib.suppress(KeyError):
            self.resource_generation.remove(kind, namespace, name)
