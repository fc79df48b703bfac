"""GitOps examples in configs/gitops: they parse, have the expected kinds, and point at real things."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "configs" / "gitops"
LUA = ROOT / "charts" / "artisan" / "files" / "argocd"
KINDS = {
    "trainingrun": "TrainingRun",
    "modelpin": "ModelPin",
    "canary": "Canary",
    "abexperiment": "ABExperiment",
}


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(GITOPS.rglob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents() if doc["kind"] == kind]


def test_every_example_parses_with_the_expected_kinds() -> None:
    kinds = {(doc["apiVersion"], doc["kind"]) for doc in documents()}
    assert kinds == {
        ("argoproj.io/v1alpha1", "Application"),
        ("v1", "ConfigMap"),
        ("source.toolkit.fluxcd.io/v1beta2", "OCIRepository"),
        ("source.toolkit.fluxcd.io/v1", "GitRepository"),
        ("helm.toolkit.fluxcd.io/v2", "HelmRelease"),
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
    }
    for doc in documents():
        assert doc["metadata"]["name"]
        assert doc["metadata"]["namespace"]


def test_argocd_applications_point_at_paths_in_this_repository() -> None:
    paths = {app["spec"]["source"]["path"] for app in by_kind("Application")}
    assert paths == {"charts/artisan", "configs/samples"}
    for path in paths:
        assert (ROOT / path).is_dir(), path


def test_argocd_cm_carries_every_health_script_verbatim() -> None:
    [cm] = by_kind("ConfigMap")
    assert cm["metadata"]["name"] == "argocd-cm"
    expected = {
        f"resource.customizations.health.artisan.dev_{kind}": (LUA / f"health-{key}.lua")
        .read_text()
        .rstrip("\n")
        for key, kind in KINDS.items()
    }
    assert {key: value.rstrip("\n") for key, value in cm["data"].items()} == expected


def test_flux_kustomization_health_checks_every_kind_of_the_synced_manifests() -> None:
    [kustomization] = by_kind("Kustomization")
    synced = ROOT / kustomization["spec"]["path"]
    assert synced.is_dir()
    manifests = {
        (doc["kind"], doc["metadata"]["name"])
        for path in synced.glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }
    checks = {(c["kind"], c["name"]) for c in kustomization["spec"]["healthChecks"]}
    assert {kind for kind, _ in checks} == set(KINDS.values())
    assert checks <= manifests
    for check in kustomization["spec"]["healthChecks"]:
        assert check["apiVersion"] == "artisan.dev/v1alpha1"
    [git] = by_kind("GitRepository")
    assert kustomization["spec"]["sourceRef"] == {"kind": "GitRepository", "name": git["metadata"]["name"]}


def test_flux_helmrelease_uses_the_oci_chart_and_enables_dashboards() -> None:
    [release] = by_kind("HelmRelease")
    [oci] = by_kind("OCIRepository")
    assert release["spec"]["chartRef"] == {"kind": "OCIRepository", "name": oci["metadata"]["name"]}
    assert oci["spec"]["url"].startswith("oci://")
    assert release["spec"]["install"]["crds"] == "CreateReplace"
    assert release["spec"]["values"]["grafana"]["dashboards"]["enabled"] is True


def test_readme_lists_every_example() -> None:
    readme = (GITOPS / "README.md").read_text()
    for path in GITOPS.rglob("*.yaml"):
        assert f"`{path.relative_to(GITOPS)}`" in readme, path.name
