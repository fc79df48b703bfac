"""The grafana-dashboards template: one labelled ConfigMap per dashboard, only when enabled."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "artisan"
TEMPLATE = CHART / "templates" / "grafana-dashboards.yaml"


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> helm.Chart:
    """A minimal chart holding only the dashboards and their template (independent of the rest)."""
    root = tmp_path_factory.mktemp("chart") / "artisan"
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text("apiVersion: v2\nname: artisan\nversion: 0.1.0\n")
    (root / "values.yaml").write_text("grafana:\n  dashboards:\n    enabled: false\n")
    shutil.copy(TEMPLATE, root / "templates" / TEMPLATE.name)
    shutil.copytree(CHART / "dashboards", root / "dashboards")
    return helm.Chart.load(root)


def render(chart: helm.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    rendered = chart.render(values, name="prod", namespace="artisan-system")
    text = rendered.get("artisan/templates/grafana-dashboards.yaml", "")
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_disabled_renders_nothing(chart: helm.Chart) -> None:
    assert render(chart, {}) == []


def test_enabled_renders_one_labelled_configmap_per_dashboard(chart: helm.Chart) -> None:
    docs = render(chart, {"grafana": {"dashboards": {"enabled": True}}})
    files = sorted((CHART / "dashboards").glob("*.json"))
    assert len(docs) == len(files) == 8
    for doc, path in zip(sorted(docs, key=lambda d: d["metadata"]["name"]), files, strict=True):
        assert doc["kind"] == "ConfigMap"
        assert doc["metadata"]["name"] == f"prod-dashboard-{path.stem}"
        assert doc["metadata"]["namespace"] == "artisan-system"
        assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert "annotations" not in doc["metadata"]
        assert json.loads(doc["data"][path.name]) == json.loads(path.read_text())


def test_namespace_label_and_folder_can_be_set(chart: helm.Chart) -> None:
    values = {
        "grafana": {
            "dashboards": {
                "enabled": True,
                "namespace": "monitoring",
                "label": "grafana_dashboard_artisan",
                "labelValue": "yes",
                "folder": "Artisan",
            }
        }
    }
    for doc in render(chart, values):
        assert doc["metadata"]["namespace"] == "monitoring"
        assert doc["metadata"]["labels"]["grafana_dashboard_artisan"] == "yes"
        assert doc["metadata"]["annotations"] == {"grafana_folder": "Artisan"}
