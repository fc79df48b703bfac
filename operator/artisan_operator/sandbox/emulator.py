"""An emulated Kubernetes API server: kmock's ``KubernetesEmulator`` with a real server's rules.

kmock gives the HTTP plumbing: request parsing into (resource, namespace, name, action),
API discovery (``/api``, ``/apis``, ``/apis/<group>/<version>``), the bundled list of built-in
resources, and its reaction DSL (tests may still inject faults, e.g. ``emulator['patch'] << 500``).
Its own object bookkeeping is deliberately replaced by :class:`~.store.ObjectStore`, which adds
what controllers depend on (uid, resourceVersion, generation, selectors, finalizers, garbage
collection, status isolation; see that module). Every request is answered by the store through
the ``_serve_*`` fallbacks below, so a request intercepted by a test reaction changes nothing,
as a failed request would on a real server.

Watches honour ``resourceVersion`` (resume from the event log without replaying every object;
``410 Gone`` in an ERROR event when compacted), ``labelSelector``/``fieldSelector`` (objects
that stop matching arrive as DELETED, start matching as ADDED), ``timeoutSeconds``, and
``sendInitialEvents`` with the closing BOOKMARK.

Also served: PUT, DELETE of a collection, list pagination (``limit``/``continue``), and
CustomResourceDefinitions: posting one declares its resources for discovery and marks it
Established. kubectl is still not a supported client (see ARCHITECTURE.md §5).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import importlib.resources
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal.rendering import Response as KmockResponse  # exported, but not in __all__

from artisan_operator.api import KINDS
from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.sandbox import patches
from artisan_operator.sandbox.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from artisan_operator.sandbox.store import (
    ApiError,
    Obj,
    ObjectStore,
    Propagation,
    ResourceKey,
    ResourceType,
    WatchEvent,
    bad_request,
)

STANDARD_VERBS = frozenset(
    {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
)
WRITE_METHODS = frozenset({kmock.method.POST, kmock.method.PUT, kmock.method.PATCH, kmock.method.DELETE})
CRD_RESOURCE: ResourceKey = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")

# Beyond the bundled built-ins, nothing else is needed by the operator: core v1 (pods, services,
# configmaps, PVCs, events), apps/v1 deployments, batch/v1 jobs, events.k8s.io/v1 events,
# gateway.networking.k8s.io/v1 httproutes and apiextensions CRDs are all in kmock's bundle.
REQUIRED_BUILTINS: tuple[str, ...] = (
    "v1/pods",
    "v1/services",
    "v1/configmaps",
    "v1/persistentvolumeclaims",
    "v1/events",
    "apps/v1/deployments",
    "batch/v1/jobs",
    "events.k8s.io/v1/events",
    "gateway.networking.k8s.io/v1/httproutes",
    "apiextensions.k8s.io/v1/customresourcedefinitions",
)


def _bundled_resources() -> bytes:
    # kmock's own load_bundled() reads this file through a deprecated importlib API (a warning,
    # hence an error under our pytest settings); same file, read the current way.
    bundled = importlib.resources.files("kmock._internal").joinpath("resources.json.gz")
    return gzip.decompress(bundled.read_bytes())


def _api_error_response(error: ApiError) -> KmockResponse:
    return KmockResponse(status=error.code, payload=error.status())


def _ok(payload: Obj, status: int = 200) -> KmockResponse:
    # Always an explicit status: kmock keeps the last status on the (shared) reaction otherwise.
    return KmockResponse(status=status, payload=payload)


@attrs.define(kw_only=True)
class SandboxEmulator(kmock.KubernetesEmulator):
    """The sandbox's Kubernetes API. Serve it with :func:`artisan_operator.sandbox.server.serve`."""

    store: ObjectStore = attrs.field(factory=ObjectStore)
    declare_artisan_kinds: bool = True
    request_log_limit: int | None = 1000  # kmock records every request; keep the newest only
    write_latency_seconds: float = 0.0
    """How long each write waits before it is applied, like a real API server's etcd commit (a few
    milliseconds); 0 (the default) answers as fast as the CPU allows. Benchmarks use it to measure
    an operator against a latency like a cluster's, where waiting in parallel pays off."""
    _types: dict[ResourceKey, ResourceType] = attrs.field(factory=dict, init=False)
    _watchers: dict[ResourceKey, set[asyncio.Queue[WatchEvent | None]]] = attrs.field(
        factory=lambda: defaultdict(set), init=False
    )
    # Routing of resource requests to the built-in reactions, memoised by (method, action): see _route.
    _builtin_payloads: tuple[Any, ...] = attrs.field(factory=tuple, init=False)
    _routes: dict[tuple[Any, Any], Any] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()  # registers _serve_list/_watch/_fetch/_create/_update/_delete
        self.fallback[kmock.method.PUT] << self._serve_replace
        self.fallback[kmock.method.DELETE] << self._serve_delete_collection
        self.resources.load_data(_bundled_resources())
        if self.declare_artisan_kinds:
            for kind in KINDS:
                self.declare(
                    ResourceType(GROUP, VERSION, kind.plural, kind.kind, True, frozenset({"status"})),
                    singular=kind.singular,
                    short_names=kind.short_names,
                    categories=("artisan",),
                )
        self.store.subscribe(self._fan_out)
        self._builtin_payloads = tuple(self._payloads)

    # --- resources -----------------------------------------------------------------------------

    def declare(
        self,
        rt: ResourceType,
        *,
        singular: str | None = None,
        short_names: tuple[str, ...] = (),
        categories: tuple[str, ...] = (),
    ) -> None:
        """Serve a resource (and list it in discovery, which kopf waits for)."""
        self.resources[kmock.resource(rt.group, rt.version, rt.plural)] = kmock.ResourceInfo(
            kind=rt.kind,
            singular=singular or rt.kind.lower(),
            namespaced=rt.namespaced,
            verbs=set(STANDARD_VERBS),
            shortnames=set(short_names),
            categories=set(categories),
            subresources=set(rt.subresources),
        )
        self._types.pop(rt.key, None)

    def resource_type(self, group: str, version: str, plural: str) -> ResourceType:
        """The declared resource, or 404 as a real server answers for an unknown one."""
        key = (group, version, plural)
        if key not in self._types:
            resource = kmock.resource(group, version, plural)
            if resource not in self.resources:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            info = self.resources[resource]
            self._types[key] = ResourceType(
                group=group,
                version=version,
                plural=plural,
                kind=info.kind or plural.capitalize(),
                namespaced=info.namespaced is not False,
                subresources=frozenset(info.subresources),
            )
        return self._types[key]

    def _request_type(self, request: kmock.Request) -> ResourceType:
        resource = request.resource
        if resource is None or not resource.plural or resource.version is None or resource.group is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rt = self.resource_type(resource.group, resource.version, resource.plural)
        if not rt.namespaced and request.namespace is not None:
            raise ApiError(404, "NotFound", f"{rt.qualified_name} is cluster-scoped: no namespace in the URL")
        return rt

    def _after_write(self, rt: ResourceType, obj: Obj) -> None:
        if rt.key == CRD_RESOURCE and not obj["metadata"].get("deletionTimestamp"):
            self._declare_crd(obj)

    def _declare_crd(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        for version in spec.get("versions") or []:
            if not version.get("served", True):
                continue
            subresources = frozenset((version.get("subresources") or {}).keys())
            rt = ResourceType(
                spec.get("group", ""),
                version["name"],
                names.get("plural", ""),
                names.get("kind", ""),
                spec.get("scope", "Namespaced") == "Namespaced",
                subresources,
            )
            self.declare(
                rt,
                singular=names.get("singular"),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
            )
        if not (crd.get("status") or {}).get("conditions"):
            crd_type = self.resource_type(*CRD_RESOURCE)
            now = self.store.clock()
            conditions = [
                {"type": kind, "status": "True", "reason": reason, "message": "", "lastTransitionTime": now}
                for kind, reason in (
                    ("NamesAccepted", "NoConflicts"),
                    ("Established", "InitialNamesAccepted"),
                )
            ]
            status = {
                "status": {
                    "acceptedNames": names,
                    "conditions": conditions,
                    "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
                }
            }
            name = crd["metadata"]["name"]
            self.store.patch(
                crd_type, None, name, patch_type=patches.MERGE_PATCH, patch=status, subresource="status"
            )

    # --- kmock plumbing ------------------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> Any:
        # Skip KubernetesEmulator._handle (its own bookkeeping); keep kmock's reaction matching.
        self._trim_request_log()
        if self.write_latency_seconds and request.method in WRITE_METHODS:
            await asyncio.sleep(self.write_latency_seconds)
        route = self._route(request)
        if route is None:
            return await super(kmock.KubernetesEmulator, self)._handle(request)
        serve = route.response.payload
        if getattr(serve, "__self__", None) is not self:
            return await route(request)  # not one of our methods: kmock renders it
        # kmock's bookkeeping, then our method, rendered as kmock renders an object (JSON with the
        # status) but without its generic per-request dispatch (half of the emulator's CPU per
        # request; the operators under test share that CPU).
        route._requests.append(request)
        result = await serve(request)
        if not isinstance(result, KmockResponse):
            result = KmockResponse(payload=result)
        if isinstance(result.payload, dict) and not result.headers:
            return aiohttp.web.json_response(result.payload, status=result.status or 200)
        return await result(request)  # a watch stream, or anything else: kmock renders it

    def _route(self, request: kmock.Request) -> Any:
        """The built-in reaction serving a resource request, found once per (method, action).

        kmock matches every request against every reaction in turn, which costs milliseconds of
        CPU per request (a real API server routes in constant time). While no test has added a
        reaction, the built-in reaction for a resource request depends only on its method and
        action, so the match kmock makes once is reused. None: let kmock match (a test added
        reactions, or a discovery request).
        """
        resource = request.resource
        if resource is None or not resource.plural:
            return None
        payloads = self._payloads
        if len(payloads) != len(self._builtin_payloads) or any(
            mine is not theirs for mine, theirs in zip(payloads, self._builtin_payloads, strict=True)
        ):
            return None
        key = (request.method, request.action)
        if key not in self._routes:
            self._routes[key] = next(
                (p for p in _by_priority(payloads) if request in p._source and not p._disabled.is_set()),
                None,
            )
        return self._routes[key]

    def _trim_request_log(self) -> None:
        limit = self.request_log_limit
        if limit is None or len(self._requests) <= 2 * limit:
            return
        del self._requests[:-limit]
        for payload in self._payloads:
            del payload._requests[:-limit]

    async def _serve_version(self, request: kmock.Request) -> Any:
        document = await super()._serve_version(request)
        if isinstance(document, dict) and str(document.get("groupVersion", "")).startswith("/"):
            document["groupVersion"] = document["groupVersion"][1:]  # core is "v1", not "/v1"
        return document

    # --- serving -------------------------------------------------------------------------------

    async def _serve_list(self, request: kmock.Request) -> Any:
        resource = request.resource
        if resource is not None and not resource.plural:  # "/api/v1/": discovery with a slash
            bare = kmock.resource(group=resource.group, version=resource.version)
            return await self._serve_version(attrs.evolve(request, resource=bare))
        try:
            rt = self._request_type(request)
            params = request.params
            limit = int(params["limit"]) if params.get("limit") else None
            items, version, token = self.store.list_objects(
                rt,
                request.namespace,
                parse_label_selector(params.get("labelSelector")),
                parse_field_selector(params.get("fieldSelector")),
                limit=limit,
                continue_token=params.get("continue"),
            )
        except ApiError as error:
            return _api_error_response(error)
        except (SelectorError, ValueError) as error:
            return _api_error_response(bad_request(str(error)))
        metadata: dict[str, Any] = {"resourceVersion": str(version)}
        if token:
            metadata["continue"] = token
        return _ok(
            {"apiVersion": rt.api_version, "kind": f"{rt.kind}List", "metadata": metadata, "items": items}
        )

    async def _serve_fetch(self, request: kmock.Request) -> KmockResponse:
        try:
            rt = self._request_type(request)
            if request.subresource not in (None, "status"):
                raise ApiError(404, "NotFound", f"the subresource {request.subresource!r} is not emulated")
            assert request.name is not None  # a fetch is a GET on a name
            return _ok(self.store.get(rt, request.namespace, request.name))
        except ApiError as error:
            return _api_error_response(error)

    async def _serve_create(self, request: kmock.Request) -> KmockResponse:
        try:
            rt = self._request_type(request)
            if request.subresource is not None:
                raise ApiError(405, "MethodNotAllowed", f"creating {request.subresource!r} is not emulated")
            obj = self.store.create(rt, request.namespace, request.data)
            self._after_write(rt, obj)
            return _ok(obj, status=201)
        except ApiError as error:
            return _api_error_response(error)

    async def _serve_update(self, request: kmock.Request) -> KmockResponse:
        try:
            rt = self._request_type(request)
            assert request.name is not None  # a PATCH is addressed to a name
            content_type = _content_type(request.headers)
            body = request.data
            if content_type == patches.APPLY_PATCH and body is None:
                body = yaml.safe_load(request.text)
            obj = self.store.patch(
                rt,
                request.namespace,
                request.name,
                patch_type=content_type,
                patch=body,
                subresource=request.subresource,
            )
            self._after_write(rt, obj)
            return _ok(obj)
        except ApiError as error:
            return _api_error_response(error)
        except yaml.YAMLError as error:
            return _api_error_response(bad_request(f"the apply patch is not valid YAML: {error}"))

    async def _serve_replace(self, request: kmock.Request) -> KmockResponse:
        try:
            rt = self._request_type(request)
            if request.name is None:
                raise ApiError(405, "MethodNotAllowed", "PUT needs an object name in the URL")
            obj = self.store.replace(rt, request.namespace, request.name, request.data, request.subresource)
            self._after_write(rt, obj)
            return _ok(obj)
        except ApiError as error:
            return _api_error_response(error)

    async def _serve_delete(self, request: kmock.Request) -> KmockResponse:
        try:
            rt = self._request_type(request)
            assert request.name is not None  # kmock routes only named DELETEs here
            options = request.data if isinstance(request.data, Mapping) else {}
            obj = self.store.delete(
                rt,
                request.namespace,
                request.name,
                propagation=_propagation(options, request.params),
                preconditions=options.get("preconditions"),
            )
            return _ok(obj)
        except ApiError as error:
            return _api_error_response(error)

    async def _serve_delete_collection(self, request: kmock.Request) -> KmockResponse:
        try:
            rt = self._request_type(request)
            if request.name is not None:
                raise ApiError(405, "MethodNotAllowed", "unexpected named DELETE")
            options = request.data if isinstance(request.data, Mapping) else {}
            items, _, _ = self.store.list_objects(
                rt,
                request.namespace,
                parse_label_selector(request.params.get("labelSelector")),
                parse_field_selector(request.params.get("fieldSelector")),
            )
            deleted = [
                self.store.delete(
                    rt,
                    obj["metadata"].get("namespace"),
                    obj["metadata"]["name"],
                    propagation=_propagation(options, request.params),
                )
                for obj in items
            ]
        except ApiError as error:
            return _api_error_response(error)
        except SelectorError as error:
            return _api_error_response(bad_request(str(error)))
        return _ok(
            {
                "apiVersion": rt.api_version,
                "kind": f"{rt.kind}List",
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": deleted,
            }
        )

    async def _serve_watch(self, request: kmock.Request) -> KmockResponse:  # type: ignore[override]
        # kmock's returns the stream itself; ours wraps it in a Response to set the status.
        try:
            rt = self._request_type(request)
            params = request.params
            labels = parse_label_selector(params.get("labelSelector"))
            fields = parse_field_selector(params.get("fieldSelector"))
            since = params.get("resourceVersion") or None
            since_version = int(since) if since not in (None, "0") else None
            timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        except ApiError as error:
            return _api_error_response(error)
        except (SelectorError, ValueError) as error:
            return _api_error_response(bad_request(str(error)))
        stream = self._watch_stream(
            rt,
            _WatchFilter(request.namespace, request.name, labels, fields),
            since_version,
            timeout_seconds=timeout,
            initial_bookmark=params.get("sendInitialEvents") == "true",
        )
        return KmockResponse(status=200, headers={"Content-Type": "application/json"}, payload=stream)

    async def _watch_stream(
        self,
        rt: ResourceType,
        visible: _WatchFilter,
        since: int | None,
        *,
        timeout_seconds: float | None,
        initial_bookmark: bool,
    ) -> AsyncIterator[Any]:
        queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self._watchers[rt.key].add(queue)  # subscribe first: no change can fall between the two
        try:
            yield b""  # send the headers now, as a real server does
            if since is None:  # "get state and start at most recent": ADDED for what exists
                items, sent_up_to, _ = self.store.list_objects(
                    rt, visible.namespace, visible.labels, visible.fields
                )
                for obj in items:
                    if visible.name is None or obj["metadata"]["name"] == visible.name:
                        yield {"type": "ADDED", "object": obj}
                if initial_bookmark:
                    yield _bookmark(rt, sent_up_to, initial_events_end=True)
            else:
                try:
                    backlog = self.store.events_since(since, rt.key)
                except ApiError as error:
                    yield {"type": "ERROR", "object": error.status()}
                    return
                sent_up_to = self.store.resource_version
                for event in backlog:
                    if translated := visible.translate(event):
                        yield translated
            loop = asyncio.get_running_loop()
            deadline = None if timeout_seconds is None else loop.time() + timeout_seconds
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    change = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    return
                if change is None:  # the server is closing
                    return
                if change.resource_version > sent_up_to and (translated := visible.translate(change)):
                    yield translated
        finally:
            self._watchers[rt.key].discard(queue)

    def _fan_out(self, event: WatchEvent) -> None:
        for queue in self._watchers.get(event.resource, ()):
            queue.put_nowait(event)

    def close_watches(self) -> None:
        """End every open watch stream (clients reconnect), e.g. before the server stops."""
        for queues in self._watchers.values():
            for queue in queues:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)


