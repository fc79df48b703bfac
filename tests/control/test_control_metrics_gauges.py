"""The control loops' gauges the dashboards query: canary step index and resource generation."""

from __future__ import annotations

from artisan_operator.metrics.operator_metrics import OperatorMetrics


def test_canary_step_index_is_set_and_forgotten() -> None:
    metrics = OperatorMetrics()
    labels = {"namespace": "ns", "name": "cny"}
    metrics.control.canary("ns", "cny", weight=20, aborted=False, step=2)
    assert metrics.registry.get_sample_value("artisan_canary_step_index", labels) == 2
    metrics.control.canary("ns", "cny", weight=60, aborted=False, step=4)
    assert metrics.registry.get_sample_value("artisan_canary_step_index", labels) == 4
    metrics.control.generation("Canary", "ns", "cny", 3)
    metrics.control.forget_canary("ns", "cny")
    assert metrics.registry.get_sample_value("artisan_canary_step_index", labels) is None
    assert (
        metrics.registry.get_sample_value("artisan_canary_weight", {"namespace": "ns", "canary": "cny"})
        is None
    )
    generation = {"kind": "Canary", "namespace": "ns", "name": "cny"}
    assert metrics.registry.get_sample_value("artisan_resource_generation", generation) is None


def test_resource_generation_per_kind_and_object() -> None:
    metrics = OperatorMetrics()
    metrics.control.generation("ModelPin", "ns", "pin", 1)
    metrics.control.generation("ModelPin", "ns", "pin", 2)  # a spec change
    metrics.control.generation("TrainingRun", "ns", "pin", 7)
    metrics.control.generation("ABExperiment", "ns", "abx", None)  # no generation: nothing recorded
    value = metrics.registry.get_sample_value
    assert value("artisan_resource_generation", {"kind": "ModelPin", "namespace": "ns", "name": "pin"}) == 2
    assert (
        value("artisan_resource_generation", {"kind": "TrainingRun", "namespace": "ns", "name": "pin"}) == 7
    )
    assert (
        value("artisan_resource_generation", {"kind": "ABExperiment", "namespace": "ns", "name": "abx"})
        is None
    )
    metrics.control.forget_generation("ModelPin", "ns", "pin")
    metrics.control.forget_generation("ModelPin", "ns", "pin")  # twice is fine
    assert (
        value("artisan_resource_generation", {"kind": "ModelPin", "namespace": "ns", "name": "pin"}) is None
    )
    assert b"artisan_resource_generation" in metrics.exposition()
