"""The Helm chart, through the real Helm SDK (helm-python-sdk, offline): strict lint, and renders
with value overrides checked for RBAC, security context, CRDs, monitoring and settings."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from artisan_operator.api import KINDS
from artisan_operator.cluster.permissions import required_rules
from artisan_operator.rbac import (
    WildcardError,
    permissions_from_rendered_chart,
    permissions_from_rules,
    rules_from_rendered_chart,
    wildcards,
)
from artisan_operator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "artisan"
RELEASE, NAMESPACE = "prod", "artisan-system"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are large: parse them in C when possible

# Value combinations every check runs against.
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"rbac": {"namespaced": True}},
    "no-crds": {"crds": {"install": False}},
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "podMonitors": {"enabled": True},
        },
        "prometheusRule": {"enabled": True},
        "grafana": {"dashboards": {"enabled": True}},
    },
    "overrides": {
        "fullnameOverride": "artisan",
        "operator": {"image": {"digest": "sha256:" + "a" * 64}, "prometheusUrl": "http://prometheus:9090"},
        "crds": {"keep": False},
    },
}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return [
        doc
        for path, text in sorted(manifests.items())
        if path.endswith((".yaml", ".yml"))
        for doc in yaml.load_all(text, Loader=LOADER)
        if doc
    ]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = of_kind(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def env_of(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in operator_container(objects)["env"]}


# --- lint -------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_lint_strict_is_clean(variant: str) -> None:
    report = helm.lint(str(CHART), VARIANTS[variant], strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_lint_strict_catches_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "artisan"
    shutil.copytree(CHART, broken)
    (broken / "templates" / "broken.yaml").write_text("{{ .Values.nothing.here }}\n", encoding="utf-8")
    report = helm.lint(str(broken), strict=True)
    assert report["errors"] or any(m["severity"] >= 2 for m in report["messages"])


# --- RBAC -------------------------------------------------------------------------------------

# The exact comparison with the code's needs is tests/chart/test_chart_rbac_matches_code.py; here
# the shape: a ClusterRole holds exactly those rules.
EXPECTED_CLUSTER_PERMISSIONS = frozenset(required_rules(clusterwide=True))


def test_cluster_mode_grants_exactly_the_operator_permissions(chart: helm.Chart) -> None:
    objects = render(chart, {})
    assert [o["kind"] for o in objects if "Role" in o["kind"]] == ["ClusterRole", "ClusterRoleBinding"]
    assert permissions_from_rendered_chart(objects) == EXPECTED_CLUSTER_PERMISSIONS
    (binding,) = of_kind(objects, "ClusterRoleBinding")
    (account,) = of_kind(objects, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert binding["roleRef"]["name"] == of_kind(objects, "ClusterRole")[0]["metadata"]["name"]
    assert "ARTISAN_OPERATOR_NAMESPACE" not in env_of(objects)


def test_namespaced_mode_uses_a_role_and_watches_one_namespace(chart: helm.Chart) -> None:
    objects = render(chart, VARIANTS["namespaced"])
    assert of_kind(objects, "ClusterRole") == []
    assert of_kind(objects, "ClusterRoleBinding") == []
    (role,) = of_kind(objects, "Role")
    (binding,) = of_kind(objects, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    cluster_scoped = {p for p in EXPECTED_CLUSTER_PERMISSIONS if p.resource == "customresourcedefinitions"}
    assert permissions_from_rendered_chart(objects) == EXPECTED_CLUSTER_PERMISSIONS - cluster_scoped
    assert env_of(objects)["ARTISAN_OPERATOR_NAMESPACE"] == NAMESPACE


def test_rbac_can_be_left_to_the_cluster_admin(chart: helm.Chart) -> None:
    objects = render(chart, {"rbac": {"create": False}})
    assert rules_from_rendered_chart(objects) == []
    assert not [o for o in objects if o["kind"].endswith(("Role", "RoleBinding"))]


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_no_wildcard_in_any_rule(chart: helm.Chart, variant: str) -> None:
    rules = rules_from_rendered_chart(render(chart, VARIANTS[variant]))
    assert rules
    assert wildcards(rules) == []


def test_wildcards_are_detected() -> None:
    rules = [{"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}, {"nonResourceURLs": ["/x"]}]
    assert wildcards(rules) == ["rules[0].apiGroups contains '*'", "rules[1] grants nonResourceURLs"]
    with pytest.raises(WildcardError):
        permissions_from_rules([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}])


# --- the operator pod -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_every_pod_is_locked_down(chart: helm.Chart, variant: str) -> None:
    objects = render(chart, VARIANTS[variant])
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod")]
    assert workloads
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not any(pod.get(host) for host in ("hostNetwork", "hostPID", "hostIPC"))
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context.get("privileged", False) is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert container["resources"]["requests"]["cpu"]
            assert container["resources"]["requests"]["memory"]
            assert container["resources"]["limits"]["memory"]


def test_probes_hit_the_operator_health_endpoints(chart: helm.Chart) -> None:
    objects = render(chart, {})
    container = operator_container(objects)
    (port,) = container["ports"]
    assert port == {"name": "metrics", "containerPort": 8080, "protocol": "TCP"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert env_of(objects)["ARTISAN_OPERATOR_METRICS_PORT"] == "8080"
    (deployment,) = of_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1  # kopf --standalone: never two at once
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts  # writable scratch space on a read-only root filesystem


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_operator_env_is_valid_settings(chart: helm.Chart, variant: str) -> None:
    """Every ARTISAN_OPERATOR_* variable the chart sets is a Settings field with a valid value."""
    env = env_of(render(chart, VARIANTS[variant]))
    fields = {k.removeprefix("ARTISAN_OPERATOR_").lower(): v for k, v in env.items()}
    assert set(fields) <= set(Settings.model_fields)
    settings = Settings(**fields)
    assert settings.trainer_image == "registry.example.com/artisan-dev/artisan-trainer:0.1.0"
    assert settings.ensemble_image == "registry.example.com/artisan-dev/artisan-ensemble:0.1.0"


def test_image_and_default_images_come_from_values(chart: helm.Chart) -> None:
    objects = render(chart, VARIANTS["overrides"])
    digest = "sha256:" + "a" * 64
    assert (
        operator_container(objects)["image"] == f"registry.example.com/artisan-dev/artisan-operator@{digest}"
    )
    assert env_of(objects)["ARTISAN_OPERATOR_PROMETHEUS_URL"] == "http://prometheus:9090"
    objects = render(
        chart, {"images": {"trainer": "registry.local/trainer:2", "ensemble": "registry.local/ens:3"}}
    )
    assert env_of(objects)["ARTISAN_OPERATOR_TRAINER_IMAGE"] == "registry.local/trainer:2"
    assert env_of(objects)["ARTISAN_OPERATOR_ENSEMBLE_IMAGE"] == "registry.local/ens:3"
    assert operator_container(objects)["image"] == "registry.example.com/artisan-dev/artisan-operator:0.1.0"


def test_existing_service_account_needs_a_name(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmError, match=r"serviceAccount\.name is required"):
        render(chart, {"serviceAccount": {"create": False}})
    objects = render(chart, {"serviceAccount": {"create": False, "name": "ops-managed"}})
    assert of_kind(objects, "ServiceAccount") == []
    (deployment,) = of_kind(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "ops-managed"


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_standard_labels_on_every_object(chart: helm.Chart, variant: str) -> None:
    for obj in render(chart, VARIANTS[variant]):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "artisan", obj["kind"]
        assert labels["app.kubernetes.io/instance"] == RELEASE, obj["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", obj["kind"]


# --- CRDs -------------------------------------------------------------------------------------


def test_crds_installed_with_keep_by_default_and_equal_to_crdgen_output(chart: helm.Chart) -> None:
    crds = of_kind(render(chart, {}), "CustomResourceDefinition")
    assert sorted(c["metadata"]["name"] for c in crds) == sorted(f"{k.plural}.artisan.dev" for k in KINDS)
    for crd in crds:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        generated = yaml.safe_load(
            (ROOT / "crds" / f"{crd['metadata']['name']}.yaml").read_text(encoding="utf-8")
        )
        # the chart's copy is the generated one, unchanged apart from labels and annotations
        assert {k: v for k, v in crd.items() if k != "metadata"} == {
            k: v for k, v in generated.items() if k != "metadata"
        }
        assert crd["metadata"]["name"] == generated["metadata"]["name"]
        assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_crds_keep_can_be_turned_off(chart: helm.Chart) -> None:
    crds = of_kind(render(chart, VARIANTS["overrides"]), "CustomResourceDefinition")
    assert len(crds) == len(KINDS)
    assert all("annotations" not in c["metadata"] for c in crds)


def test_crds_install_false_renders_no_crd(chart: helm.Chart) -> None:
    objects = render(chart, VARIANTS["no-crds"])
    assert of_kind(objects, "CustomResourceDefinition") == []
    assert of_kind(objects, "Deployment")


# --- monitoring -------------------------------------------------------------------------------


def test_metrics_service_selects_the_operator_pod(chart: helm.Chart) -> None:
    objects = render(chart, {})
    (service,) = of_kind(objects, "Service")
    (deployment,) = of_kind(objects, "Deployment")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_service_monitor_only_when_enabled(chart: helm.Chart) -> None:
    assert of_kind(render(chart, {}), "ServiceMonitor") == []
    objects = render(chart, VARIANTS["monitoring"])
    (monitor,) = of_kind(objects, "ServiceMonitor")
    (service,) = of_kind(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True  # keeps the resources' namespace label
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert all(
        service["metadata"]["labels"][k] == v for k, v in monitor["spec"]["selector"]["matchLabels"].items()
    )


def test_prometheus_rule_only_when_enabled_and_passes_promtool(chart: helm.Chart, tmp_path: Path) -> None:
    assert of_kind(render(chart, {}), "PrometheusRule") == []
    (rule,) = of_kind(render(chart, VARIANTS["monitoring"]), "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {"ArtisanOperatorDown", "ArtisanOperatorReconcileSlow", "ArtisanReconcileErrors"} <= alerts
    names = [g["name"] for g in rule["spec"]["groups"]]
    assert len(names) == len(set(names))
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required: make system-deps"
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_rule_takes_additional_groups(chart: helm.Chart) -> None:
    extra = {"name": "team.custom", "rules": [{"alert": "TeamAlert", "expr": "vector(1) > 2"}]}
    values = {"prometheusRule": {"enabled": True, "additionalGroups": [extra]}}
    (rule,) = of_kind(render(chart, values), "PrometheusRule")
    assert rule["spec"]["groups"][-1] == extra


# --- values.yaml ------------------------------------------------------------------------------


def test_every_value_is_documented() -> None:
    """Each leaf value has a comment right above it, or sits inside a documented block."""
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    documented_at: list[tuple[int, bool]] = []  # (indent, documented) of the open blocks
    undocumented = []
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z0-9_.-]+):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        while documented_at and documented_at[-1][0] >= indent:
            documented_at.pop()
        previous = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        documented = previous.startswith("#") or any(d for _, d in documented_at)
        if rest and not rest.startswith("#") and not documented:
            undocumented.append(key)
        documented_at.append((indent, documented))
    assert undocumented == []


def test_notes_render(chart: helm.Chart) -> None:
    notes = chart.render({"rbac": {"namespaced": True}}, name=RELEASE, namespace=NAMESPACE)[
        "artisan/templates/NOTES.txt"
    ]
    assert f"only the namespace {NAMESPACE}" in notes
    assert "artisan validate -f configs/samples/" in notes
