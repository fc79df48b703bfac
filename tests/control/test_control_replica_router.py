"""The replica router (``trafficRouting.replicas``): the ModelPin's Service selects both tracks, so
traffic splits by pod count; switching the mode rewrites the live Service's selector."""

from __future__ import annotations

from datetime import UTC, datetime

from artisan_operator.api.model_pin import ModelPinSpec, ModelPinStatus
from artisan_operator.cluster.apply import apply_child, with_removed_keys
from artisan_operator.cluster.client import ClusterClient, decode
from artisan_operator.manifests.canary import build_canary_deployment, canary_selector
from artisan_operator.manifests.common import Owner
from artisan_operator.manifests.ensemble import (
    TRACK_LABEL,
    build_ensemble_deployment,
    build_ensemble_service,
    ensemble_selector,
)
from artisan_operator.policy.model_pin import ModelPinObservation, decide_model_pin
from artisan_operator.policy.plan import EnsureChild

NOW = datetime(2025, 5, 1, tzinfo=UTC)
PIN = Owner(kind="ModelPin", name="pin", namespace="default", uid="uid-pin", generation=1)
CANARY = Owner(kind="Canary", name="pin", namespace="default", uid="uid-canary", generation=1)
SPEC = ModelPinSpec.model_validate(
    {"models": {"primary": {"name": "qwen", "source": "/m/qwen", "revision": "1"}}, "replicas": 2}
)


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def service_of(observation: ModelPinObservation) -> EnsureChild:
    plan = decide_model_pin(PIN, SPEC, observation, ModelPinStatus(), image="img", now=NOW)
    return next(c for c in plan.children if c.kind == "Service")


def test_service_selects_the_canary_pods_only_under_the_replica_router() -> None:
    stable_pods = build_ensemble_deployment(PIN, SPEC, image="img")["spec"]["template"]["metadata"]["labels"]
    canary_pods = build_canary_deployment(CANARY, "pin", SPEC, image="img", replicas=1)["spec"]["template"][
        "metadata"
    ]["labels"]
    gateway = service_of(ModelPinObservation(canary_guarded=True))
    replicas = service_of(ModelPinObservation(canary_guarded=True, replica_routed=True))
    assert gateway.manifest["spec"]["selector"][TRACK_LABEL] == "stable"
    assert matches(gateway.manifest["spec"]["selector"], stable_pods)
    assert not matches(gateway.manifest["spec"]["selector"], canary_pods)
    assert TRACK_LABEL not in replicas.manifest["spec"]["selector"]
    assert matches(replicas.manifest["spec"]["selector"], stable_pods)
    assert matches(replicas.manifest["spec"]["selector"], canary_pods)
    assert replicas.replaced_maps == ("spec.selector",)
    # The Deployments never select each other's pods (their selectors keep the track).
    assert not matches(ensemble_selector(PIN), canary_pods)
    assert not matches(canary_selector("pin"), stable_pods)


def test_removed_selector_keys_become_nulls_in_the_patch() -> None:
    existing = {"spec": {"selector": {"a": "1", TRACK_LABEL: "stable"}, "ports": []}}
    patch = {"spec": {"selector": {"a": "1"}}}
    assert with_removed_keys(patch, existing, ("spec.selector",)) == {
        "spec": {"selector": {"a": "1", TRACK_LABEL: None}}
    }
    assert patch == {"spec": {"selector": {"a": "1"}}}  # not changed in place
    assert with_removed_keys(patch, existing, ()) is patch


def test_switching_to_the_replica_router_drops_the_track_from_the_live_service(
    cluster: ClusterClient,
) -> None:
    def live_selector() -> dict[str, str]:
        service = decode(
            cluster.core.read_namespaced_service("pin-ensemble", "default", _preload_content=False)
        )
        return dict(service["spec"]["selector"])

    assert apply_child(cluster, EnsureChild(build_ensemble_service(PIN)), PIN.uid).action == "created"
    assert live_selector()[TRACK_LABEL] == "stable"
    both = service_of(ModelPinObservation(canary_guarded=True, replica_routed=True))
    assert apply_child(cluster, both, PIN.uid).action == "updated"
    assert live_selector() == {k: v for k, v in ensemble_selector(PIN).items() if k != TRACK_LABEL}
    back = service_of(ModelPinObservation(canary_guarded=True))
    assert apply_child(cluster, back, PIN.uid).action == "updated"
    assert live_selector() == ensemble_selector(PIN)
