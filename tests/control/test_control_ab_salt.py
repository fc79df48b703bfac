"""ABExperiment assignment salt: empty means "<namespace>/<name>", written into the routing entry, so
two experiments never share hash seeds (and the gateway hashes users differently for each)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from artisan_common.routing import EXPERIMENT_KEY
from artisan_ensemble.gateway.assignment import assign
from artisan_operator.api.ab_experiment import AssignmentSpec
from artisan_operator.sandbox.prometheus import ControlledExporter, PrometheusServer
from artisan_operator.sandbox.testing import wait_for

from .conftest import NS, Control, ab_experiment, stable_pin


# The rows of AssignmentSpec.effective_salt's docstring table.
@pytest.mark.parametrize(
    ("salt", "namespace", "name", "effective"),
    [("", "prod", "tone", "prod/tone"), ("wave-2", "prod", "tone", "wave-2")],
)
def test_effective_salt(salt: str, namespace: str, name: str, effective: str) -> None:
    assert AssignmentSpec(salt=salt).effective_salt(namespace, name) == effective


def test_default_salts_differ_between_experiments_and_reshuffle_users() -> None:
    weights = {"control": 50.0, "treatment": 50.0}
    salts = [AssignmentSpec().effective_salt(ns, "tone") for ns in ("team-a", "team-b")]
    assert salts[0] != salts[1]
    users = [f"user-{i}" for i in range(400)]
    same = sum(assign(u, weights, salt=salts[0]) == assign(u, weights, salt=salts[1]) for u in users)
    assert 150 < same < 250  # independent assignments agree about half the time, not always


def routed(control: Control) -> dict[str, Any] | None:
    entry: dict[str, Any] | None = json.loads(control.routing("pin").get(EXPERIMENT_KEY, "null"))
    return entry


@pytest.mark.e2e
def test_the_operator_writes_the_effective_salt(
    control_factory: Callable[..., Control], prometheus: PrometheusServer, exporter: ControlledExporter
) -> None:
    control = control_factory(prometheus.url, experiment_interval_seconds=0.5)
    for variant in ("control", "treatment"):  # a few ratings: the experiment runs (and routes), collecting
        labels = {"experiment": "abx-salt", "variant": variant, "metric": "rating"}
        exporter.set("artisan_variant_observations_total", 10.0, **labels)
        exporter.set("artisan_variant_sum_total", 40.0, **labels)
        exporter.set("artisan_variant_sum_squares_total", 170.0, **labels)
    stable_pin(control, "pin")
    control.create(ab_experiment("abx-salt"))
    entry = wait_for(lambda: routed(control), timeout=30, message="routing entry")
    assert (entry["experiment"], entry["salt"]) == ("abx-salt", f"{NS}/abx-salt")
    control.patch("abexperiments", "abx-salt", {"spec": {"assignment": {"salt": "wave-2"}}})
    wait_for(lambda: (e := routed(control)) and e.get("salt") == "wave-2", timeout=30, message="new salt")
