"""Pieces every child manifest shares (pure): owner, labels, owner references, pod hardening."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from artisan_operator.api.common import API_VERSION, ResourcesSpec, SchedulingSpec

MANAGED_BY = "artisan-operator"
PART_OF = "artisan"
# The hash of the manifest the operator last applied to a child: a changed hash means "patch it".
APPLIED_HASH_ANNOTATION = "artisan.dev/applied-hash"
REVISION_LABEL = "artisan.dev/revision"
GPU_RESOURCE = "nvidia.com/gpu"
NON_ROOT_UID = 10001

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The custom resource that owns the children (the Kubernetes API requires its uid)."""

    kind: str
    name: str
    namespace: str
    uid: str
    api_version: str = API_VERSION
    generation: int | None = None


def owner_reference(owner: Owner) -> Manifest:
    """A controller reference: garbage collection deletes the child with its owner.

    ``blockOwnerDeletion`` makes foreground deletion wait for the child; it needs ``update`` on the
    owner's ``finalizers`` subresource (the chart's RBAC grants it).
    """
    if not owner.uid:
        raise ValueError(f"{owner.kind} {owner.namespace}/{owner.name} has no uid")
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owner_label_key(kind: str) -> str:
    """``artisan.dev/trainingrun`` for TrainingRun: selects every child of one object."""
    return f"artisan.dev/{kind.lower()}"


def selector_labels(owner: Owner, *, name: str, component: str) -> dict[str, str]:
    """The stable subset of labels used in selectors (never changes for an object's lifetime)."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/component": component,
    }


def standard_labels(owner: Owner, *, name: str, component: str) -> dict[str, str]:
    return {
        **selector_labels(owner, name=name, component=component),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": PART_OF,
        owner_label_key(owner.kind): owner.name,
    }


def object_meta(
    owner: Owner, name: str, labels: dict[str, str], annotations: dict[str, str] | None = None
) -> Manifest:
    meta: Manifest = {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def container_resources(resources: ResourcesSpec) -> Manifest:
    """Requests and limits: GPUs are requested and limited alike; memory limit = request (no OOM surprise)."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if resources.cpu is not None:
        requests["cpu"] = resources.cpu
    if resources.memory is not None:
        requests["memory"] = resources.memory
        limits["memory"] = resources.memory
    if resources.gpus > 0:
        requests[GPU_RESOURCE] = str(resources.gpus)
        limits[GPU_RESOURCE] = str(resources.gpus)
    result: Manifest = {}
    if requests:
        result["requests"] = requests
    if limits:
        result["limits"] = limits
    return result


def pod_scheduling(scheduling: SchedulingSpec) -> Manifest:
    """nodeSelector, tolerations and priorityClassName of a pod spec (only the fields set)."""
    result: Manifest = {}
    if scheduling.node_selector:
        result["nodeSelector"] = dict(scheduling.node_selector)
    if scheduling.tolerations:
        result["tolerations"] = [t.to_wire() for t in scheduling.tolerations]
    if scheduling.priority_class_name:
        result["priorityClassName"] = scheduling.priority_class_name
    return result


def pod_security_context() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_UID,
        "runAsGroup": NON_ROOT_UID,
        "fsGroup": NON_ROOT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def with_applied_hash(manifest: Manifest) -> Manifest:
    """The manifest with the hash of its own content in an annotation (what ``apply`` compares)."""
    metadata = dict(manifest["metadata"])
    annotations = {k: v for k, v in metadata.get("annotations", {}).items() if k != APPLIED_HASH_ANNOTATION}
    digest = content_hash({**manifest, "metadata": {**metadata, "annotations": annotations}})
    metadata["annotations"] = {**annotations, APPLIED_HASH_ANNOTATION: digest}
    return {**manifest, "metadata": metadata}
