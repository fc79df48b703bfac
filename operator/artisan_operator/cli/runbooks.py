"""The kubectl plugin's decisions (pure): health from a status, the children tree, the patches of
each manual action. :mod:`artisan_operator.cli.ops` only reads objects, calls these and sends the
patch they return.

Health of one object (``kubectl artisan status``), the first row that matches:

| status                                          | health      | exit code |
|-------------------------------------------------|-------------|-----------|
| none yet, or observedGeneration < generation    | Progressing | 3         |
| Stalled=True                                    | Unhealthy   | 1         |
| phase Failed, Degraded or Invalid               | Unhealthy   | 1         |
| Ready=True                                      | Ready       | 0         |
| Ready, Reconciling and Stalled all False        | Idle        | 3         |
| otherwise                                       | Progressing | 3         |

Manual actions (the operator never writes spec; a user's action is an annotation, or spec for the
user-owned parts such as a pin):

| command                   | patch on the object                                                 |
|---------------------------|---------------------------------------------------------------------|
| promote [--full]          | Canary ``artisan.dev/action: promote@<time>`` (``promote-full@``)   |
| abort / retry             | Canary ``artisan.dev/action: abort@<time>`` / ``retry@<time>``      |
| downshift --to M --for D  | ModelPin ``artisan.dev/downshift: M/D`` (``off`` with ``--off``)    |
| rollback --to-checkpoint S| TrainingRun ``artisan.dev/rollback-to: S@<time>``                   |
| restart                   | ModelPin ``artisan.dev/restartedAt: <time>``                        |
| pin --role R --revision X | ModelPin ``spec.models.R.revision: X``                              |
| undo [--to-revision H]    | ModelPin ``spec.models``/``policy``/``image`` of a stable record    |
| emergency-stop            | ModelPin and TrainingRun ``artisan.dev/emergency-stop: "true"``     |
|                           | (never spec: GitOps self-heal would revert it); each records the    |
|                           | patch that undoes it in ``artisan.dev/emergency-stop-restore``      |
| resume                    | the recorded restore patch, and the record removed                  |
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from artisan_common.routing import CANARY_KEY, EXPERIMENT_KEY, PIN_KEY, routing_configmap_name
from artisan_common.serving import MODES
from artisan_operator.api import KINDS, Kind
from artisan_operator.api.canary import ACTION_ANNOTATION, CanaryAction
from artisan_operator.api.model_pin import (
    DOWNSHIFT_ANNOTATION,
    EMERGENCY_STOP_ANNOTATION,
    RESTARTED_AT_ANNOTATION,
    ModelPinSpec,
)
from artisan_operator.api.training_run import ROLLBACK_TO_ANNOTATION, parse_rollback_to
from artisan_operator.manifests.common import owner_label_key
from artisan_operator.policy.conditions import describe_validation_error
from artisan_operator.policy.fleet_health import parse_manual

Obj = dict[str, Any]
Health = Literal["Ready", "Progressing", "Idle", "Unhealthy"]

EXIT_READY = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
EXIT_NOT_READY = 3
"""Not ready yet (progressing, idle, timed out) or could not be checked (endpoint unreachable)."""

UNHEALTHY_PHASES = frozenset({"Failed", "Degraded", "Invalid"})
RESTORE_ANNOTATION = "artisan.dev/emergency-stop-restore"
ROLES = ("primary", "validator", "creative")


class ActionError(ValueError):
    """A manual action cannot be applied to this object; the message says why. Nothing is changed."""


def rfc3339(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


# Kinds and references.


def resolve_kind(text: str) -> Kind:
    """A kind by its name, plural, singular or short name, in any case (``tr``, ``ModelPins``)."""
    wanted = text.strip().lower()
    for kind in KINDS:
        if wanted in (kind.kind.lower(), kind.plural, kind.singular, *kind.short_names):
            return kind
    names = ", ".join(f"{k.singular} ({'/'.join(k.short_names)})" for k in KINDS)
    raise ActionError(f"unknown kind {text!r}; one of {names}")


def parse_ref(ref: str, name: str | None = None) -> tuple[Kind, str]:
    """``KIND/NAME`` or ``KIND`` + ``NAME`` (as kubectl accepts both)."""
    if "/" in ref:
        if name is not None:
            raise ActionError(f"give either KIND/NAME or KIND NAME, not {ref!r} and {name!r}")
        kind_text, _, name = ref.partition("/")
    else:
        kind_text = ref
    if not name:
        raise ActionError(f"a name is required: {ref}/NAME")
    return resolve_kind(kind_text), name


def parse_ref_or_name(ref: str, name: str | None = None) -> tuple[Kind | None, str]:
    """Like :func:`parse_ref`, and a bare ``NAME`` too: its kind (None) is then looked up."""
    if "/" in ref or name is not None:
        return parse_ref(ref, name)
    if not ref.strip():
        raise ActionError("a name is required")
    return None, ref.strip()


def pick_kind(name: str, found: Sequence[Kind], searched: Sequence[Kind]) -> Kind:
    """The one kind among ``searched`` that has an object called ``name``.

    | found                | result                                                     |
    |----------------------|------------------------------------------------------------|
    | [Canary]             | Canary                                                     |
    | []                   | error: no trainingrun, modelpin, ... named NAME            |
    | [ModelPin, Canary]   | error: ambiguous, modelpin/NAME or canary/NAME             |
    """
    if len(found) == 1:
        return found[0]
    if not found:
        kinds = ", ".join(k.singular for k in searched)
        raise ActionError(f"no {kinds} named {name!r} in this namespace")
    refs = " or ".join(f"{k.singular}/{name}" for k in found)
    raise ActionError(f"{name!r} is ambiguous: there are {len(found)} objects by that name; say {refs}")


# Health.


@dataclass(frozen=True)
class Verdict:
    health: Health
    reason: str
    message: str

    @property
    def exit_code(self) -> int:
        if self.health == "Ready":
            return EXIT_READY
        return EXIT_UNHEALTHY if self.health == "Unhealthy" else EXIT_NOT_READY


def conditions_by_type(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    status = obj.get("status") or {}
    return {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}


def assess_health(obj: Mapping[str, Any]) -> Verdict:
    """The health of one custom resource from its status (see the module table)."""
    status = obj.get("status") or {}
    if not status:
        return Verdict("Progressing", "NoStatus", "waiting for the operator to report status")
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        return Verdict(
            "Progressing", "StaleStatus", f"waiting for the operator to observe generation {generation}"
        )
    conditions = conditions_by_type(obj)
    phase = str(status.get("phase") or "")
    message = str(status.get("message") or "")

    def detail(type_: str, fallback: str) -> tuple[str, str]:
        found = conditions.get(type_) or {}
        return str(found.get("reason") or fallback), str(found.get("message") or message or fallback)

    def is_true(type_: str) -> bool:
        return (conditions.get(type_) or {}).get("status") == "True"

    if is_true("Stalled"):
        return Verdict("Unhealthy", *detail("Stalled", "Stalled"))
    if phase in UNHEALTHY_PHASES:
        reason, text = detail("Ready", phase)
        return Verdict("Unhealthy", reason, text)
    if is_true("Ready"):
        return Verdict("Ready", *detail("Ready", "Ready"))
    if all((conditions.get(t) or {}).get("status") == "False" for t in ("Ready", "Reconciling", "Stalled")):
        return Verdict("Idle", *detail("Ready", phase or "Idle"))
    if "Reconciling" in conditions:
        return Verdict("Progressing", *detail("Reconciling", phase or "Progressing"))
    return Verdict("Progressing", *detail("Ready", phase or "Progressing"))


# The children tree.


@dataclass(frozen=True)
class TreeNode:
    kind: str
    name: str
    status: str
    children: tuple[TreeNode, ...] = ()
    health: Health | None = None


def describe_child(obj: Mapping[str, Any]) -> str:
    """A one-line status of a built-in child, like the columns of ``kubectl get``."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if kind == "Deployment":
        desired = spec.get("replicas", 1)
        ready, updated = status.get("readyReplicas") or 0, status.get("updatedReplicas") or 0
        return f"{ready}/{desired} ready, {updated} updated"
    if kind == "Job":
        conditions = conditions_by_type(obj)
        for type_ in ("Complete", "Failed", "Suspended"):
            if (conditions.get(type_) or {}).get("status") == "True":
                return type_
        return "Suspended" if spec.get("suspend") else f"{status.get('active') or 0} active"
    if kind == "Pod":
        waiting = [
            (c.get("state") or {}).get("waiting", {}).get("reason")
            for c in status.get("containerStatuses") or []
            if (c.get("state") or {}).get("waiting")
        ]
        return str(waiting[0] if waiting else status.get("phase") or "Pending")
    if kind == "PersistentVolumeClaim":
        capacity = (status.get("capacity") or {}).get("storage")
        return f"{status.get('phase') or 'Pending'}" + (f" {capacity}" if capacity else "")
    if kind == "ConfigMap":
        return "keys: " + (", ".join(sorted((obj.get("data") or {}).keys())) or "none")
    if kind == "Service":
        ports = ",".join(str(p.get("port")) for p in spec.get("ports") or [])
        return f"{spec.get('type') or 'ClusterIP'} {ports}".strip()
    return ""


