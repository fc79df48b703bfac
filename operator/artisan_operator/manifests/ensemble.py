"""The children of a ModelPin (pure): pin config, ensemble Deployment and Service, routing ConfigMap.

The ensemble container runs ``artisan-ensemble serve --models /models --role ensemble --port 8080``
and reads the pins from the JSON file named by ``ARTISAN_ENSEMBLE_PIN_CONFIG`` (the camelCase wire
shape of the spec's ``models``, ``modes``, ``traffic`` and ``downshift``). A model whose source is
``pvc://<claim>/<path>`` is found at ``/models/<claim>/<path>`` (each claim is mounted read-only);
the policy checkpoints of ``policy.trainingRunRef`` are mounted read-only at ``/policy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from artisan_common.routing import (
    PIN_KEY,
    Backend,
    PinRoute,
    routing_configmap_name,
    serialize,
)
from artisan_common.serving import Mode
from artisan_operator.api.model_pin import EMERGENCY_STOP_ANNOTATION, RESTARTED_AT_ANNOTATION, ModelPinSpec
from artisan_operator.manifests.common import (
    REVISION_LABEL,
    Manifest,
    Owner,
    canonical_json,
    container_resources,
    container_security_context,
    content_hash,
    object_meta,
    pod_scheduling,
    pod_security_context,
    selector_labels,
    standard_labels,
)
from artisan_operator.manifests.trainer import trainer_pvc_name

APP_NAME = "artisan-ensemble"
HTTP_PORT = 8080
MODELS_DIR = "/models"
POLICY_DIR = "/policy"
PIN_CONFIG_DIR = "/etc/artisan/pin"
PIN_CONFIG_KEY = "pin-config.json"
CONFIG_HASH_ANNOTATION = "artisan.dev/config-hash"
TRACK_LABEL = "artisan.dev/track"
PVC_SCHEME = "pvc://"


def ensemble_deployment_name(pin: str) -> str:
    return f"{pin}-ensemble"


def ensemble_service_name(pin: str) -> str:
    return f"{pin}-ensemble"


def pin_config_name(pin: str) -> str:
    return f"{pin}-pin-config"


def resolved_image(spec: ModelPinSpec, default_image: str) -> str:
    return spec.image or default_image


def pin_revision(spec: ModelPinSpec, image: str) -> str:
    """Hash of the pinned set: models + policy + image (first 10 hex of the sha256 of canonical JSON)."""
    pinned = {
        "models": spec.models.to_wire(),
        "policy": spec.policy.to_wire() if spec.policy else None,
        "image": image,
    }
    return content_hash(pinned, length=10)


def pin_config(spec: ModelPinSpec) -> Manifest:
    """What the ensemble reads from ARTISAN_ENSEMBLE_PIN_CONFIG."""
    return {
        "models": spec.models.to_wire(),
        "modes": spec.modes.to_wire(),
        "traffic": spec.traffic.to_wire(),
        "downshift": spec.downshift.to_wire(),
    }


def build_pin_configmap(owner: Owner, spec: ModelPinSpec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(
            owner,
            pin_config_name(owner.name),
            standard_labels(owner, name=APP_NAME, component="pin-config"),
        ),
        "data": {PIN_CONFIG_KEY: canonical_json(pin_config(spec))},
    }


def ensemble_selector(owner: Owner) -> dict[str, str]:
    """Pods of the stable fleet (a canary fleet carries another track)."""
    return {**selector_labels(owner, name=APP_NAME, component="ensemble"), TRACK_LABEL: "stable"}


def pvc_claims(spec: ModelPinSpec) -> list[str]:
    """Distinct claims named by ``pvc://<claim>/<path>`` model sources, in role order."""
    claims: list[str] = []
    for model in (spec.models.primary, spec.models.validator, spec.models.creative):
        if model is not None and model.source.startswith(PVC_SCHEME):
            claim = model.source.removeprefix(PVC_SCHEME).split("/", 1)[0]
            if claim and claim not in claims:
                claims.append(claim)
    return claims


