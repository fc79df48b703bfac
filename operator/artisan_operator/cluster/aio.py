"""The reconcilers' client's writes, sent with aiohttp on the operator's event loop.

A brand-new object's first pass only writes (its children, its status, an Event: see
``handlers.reconcile``). Sent from the API thread pool, each of those writes cost a thread hand-off
under the GIL and the blocking client's own HTTP stack (``http.client`` parses headers in pure
Python): under a burst of new objects the hand-offs queued behind one another, and that pass cost
most of the operator's CPU per object. Here the same request is *built* by the kubernetes client
itself (its generated ``_<method>_serialize``: URL, query, the auth header with a refreshed token,
the sanitized body) and only *sent* by aiohttp, whose parser is in C, on the loop: no thread at all.

The methods passed in are the client's own (``cluster.core.create_namespaced_config_map``), so
the RBAC derived from this package's code (``cluster.permissions``) covers these writes too.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import ssl
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import aiohttp
from kubernetes import client as k8s

from artisan_operator.cluster.apply import ApplyOutcome, child_operations
from artisan_operator.cluster.client import MERGE_PATCH, ApiException, ClusterClient
from artisan_operator.cluster.events import event_manifest, logger
from artisan_operator.cluster.status import status_write
from artisan_operator.manifests.common import with_applied_hash
from artisan_operator.policy.plan import EnsureChild, EventNote

Request = tuple[str, str, dict[str, str], Any]
"""(HTTP method, URL, headers, body) of one API call."""


def api_and_name(method: Callable[..., Any]) -> tuple[Any, str]:
    """The API object and the method name of a client API method, bound or :func:`unvalidated`."""
    if isinstance(method, functools.partial):
        return method.args[0], method.func.__name__
    return getattr(method, "__self__"), method.__name__  # noqa: B009 (a bound method's, typed Any)


_PARAMETERS: dict[tuple[type, str], tuple[str, ...]] = {}


def _serializer_parameters(api_type: type, name: str) -> tuple[str, ...]:
    """The parameter names of a generated serializer (read once per method)."""
    key = (api_type, name)
    if key not in _PARAMETERS:
        serializer = getattr(api_type, f"_{name}_serialize")
        _PARAMETERS[key] = tuple(p for p in inspect.signature(serializer).parameters if p != "self")
    return _PARAMETERS[key]


def built_request(method: Callable[..., Any], *args: Any, content_type: str | None = None) -> Request:
    """The request ``method(*args)`` would send, built by the client (nothing is sent).

    Positional ``args`` are the method's required parameters in order; every optional one is left
    unset, as a call without it would.
    """
    api, name = api_and_name(method)
    names = _serializer_parameters(type(api), name)
    values: dict[str, Any] = dict.fromkeys(names)
    values.update(zip(names, args, strict=False))
    values["_content_type"] = content_type
    values["_host_index"] = 0
    http_method, url, headers, body, _ = getattr(api, f"_{name}_serialize")(**values)
    return http_method, url, {k: str(v) for k, v in headers.items() if v is not None}, body


def ssl_option(configuration: k8s.Configuration) -> ssl.SSLContext | bool:
    """The TLS settings of the blocking client, for aiohttp (False: no verification)."""
    if not configuration.verify_ssl:
        return False
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.assert_hostname is False:
        context.check_hostname = False
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def async_supported(configuration: k8s.Configuration) -> bool:
    """Whether :class:`AsyncApi` reaches the API the way the blocking client does (it has no proxy
    support: with one configured, every call stays on the blocking client)."""
    return not configuration.proxy


class AsyncApi:
    """Send client API calls on the running event loop; one connection pool for the operator."""

    def __init__(self, cluster: ClusterClient, *, connections: int) -> None:
        self.cluster = cluster
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, ssl=ssl_option(cluster.configuration)),
            timeout=aiohttp.ClientTimeout(total=cluster.request_timeout),
            headers={"User-Agent": "artisan-operator"},
        )
        # kubeconfig's tls-server-name: the name the API server's certificate is checked against.
        self._server_hostname: str | None = cluster.configuration.tls_server_name or None

    async def call(self, method: Callable[..., Any], *args: Any, content_type: str | None = None) -> None:
        """Send ``method(*args)`` and read the answer to its end; ApiException on an error status
        (like the blocking client), aiohttp's errors when the API cannot be reached."""
        http_method, url, headers, body = built_request(method, *args, content_type=content_type)
        data = None if body is None else json.dumps(body)
        async with self._session.request(
            http_method, url, data=data, headers=headers, server_hostname=self._server_hostname
        ) as response:
            payload = await response.read()
            if not 200 <= response.status < 300:
                error = ApiException(status=response.status, reason=response.reason)
                error.body = payload.decode(errors="replace")
                raise error

    async def close(self) -> None:
        await self._session.close()


async def create_children(api: AsyncApi, children: Sequence[EnsureChild]) -> list[ApplyOutcome]:
    """Create every child at once, as :func:`~artisan_operator.cluster.apply.apply_plan` does for a
    brand-new owner (``create_only``): a child that already exists (409) is ``exists``, untouched,
    and comes last. Every create runs to its end before the first error is raised."""

    async def create(child: EnsureChild) -> ApplyOutcome:
        desired = with_applied_hash(child.manifest)
        operations = child_operations(api.cluster, child.kind)
        try:
            await api.call(operations.create, desired["metadata"]["namespace"], desired)
        except ApiException as error:
            if error.status != 409:
                raise
            return ApplyOutcome(child.kind, child.name, "exists")
        return ApplyOutcome(child.kind, child.name, "created")

    results = await asyncio.gather(*(create(child) for child in children), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    outcomes = [result for result in results if isinstance(result, ApplyOutcome)]
    return sorted(outcomes, key=lambda outcome: outcome.action == "exists")


async def patch_status(
    api: AsyncApi, plural: str, namespace: str, name: str, patch: Mapping[str, Any]
) -> None:
    """:func:`~artisan_operator.cluster.status.patch_status`, on the loop."""
    method, args = status_write(api.cluster, plural, namespace, name, patch)
    await api.call(method, *args, content_type=MERGE_PATCH)


async def post_events(
    api: AsyncApi, involved: Mapping[str, Any], notes: Sequence[EventNote], now: datetime
) -> list[EventNote]:
    """:func:`~artisan_operator.cluster.events.post_events`, on the loop: the notes not posted."""

    async def post(note: EventNote) -> bool:
        manifest = event_manifest(involved, note, now)
        try:
            await api.call(
                api.cluster.core.create_namespaced_event, manifest["metadata"]["namespace"], manifest
            )
        except (ApiException, aiohttp.ClientError, TimeoutError) as error:
            logger.warning("Event %s not posted: %s", note.reason, error)
            return False
        return True

    posted = await asyncio.gather(*(post(note) for note in notes))
    return [note for note, ok in zip(notes, posted, strict=True) if not ok]
