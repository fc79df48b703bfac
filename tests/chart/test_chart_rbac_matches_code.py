"""The chart grants exactly what the operator's code calls: rendered RBAC == required_rules()."""

from __future__ import annotations

from collections.abc import Iterator

import helm_python as helm
import pytest

from artisan_operator.cluster.permissions import OWNER_KINDS, required_rules
from artisan_operator.rbac import (
    Permission,
    permissions_from_rendered_chart,
    rules_from_rendered_chart,
    wildcards,
)

from .test_chart_render import CHART, render

MODES = {
    "cluster-wide": ({}, "ClusterRole", True),
    "namespaced": ({"rbac": {"namespaced": True}}, "Role", False),
}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_rendered_rbac_equals_what_the_code_needs(chart: helm.Chart, mode: str) -> None:
    values, role_kind, clusterwide = MODES[mode]
    objects = render(chart, values)
    assert [o["kind"] for o in objects if o["kind"].endswith("Role")] == [role_kind]
    rules = rules_from_rendered_chart(objects)
    assert wildcards(rules) == []
    granted = permissions_from_rendered_chart(objects)
    needed = frozenset(required_rules(clusterwide=clusterwide))
    assert sorted(granted - needed) == [], "granted but never used by the operator"
    assert sorted(needed - granted) == [], "used by the operator but not granted"


def test_the_loops_calls_are_covered() -> None:
    """The control loops' writes (cluster/control.py) and the owner-reference rights are in the set."""
    needed = required_rules(clusterwide=False)
    expected = {
        Permission("artisan.dev", "modelpins/status", "patch"),
        Permission("gateway.networking.k8s.io", "httproutes", "get"),
        Permission("gateway.networking.k8s.io", "httproutes", "patch"),
        Permission("batch", "jobs", "delete"),
        Permission("", "pods", "list"),
        *(
            Permission(g, r, v)
            for g, r in (("apps", "deployments"), ("", "services"), ("", "configmaps"))
            for v in ("create", "patch")
        ),
    }
    assert expected <= needed
    finalizers = {p.resource for p in needed if p.resource.endswith("/finalizers")}
    assert finalizers == {"trainingruns/finalizers", "modelpins/finalizers", "canaries/finalizers"}
    assert len(OWNER_KINDS) == len(finalizers)
    assert all(p.verb == "update" for p in needed if p.resource.endswith("/finalizers"))
