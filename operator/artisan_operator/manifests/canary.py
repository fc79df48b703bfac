"""The canary fleet of a Canary (pure): a second Deployment, its pin config and its Service.

While a Canary rolls out a ModelPin change, the stable fleet (``<pin>-ensemble``) keeps serving the
pins recorded in the ModelPin's ``status.stable`` at full capacity, and the canary fleet runs the
spec's pins next to it:

| child                          | built from                          | selects / carries            |
|--------------------------------|-------------------------------------|------------------------------|
| ConfigMap ``<pin>-canary-pin-config`` | the ModelPin spec's pin config | models, modes, traffic       |
| Deployment ``<pin>-ensemble-canary``  | the stable builder, renamed    | ``artisan.dev/track: canary``|
| Service ``<pin>-ensemble-canary``     | the canary pods                | port ``http``                |

The children are owned by the Canary (deleted with it); the routing table's ``canary.json`` points
the gateway at the canary Service with the step's weight.
"""

from __future__ import annotations

import copy

from artisan_operator.api.model_pin import ModelPinSpec
from artisan_operator.manifests.common import Manifest, Owner, object_meta, standard_labels
from artisan_operator.manifests.ensemble import (
    APP_NAME,
    HTTP_PORT,
    TRACK_LABEL,
    build_ensemble_deployment,
    build_pin_configmap,
    pin_config_name,
)

CANARY_TRACK = "canary"


def canary_deployment_name(pin: str) -> str:
    return f"{pin}-ensemble-canary"


def canary_service_name(pin: str) -> str:
    return f"{pin}-ensemble-canary"


def canary_pin_config_name(pin: str) -> str:
    return f"{pin}-canary-pin-config"


def canary_url(pin: str, namespace: str) -> str:
    return f"http://{canary_service_name(pin)}.{namespace}.svc:{HTTP_PORT}"


def _pin_owner(canary: Owner, pin: str) -> Owner:
    """The ModelPin's identity for the shared builders (names and labels); never an owner reference."""
    return Owner(kind="ModelPin", name=pin, namespace=canary.namespace, uid=canary.uid)


def _owned_by(manifest: Manifest, canary: Owner, name: str) -> Manifest:
    labels = dict(manifest["metadata"].get("labels") or {})
    labels.update(standard_labels(canary, name=APP_NAME, component="canary"))
    manifest["metadata"] = object_meta(canary, name, labels, manifest["metadata"].get("annotations"))
    return manifest


def canary_selector(pin: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": pin,
        "app.kubernetes.io/component": "ensemble",
        TRACK_LABEL: CANARY_TRACK,
    }


def build_canary_pin_configmap(canary: Owner, pin: str, spec: ModelPinSpec) -> Manifest:
    manifest = copy.deepcopy(build_pin_configmap(_pin_owner(canary, pin), spec))
    return _owned_by(manifest, canary, canary_pin_config_name(pin))


def build_canary_deployment(
    canary: Owner, pin: str, spec: ModelPinSpec, *, image: str, replicas: int
) -> Manifest:
    """The stable fleet's Deployment for the spec's pins, renamed, on the canary track."""
    manifest = copy.deepcopy(build_ensemble_deployment(_pin_owner(canary, pin), spec, image=image))
    manifest = _owned_by(manifest, canary, canary_deployment_name(pin))
    deployment_spec = manifest["spec"]
    deployment_spec["replicas"] = replicas
    deployment_spec["selector"] = {"matchLabels": canary_selector(pin)}
    template = deployment_spec["template"]
    template["metadata"]["labels"] = {**template["metadata"]["labels"], TRACK_LABEL: CANARY_TRACK}
    for volume in template["spec"]["volumes"]:
        if volume.get("configMap", {}).get("name") == pin_config_name(pin):
            volume["configMap"]["name"] = canary_pin_config_name(pin)
    return manifest


def build_canary_service(canary: Owner, pin: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(
            canary, canary_service_name(pin), standard_labels(canary, name=APP_NAME, component="canary")
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": canary_selector(pin),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
