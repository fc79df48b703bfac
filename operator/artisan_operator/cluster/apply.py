"""Apply a plan's children idempotently: read, create when missing, patch only when the desired changed.

The operator stamps each child with the hash of the manifest it applied
(``artisan.dev/applied-hash``); a child whose hash matches is left alone, so a resync costs one GET per
child and server-side defaulting never causes a patch loop. An owner never reconciled before creates
its children without reading them first (a leftover from an interrupted pass answers 409, and is
then read and compared like any other). A brand-new owner's first pass goes further (``create_only``):
it only creates, and a child that already exists is reported as ``exists``, untouched, for the caller
to decide again from a full observation. Patches are JSON merge patches (no PUT,
no server-side apply). A child that exists but is not controlled by this owner is never touched:
it is reported as a conflict.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from artisan_operator.cluster.client import (
    MERGE_PATCH,
    ApiException,
    ClusterClient,
    discard,
    unvalidated,
)
from artisan_operator.manifests.common import APPLIED_HASH_ANNOTATION, Manifest, with_applied_hash
from artisan_operator.policy.plan import CHILD_CONFLICT, CHILD_CREATED, CHILD_UPDATED, EnsureChild, EventNote

ApplyAction = Literal["created", "updated", "unchanged", "conflict", "exists"]
"""``exists``: a ``create_only`` create answered 409; the child was neither read nor changed."""


@dataclass(frozen=True)
class ChildOperations:
    create: Callable[..., Any]
    read: Callable[..., Any]
    patch: Callable[..., Any]


@dataclass(frozen=True)
class ApplyOutcome:
    kind: str
    name: str
    action: ApplyAction
    message: str = ""

    def event(self) -> EventNote | None:
        if self.action == "created":
            return EventNote(CHILD_CREATED, f"created {self.kind} {self.name}")
        if self.action == "updated":
            return EventNote(CHILD_UPDATED, f"updated {self.kind} {self.name}")
        if self.action == "conflict":
            return EventNote(CHILD_CONFLICT, self.message, "Warning")
        return None


def child_operations(cluster: ClusterClient, kind: str) -> ChildOperations:
    """The typed create/read/patch calls of each child kind the operator manages (bodies are our
    own dicts: no client-side model validation, see :func:`unvalidated`)."""
    core, apps, batch = cluster.core, cluster.apps, cluster.batch
    table = {
        "ConfigMap": ChildOperations(
            unvalidated(core.create_namespaced_config_map),
            unvalidated(core.read_namespaced_config_map),
            unvalidated(core.patch_namespaced_config_map),
        ),
        "Service": ChildOperations(
            unvalidated(core.create_namespaced_service),
            unvalidated(core.read_namespaced_service),
            unvalidated(core.patch_namespaced_service),
        ),
        "PersistentVolumeClaim": ChildOperations(
            unvalidated(core.create_namespaced_persistent_volume_claim),
            unvalidated(core.read_namespaced_persistent_volume_claim),
            unvalidated(core.patch_namespaced_persistent_volume_claim),
        ),
        "Job": ChildOperations(
            unvalidated(batch.create_namespaced_job),
            unvalidated(batch.read_namespaced_job),
            unvalidated(batch.patch_namespaced_job),
        ),
        "Deployment": ChildOperations(
            unvalidated(apps.create_namespaced_deployment),
            unvalidated(apps.read_namespaced_deployment),
            unvalidated(apps.patch_namespaced_deployment),
        ),
    }
    if kind not in table:
        raise ValueError(f"the operator does not manage {kind} children")
    return table[kind]


def pick_paths(manifest: Manifest, paths: Sequence[str]) -> Manifest:
    """A merge patch holding only ``paths`` of ``manifest`` (a path absent there becomes null: removed)."""
    patch: Manifest = {}
    for path in paths:
        keys = path.split(".")
        source: Any = manifest
        for key in keys:
            source = source.get(key) if isinstance(source, dict) else None
        target = patch
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = source
    return patch


def is_controlled_by(existing: Manifest, owner_uid: str) -> bool:
    refs = existing.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner_uid and ref.get("controller") for ref in refs)


def applied_hash(manifest: Manifest) -> str | None:
    annotations = manifest.get("metadata", {}).get("annotations") or {}
    value = annotations.get(APPLIED_HASH_ANNOTATION)
    return str(value) if value is not None else None


def apply_child(
    cluster: ClusterClient,
    child: EnsureChild,
    owner_uid: str,
    *,
    expect_missing: bool = False,
    create_only: bool = False,
) -> ApplyOutcome:
    """Ensure one child exists with the desired content; safe to repeat and to interrupt anywhere.

    ``expect_missing`` (the owner was never reconciled) skips the read before the create: a child
    that exists anyway (an interrupted earlier pass) answers 409 and is then read and compared.
    ``create_only`` skips the read too, and on 409 stops there: ``exists``, nothing compared or
    patched (the desired content came from an observation that assumed no child exists).
    """
    desired = with_applied_hash(child.manifest)
    name, namespace, kind = child.name, desired["metadata"]["namespace"], child.kind
    ops = child_operations(cluster, kind)
    timeout = cluster.request_timeout
    existing = None if expect_missing or create_only else cluster.read(ops.read, name, namespace)
    if existing is None:
        try:
            discard(ops.create(namespace, desired, _preload_content=False, _request_timeout=timeout))
            return ApplyOutcome(kind, name, "created")
        except ApiException as error:
            if error.status != 409:
                raise
            if create_only:
                return ApplyOutcome(kind, name, "exists")
            # Created meanwhile (another pass or a previous run of the operator): compare with it.
            existing = cluster.read(ops.read, name, namespace)
            if existing is None:
                raise
    if not is_controlled_by(existing, owner_uid):
        return ApplyOutcome(
            kind,
            name,
            "conflict",
            f"{kind} {name} exists and is not controlled by this object; left untouched",
        )
    wanted_hash = applied_hash(desired)
    if applied_hash(existing) == wanted_hash:
        return ApplyOutcome(kind, name, "unchanged")
    if child.patchable is None:
        patch = desired
    else:
        patch = pick_paths(desired, child.patchable)
        patch.setdefault("metadata", {}).setdefault("annotations", {})[APPLIED_HASH_ANNOTATION] = wanted_hash
    patch = with_removed_keys(patch, existing, child.replaced_maps)
    response = ops.patch(
        name, namespace, patch, _content_type=MERGE_PATCH, _preload_content=False, _request_timeout=timeout
    )
    discard(response)
    return ApplyOutcome(kind, name, "updated")


def with_removed_keys(patch: Manifest, existing: Manifest, paths: Sequence[str]) -> Manifest:
    """``patch`` with a null (remove) for each key of the maps at ``paths`` that ``existing`` has and
    the patch lacks; the input is not changed."""
    if not paths:
        return patch
    patch = copy.deepcopy(patch)
    for path in paths:
        keys = path.split(".")
        live: Any = existing
        wanted: Any = patch
        for key in keys:
            live = live.get(key) if isinstance(live, dict) else None
            wanted = wanted.get(key) if isinstance(wanted, dict) else None
        if isinstance(live, dict) and isinstance(wanted, dict):
            wanted.update(dict.fromkeys(live.keys() - wanted.keys()))
    return patch


def outcome_events(outcomes: Sequence[ApplyOutcome]) -> list[EventNote]:
    """The Events of one pass's outcomes: one for all creations, one for all updates, one per conflict.

    One Event per kind of action keeps ``kubectl describe`` complete (every child is named) at a
    fraction of the API writes of one Event per child.
    """
    notes: list[EventNote] = []
    for action, reason in (("created", CHILD_CREATED), ("updated", CHILD_UPDATED)):
        done = [f"{o.kind} {o.name}" for o in outcomes if o.action == action]
        if done:
            notes.append(EventNote(reason, f"{action} {', '.join(done)}"))
    notes.extend(note for o in outcomes if o.action == "conflict" and (note := o.event()) is not None)
    return notes


WORKLOAD_KINDS = frozenset({"Job", "Deployment"})
"""Children that run pods: changed after the volumes, config and Services those pods use."""


def creation_waves(children: Sequence[EnsureChild], *, all_new: bool = False) -> list[list[EnsureChild]]:
    """The plan's children in the waves they are applied in: each wave at once, waves in order.

    A workload comes after everything else: its new pods must not start with the old content of a
    ConfigMap that is being changed in the same pass. When every child is new (``all_new``: a
    brand-new owner's first pass) they are all created at once: a pod waits for a missing volume or
    ConfigMap (the scheduler and the kubelet retry) and can never see an old one, and the object's
    children exist one round trip after it does.

    | children (in plan order)     | all_new | waves                            |
    |------------------------------|---------|----------------------------------|
    | PVC, ConfigMap, Job, Service | no      | [PVC, ConfigMap, Service], [Job] |
    | Deployment, Service, ConfigMap | no    | [Service, ConfigMap], [Deployment] |
    | PVC, ConfigMap, Job, Service | yes     | [PVC, ConfigMap, Job, Service]   |
    | ConfigMap                    | no      | [ConfigMap]                      |
    | Job                          | no      | [Job]                            |
    """
    if all_new:
        return [list(children)] if children else []
    support = [child for child in children if child.kind not in WORKLOAD_KINDS]
    workloads = [child for child in children if child.kind in WORKLOAD_KINDS]
    return [wave for wave in (support, workloads) if wave]


def apply_plan(
    cluster: ClusterClient,
    children: Sequence[EnsureChild],
    owner_uid: str,
    *,
    expect_missing: bool = False,
    create_only: bool = False,
) -> list[ApplyOutcome]:
    """Apply every child, wave by wave (:func:`creation_waves`), the children of a wave at once.

    With ``create_only`` (a brand-new owner: all children created at once), a child that ``exists``
    is the last outcome: the caller decides again from a full observation and applies that plan.
    """
    outcomes: list[ApplyOutcome] = []
    for wave in creation_waves(children, all_new=create_only):
        results = cluster.fan_out(
            [
                functools.partial(
                    apply_child,
                    cluster,
                    child,
                    owner_uid,
                    expect_missing=expect_missing,
                    create_only=create_only,
                )
                for child in wave
            ]
        )
        outcomes.extend(sorted(results, key=lambda outcome: outcome.action == "exists"))
        if outcomes and outcomes[-1].action == "exists":
            break
    return outcomes