def build_ensemble_deployment(owner: Owner, spec: ModelPinSpec, *, image: str) -> Manifest:
    image = resolved_image(spec, image)
    revision = pin_revision(spec, image)
    labels = {**standard_labels(owner, name=APP_NAME, component="ensemble"), REVISION_LABEL: revision}
    pod_labels = {**ensemble_selector(owner), **labels}
    env: list[Manifest] = [
        {"name": "ARTISAN_ENSEMBLE_PIN_CONFIG", "value": f"{PIN_CONFIG_DIR}/{PIN_CONFIG_KEY}"},
        {"name": "ARTISAN_ENSEMBLE_REVISION", "value": revision},
        # pvc://<claim>/<path> sources are looked up under the mount root below (/models/<claim>).
        {"name": "ARTISAN_ENSEMBLE_PVC_ROOT", "value": MODELS_DIR},
        {"name": "HF_HOME", "value": "/tmp/hf"},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
    ]
    mounts: list[Manifest] = [
        {"name": "pin-config", "mountPath": PIN_CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[Manifest] = [
        {"name": "pin-config", "configMap": {"name": pin_config_name(owner.name)}},
        {"name": "tmp", "emptyDir": {}},
    ]
    for index, claim in enumerate(pvc_claims(spec)):
        volumes.append(
            {"name": f"models-{index}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": f"models-{index}", "mountPath": f"{MODELS_DIR}/{claim}", "readOnly": True})
    if spec.policy is not None:
        claim = trainer_pvc_name(spec.policy.training_run_ref.name)
        volumes.append({"name": "policy", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": "policy", "mountPath": POLICY_DIR, "readOnly": True})
        env.append({"name": "ARTISAN_ENSEMBLE_POLICY_DIR", "value": POLICY_DIR})
        env.append({"name": "ARTISAN_ENSEMBLE_POLICY_CHECKPOINT", "value": spec.policy.checkpoint})
    container: Manifest = {
        "name": "ensemble",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["artisan-ensemble"],
        "args": ["serve", "--models", MODELS_DIR, "--role", "ensemble", "--port", str(HTTP_PORT)],
        "env": env,
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "resources": container_resources(spec.resources),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        # Loading models can take minutes; liveness waits until the first successful start-up check.
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 60,
        },
    }
    # Modes, traffic and downshift live in the pin config; a change must roll the pods.
    config_hash = content_hash(pin_config(spec))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(owner, ensemble_deployment_name(owner.name), labels),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": ensemble_selector(owner)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {CONFIG_HASH_ANNOTATION: config_hash}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "volumes": volumes,
                    **pod_scheduling(spec.scheduling),
                },
            },
        },
    }


@dataclass(frozen=True)
class FleetOverrides:
    """Operator-honoured annotations of a ModelPin that change its ensemble Deployments (not spec)."""

    emergency_stop: bool = False
    """``artisan.dev/emergency-stop: "true"``: every ensemble Deployment runs 0 replicas."""
    restarted_at: str | None = None
    """``artisan.dev/restartedAt``: carried into the pod template, so a new value rolls the pods."""


def fleet_overrides(annotations: Mapping[str, str] | None) -> FleetOverrides:
    """The overrides named by a ModelPin's annotations (anything but "true" does not stop)."""
    annotations = annotations or {}
    restarted_at = annotations.get(RESTARTED_AT_ANNOTATION) or None
    return FleetOverrides(
        emergency_stop=annotations.get(EMERGENCY_STOP_ANNOTATION, "").strip().lower() == "true",
        restarted_at=restarted_at,
    )


def with_fleet_overrides(deployment: Manifest, overrides: FleetOverrides) -> Manifest:
    """An ensemble Deployment (stable or canary) with the overrides applied; the input is not changed."""
    if overrides == FleetOverrides():
        return deployment
    spec = dict(deployment["spec"])
    if overrides.emergency_stop:
        spec["replicas"] = 0
    if overrides.restarted_at is not None:
        template = dict(spec["template"])
        metadata = dict(template.get("metadata") or {})
        metadata["annotations"] = {
            **(metadata.get("annotations") or {}),
            RESTARTED_AT_ANNOTATION: overrides.restarted_at,
        }
        template["metadata"] = metadata
        spec["template"] = template
    return {**deployment, "spec": spec}


def service_selector(owner: Owner, *, both_tracks: bool = False) -> dict[str, str]:
    """Pods the ModelPin's Service sends traffic to: the stable fleet, or with ``both_tracks`` (a
    Canary routing by replica ratio) the stable and the canary pods. The Deployment's own selector
    keeps the track (it is immutable, and two Deployments must not select each other's pods)."""
    selector = ensemble_selector(owner)
    if both_tracks:
        del selector[TRACK_LABEL]
    return selector


def build_ensemble_service(owner: Owner, *, both_tracks: bool = False) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(
            owner,
            ensemble_service_name(owner.name),
            standard_labels(owner, name=APP_NAME, component="ensemble"),
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": service_selector(owner, both_tracks=both_tracks),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def ensemble_url(owner: Owner) -> str:
    return f"http://{ensemble_service_name(owner.name)}.{owner.namespace}.svc:{HTTP_PORT}"


def build_routing_configmap(
    owner: Owner, spec: ModelPinSpec, *, revision: str, mode_ceiling: Mode = "creative"
) -> Manifest:
    """``<pin>-routing`` with the ModelPin's own key only (``pin.json``); Canary and ABExperiment
    write their keys into the same ConfigMap, so applying this never touches theirs."""
    route = PinRoute(
        stable=Backend(url=ensemble_url(owner), revision=revision),
        mode_ceiling=mode_ceiling,
        traffic=spec.traffic,
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(
            owner,
            routing_configmap_name(owner.name),
            standard_labels(owner, name="artisan-gateway", component="routing"),
        ),
        "data": {PIN_KEY: serialize(route)},
    }
