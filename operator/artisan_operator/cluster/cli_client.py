"""The kubectl plugin's connection to a cluster: the only place the CLI talks to the Kubernetes API.

:meth:`CliClient.connect` reads a kubeconfig (``--kubeconfig``, else ``$KUBECONFIG``, else
``~/.kube/config``; ``--context`` picks a context) or, with none, the in-cluster service account.
Objects come back as plain dicts, exactly as the server sent them. Patches are JSON merge patches
on the main resource (never the status subresource: a user's action is an annotation or spec).
Service endpoints are reached through the API server's service proxy
(``/api/v1/namespaces/<ns>/services/<name>:<port>/proxy/<path>``) or, with ``--url``, directly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.cluster.client import MERGE_PATCH

Obj = dict[str, Any]
REQUEST_TIMEOUT_SECONDS = 15.0

# Child kinds the plugin shows under a custom resource: kind -> (API group class, list method).
CHILD_LISTS: dict[str, tuple[str, str]] = {
    "Job": ("batch", "list_namespaced_job"),
    "PersistentVolumeClaim": ("core", "list_namespaced_persistent_volume_claim"),
    "ConfigMap": ("core", "list_namespaced_config_map"),
    "Service": ("core", "list_namespaced_service"),
    "Deployment": ("apps", "list_namespaced_deployment"),
    "Pod": ("core", "list_namespaced_pod"),
}


class ClusterError(Exception):
    """An API call failed; the message says what and why (shown to the user as it is)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFoundError(ClusterError):
    pass


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)


class Endpoint(Protocol):
    """Somewhere HTTP requests can be sent: a Service through the API server, or a URL."""

    description: str

    def request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, body: Any = None
    ) -> HttpReply: ...


def _describe(error: ApiException, what: str) -> ClusterError:
    detail = error.reason or ""
    try:
        payload = json.loads(error.body or "")
        detail = payload.get("message") or detail
    except (ValueError, AttributeError):
        pass
    cls = NotFoundError if error.status == 404 else ClusterError
    return cls(f"{what}: HTTP {error.status} {detail}".rstrip(), error.status)


def _decode(response: Any) -> Obj:
    data: Obj = json.loads(response.data)
    return data


