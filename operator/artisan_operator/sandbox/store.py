"""What a real API server does to objects, without HTTP: the state behind the emulator.

The store keeps the latest version of every object and applies the server-side rules that
controllers rely on and that kmock's plain in-memory emulator leaves out:

- ``metadata.uid``, ``creationTimestamp``, ``namespace`` (from the URL), ``generateName``;
- one cluster-wide, monotonic ``resourceVersion``; a write that changes nothing keeps it
  (and emits no event), like a no-op PATCH on a real server;
- ``metadata.generation`` starts at 1 and grows only when something other than ``metadata``
  and (for kinds with a status subresource) ``status`` changes, and when deletion starts;
- status subresource isolation: writes to the main resource keep ``status``, writes to
  ``/status`` change only ``status``;
- ``409 AlreadyExists`` on duplicate names, ``409 Conflict`` on stale ``resourceVersion``
  (PUT, merge patches carrying one, delete preconditions), ``404 NotFound``, ``422 Invalid``;
- deletion with finalizers: DELETE sets ``deletionTimestamp`` and keeps the object until the
  last finalizer is removed; no new finalizers may be added meanwhile;
- garbage collection (background propagation): when an owner is finally gone, dependents
  whose ``ownerReferences`` name no other live owner are deleted (honouring their own
  finalizers); ``propagationPolicy: Orphan`` strips the reference instead;
- an event log of recent changes, so a watch can resume from a ``resourceVersion`` (and gets
  ``410 Gone`` when that version has been compacted away, as on a real server).

Not emulated: admission (schemas, CEL, defaults), server-side-apply field ownership, foreground
deletion, the ``scale`` subresource, conversion between versions of the same kind.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import re
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from artisan_operator.sandbox import patches
from artisan_operator.sandbox.selectors import FieldSelector, LabelSelector

Obj = dict[str, Any]
ResourceKey = tuple[str, str, str]  # group, version, plural
ObjectKey = tuple[str | None, str]  # namespace (None if cluster-scoped), name
EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Propagation = Literal["Background", "Foreground", "Orphan"]

EVERYTHING = LabelSelector()
ANY_FIELDS = FieldSelector()
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's alphabet: no vowels, no 0/1/3


@dataclass(frozen=True)
class ResourceType:
    """One served resource: enough to stamp kind/apiVersion and apply the rules above."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: frozenset[str] = frozenset()

    @property
    def key(self) -> ResourceKey:
        return (self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified_name(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


class ApiError(Exception):
    """A failed request, rendered as a ``kind: Status`` body with the same code and reason."""

    def __init__(self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    def status(self) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "code": self.code,
            "reason": self.reason,
            "message": self.message,
            "details": self.details,
        }


def _details(rt: ResourceType, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"group": rt.group, "kind": rt.plural}
    if name:
        details["name"] = name
    return details


STALE_VERSION = "the object has been modified; please apply your changes to the latest version"


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified_name} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rt.qualified_name} "{name}" already exists', _details(rt, name))


def conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    message = f'Operation cannot be fulfilled on {rt.qualified_name} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(rt, name))


