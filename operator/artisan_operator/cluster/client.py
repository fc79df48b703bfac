"""The Kubernetes client of the reconcilers, and kopf's login from the same credentials.

Both come from :class:`~artisan_operator.settings.Settings`: ``kubeconfig`` set means that file,
unset means the in-cluster service account. Calls are blocking (kubernetes client v37); async code
runs them with :meth:`ClusterClient.run` on a dedicated thread pool sized like the HTTP pool.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from artisan_operator.settings import Settings

T = TypeVar("T")

MERGE_PATCH = "application/merge-patch+json"
TOKEN_CHECK_SECONDS = 10.0
"""How often the client's credentials are checked for renewal (see :func:`throttled`)."""

__all__ = [
    "MERGE_PATCH",
    "ApiException",
    "ClusterClient",
    "connection_info",
    "decode",
    "discard",
    "load_configuration",
    "unvalidated",
]


def load_configuration(settings: Settings) -> k8s.Configuration:
    """Client configuration from ``settings.kubeconfig`` or the in-cluster service account."""
    configuration = k8s.Configuration()
    if settings.kubeconfig is not None:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(settings.kubeconfig), client_configuration=configuration, persist_config=False
        )
    else:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    # One connection per pass, plus one per child a pass applies at once (ClusterClient.fan_out).
    configuration.connection_pool_maxsize = 2 * settings.api_threads
    hook = configuration.refresh_api_key_hook
    if hook is not None:
        configuration.refresh_api_key_hook = throttled(hook, TOKEN_CHECK_SECONDS)
    return configuration


def throttled(hook: Callable[[Any], None], period: float) -> Callable[[Any], None]:
    """``hook`` run at most once per ``period`` seconds.

    The loaders' token-refresh hook runs before every request and re-applies the whole kubeconfig
    (host, certificates) each time: ~9% of a reconcile pass's CPU. Tokens are renewed minutes before
    they expire (kubeconfig: 5 min early; service account: re-read every minute), so checking every
    few seconds loses nothing.
    """
    last = -float("inf")

    def run(configuration: Any) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= period:
            last = now
            hook(configuration)
            # The kubeconfig loader's hook re-installs itself each time it runs: keep ours in place.
            configuration.refresh_api_key_hook = run

    return run


def connection_info(configuration: k8s.Configuration) -> kopf.ConnectionInfo:
    """The same credentials in kopf's shape (kopf talks to the API with its own aiohttp client)."""
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    scheme, token = None, None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


class ClusterClient:
    """Typed API groups over one connection pool, and a thread pool to call them from async code."""

    def __init__(self, settings: Settings, configuration: k8s.Configuration | None = None) -> None:
        self.configuration = configuration or load_configuration(settings)
        self.api_client = k8s.ApiClient(self.configuration)
        self.api_client.user_agent = "artisan-operator"
        self.core = k8s.CoreV1Api(self.api_client)
        self.apps = k8s.AppsV1Api(self.api_client)
        self.batch = k8s.BatchV1Api(self.api_client)
        self.custom = k8s.CustomObjectsApi(self.api_client)
        self.request_timeout = settings.api_request_timeout_seconds
        self._executor = ThreadPoolExecutor(max_workers=settings.api_threads, thread_name_prefix="k8s-api")
        # A pass (on ``_executor``) hands its independent calls to a pool of their own: submitting
        # them to the pool the pass runs on could wait forever on a pool full of waiting passes.
        self._fan_out_executor = ThreadPoolExecutor(
            max_workers=settings.api_threads, thread_name_prefix="k8s-api-fan-out"
        )

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a blocking call on the API thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def read(self, call: Callable[..., Any], /, *args: Any) -> dict[str, Any] | None:
        """The object a read API method returns, exactly as the server sent it (``call`` is e.g.
        ``cluster.core.read_namespaced_config_map``; ``args`` its positional arguments); None when
        it does not exist (404). Any other API error is raised."""
        try:
            raw = unvalidated(call)(*args, _preload_content=False, _request_timeout=self.request_timeout)
            return decode(raw)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def fan_out(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Run independent blocking calls at once (from a pass) and return their results in order.

        Every call runs to its end before anything is raised (no call is left running behind the
        caller's back); then the first error, in the order of ``calls``, is raised.
        """
        if len(calls) <= 1:
            return [call() for call in calls]
        futures = [self._fan_out_executor.submit(call) for call in calls]
        wait(futures)
        return [future.result() for future in futures]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._fan_out_executor.shutdown(wait=False, cancel_futures=True)
        self.api_client.close()  # type: ignore[no-untyped-call]


def unvalidated(method: Callable[..., T]) -> Callable[..., T]:
    """An API method without the client's pydantic validation of its arguments.

    Given a plain dict body, the validation parses it into the client's model (a Job, a Deployment:
    hundreds of fields) only for the client to dump it back to a dict; that was most of the CPU of
    creating a child. Our bodies are manifests we built; the API server validates them as always.
    """
    raw = getattr(method, "raw_function", None)
    owner = getattr(method, "__self__", None)
    if raw is None or owner is None:
        return method
    return functools.partial(raw, owner)


def discard(response: Any) -> None:
    """Read a raw (``_preload_content=False``) response to its end, for a call whose answer is not
    needed: only a fully read response gives its connection back to the pool. One left unread keeps
    it until garbage collection closes it, and every such call costs a new TCP connection."""
    response.data  # noqa: B018 (read for its side effect)


def decode(response: Any) -> dict[str, Any]:
    """The JSON body of a raw (``_preload_content=False``) response, exactly as the server sent it."""
    data: dict[str, Any] = json.loads(response.data)
    return data