def _by_priority(payloads: list[Any]) -> list[Any]:
    """Reactions in the order kmock tries them (highest priority first, then as declared)."""
    priorities = [tuple(-p for p in payload.priorities) for payload in payloads]
    depth = max((len(priority) for priority in priorities), default=0)
    padded = [priority + (0,) * (depth - len(priority)) for priority in priorities]
    return [payloads[index] for index in sorted(range(len(payloads)), key=lambda index: padded[index])]


@attrs.frozen
class _WatchFilter:
    namespace: str | None
    name: str | None
    labels: LabelSelector
    fields: FieldSelector

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj["metadata"]
        return (
            (self.namespace is None or meta.get("namespace") == self.namespace)
            and (self.name is None or meta.get("name") == self.name)
            and self.labels.matches(meta.get("labels"))
            and self.fields.matches(obj)
        )

    def translate(self, event: WatchEvent) -> dict[str, Any] | None:
        """The event as this watcher sees it: selector transitions become ADDED/DELETED."""
        now, before = self.matches(event.obj), self.matches(event.old)
        if event.type == "DELETED":
            kind = "DELETED" if now or before else None
        elif now:
            kind = "MODIFIED" if before else "ADDED"
        else:
            kind = "DELETED" if before else None
        return None if kind is None else {"type": kind, "object": event.obj}


def _bookmark(rt: ResourceType, version: int, *, initial_events_end: bool) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": str(version)}
    if initial_events_end:
        metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {
        "type": "BOOKMARK",
        "object": {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": metadata},
    }


def _content_type(headers: Mapping[str, str]) -> str:
    for key, value in headers.items():
        if key.lower() == "content-type":
            return value.split(";")[0].strip()
    return patches.MERGE_PATCH


def _propagation(options: Mapping[str, Any], params: Mapping[str, str]) -> Propagation:
    policy = options.get("propagationPolicy") or params.get("propagationPolicy") or "Background"
    if options.get("orphanDependents") is True:
        policy = "Orphan"
    match policy:
        case "Background" | "Foreground" | "Orphan":
            return policy
        case _:
            raise bad_request(f"unknown propagationPolicy {policy!r}")
