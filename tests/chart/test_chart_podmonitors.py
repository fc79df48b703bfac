"""PodMonitors of the workload pods: their selectors, ports and relabelings are checked against the
labels and ports the operator's manifest builders (and the gateway example) really put on pods."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from artisan_operator.api.model_pin import ModelPinSpec
from artisan_operator.api.training_run import TrainingRunSpec
from artisan_operator.handlers.ab_experiment import GATEWAY_SELECTOR
from artisan_operator.manifests import Owner, build_ensemble_deployment, build_trainer_job
from artisan_operator.manifests.canary import build_canary_deployment
from artisan_operator.manifests.common import owner_label_key
from artisan_operator.manifests.ensemble import TRACK_LABEL

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "artisan"
RELEASE, NAMESPACE = "prod", "artisan-system"
ENABLED = {"metrics": {"podMonitors": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}}}
META_POD_LABEL = "__meta_kubernetes_pod_label_"


def sample_spec(kind: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "configs" / "samples" / f"{kind}.yaml").read_text(encoding="utf-8"))
    spec: dict[str, Any] = doc["spec"]
    return spec


def trainer_pod() -> dict[str, Any]:
    owner = Owner(kind="TrainingRun", name="ppo-a", namespace="ml", uid="u1")
    job = build_trainer_job(
        owner, TrainingRunSpec.model_validate(sample_spec("trainingrun")), image="t", attempt=2
    )
    template: dict[str, Any] = job["spec"]["template"]
    return template


def ensemble_pods() -> list[dict[str, Any]]:
    """The stable fleet's pod template and the canary fleet's (a Canary's second Deployment)."""
    spec = ModelPinSpec.model_validate(sample_spec("modelpin"))
    stable = build_ensemble_deployment(
        Owner(kind="ModelPin", name="pin", namespace="ml", uid="u2"), spec, image="e"
    )
    canary = build_canary_deployment(
        Owner(kind="Canary", name="cny", namespace="ml", uid="u3"), "pin", spec, image="e", replicas=1
    )
    return [stable["spec"]["template"], canary["spec"]["template"]]


def gateway_pod() -> dict[str, Any]:
    docs = yaml.safe_load_all((ROOT / "configs" / "demo" / "gateway.yaml").read_text(encoding="utf-8"))
    (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


def prometheus_label_name(key: str) -> str:
    """How Prometheus's Kubernetes discovery names a pod label (every invalid character becomes _)."""
    return META_POD_LABEL + re.sub(r"[^a-zA-Z0-9_]", "_", key)


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


def monitors(chart: helm.Chart, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    docs = [
        d for path, text in rendered.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d
    ]
    return {
        d["metadata"]["name"].removeprefix(f"{RELEASE}-artisan-"): d
        for d in docs
        if d["kind"] == "PodMonitor"
    }


def selects(monitor: dict[str, Any], pod: dict[str, Any]) -> bool:
    labels = pod["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())


def port_names(pod: dict[str, Any]) -> set[str]:
    return {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}


def copied(monitor: dict[str, Any]) -> dict[str, str]:
    """target label → the discovery label it is copied from, for every relabeling."""
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    return {r["targetLabel"]: r["sourceLabels"][0] for r in endpoint["relabelings"]}


def test_no_pod_monitor_unless_enabled(chart: helm.Chart) -> None:
    assert monitors(chart, {}) == {}


def test_each_monitor_selects_exactly_its_workload(chart: helm.Chart) -> None:
    found = monitors(chart, ENABLED)
    assert set(found) == {"trainer", "ensemble", "gateway"}
    pods = {"trainer": [trainer_pod()], "ensemble": ensemble_pods(), "gateway": [gateway_pod()]}
    for name, monitor in found.items():
        for other, templates in pods.items():
            for pod in templates:
                assert selects(monitor, pod) == (other == name), (name, other)
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["path"] == "/metrics"
        assert all(endpoint["port"] in port_names(pod) for pod in pods[name]), name
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["spec"]["namespaceSelector"] == {"any": True}


def test_the_gateway_monitor_selects_what_the_operator_scrapes_as_the_gateway(chart: helm.Chart) -> None:
    monitor = monitors(chart, ENABLED)["gateway"]
    assert monitor["spec"]["selector"]["matchLabels"] == GATEWAY_SELECTOR


def test_relabelings_copy_labels_the_pods_carry(chart: helm.Chart) -> None:
    found = monitors(chart, ENABLED)
    # Derived from the builders: the owner label of each kind and the canary/stable track label.
    expected = {
        "trainer": {"trainingrun": prometheus_label_name(owner_label_key("TrainingRun"))},
        "ensemble": {
            "modelpin": prometheus_label_name(owner_label_key("ModelPin")),
            "track": prometheus_label_name(TRACK_LABEL),
        },
    }
    pods = {"trainer": [trainer_pod()], "ensemble": ensemble_pods(), "gateway": [gateway_pod()]}
    for name, monitor in found.items():
        relabel = copied(monitor)
        assert relabel["namespace"] == "__meta_kubernetes_namespace"
        assert relabel["pod"] == "__meta_kubernetes_pod_name"
        assert expected.get(name, {}).items() <= relabel.items(), name
        for pod in pods[name]:
            names = {prometheus_label_name(k) for k in pod["metadata"]["labels"]}
            sources = {s for s in relabel.values() if s.startswith(META_POD_LABEL)}
            assert sources <= names, (name, sources - names)
    tracks = {pod["metadata"]["labels"][TRACK_LABEL] for pod in ensemble_pods()}
    assert tracks == {"stable", "canary"}


def test_scope_follows_namespaced_mode_and_values(chart: helm.Chart) -> None:
    values: dict[str, Any] = {"rbac": {"namespaced": True}, **ENABLED}
    for monitor in monitors(chart, values).values():
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    values = {
        "metrics": {
            "podMonitors": {"enabled": True, "namespaces": ["ml", "serving"], "gateway": {"enabled": False}}
        }
    }
    found = monitors(chart, values)
    assert set(found) == {"trainer", "ensemble"}
    assert all(m["spec"]["namespaceSelector"] == {"matchNames": ["ml", "serving"]} for m in found.values())


def test_lint_strict_with_pod_monitors() -> None:
    report = helm.lint(str(CHART), ENABLED, strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
