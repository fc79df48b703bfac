"""The Gateway API router: the pure HTTPRoute weight builder and the patch against the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from artisan_operator.cluster.client import ClusterClient
from artisan_operator.cluster.control import (
    GATEWAY_API_GROUP,
    GATEWAY_API_VERSION,
    HTTPROUTE_PLURAL,
    patch_httproute_weights,
    weighted_rules,
)

NS = "default"
STABLE, CANARY = "pin-ensemble", "pin-ensemble-canary"


def rule(*refs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"backendRefs": list(refs), **extra}


@pytest.mark.parametrize(
    ("rules", "weight", "expected"),
    [
        # The canary backend is added beside the stable one, with the stable's port.
        (
            [rule({"name": STABLE, "port": 8080})],
            10,
            [
                rule(
                    {"name": STABLE, "port": 8080, "weight": 90}, {"name": CANARY, "weight": 10, "port": 8080}
                )
            ],
        ),
        # A later weight replaces the canary backend (never duplicated).
        (
            [
                rule(
                    {"name": STABLE, "port": 8080, "weight": 90}, {"name": CANARY, "weight": 10, "port": 8080}
                )
            ],
            50,
            [
                rule(
                    {"name": STABLE, "port": 8080, "weight": 50}, {"name": CANARY, "weight": 50, "port": 8080}
                )
            ],
        ),
        # Weight 0 (an abort) keeps the canary listed, receiving nothing.
        (
            [rule({"name": STABLE, "weight": 70}, {"name": CANARY, "weight": 30})],
            0,
            [rule({"name": STABLE, "weight": 100}, {"name": CANARY, "weight": 0})],
        ),
        # Rules that do not route to the stable Service, and other rule fields, are left alone.
        (
            [
                rule({"name": "docs", "port": 80}, matches=[{"path": {"value": "/docs"}}]),
                rule({"name": STABLE, "port": 8080}, matches=[{"path": {"value": "/v1"}}]),
            ],
            100,
            [
                rule({"name": "docs", "port": 80}, matches=[{"path": {"value": "/docs"}}]),
                rule(
                    {"name": STABLE, "port": 8080, "weight": 0},
                    {"name": CANARY, "weight": 100, "port": 8080},
                    matches=[{"path": {"value": "/v1"}}],
                ),
            ],
        ),
    ],
)
def test_weighted_rules(rules: list[dict[str, Any]], weight: int, expected: list[dict[str, Any]]) -> None:
    before = repr(rules)
    assert weighted_rules(rules, STABLE, CANARY, weight) == expected
    assert repr(rules) == before  # the input is not changed
    assert weighted_rules(expected, STABLE, CANARY, weight) == expected  # idempotent


def httproute(cluster: ClusterClient, name: str) -> dict[str, Any]:
    route: dict[str, Any] = cluster.custom.get_namespaced_custom_object(
        GATEWAY_API_GROUP, GATEWAY_API_VERSION, NS, HTTPROUTE_PLURAL, name
    )
    return route


def test_patch_httproute_weights_against_the_emulator(cluster: ClusterClient) -> None:
    cluster.custom.create_namespaced_custom_object(
        GATEWAY_API_GROUP,
        GATEWAY_API_VERSION,
        NS,
        HTTPROUTE_PLURAL,
        {
            "apiVersion": f"{GATEWAY_API_GROUP}/{GATEWAY_API_VERSION}",
            "kind": "HTTPRoute",
            "metadata": {"name": "fragrance", "namespace": NS},
            "spec": {
                "parentRefs": [{"name": "public"}],
                "rules": [{"backendRefs": [{"name": STABLE, "port": 8080}]}],
            },
        },
    )
    patch = {"stable": STABLE, "canary": CANARY}
    assert patch_httproute_weights(cluster, NS, "fragrance", weight=25, **patch)
    refs = httproute(cluster, "fragrance")["spec"]["rules"][0]["backendRefs"]
    assert {r["name"]: r["weight"] for r in refs} == {STABLE: 75, CANARY: 25}
    assert httproute(cluster, "fragrance")["spec"]["parentRefs"] == [{"name": "public"}]
    assert not patch_httproute_weights(cluster, NS, "fragrance", weight=25, **patch)  # nothing to change
    assert patch_httproute_weights(cluster, NS, "fragrance", weight=0, **patch)  # abort
    refs = httproute(cluster, "fragrance")["spec"]["rules"][0]["backendRefs"]
    assert {r["name"]: r["weight"] for r in refs} == {STABLE: 100, CANARY: 0}

    with pytest.raises(LookupError, match="not found"):
        patch_httproute_weights(cluster, NS, "missing", weight=10, **patch)
    with pytest.raises(LookupError, match="no backendRef to the stable Service"):
        patch_httproute_weights(cluster, NS, "fragrance", weight=10, stable="other", canary=CANARY)