def invalid(rt: ResourceType, name: str | None, field_path: str, why: str) -> ApiError:
    message = f'{rt.kind} "{name or ""}" is invalid: {field_path}: {why}'
    details = _details(rt, name) | {
        "causes": [{"reason": "FieldValueInvalid", "message": why, "field": field_path}]
    }
    return ApiError(422, "Invalid", message, details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    """One change; ``old`` is the previous version (None for ADDED), for selector transitions."""

    resource_version: int
    resource: ResourceKey
    type: EventType
    obj: Obj
    old: Obj | None = None


Listener = Callable[[WatchEvent], None]


@dataclass
class ObjectStore:
    """The objects of every resource, the resourceVersion counter and the recent event log."""

    event_log_size: int = 10_000
    clock: Callable[[], str] = now_rfc3339
    new_uid: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))
    _objects: dict[ResourceKey, dict[ObjectKey, Obj]] = field(default_factory=lambda: defaultdict(dict))
    _types: dict[ResourceKey, ResourceType] = field(default_factory=dict)
    _by_uid: dict[str, tuple[ResourceKey, ObjectKey]] = field(default_factory=dict)
    _resource_version: int = 0
    _log: deque[WatchEvent] = field(init=False)
    _listeners: list[Listener] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._log = deque(maxlen=self.event_log_size)

    # --- reading -------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._resource_version

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        """The stored object (do not mutate it: versions are shared with the event log)."""
        obj = self._objects[rt.key].get((self._scope(rt, namespace), name))
        if obj is None:
            raise not_found(rt, name)
        return obj

    def find(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        return self._objects[rt.key].get((self._scope(rt, namespace), name))

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: LabelSelector = EVERYTHING,
        fields: FieldSelector = ANY_FIELDS,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> tuple[list[Obj], int, str]:
        """Matching objects ordered by (namespace, name), the list's resourceVersion, next token."""
        keys = sorted(
            (key for key, obj in self._objects[rt.key].items() if namespace is None or key[0] == namespace),
            key=lambda key: (key[0] or "", key[1]),
        )
        if continue_token:
            after = _decode_continue(continue_token)
            keys = [key for key in keys if (key[0] or "", key[1]) > after]
        items: list[Obj] = []
        next_token = ""
        for key in keys:
            obj = self._objects[rt.key][key]
            if not (labels.matches(obj["metadata"].get("labels")) and fields.matches(obj)):
                continue
            if limit and len(items) == limit:
                last = items[-1]["metadata"]
                next_token = _encode_continue((last.get("namespace") or "", last["name"]))
                break
            items.append(obj)
        return items, self._resource_version, next_token

    def all_objects(self) -> Iterator[tuple[ResourceType, Obj]]:
        for key, objects in self._objects.items():
            for obj in objects.values():
                yield self._types[key], obj

    # --- watching ------------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def events_since(self, resource_version: int, resource: ResourceKey) -> list[WatchEvent]:
        """Events of one resource after a version; 410 Gone when the log no longer reaches back."""
        if resource_version >= self._resource_version:
            return []
        oldest = self._log[0].resource_version if self._log else self._resource_version + 1
        if resource_version < oldest - 1:
            raise gone(f"too old resource version: {resource_version} ({oldest - 1})")
        return [e for e in self._log if e.resource_version > resource_version and e.resource == resource]

    # --- writing -------------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str | None, body: Any) -> Obj:
        meta = self._checked_body(rt, body)
        if rt.namespaced:
            if namespace is None:
                raise bad_request(f"{rt.kind} is namespaced: create it under /namespaces/<namespace>/")
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
        name = meta.get("name") or self._generate_name(rt, namespace, meta.get("generateName"))
        self._check_name(rt, name)
        scope = self._scope(rt, namespace)
        if (scope, name) in self._objects[rt.key]:
            raise already_exists(rt, name)
        self._check_owner_references(rt, name, meta)

        obj = copy.deepcopy(dict(body))
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        if rt.has_status:
            obj.pop("status", None)
        new_meta = obj["metadata"] = dict(obj.get("metadata") or {})
        for server_owned in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            new_meta.pop(server_owned, None)
        new_meta["name"] = name
        if rt.namespaced:
            new_meta["namespace"] = namespace
        else:
            new_meta.pop("namespace", None)
        new_meta["uid"] = self.new_uid()
        new_meta["generation"] = 1
        new_meta["creationTimestamp"] = self.clock()
        new_meta["resourceVersion"] = str(self._next_resource_version())
        self._objects[rt.key][(scope, name)] = obj
        self._by_uid[new_meta["uid"]] = (rt.key, (scope, name))
        self._emit(rt, "ADDED", obj, None)
        return obj

    def replace(
        self, rt: ResourceType, namespace: str | None, name: str, body: Any, subresource: str | None = None
    ) -> Obj:
        """PUT: the whole object (or the whole status with ``subresource='status'``)."""
        existing = self.get(rt, namespace, name)
        meta = self._checked_body(rt, body)
        if meta.get("name") not in (None, name):
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the URL ({name})")
        sent_version = meta.get("resourceVersion")
        if sent_version and sent_version != existing["metadata"]["resourceVersion"]:
            raise conflict(rt, name, STALE_VERSION)
        return self._update(rt, existing, copy.deepcopy(dict(body)), subresource)

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        patch_type: str,
        patch: Any,
        subresource: str | None = None,
    ) -> Obj:
        """PATCH with one of the content types of :mod:`patches`; apply creates when missing."""
        existing = self.find(rt, namespace, name)
        if existing is None:
            if patch_type == patches.APPLY_PATCH and subresource is None:
                body = dict(patch) if isinstance(patch, Mapping) else patch
                if isinstance(body, dict):
                    body["metadata"] = {**(body.get("metadata") or {}), "name": name}
                return self.create(rt, namespace, body)
            raise not_found(rt, name)
        if isinstance(patch, Mapping) and patch_type != patches.JSON_PATCH:
            sent_version = (patch.get("metadata") or {}).get("resourceVersion")
            if sent_version and sent_version != existing["metadata"]["resourceVersion"]:
                raise conflict(rt, name, STALE_VERSION)
        try:
            match patch_type:
                case patches.MERGE_PATCH:
                    candidate = patches.merge_patch(existing, patch)
                case patches.STRATEGIC_MERGE_PATCH | patches.APPLY_PATCH:
                    candidate = patches.strategic_merge_patch(existing, patch)
                case patches.JSON_PATCH:
                    candidate = patches.json_patch(existing, patch)
                case _:
                    raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {patch_type}")
        except patches.PatchError as exc:
            raise ApiError(
                422, "Invalid", f"the patch could not be applied: {exc}", _details(rt, name)
            ) from exc
        if not isinstance(candidate, dict):
            raise invalid(rt, name, "<root>", "the patched object is not a JSON object")
        return self._update(rt, existing, candidate, subresource)

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: Propagation = "Background",
        preconditions: Mapping[str, Any] | None = None,
    ) -> Obj:
        """DELETE: mark for deletion while finalizers remain; otherwise remove and collect garbage."""
        existing = self.get(rt, namespace, name)
        meta = existing["metadata"]
        for field_name in ("uid", "resourceVersion"):
            wanted = (preconditions or {}).get(field_name)
            if wanted and wanted != meta.get(field_name):
                raise conflict(
                    rt,
                    name,
                    f"Precondition failed: {field_name} in precondition: {wanted}, "
                    f"in object: {meta.get(field_name)}",
                )
        if meta.get("deletionTimestamp"):
            return existing
        if meta.get("finalizers"):
            marked = copy.deepcopy(existing)
            marked["metadata"]["deletionTimestamp"] = self.clock()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            marked["metadata"]["generation"] = meta.get("generation", 1) + 1
            return self._commit(rt, existing, marked)
        return self._remove(rt, existing, propagation)

    # --- the rules -----------------------------------------------------------------------------

    def register(self, rt: ResourceType) -> None:
        self._types[rt.key] = rt

    def _update(self, rt: ResourceType, existing: Obj, candidate: Obj, subresource: str | None) -> Obj:
        old_meta = existing["metadata"]
        if subresource == "status":
            updated = copy.deepcopy(existing)
            if candidate.get("status") is None:
                updated.pop("status", None)
            else:
                updated["status"] = candidate["status"]
        elif subresource is None:
            updated = candidate
            if rt.has_status:  # the main resource never writes status
                if "status" in existing:
                    updated["status"] = copy.deepcopy(existing["status"])
                else:
                    updated.pop("status", None)
            new_meta = updated["metadata"] = dict(updated.get("metadata") or {})
            for immutable in (
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if immutable in old_meta:
                    new_meta[immutable] = old_meta[immutable]
                else:
                    new_meta.pop(immutable, None)
            self._check_owner_references(rt, old_meta["name"], new_meta)
            if old_meta.get("deletionTimestamp"):
                added = set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise invalid(
                        rt,
                        old_meta["name"],
                        "metadata.finalizers",
                        "Forbidden: no new finalizers can be added if the object is being deleted, "
                        f"found new finalizers {sorted(added)}",
                    )
        else:
            raise ApiError(
                404,
                "NotFound",
                f"the subresource {subresource!r} is not emulated",
                _details(rt, old_meta["name"]),
            )
        updated["apiVersion"], updated["kind"] = rt.api_version, rt.kind
        updated["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        if _spec_part(rt, updated) != _spec_part(rt, existing):
            updated["metadata"]["generation"] = old_meta.get("generation", 1) + 1
        return self._commit(rt, existing, updated)

    def _commit(self, rt: ResourceType, existing: Obj, updated: Obj) -> Obj:
        if updated == existing:
            return existing  # a no-op write keeps the resourceVersion and emits nothing
        meta = updated["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(rt, updated, "Background")
        meta["resourceVersion"] = str(self._next_resource_version())
        self._objects[rt.key][(meta.get("namespace"), meta["name"])] = updated
        self._emit(rt, "MODIFIED", updated, existing)
        return updated

    def _remove(self, rt: ResourceType, obj: Obj, propagation: Propagation) -> Obj:
        meta = obj["metadata"]
        key = (meta.get("namespace"), meta["name"])
        previous = self._objects[rt.key].pop(key)
        self._by_uid.pop(meta["uid"], None)
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = str(self._next_resource_version())
        self._emit(rt, "DELETED", final, previous)
        self._collect_dependents(meta["uid"], orphan=propagation == "Orphan")
        return final

    def _collect_dependents(self, owner_uid: str, *, orphan: bool) -> None:
        """Background garbage collection of the objects that ``owner_uid`` owned."""
        dependents = [
            (self._types[key], obj)
            for key, objects in self._objects.items()
            for obj in list(objects.values())
            if any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences") or [])
        ]
        for rt, obj in dependents:
            meta = obj["metadata"]
            current = self.find(rt, meta.get("namespace"), meta["name"])
            if current is None or current["metadata"]["uid"] != meta["uid"]:
                continue  # already collected through another owner
            refs = current["metadata"].get("ownerReferences") or []
            live = [ref for ref in refs if ref.get("uid") != owner_uid and ref.get("uid") in self._by_uid]
            if live or orphan:
                trimmed = copy.deepcopy(current)
                trimmed["metadata"]["ownerReferences"] = [ref for ref in refs if ref.get("uid") != owner_uid]
                if not trimmed["metadata"]["ownerReferences"]:
                    del trimmed["metadata"]["ownerReferences"]
                self._commit(rt, current, trimmed)
            else:
                self.delete(rt, meta.get("namespace"), meta["name"])

    def _emit(self, rt: ResourceType, event_type: EventType, obj: Obj, old: Obj | None) -> None:
        self.register(rt)
        event = WatchEvent(int(obj["metadata"]["resourceVersion"]), rt.key, event_type, obj, old)
        self._log.append(event)
        for listener in list(self._listeners):
            listener(event)

    def _next_resource_version(self) -> int:
        self._resource_version += 1
        return self._resource_version

    @staticmethod
    def _scope(rt: ResourceType, namespace: str | None) -> str | None:
        return namespace if rt.namespaced else None

    @staticmethod
    def _checked_body(rt: ResourceType, body: Any) -> Mapping[str, Any]:
        if not isinstance(body, Mapping):
            raise bad_request("the request body must be a JSON object")
        if body.get("apiVersion") not in (None, rt.api_version) or body.get("kind") not in (None, rt.kind):
            raise bad_request(
                f"the API version/kind in the body ({body.get('apiVersion')}/{body.get('kind')}) "
                f"does not match the URL ({rt.api_version}/{rt.kind})"
            )
        meta = body.get("metadata") or {}
        if not isinstance(meta, Mapping):
            raise bad_request("metadata must be a JSON object")
        return meta

    def _generate_name(self, rt: ResourceType, namespace: str | None, prefix: str | None) -> str:
        if not prefix:
            raise invalid(rt, None, "metadata.name", "Required value: name or generateName is required")
        for _ in range(100):
            name = prefix[:58] + "".join(random.choices(_GENERATE_ALPHABET, k=5))
            if (self._scope(rt, namespace), name) not in self._objects[rt.key]:
                return name
        raise ApiError(500, "InternalError", f"could not generate a unique name from {prefix!r}")

    @staticmethod
    def _check_name(rt: ResourceType, name: Any) -> None:
        if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            raise invalid(
                rt,
                str(name),
                "metadata.name",
                f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            )

    @staticmethod
    def _check_owner_references(rt: ResourceType, name: str, meta: Mapping[str, Any]) -> None:
        for index, ref in enumerate(meta.get("ownerReferences") or []):
            for required in ("apiVersion", "kind", "name", "uid"):
                if not isinstance(ref, Mapping) or not ref.get(required):
                    raise invalid(rt, name, f"metadata.ownerReferences[{index}].{required}", "Required value")


def _spec_part(rt: ResourceType, obj: Obj) -> Obj:
    """What ``generation`` tracks: everything except metadata (and status, if a subresource)."""
    ignored = {"metadata", "status"} if rt.has_status else {"metadata"}
    return {key: value for key, value in obj.items() if key not in ignored}


def _encode_continue(after: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(after)).encode()).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError) as exc:
        raise bad_request(f"invalid continue token {token!r}") from exc
    return str(namespace), str(name)
