"""The RBAC the operator needs, derived from its code (the chart's rules must equal it)."""

from __future__ import annotations

import pytest

from artisan_operator.cluster.permissions import (
    ARTISAN_PLURALS,
    code_rules,
    required_rules,
    rules_in_source,
)
from artisan_operator.rbac import permissions_from_rules

pytestmark = pytest.mark.timeout(5)

SNIPPET = """
def work(cluster, plural):
    core = cluster.core
    core.create_namespaced_config_map(ns, body)
    cluster.apps.read_namespaced_deployment(name, ns)
    cluster.batch.list_namespaced_job(ns)
    cluster.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "modelpins", name)
    cluster.custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, plural, name, body)
    cluster.custom.get_namespaced_custom_object(group="gateway.networking.k8s.io", version="v1",
                                                namespace=ns, plural=ROUTES, name=name)
    something.create_namespaced_config_map(ns, body)   # not a client object: ignored
    core.connect_get_namespaced_pod_proxy(name, ns)      # not a CRUD verb: ignored
"""


def test_rules_in_source_maps_calls_to_group_resource_verb() -> None:
    rules = rules_in_source(SNIPPET, {"GROUP": "artisan.dev", "ROUTES": "httproutes"})
    expected = {
        ("", "configmaps", "create"),
        ("apps", "deployments", "get"),
        ("batch", "jobs", "list"),
        ("artisan.dev", "modelpins", "get"),
        ("gateway.networking.k8s.io", "httproutes", "get"),
    } | {("artisan.dev", f"{plural}/status", "patch") for plural in ARTISAN_PLURALS}
    assert rules == expected


def test_the_operator_code_needs_what_the_reconcilers_call() -> None:
    rules = code_rules()
    for kind in ("configmaps", "services", "persistentvolumeclaims"):
        assert {("", kind, "create"), ("", kind, "get"), ("", kind, "patch")} <= rules
    assert {("batch", "jobs", "create"), ("batch", "jobs", "list"), ("apps", "deployments", "patch")} <= rules
    assert ("", "pods", "list") in rules
    assert {("artisan.dev", f"{plural}/status", "patch") for plural in ARTISAN_PLURALS} <= rules
    assert {("artisan.dev", plural, "get") for plural in ARTISAN_PLURALS} <= rules
    # Never more than needed: no secrets, no deletes of what garbage collection removes, no wildcards.
    assert not {r for r in rules if "*" in r or r[1] == "secrets"}
    assert ("", "configmaps", "delete") not in rules
    assert ("", "pods", "create") not in rules


def test_kopf_needs_are_added_and_crds_only_cluster_wide() -> None:
    clusterwide, namespaced = required_rules(clusterwide=True), required_rules(clusterwide=False)
    for plural in ARTISAN_PLURALS:
        assert {("artisan.dev", plural, v) for v in ("list", "watch", "patch")} <= namespaced
    assert ("", "events", "create") in namespaced
    crds = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}
    assert crds <= clusterwide
    assert not crds & namespaced
    assert clusterwide - namespaced == crds


def test_rendered_rules_flatten_to_the_same_triples() -> None:
    rendered = [
        {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": ["get", "create"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list"]},
    ]
    assert permissions_from_rules(rendered) == {
        ("", "configmaps", "get"),
        ("", "configmaps", "create"),
        ("", "services", "get"),
        ("", "services", "create"),
        ("batch", "jobs", "list"),
    }
