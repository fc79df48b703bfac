"""Child manifests (pure builders): what the trainer Job, the ensemble fleet and the routing table get."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from artisan_common.routing import PIN_KEY, compose
from artisan_common.training import TrainingConfig
from artisan_operator.api.model_pin import ModelPinSpec
from artisan_operator.api.training_run import TrainingRunSpec
from artisan_operator.manifests import (
    Owner,
    build_ensemble_deployment,
    build_ensemble_service,
    build_pin_configmap,
    build_routing_configmap,
    build_trainer_configmap,
    build_trainer_job,
    build_trainer_pvc,
    build_trainer_service,
    owner_reference,
    pin_revision,
)
from artisan_operator.manifests.common import APPLIED_HASH_ANNOTATION, with_applied_hash

pytestmark = pytest.mark.timeout(2)

TR = Owner(kind="TrainingRun", name="ppo-a", namespace="ml", uid="uid-tr", generation=1)
PIN = Owner(kind="ModelPin", name="fragrance", namespace="prod", uid="uid-pin", generation=1)

SCHEDULING = {
    "nodeSelector": {"pool": "a100"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "priorityClassName": "training",
}


def training_spec(**fields: Any) -> TrainingRunSpec:
    return TrainingRunSpec.model_validate(
        {"resources": {"gpus": 2, "cpu": "4", "memory": "16Gi"}, "scheduling": SCHEDULING, **fields}
    )


def pin_spec(**fields: Any) -> ModelPinSpec:
    base: dict[str, Any] = {
        "models": {
            "primary": {"name": "qwen", "source": "pvc://models/qwen", "revision": "2.5.1"},
            "creative": {"name": "llama", "source": "/opt/llama", "revision": "3.1.1"},
        },
        "policy": {"trainingRunRef": {"name": "ppo-a"}, "checkpoint": "best"},
        "replicas": 3,
        "resources": {"gpus": 1},
        "scheduling": SCHEDULING,
    }
    return ModelPinSpec.model_validate({**base, **fields})


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = manifest["spec"]["template"]["spec"]["containers"][0]
    return result


def assert_hardened(pod_spec: dict[str, Any]) -> None:
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    sc = pod_spec["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "emptyDir": {}} in pod_spec["volumes"]


def test_owner_reference_requires_a_uid() -> None:
    assert owner_reference(TR)["uid"] == "uid-tr"
    with pytest.raises(ValueError, match="has no uid"):
        owner_reference(Owner(kind="TrainingRun", name="x", namespace="ml", uid=""))


def test_trainer_job_runs_the_trainer_with_gpus_scheduling_and_hardening() -> None:
    job = build_trainer_job(TR, training_spec(activeDeadlineSeconds=3600), image="trainer:1")
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    c = container(job)
    assert job["metadata"]["name"] == "ppo-a-trainer-0"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-tr"
    assert (spec["backoffLimit"], spec["suspend"], spec["activeDeadlineSeconds"]) == (0, False, 3600)
    assert pod["restartPolicy"] == "Never"
    assert c["image"] == "trainer:1"
    assert c["command"] == ["artisan-trainer"]
    assert c["args"] == [
        "train",
        "--config",
        "/etc/artisan/trainer.yaml",
        "--checkpoint-dir",
        "/checkpoints",
        "--metrics-port",
        "9090",
        "--summary-json",
        "/checkpoints/summary.json",
        "--resume",  # always: a new pod after a suspend or preemption continues from its checkpoints
    ]
    assert not any(e["name"] == "ARTISAN_TRAINER_ROLLBACK_ID" for e in c["env"])
    assert c["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": "2"},
    }
    assert pod["nodeSelector"] == {"pool": "a100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "training"
    # The trainer's final JSON reaches the pod status even after the last metrics scrape.
    assert (c["terminationMessagePath"], c["terminationMessagePolicy"]) == (
        "/dev/termination-log",
        "FallbackToLogsOnError",
    )
    assert {"name": "ARTISAN_TRAINER_TERMINATION_LOG", "value": "/dev/termination-log"} in c["env"]
    assert {"name": "checkpoints", "mountPath": "/checkpoints"} in c["volumeMounts"]
    assert {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "ppo-a-checkpoints"}} in pod[
        "volumes"
    ]
    assert_hardened(pod)
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "artisan-operator"
    assert labels["artisan.dev/trainingrun"] == "ppo-a"
    assert "kueue.x-k8s.io/queue-name" not in labels


def test_trainer_job_of_a_rollback_resumes_at_its_step_once_per_rollback_id() -> None:
    job = build_trainer_job(TR, training_spec(), image="t", attempt=2, resume_from_step=1500)
    c = container(job)
    assert c["args"][-3:] == ["--resume", "--resume-from-step", "1500"]
    # Every pod of this Job carries the flag (the template is immutable): the id makes it one-shot.
    assert {"name": "ARTISAN_TRAINER_ROLLBACK_ID", "value": "ppo-a-trainer-2@1500"} in c["env"]
    later = container(build_trainer_job(TR, training_spec(), image="t", attempt=3))
    assert later["args"][-1] == "--resume"


def test_trainer_job_with_a_queue_is_created_suspended_and_labelled_for_kueue() -> None:
    job = build_trainer_job(TR, training_spec(queueName="team-a"), image="trainer:1", attempt=2)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["name"] == "ppo-a-trainer-2"
    assert container(job)["args"][-1] == "--resume"


def test_trainer_job_follows_spec_suspend_and_image() -> None:
    job = build_trainer_job(TR, training_spec(suspend=True, image="mine:2"), image="trainer:1")
    assert job["spec"]["suspend"] is True
    assert container(job)["image"] == "mine:2"
    assert "activeDeadlineSeconds" not in job["spec"]


def test_trainer_configmap_holds_exactly_the_training_config() -> None:
    spec = training_spec(ppo={"clipRange": 0.1, "totalSteps": 777}, seed=9)
    configmap = build_trainer_configmap(TR, spec)
    loaded = TrainingConfig.model_validate(yaml.safe_load(configmap["data"]["trainer.yaml"]))
    assert loaded.ppo.clip_range == 0.1
    assert loaded.ppo.total_steps == 777
    expected = {k: v for k, v in spec.model_dump().items() if k in TrainingConfig.model_fields}
    assert loaded.model_dump() == expected
    assert "seed" not in configmap["data"]["trainer.yaml"]


def test_trainer_pvc_and_metrics_service() -> None:
    pvc = build_trainer_pvc(
        TR, training_spec(checkpoints={"storage": {"size": "50Gi", "storageClassName": "fast"}})
    )
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert pvc["spec"]["storageClassName"] == "fast"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    shared = training_spec(checkpoints={"storage": {"accessMode": "ReadWriteMany"}})
    # Every ModelPin replica, on any node, mounts the policy checkpoints read-only.
    assert build_trainer_pvc(TR, shared)["spec"]["accessModes"] == ["ReadWriteMany"]
    service = build_trainer_service(TR)
    assert service["spec"]["ports"][0]["port"] == 9090
    job = build_trainer_job(TR, training_spec(), image="t")
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_ensemble_deployment_pins_revision_gpus_probes_and_hardening() -> None:
    spec = pin_spec()
    deployment = build_ensemble_deployment(PIN, spec, image="ensemble:1")
    c, pod = container(deployment), deployment["spec"]["template"]["spec"]
    revision = pin_revision(spec, "ensemble:1")
    assert len(revision) == 10
    assert deployment["metadata"]["labels"]["artisan.dev/revision"] == revision
    assert deployment["spec"]["template"]["metadata"]["labels"]["artisan.dev/revision"] == revision
    assert deployment["spec"]["replicas"] == 3
    assert c["args"] == ["serve", "--models", "/models", "--role", "ensemble", "--port", "8080"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["ARTISAN_ENSEMBLE_PIN_CONFIG"] == "/etc/artisan/pin/pin-config.json"
    assert env["ARTISAN_ENSEMBLE_POLICY_CHECKPOINT"] == "best"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["nodeSelector"] == {"pool": "a100"}
    assert pod["priorityClassName"] == "training"
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"models", "ppo-a-checkpoints"}
    assert_hardened(pod)
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert build_ensemble_service(PIN)["spec"]["selector"] == selector


def test_revision_changes_with_pins_and_image_but_not_with_replicas_or_modes() -> None:
    base = pin_revision(pin_spec(), "ensemble:1")
    assert (
        pin_revision(pin_spec(replicas=9, traffic={"fast": 50, "balanced": 40, "creative": 10}), "ensemble:1")
        == base
    )
    assert pin_revision(pin_spec(), "ensemble:2") != base
    other = pin_spec(models={"primary": {"name": "qwen", "source": "pvc://models/qwen", "revision": "2.5.2"}})
    assert pin_revision(other, "ensemble:1") != base


def test_mode_changes_roll_the_pods_through_the_config_hash() -> None:
    a = build_ensemble_deployment(PIN, pin_spec(), image="e")
    b = build_ensemble_deployment(
        PIN, pin_spec(traffic={"fast": 50, "balanced": 40, "creative": 10}), image="e"
    )
    key = "artisan.dev/config-hash"
    assert (
        a["spec"]["template"]["metadata"]["annotations"][key]
        != b["spec"]["template"]["metadata"]["annotations"][key]
    )


def test_pin_configmap_carries_models_modes_traffic_and_downshift_in_wire_shape() -> None:
    configmap = build_pin_configmap(PIN, pin_spec())
    config = json.loads(configmap["data"]["pin-config.json"])
    assert set(config) == {"models", "modes", "traffic", "downshift"}
    assert config["modes"]["fast"]["maxNewTokens"] == 256
    assert config["downshift"]["normalTTLSeconds"] == 3600
    assert config["models"]["primary"]["revision"] == "2.5.1"


def test_routing_configmap_holds_only_the_pin_key_and_composes() -> None:
    spec = pin_spec()
    configmap = build_routing_configmap(PIN, spec, revision="abc", mode_ceiling="balanced")
    assert configmap["metadata"]["name"] == "fragrance-routing"
    assert set(configmap["data"]) == {PIN_KEY}
    table = compose(configmap["data"])
    assert table.pin.stable.url == "http://fragrance-ensemble.prod.svc:8080"
    assert (table.pin.stable.revision, table.pin.mode_ceiling) == ("abc", "balanced")
    assert table.canary is None


def test_applied_hash_is_stable_and_ignores_a_previous_hash() -> None:
    manifest = build_trainer_service(TR)
    stamped = with_applied_hash(manifest)
    assert with_applied_hash(stamped) == stamped
    assert APPLIED_HASH_ANNOTATION not in manifest["metadata"].get("annotations", {})
    changed = with_applied_hash({**manifest, "spec": {**manifest["spec"], "type": "NodePort"}})
    assert changed["metadata"]["annotations"] != stamped["metadata"]["annotations"]
