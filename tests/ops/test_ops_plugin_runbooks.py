"""The kubectl plugin's pure parts: health from status, the children tree, each action's patch."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from artisan_operator.api import KINDS, KINDS_BY_NAME
from artisan_operator.api.model_pin import ModelPinSpec
from artisan_operator.api.training_run import parse_rollback_to
from artisan_operator.cli import runbooks
from artisan_operator.cli.runbooks import ActionError, merge_patch
from artisan_operator.manifests.common import Owner
from artisan_operator.manifests.ensemble import (
    FleetOverrides,
    build_ensemble_deployment,
    fleet_overrides,
    with_fleet_overrides,
)

pytestmark = pytest.mark.timeout(5)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def cond(type_: str, status: str, reason: str = "R", message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": "t"}


def obj(phase: str | None, *conditions: dict[str, str], generation: int = 2, observed: int | None = 2) -> Any:
    status: dict[str, Any] = {"conditions": list(conditions)}
    if phase is not None:
        status["phase"] = phase
    if observed is not None:
        status["observedGeneration"] = observed
    return {"kind": "ModelPin", "metadata": {"name": "x", "generation": generation}, "status": status}


TRIO_READY = (
    cond("Ready", "True", "AllReplicasReady"),
    cond("Reconciling", "False"),
    cond("Stalled", "False"),
)


@pytest.mark.parametrize(
    ("case", "resource", "health", "reason", "code"),
    [
        ("no-status", {"metadata": {"generation": 1}}, "Progressing", "NoStatus", 3),
        ("stale", obj("Ready", *TRIO_READY, observed=1), "Progressing", "StaleStatus", 3),
        (
            "stalled",
            obj("Degraded", cond("Ready", "False"), cond("Stalled", "True", "InvalidSpec", "spec.x: bad")),
            "Unhealthy",
            "InvalidSpec",
            1,
        ),
        ("failed-phase", obj("Failed", cond("Ready", "False", "JobFailed")), "Unhealthy", "JobFailed", 1),
        (
            "invalid-phase",
            obj("Invalid", cond("Ready", "False", "SRMDetected")),
            "Unhealthy",
            "SRMDetected",
            1,
        ),
        ("ready", obj("Ready", *TRIO_READY), "Ready", "AllReplicasReady", 0),
        (
            "idle",
            obj(
                "Suspended",
                cond("Ready", "False", "Suspended"),
                cond("Reconciling", "False"),
                cond("Stalled", "False"),
            ),
            "Idle",
            "Suspended",
            3,
        ),
        (
            "progressing",
            obj("Progressing", cond("Ready", "False"), cond("Reconciling", "True", "RollingOut")),
            "Progressing",
            "RollingOut",
            3,
        ),
    ],
)
def test_health_table(case: str, resource: Any, health: str, reason: str, code: int) -> None:
    verdict = runbooks.assess_health(resource)
    assert (verdict.health, verdict.reason, verdict.exit_code) == (health, reason, code), case


def test_stalled_message_names_the_field() -> None:
    verdict = runbooks.assess_health(
        obj("Degraded", cond("Stalled", "True", "InvalidSpec", "spec.replicas: bad"))
    )
    assert verdict.message == "spec.replicas: bad"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("tr", "TrainingRun"),
        ("TrainingRuns", "TrainingRun"),
        ("mpin", "ModelPin"),
        ("cny", "Canary"),
        ("abexperiment", "ABExperiment"),
    ],
)
def test_kinds_resolve_like_kubectl(text: str, kind: str) -> None:
    assert runbooks.resolve_kind(text).kind == kind
    assert runbooks.parse_ref(f"{text}/a")[1] == "a"
    assert runbooks.parse_ref(text, "a")[0].kind == kind


def test_a_bare_name_leaves_the_kind_to_be_looked_up() -> None:
    assert runbooks.parse_ref_or_name("fleet") == (None, "fleet")
    assert runbooks.parse_ref_or_name("tr") == (None, "tr")  # a name, even one that looks like a kind
    kind, name = runbooks.parse_ref_or_name("mpin/fleet")
    assert (kind and kind.kind, name) == ("ModelPin", "fleet")
    kind, name = runbooks.parse_ref_or_name("cny", "rollout")
    assert (kind and kind.kind, name) == ("Canary", "rollout")
    with pytest.raises(ActionError, match="a name is required"):
        runbooks.parse_ref_or_name(" ")


# The rows of pick_kind's docstring table.
@pytest.mark.parametrize(
    ("found", "result"),
    [
        (["Canary"], "Canary"),
        ([], "no trainingrun, modelpin, canary, abexperiment named 'x'"),
        (["ModelPin", "Canary"], "ambiguous: there are 2 objects by that name; say modelpin/x or canary/x"),
    ],
)
def test_pick_kind(found: list[str], result: str) -> None:
    kinds = [KINDS_BY_NAME[k] for k in found]
    if len(found) == 1:
        assert runbooks.pick_kind("x", kinds, KINDS).kind == result
    else:
        with pytest.raises(ActionError, match=re.escape(result)):
            runbooks.pick_kind("x", kinds, KINDS)


# The rows of training_restart_patch's docstring table.
def test_training_restart_is_a_rollback_to_the_newest_checkpoint() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    run = {"spec": {}, "status": {"lastCheckpoint": {"step": 3000}}}
    patch, step = runbooks.training_restart_patch(run, now)
    assert step == 3000
    assert patch == {"metadata": {"annotations": {"artisan.dev/rollback-to": "3000@2026-03-01T12:00:00Z"}}}
    with pytest.raises(ActionError, match="no checkpoint yet"):
        runbooks.training_restart_patch({"spec": {}, "status": {}}, now)
    with pytest.raises(ActionError, match="suspended"):
        runbooks.training_restart_patch({**run, "spec": {"suspend": True}}, now)
    stopped = {**run, "metadata": {"annotations": {"artisan.dev/emergency-stop": "true"}}}
    with pytest.raises(ActionError, match="emergency-stopped"):
        runbooks.training_restart_patch(stopped, now)


def test_unknown_kind_and_missing_name_are_refused() -> None:
    with pytest.raises(ActionError, match="unknown kind 'pods'"):
        runbooks.resolve_kind("pods")
    with pytest.raises(ActionError, match="a name is required"):
        runbooks.parse_ref("tr")


def child(kind: str, name: str, **body: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name}, **body}


def test_training_run_tree_orders_children_and_describes_them() -> None:
    run = {**obj("Running", *TRIO_READY), "kind": "TrainingRun"}
    tree = runbooks.build_tree(
        run,
        [
            child("Service", "tr-trainer-metrics", spec={"ports": [{"port": 9090}]}),
            child(
                "PersistentVolumeClaim",
                "tr-checkpoints",
                status={"phase": "Bound", "capacity": {"storage": "10Gi"}},
            ),
            child("Pod", "tr-0-sim", status={"phase": "Running"}),
            child("Job", "tr-0", status={"active": 1}),
            child("ConfigMap", "tr-trainer-config", data={"trainer.yaml": "x"}),
        ],
    )
    assert (tree.kind, tree.health) == ("TrainingRun", "Ready")
    assert [(n.kind, n.status) for n in tree.children] == [
        ("Job", "1 active"),
        ("Pod", "Running"),
        ("PersistentVolumeClaim", "Bound 10Gi"),
        ("ConfigMap", "keys: trainer.yaml"),
        ("Service", "ClusterIP 9090"),
    ]


def test_canary_tree_shows_target_and_routing_entry() -> None:
    canary = {
        **obj("Progressing", cond("Ready", "False")),
        "kind": "Canary",
        "spec": {"targetRef": {"name": "pin"}},
    }
    routing = {"data": {"canary.json": json.dumps({"weight": 20, "backend": {"revision": "abc"}})}}
    tree = runbooks.build_tree(canary, [], target=obj("Ready", *TRIO_READY), routing=routing)
    assert [(n.kind, n.name, n.status) for n in tree.children] == [
        ("ModelPin", "pin", "Ready · Ready (AllReplicasReady)"),
        ("RoutingEntry", "pin-routing/canary.json", "weight 20% → abc"),
    ]
    missing = runbooks.build_tree(canary, [], target=None, routing=None)
    assert [(n.kind, n.status, n.health) for n in missing.children] == [
        ("ModelPin", "not found", "Unhealthy"),
        ("RoutingEntry", "absent", None),
    ]


def test_canary_action_is_fresh_each_time() -> None:
    patch = runbooks.canary_action_patch("promote-full", NOW)
    assert patch == {"metadata": {"annotations": {"artisan.dev/action": "promote-full@2026-01-02T03:04:05Z"}}}


def test_downshift_value_is_what_fleet_health_parses() -> None:
    assert runbooks.downshift_patch("fast", "10m") == {
        "metadata": {"annotations": {"artisan.dev/downshift": "fast/10m"}}
    }
    assert runbooks.downshift_patch(None, None) == {
        "metadata": {"annotations": {"artisan.dev/downshift": "off"}}
    }
    with pytest.raises(ActionError, match="mode one of"):
        runbooks.downshift_patch("turbo", "10m")
    with pytest.raises(ActionError, match="--for DURATION is required"):
        runbooks.downshift_patch("fast", None)


def test_rollback_annotation_round_trips_and_refuses_unreached_steps() -> None:
    run = {"status": {"lastCheckpoint": {"step": 3000}}}
    patch = runbooks.rollback_patch(run, 2500, NOW)
    value = patch["metadata"]["annotations"]["artisan.dev/rollback-to"]
    assert parse_rollback_to(value) == 2500
    with pytest.raises(ActionError, match="newest checkpoint is at step 3000"):
        runbooks.rollback_patch(run, 3500, NOW)
    for bad in ("", "-1", "1.5", "x@y", "١٢"):
        with pytest.raises(ValueError, match="checkpoint step"):
            parse_rollback_to(bad)


PRIMARY = {"name": "qwen", "source": "/models/qwen", "revision": "2.5.1"}


def pin_object(**status: Any) -> dict[str, Any]:
    return {
        "kind": "ModelPin",
        "metadata": {"name": "pin"},
        "spec": {"models": {"primary": PRIMARY}},
        "status": status,
    }


def test_pin_patches_only_the_role_and_validates() -> None:
    pin = pin_object()
    assert runbooks.pin_patch(pin, "primary", "2.6.0") == {
        "spec": {"models": {"primary": {**PRIMARY, "revision": "2.6.0"}}}
    }
    with pytest.raises(ActionError, match="revision"):
        runbooks.pin_patch(pin, "primary", "bad revision!")
    with pytest.raises(ActionError, match="give --model-name and --source"):
        runbooks.pin_patch(pin, "creative", "3.1.1")
    with pytest.raises(ActionError, match="already pins"):
        runbooks.pin_patch(pin, "primary", "2.5.1")


def record(revision: str, primary_revision: str, **extra: Any) -> dict[str, Any]:
    return {
        "revision": revision,
        "models": {"primary": {**PRIMARY, "revision": primary_revision}, **extra},
        "time": "2026-01-01T00:00:00Z",
        "image": "ensemble:1",
    }


def test_undo_goes_to_the_previous_stable_record() -> None:
    pin = pin_object(revision="new", stable=record("new", "2.5.1"), history=[record("old", "2.4.0")])
    plan = runbooks.undo_plan(pin)
    assert plan.revision == "old"
    assert plan.patch == {"spec": {"models": {"primary": {**PRIMARY, "revision": "2.4.0"}}, "policy": None}}
    assert plan.spec == {"models": {"primary": {**PRIMARY, "revision": "2.4.0"}}}


def test_undo_during_a_rollout_goes_back_to_stable_and_drops_added_roles() -> None:
    creative = {"name": "llama", "source": "/m/llama", "revision": "3.1.1"}
    pin = pin_object(revision="canary", stable=record("stable", "2.5.1"), history=[record("old", "2.4.0")])
    pin["spec"]["models"]["creative"] = creative
    plan = runbooks.undo_plan(pin)
    assert plan.revision == "stable"
    assert plan.patch["spec"]["models"] == {"primary": {**PRIMARY, "revision": "2.5.1"}, "creative": None}
    assert "creative" not in plan.spec["models"]


def test_undo_refuses_without_history_or_unknown_revision() -> None:
    with pytest.raises(ActionError, match="history is empty"):
        runbooks.undo_plan(pin_object(revision="a", stable=record("a", "2.5.1")))
    with pytest.raises(ActionError, match="known: old, a"):
        runbooks.undo_plan(
            pin_object(revision="a", stable=record("a", "2.5.1"), history=[record("old", "1")]), "zzz"
        )


def test_undo_pins_the_image_when_the_default_changed() -> None:
    old = {**record("old", "2.4.0"), "image": "ensemble:0"}
    plan = runbooks.undo_plan(pin_object(revision="a", stable=record("a", "2.5.1"), history=[old]))
    assert plan.patch["spec"]["image"] == "ensemble:0"


@pytest.mark.parametrize("kind", ["ModelPin", "TrainingRun"])
@pytest.mark.parametrize("before", [None, True, False])
def test_emergency_stop_then_resume_restores_exactly(kind: str, before: bool | None) -> None:
    original: dict[str, Any] = {"metadata": {"name": "a", "annotations": {"team": "ml"}}, "spec": {"x": 1}}
    if before is not None:
        original["metadata"]["annotations"]["artisan.dev/emergency-stop"] = str(before).lower()
    stop = runbooks.emergency_stop_patch(kind, original, NOW)
    assert stop.patch is not None
    assert "spec" not in stop.patch  # GitOps owns spec: self-heal would undo a spec change
    stopped = merge_patch(original, stop.patch)
    assert stopped["metadata"]["annotations"]["artisan.dev/emergency-stop"] == "true"
    again = runbooks.emergency_stop_patch(kind, stopped, NOW)
    assert again.patch is None  # a second stop keeps the first record
    resume = runbooks.resume_patch(kind, stopped)
    assert merge_patch(stopped, resume) == original
    assert runbooks.resume_patch(kind, original) is None


def test_resume_still_applies_a_training_run_record_of_the_old_spec_suspend_kind() -> None:
    record_value = json.dumps({"restore": {"spec": {"suspend": False}}})
    old = {
        "metadata": {"annotations": {runbooks.RESTORE_ANNOTATION: record_value}},
        "spec": {"suspend": True},
    }
    resume = runbooks.resume_patch("TrainingRun", old)
    assert resume == {
        "spec": {"suspend": False},
        "metadata": {"annotations": {runbooks.RESTORE_ANNOTATION: None}},
    }


def test_resume_refuses_a_tampered_record() -> None:
    record_value = json.dumps({"restore": {"spec": {"replicas": 0}}})
    tampered = {"metadata": {"annotations": {runbooks.RESTORE_ANNOTATION: record_value}}}
    with pytest.raises(ActionError, match="refusing to apply"):
        runbooks.resume_patch("TrainingRun", tampered)
    with pytest.raises(ActionError, match="unreadable"):
        runbooks.resume_patch("ModelPin", {"metadata": {"annotations": {runbooks.RESTORE_ANNOTATION: "{"}}})
    with pytest.raises(ActionError, match="ModelPins and TrainingRuns"):
        runbooks.emergency_stop_patch("Canary", {}, NOW)


def test_fleet_overrides_scale_to_zero_and_roll_pods() -> None:
    owner = Owner(kind="ModelPin", name="pin", namespace="ns", uid="u1")
    spec = ModelPinSpec.model_validate({"models": {"primary": PRIMARY}, "replicas": 3})
    deployment = build_ensemble_deployment(owner, spec, image="ensemble:1")
    assert with_fleet_overrides(deployment, fleet_overrides({})) is deployment
    assert fleet_overrides({"artisan.dev/emergency-stop": "false"}) == FleetOverrides()
    overrides = fleet_overrides({"artisan.dev/emergency-stop": "true", "artisan.dev/restartedAt": "t1"})
    changed = with_fleet_overrides(deployment, overrides)
    assert changed["spec"]["replicas"] == 0
    annotations = changed["spec"]["template"]["metadata"]["annotations"]
    assert annotations["artisan.dev/restartedAt"] == "t1"
    assert "artisan.dev/config-hash" in annotations
    assert deployment["spec"]["replicas"] == 3  # the input is untouched
    assert "artisan.dev/restartedAt" not in deployment["spec"]["template"]["metadata"]["annotations"]


def test_metrics_exposition_is_summarized_by_series() -> None:
    text = (
        "# TYPE model_health_status gauge\n"
        'model_health_status{model="qwen",role="primary"} 1\n'
        'model_health_status{model="llama",role="creative"} 0\n'
        "# TYPE artisan_queue_size gauge\nartisan_queue_size 2\n"
    )
    summary = runbooks.summarize_series(
        runbooks.parse_exposition(text), ["model_health_status", "absent_total"]
    )
    assert [(s.name, len(s.samples)) for s in summary] == [("model_health_status", 2), ("absent_total", 0)]
    assert not summary[1].found


def test_roles_down_matches_the_health_series_on_role_not_model_name() -> None:
    text = (
        'model_health_status{model="primary",role="creative"} 0\n'
        'model_health_status{model="qwen",role="primary"} 1\n'
        'artisan_breaker_state{model="validator"} 0\n'
    )
    assert runbooks.roles_down(runbooks.parse_exposition(text)) == {"creative"}
    down = 'model_health_status{model="qwen",role="primary"} 0\n'
    assert runbooks.roles_down(runbooks.parse_exposition(down)) == {"primary"}