def describe_resource(obj: Mapping[str, Any]) -> str:
    verdict = assess_health(obj)
    phase = (obj.get("status") or {}).get("phase")
    head = f"{phase} · {verdict.health}" if phase else verdict.health
    return f"{head} ({verdict.reason})" if verdict.reason not in (phase, verdict.health) else head


CHILD_ORDER = ("Deployment", "Job", "Pod", "PersistentVolumeClaim", "ConfigMap", "Service")


def child_selector(kind: str, name: str) -> str:
    """The label selector of every child the operator made for one object."""
    return f"{owner_label_key(kind)}={name}"


def routing_entries(config_map: Mapping[str, Any] | None, keys: Sequence[str]) -> list[TreeNode]:
    """Entries of a routing ConfigMap, each as a leaf (``null``/absent entries are shown as such)."""
    data = (config_map or {}).get("data") or {}
    nodes = []
    for key in keys:
        raw = data.get(key)
        if raw is None or raw == "null":
            nodes.append(TreeNode("RoutingEntry", key, "absent"))
            continue
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            nodes.append(TreeNode("RoutingEntry", key, "unreadable"))
            continue
        nodes.append(TreeNode("RoutingEntry", key, summarize_route(key, entry)))
    return nodes


def summarize_route(key: str, entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return str(entry)
    if key == CANARY_KEY:
        return f"weight {entry.get('weight', 0)}% → {(entry.get('backend') or {}).get('revision', '?')}"
    if key == EXPERIMENT_KEY:
        variants = entry.get("variants") or []
        parts = [f"{v.get('name')} {v.get('weight')}%" for v in variants if isinstance(v, Mapping)]
        promoted = entry.get("promoted")
        return ", ".join(parts) + (f"; promoted {promoted}" if promoted else "")
    if key == PIN_KEY:
        stable = entry.get("stable") or {}
        return f"stable {stable.get('revision', '?')}, ceiling {entry.get('modeCeiling', '?')}"
    return ", ".join(f"{k}={v}" for k, v in entry.items() if not isinstance(v, dict | list))


def build_tree(
    obj: Mapping[str, Any],
    children: Iterable[Mapping[str, Any]] = (),
    *,
    target: Mapping[str, Any] | None = None,
    routing: Mapping[str, Any] | None = None,
) -> TreeNode:
    """A custom resource with its children (ordered by kind, then name), its target and routing.

    - TrainingRun: Job, Pod, PersistentVolumeClaim, ConfigMap, Service;
    - ModelPin: Deployment(s), Pod, Service, ConfigMap (pin config, routing);
    - Canary / ABExperiment: the target ModelPin, their routing entry, their own children.
    """
    meta = obj.get("metadata") or {}
    kind = str(obj.get("kind") or "")
    nodes: list[TreeNode] = []
    target_name = ((obj.get("spec") or {}).get("targetRef") or {}).get("name")
    if kind in ("Canary", "ABExperiment") and target_name:
        if target is None:
            nodes.append(TreeNode("ModelPin", str(target_name), "not found", health="Unhealthy"))
        else:
            nodes.append(
                TreeNode(
                    "ModelPin",
                    str(target_name),
                    describe_resource(target),
                    health=assess_health(target).health,
                )
            )
        key = CANARY_KEY if kind == "Canary" else EXPERIMENT_KEY
        for entry in routing_entries(routing, [key]):
            nodes.append(
                TreeNode(entry.kind, f"{routing_configmap_name(str(target_name))}/{entry.name}", entry.status)
            )
    ordered = sorted(
        children,
        key=lambda c: (
            CHILD_ORDER.index(str(c.get("kind"))) if c.get("kind") in CHILD_ORDER else len(CHILD_ORDER),
            str((c.get("metadata") or {}).get("name")),
        ),
    )
    for child in ordered:
        nodes.append(
            TreeNode(
                str(child.get("kind")), str((child.get("metadata") or {}).get("name")), describe_child(child)
            )
        )
    return TreeNode(
        kind, str(meta.get("name")), describe_resource(obj), tuple(nodes), assess_health(obj).health
    )


# Manual actions: the merge patch each one sends.


def annotation_patch(key: str, value: str | None) -> Obj:
    return {"metadata": {"annotations": {key: value}}}


def canary_action_patch(action: CanaryAction, now: datetime) -> Obj:
    """``promote@<time>``: the suffix makes a repeated action fresh (the policy applies it once)."""
    return annotation_patch(ACTION_ANNOTATION, f"{action}@{rfc3339(now)}")


def downshift_patch(mode: str | None, duration: str | None) -> Obj:
    """``artisan.dev/downshift: <mode>/<duration>``, or ``off`` when mode is None; validated first."""
    if mode is None:
        return annotation_patch(DOWNSHIFT_ANNOTATION, "off")
    if duration is None:
        raise ActionError("--for DURATION is required with --to (e.g. --for 10m)")
    value = f"{mode}/{duration}"
    try:
        parse_manual(value)
    except ValueError as error:
        raise ActionError(f"{error} (modes: {', '.join(MODES)}; durations like 90s, 10m, 1h)") from error
    return annotation_patch(DOWNSHIFT_ANNOTATION, value)


def rollback_patch(training_run: Mapping[str, Any], step: int, now: datetime) -> Obj:
    """``artisan.dev/rollback-to: <step>@<time>``; refused for a step the run has not reached."""
    if step < 0:
        raise ActionError("--to-checkpoint must be a step ≥ 0")
    value = f"{step}@{rfc3339(now)}"
    parse_rollback_to(value)  # the operator's own parser accepts it
    status = training_run.get("status") or {}
    last = (status.get("lastCheckpoint") or {}).get("step")
    if last is not None and step > int(last):
        raise ActionError(f"no checkpoint at step {step}: the newest checkpoint is at step {last}")
    return annotation_patch(ROLLBACK_TO_ANNOTATION, value)


def restart_patch(now: datetime) -> Obj:
    return annotation_patch(RESTARTED_AT_ANNOTATION, rfc3339(now))


def training_restart_patch(training_run: Mapping[str, Any], now: datetime) -> tuple[Obj, int]:
    """Restart a TrainingRun's trainer from its newest checkpoint: a manual rollback to that step.

    Deleting the trainer pod is not a restart: the Job's backoffLimit is 0, so the Job would fail
    and with it the run. The operator's ``artisan.dev/rollback-to`` instead starts the next attempt's
    Job resuming from the checkpoint (recorded in ``status.rollbacks``).

    | status                                  | result                                 |
    |-----------------------------------------|----------------------------------------|
    | lastCheckpoint.step 3000                | rollback-to 3000@now, 3000             |
    | no lastCheckpoint                       | error: no checkpoint to restart from   |
    | spec.suspend true                       | error: suspended, resume it first      |
    | artisan.dev/emergency-stop "true"       | error: emergency-stopped, resume first |
    """
    if (training_run.get("spec") or {}).get("suspend"):
        raise ActionError("the TrainingRun is suspended: resume it (spec.suspend: false) before restarting")
    annotations = (training_run.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(EMERGENCY_STOP_ANNOTATION, "")).strip().lower() == "true":
        raise ActionError("the TrainingRun is emergency-stopped: kubectl artisan resume it before restarting")
    last = ((training_run.get("status") or {}).get("lastCheckpoint") or {}).get("step")
    if last is None:
        raise ActionError(
            "the TrainingRun has no checkpoint yet, so there is nothing to restart from "
            "(deleting its pod would fail the Job, which has backoffLimit 0)"
        )
    step = int(last)
    return rollback_patch(training_run, step, now), step


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: what the API server makes of ``target`` after a JSON merge patch (null removes)."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _validated(spec: Mapping[str, Any]) -> None:
    """Bad input changes nothing: the spec after the patch must be a valid ModelPin spec."""
    try:
        ModelPinSpec.model_validate(dict(spec))
    except ValidationError as error:
        raise ActionError(describe_validation_error(error)) from error


def pin_patch(
    model_pin: Mapping[str, Any],
    role: str,
    revision: str,
    *,
    name: str | None = None,
    source: str | None = None,
) -> Obj:
    """``spec.models.<role>`` with a new revision (a user's change of the spec, validated first)."""
    if role not in ROLES:
        raise ActionError(f"--role must be one of {', '.join(ROLES)}")
    spec = model_pin.get("spec") or {}
    current = dict((spec.get("models") or {}).get(role) or {})
    if not current and (name is None or source is None):
        raise ActionError(f"the ModelPin has no {role} model: give --model-name and --source to add one")
    updated = {**current, "revision": revision}
    if name is not None:
        updated["name"] = name
    if source is not None:
        updated["source"] = source
    if updated == current:
        raise ActionError(f"spec.models.{role} already pins revision {revision}")
    patch: Obj = {"spec": {"models": {role: updated}}}
    _validated(merge_patch(spec, patch["spec"]))
    return patch


@dataclass(frozen=True)
class UndoPlan:
    revision: str
    """The pin-set hash restored."""
    patch: Obj
    spec: Obj
    """The whole spec after the patch (what ``--print`` shows for a git commit)."""


def undo_plan(model_pin: Mapping[str, Any], to_revision: str | None = None) -> UndoPlan:
    """Back to a stable pin set recorded in status (models, policy, and the image when it differs).

    Without ``to_revision``: while the spec's revision differs from ``status.stable`` (a rollout in
    progress, or aborted) that stable set; otherwise the newest of ``status.history``. Roles absent
    from the record are removed from the spec.
    """
    spec = model_pin.get("spec") or {}
    status = model_pin.get("status") or {}
    stable = status.get("stable") if isinstance(status.get("stable"), Mapping) else None
    history = [h for h in status.get("history") or [] if isinstance(h, Mapping)]
    records = [*history, *([stable] if stable is not None else [])]
    if to_revision is not None:
        chosen = next((r for r in reversed(records) if r.get("revision") == to_revision), None)
        if chosen is None:
            known = ", ".join(str(r.get("revision")) for r in records) or "none"
            raise ActionError(
                f"revision {to_revision} is not in status.stable or status.history (known: {known})"
            )
    elif stable is not None and status.get("revision") not in (None, stable.get("revision")):
        chosen = stable
    elif history:
        chosen = history[-1]
    else:
        raise ActionError("no previous revision to go back to: status.history is empty")
    models = chosen.get("models") or {}
    current_models = spec.get("models") or {}
    changes: Obj = {
        "models": {r: models.get(r) for r in ROLES if r in models or r in current_models},
        "policy": chosen.get("policy"),
    }
    image = chosen.get("image")
    serving_image = stable.get("image") if stable is not None else None
    # An image left to the chart's default can only be brought back by pinning it in spec.
    if image is not None and (spec.get("image") is not None or serving_image != image):
        changes["image"] = image
    new_spec = merge_patch(spec, changes)
    _validated(new_spec)
    return UndoPlan(str(chosen.get("revision")), {"spec": changes}, new_spec)


# Emergency stop and resume.


@dataclass(frozen=True)
class StopPlan:
    patch: Obj | None
    """None: nothing to do (already stopped by us)."""
    note: str


def emergency_stop_patch(kind: str, obj: Mapping[str, Any], now: datetime) -> StopPlan:
    """Stop one ModelPin or TrainingRun (annotation, never spec), recording how to undo it.

    A second emergency-stop keeps the first record, so ``resume`` restores the state from before
    the first stop, not the stopped one.
    """
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if RESTORE_ANNOTATION in annotations:
        return StopPlan(None, "already stopped by emergency-stop (record kept)")
    notes = {"ModelPin": "ensemble Deployments scale to 0", "TrainingRun": "suspended (checkpoints kept)"}
    if kind not in notes:
        raise ActionError(f"emergency-stop applies to ModelPins and TrainingRuns, not {kind}")
    # An annotation, not spec.suspend: Argo CD / Flux self-heal would put spec back at once.
    restore: Obj = annotation_patch(EMERGENCY_STOP_ANNOTATION, annotations.get(EMERGENCY_STOP_ANNOTATION))
    change: Obj = annotation_patch(EMERGENCY_STOP_ANNOTATION, "true")
    note = notes[kind]
    record = json.dumps({"time": rfc3339(now), "restore": restore}, sort_keys=True, separators=(",", ":"))
    return StopPlan(merge_patch(change, annotation_patch(RESTORE_ANNOTATION, record)), note)


ALLOWED_RESTORE: dict[str, Obj] = {
    "ModelPin": {"metadata": {"annotations": {EMERGENCY_STOP_ANNOTATION: None}}},
    # spec.suspend: records left by an emergency-stop from before it used the annotation.
    "TrainingRun": {
        "metadata": {"annotations": {EMERGENCY_STOP_ANNOTATION: None}},
        "spec": {"suspend": None},
    },
}


def _same_shape(patch: Any, allowed: Any) -> bool:
    """``patch`` touches only the paths of ``allowed`` (leaves may hold any scalar or null)."""
    if isinstance(allowed, dict):
        return isinstance(patch, dict) and all(
            k in allowed and _same_shape(v, allowed[k]) for k, v in patch.items()
        )
    return patch is None or isinstance(patch, str | bool)


def resume_patch(kind: str, obj: Mapping[str, Any]) -> Obj | None:
    """The recorded restore patch plus removal of the record; None when there is no record."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(RESTORE_ANNOTATION)
    if raw is None:
        return None
    try:
        restore = json.loads(raw)["restore"]
    except (ValueError, KeyError, TypeError) as error:
        raise ActionError(
            f"{RESTORE_ANNOTATION} is unreadable ({error}); fix or remove it by hand"
        ) from error
    if kind not in ALLOWED_RESTORE or not _same_shape(restore, ALLOWED_RESTORE[kind]):
        raise ActionError(
            f"{RESTORE_ANNOTATION} touches more than emergency-stop changes; refusing to apply it"
        )
    patch = json.loads(json.dumps(restore))
    patch.setdefault("metadata", {}).setdefault("annotations", {})[RESTORE_ANNOTATION] = None
    return dict(patch)


# Metrics.


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class SeriesSummary:
    name: str
    samples: tuple[Sample, ...] = field(default_factory=tuple)

    @property
    def found(self) -> bool:
        return bool(self.samples)


def parse_exposition(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition (``/metrics``); ValueError when it is not one."""
    return [
        Sample(sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def summarize_series(samples: Iterable[Sample], wanted: Sequence[str]) -> list[SeriesSummary]:
    """The samples of each wanted series (by sample name, e.g. ``artisan_reconcile_total``)."""
    collected = list(samples)
    return [SeriesSummary(name, tuple(s for s in collected if s.name == name)) for name in wanted]


HEALTH_SERIES = "model_health_status"


def roles_down(samples: Iterable[Sample]) -> set[str]:
    """Roles whose ``model_health_status{model, role}`` is 0. The ensemble labels each pinned model's
    series with its ``role`` (fixed: primary, validator, creative) and its user-chosen ``model`` name:
    checks match on the role."""
    return {
        s.labels["role"] for s in samples if s.name == HEALTH_SERIES and s.value == 0 and "role" in s.labels
    }