class CliClient:
    """Typed calls the plugin needs, over one ``ApiClient``."""

    def __init__(self, api_client: k8s.ApiClient, default_namespace: str = "default") -> None:
        self.api_client = api_client
        self.default_namespace = default_namespace
        self.core = k8s.CoreV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)
        self.batch = k8s.BatchV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)

    @classmethod
    def connect(
        cls, kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None
    ) -> CliClient:
        """A client from a kubeconfig (or the in-cluster account); ClusterError when none works."""
        configuration = k8s.Configuration()
        namespace = "default"
        explicit = kubeconfig is not None or context is not None or os.environ.get("KUBECONFIG")
        in_cluster = not explicit and not Path("~/.kube/config").expanduser().exists()
        try:
            if in_cluster and os.environ.get("KUBERNETES_SERVICE_HOST"):
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                ns_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                if ns_file.exists():
                    namespace = ns_file.read_text().strip() or namespace
            else:
                config_file = str(kubeconfig) if kubeconfig is not None else None
                k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=config_file,
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,
                )
                _, active = k8s_config.list_kube_config_contexts(config_file=config_file)  # type: ignore[no-untyped-call]
                if context is not None:
                    contexts, _ = k8s_config.list_kube_config_contexts(config_file=config_file)  # type: ignore[no-untyped-call]
                    active = next((c for c in contexts if c.get("name") == context), active)
                namespace = ((active or {}).get("context") or {}).get("namespace") or namespace
        except (ConfigException, OSError, TypeError, ValueError) as error:
            raise ClusterError(f"cannot load the cluster configuration: {error}") from error
        configuration.retries = 1
        api_client = k8s.ApiClient(configuration)
        api_client.user_agent = "kubectl-artisan"
        return cls(api_client, namespace)

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS, **kwargs)
        except ApiException as error:
            raise _describe(error, what) from error
        except urllib3.exceptions.HTTPError as error:
            host = self.api_client.configuration.host
            raise ClusterError(f"{what}: cannot reach the API server at {host}: {error}") from error

    # Custom resources of group artisan.dev.

    def list_custom(self, plural: str, namespace: str | None) -> list[Obj]:
        """Objects of one kind in ``namespace``, or in every namespace when it is None."""
        if namespace is None:
            raw = self._call(f"list {plural}", self.custom.list_cluster_custom_object, GROUP, VERSION, plural)
        else:
            raw = self._call(
                f"list {plural} in {namespace}",
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
            )
        items: list[Obj] = _decode(raw).get("items") or []
        return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def get_custom(self, plural: str, namespace: str, name: str) -> Obj:
        raw = self._call(
            f"get {plural}/{name} in {namespace}",
            self.custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
        )
        return _decode(raw)

    def patch_custom(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> Obj:
        """A JSON merge patch on the object itself (metadata and spec; status is the operator's)."""
        raw = self._call(
            f"patch {plural}/{name} in {namespace}",
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            dict(patch),
            _content_type=MERGE_PATCH,
        )
        return _decode(raw)

    # Built-in objects.

    def list_children(self, kind: str, namespace: str, label_selector: str) -> list[Obj]:
        group, method = CHILD_LISTS[kind]
        fn = getattr(getattr(self, group), method)
        raw = self._call(f"list {kind} in {namespace}", fn, namespace, label_selector=label_selector)
        items: list[Obj] = _decode(raw).get("items") or []
        for item in items:
            item.setdefault("kind", kind)
        return sorted(items, key=lambda o: str(o["metadata"]["name"]))

    def read_config_map(self, namespace: str, name: str) -> Obj | None:
        try:
            raw = self._call(
                f"get ConfigMap {name} in {namespace}", self.core.read_namespaced_config_map, name, namespace
            )
        except NotFoundError:
            return None
        return _decode(raw)

    def proxy_endpoint(self, kind: str, namespace: str, name: str, port: str) -> ProxyEndpoint:
        """A Service (``kind="service"``, one pod behind it) or one Pod (``kind="pod"``) by proxy."""
        return ProxyEndpoint(self, kind, namespace, name, port)


class ProxyEndpoint:
    """A Service or Pod reached through the API server's proxy (``services/proxy``, ``pods/proxy``).

    The API server consumes the ``Authorization`` header for its own authentication and does not
    forward it: bearer tokens meant for the target are not delivered this way.
    """

    def __init__(self, client: CliClient, kind: str, namespace: str, name: str, port: str) -> None:
        if kind not in ("service", "pod"):
            raise ValueError(f"proxy to a service or a pod, not {kind}")
        self._client = client
        self._kind = kind
        self._namespace = namespace
        self._name = f"{name}:{port}"
        self.description = f"{kind} {namespace}/{name}:{port} (API server proxy)"

    def request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, body: Any = None
    ) -> HttpReply:
        if method not in ("GET", "POST", "DELETE"):
            raise ValueError(f"unsupported method {method}")
        function = getattr(
            self._client.core, f"connect_{method.lower()}_namespaced_{self._kind}_proxy_with_path"
        )
        try:
            response: Any = function(
                self._name,
                self._namespace,
                path.lstrip("/"),
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
                _headers=dict(headers or {}),
            )
        except ApiException as error:
            return HttpReply(int(error.status or 0), str(error.body or error.reason or ""))
        except urllib3.exceptions.HTTPError as error:
            raise ClusterError(f"{self.description}: {error}") from error
        return HttpReply(int(response.status), response.data.decode("utf-8", "replace"))


class DirectEndpoint:
    """A URL reached directly (``kubectl port-forward``, a local process, a test server)."""

    def __init__(self, base_url: str, timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self.description = self._base

    def request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, body: Any = None
    ) -> HttpReply:
        try:
            response = httpx.request(
                method,
                f"{self._base}/{path.lstrip('/')}",
                headers=dict(headers or {}),
                json=body,
                timeout=self._timeout,
            )
        except httpx.HTTPError as error:
            raise ClusterError(f"{self.description}: {error}") from error
        return HttpReply(response.status_code, response.text, dict(response.headers))
