"""A LOCAL runtime for the sandbox: the pods of Deployments and Jobs run as local processes.

What kubelet, the Deployment/Job controllers, kube-proxy and the cluster DNS would do, on one machine
with no containers (the images' commands are the console scripts installed in this virtualenv):

- **network**: each pod gets its own loopback address (``127.<n>.x.y``, one /16 per runtime) as
  ``status.podIP``, and its process is told to bind it (``ARTISAN_ENSEMBLE_HOST``,
  ``ARTISAN_TRAINER_METRICS_HOST``: the images' own bind settings), so every pod listens on its
  container ports exactly as declared and the
  operator's production path (``http://<podIP>:<containerPort>/metrics``) works unchanged;
- **Services**: a small HTTP forward proxy resolves ``<service>.<namespace>.svc[.cluster.local]`` to a
  ready endpoint pod; processes get it as ``HTTP_PROXY`` (loopback addresses bypass it);
- **volumes**: each pod has a root directory; ``configMap`` volumes are projected as files (and kept
  up to date, like the kubelet does), ``emptyDir`` is a fresh directory, a ``persistentVolumeClaim``
  is a directory per claim (or one the caller provides, e.g. the tiny models). Absolute paths in the
  container's args and env that fall under a mount are rewritten into the pod's root;
- **Deployments**: ``spec.replicas`` pods per pod-template hash, surged (new pods first, old ones
  removed once the new ones are ready); a crashed process is restarted (``restartCount``);
- **Jobs**: one pod per unsuspended Job (``restartPolicy: Never``); its exit code ends the Job
  (``Complete`` or ``Failed``);
- **readiness**: the container's ``readinessProbe.httpGet`` is polled; no probe: ready once started;
- **garbage collection**: pods whose owner is gone are stopped and deleted (the emulator has no GC);
- **termination messages**: the container's ``terminationMessagePath`` is a file in the pod's
  directory (env values naming the path are rewritten to it); when the process ends, its content
  (at most 4096 bytes, like the kubelet; the log tail under ``FallbackToLogsOnError`` when it is
  empty and the exit code is not 0) becomes ``state.terminated.message``;
- **injections**: extra environment for pods matching a label selector (what a mutating admission
  policy would add: the admin token of the fault drills).

Every process runs in its own process group and is stopped (SIGTERM, then SIGKILL) when its pod
goes or the runtime stops; an ``atexit`` hook covers an interpreter that exits without ``stop``.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import http.client
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import kubernetes.client

from artisan_operator.sandbox.store import now_rfc3339

Obj = dict[str, Any]
logger = logging.getLogger(__name__)

LOCAL_ANNOTATION = "artisan.dev/local-runtime"
TEMPLATE_HASH_LABEL = "pod-template-hash"
BIND_HOST_VARIABLES = ("ARTISAN_ENSEMBLE_HOST", "ARTISAN_TRAINER_METRICS_HOST")
"""The images' own bind-address settings: how a pod's process is put on its pod IP."""
PASSED_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")
"""Host variables a process inherits (a container would get its image's; everything else is the spec's)."""
SERVICE_SUFFIXES = (".svc.cluster.local", ".svc")
STOP_GRACE_SECONDS = 5.0
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
TERMINATION_MESSAGE_BYTES = 4096
"""The kubelet's limit for one container's termination message."""
FALLBACK_LOG_BYTES, FALLBACK_LOG_LINES = 2048, 80
"""What the kubelet takes from the log under FallbackToLogsOnError (whichever is smaller)."""
RESTART_BACKOFF_SECONDS = 1.0


# ------------------------------------------------------------------------------------------ pure


def template_hash(template: Mapping[str, Any]) -> str:
    """Short stable hash of a pod template (the Deployment controller's pod-template-hash)."""
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def pod_address(index: int, network: int = 77) -> str:
    """The loopback address of the ``index``-th pod in ``127.<network>.0.0/16`` (….0.2, ….0.3, ...)."""
    if not 0 <= index < 65_000:
        raise ValueError(f"pod index {index} out of range")
    if not 1 <= network <= 254:
        raise ValueError(f"network {network} out of range")
    number = index + 2
    return f"127.{network}.{number // 256}.{number % 256}"


def matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def translate_path(value: str, root: Path, mount_paths: Iterable[str]) -> str:
    """``value`` rewritten into the pod root when it is an absolute path under (or above) a mount.

    ``/etc/artisan/trainer.yaml`` with a mount at ``/etc/artisan`` → ``<root>/etc/artisan/trainer.yaml``;
    ``/models`` with a mount at ``/models/claim`` → ``<root>/models``; anything else is unchanged.
    """
    if not value.startswith("/"):
        return value
    bare = value.rstrip("/") or "/"
    for declared in mount_paths:
        mount = declared.rstrip("/")
        if bare == mount or bare.startswith(mount + "/") or mount.startswith(bare + "/"):
            return str(root) + bare
    return value


def service_host(host: str) -> tuple[str, str] | None:
    """``name.namespace.svc[.cluster.local]`` → (namespace, name); None for any other host."""
    for suffix in SERVICE_SUFFIXES:
        if host.endswith(suffix):
            parts = host.removesuffix(suffix).split(".")
            if len(parts) == 2 and all(parts):
                return parts[1], parts[0]
    return None


def container_port(container: Mapping[str, Any], port: int | str) -> int | None:
    """A port given by number or by the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    return None


def termination_message(file: Path, log: Path, policy: str, exit_code: int) -> str | None:
    """What the kubelet puts in ``state.terminated.message`` for a container that ended."""
    text = ""
    with contextlib.suppress(OSError), file.open("rb") as handle:
        text = handle.read(TERMINATION_MESSAGE_BYTES).decode("utf-8", errors="replace")
    if not text and policy == "FallbackToLogsOnError" and exit_code != 0:
        with contextlib.suppress(OSError):
            with log.open("rb") as handle:
                handle.seek(max(0, log.stat().st_size - FALLBACK_LOG_BYTES))
                tail = handle.read().decode("utf-8", errors="replace")
            text = "\n".join(tail.splitlines()[-FALLBACK_LOG_LINES:])
    return text or None


def job_outcome_status(previous: Mapping[str, Any], exit_code: int | None, now: str) -> Obj:
    """The Job controller's status for a pod still running (None) or ended with ``exit_code``."""
    start = previous.get("startTime", now)
    if exit_code is None:
        return {"active": 1, "ready": 1, "startTime": start, "uncountedTerminatedPods": {}}
    kind, reason = ("Complete", "Completed") if exit_code == 0 else ("Failed", "BackoffLimitExceeded")
    status: Obj = {
        "active": 0,
        "ready": 0,
        "startTime": start,
        "succeeded" if exit_code == 0 else "failed": 1,
        "conditions": [
            {
                "type": kind,
                "status": "True",
                "reason": reason,
                "message": f"the pod's process exited with code {exit_code}",
                "lastTransitionTime": now,
            }
        ],
        "uncountedTerminatedPods": {},
    }
    if exit_code == 0:
        status["completionTime"] = now
    return status


@dataclass(frozen=True)
class EnvInjection:
    """Extra environment for the containers of pods whose labels match ``selector``."""

    selector: Mapping[str, str]
    env: Mapping[str, str]


@dataclass(frozen=True)
class PodEndpoint:
    """Where a local pod listens: for the demo, the Prometheus targets and direct calls."""

    namespace: str
    name: str
    ip: str
    ports: Mapping[str, int]
    labels: Mapping[str, str]
    ready: bool


# ------------------------------------------------------------------------------------- processes


@dataclass
class LocalPod:
    namespace: str
    name: str
    ip: str
    root: Path
    restart_always: bool
    owner_uid: str
    labels: dict[str, str]
    ports: dict[str, int]
    container: str = "main"
    image: str = ""
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    readiness: tuple[str, int] | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    exit_code: int | None = None
    restarts: int = 0
    ready: bool = False
    last_probe: float = 0.0
    next_restart: float = 0.0
    configmap_volumes: dict[str, str] = field(default_factory=dict)
    """volume directory → ConfigMap name (projected afresh on every pass)."""
    termination_policy: str = "File"
    """The container's terminationMessagePolicy."""

    @property
    def log_path(self) -> Path:
        return self.root / "container.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def termination_path(self) -> Path:
        """The container's terminationMessagePath, as a file of the pod."""
        return self.root / "termination-log"


def _stop_process(process: subprocess.Popen[bytes], grace: float = STOP_GRACE_SECONDS) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(grace)


_LIVE_RUNTIMES: weakref.WeakSet[LocalRuntime] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for runtime in list(_LIVE_RUNTIMES):
        runtime.stop_processes()


# ----------------------------------------------------------------------------------------- proxy


class ServiceProxy:
    """An HTTP forward proxy resolving ``<svc>.<ns>.svc`` hosts to a ready endpoint (kube-proxy + DNS)."""

    def __init__(self, runtime: LocalRuntime) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy.forward(self)

            def do_POST(self) -> None:
                proxy.forward(self)

            def do_DELETE(self) -> None:
                proxy.forward(self)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.runtime = runtime
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox-proxy", daemon=True)
        self._turn = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        target = urlsplit(handler.path)
        resolved = self.runtime.resolve_service(target.hostname or "", target.port or 80, self._turn)
        self._turn += 1
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        if resolved is None:
            message = f"no ready endpoint for {target.hostname}:{target.port}".encode()
            handler.send_response(503)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", str(len(message)))
            handler.end_headers()
            handler.wfile.write(message)
            return
        ip, port = resolved
        path = target.path + (f"?{target.query}" if target.query else "")
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("proxy-connection", "host")}
        connection = http.client.HTTPConnection(ip, port, timeout=120)
        try:
            connection.request(handler.command, path or "/", body=body, headers=headers)
            upstream = connection.getresponse()
            content = upstream.read()
        except OSError as error:
            message = f"endpoint {ip}:{port} failed: {error}".encode()
            handler.send_response(502)
            handler.send_header("Content-Length", str(len(message)))
            handler.end_headers()
            handler.wfile.write(message)
            return
        finally:
            connection.close()
        handler.send_response(upstream.status)
        for key, value in upstream.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(content)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# --------------------------------------------------------------------------------------- runtime


class LocalRuntime:
    """Runs the pods of Deployments and Jobs as local processes; :meth:`step` is one pass."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        workdir: Path,
        *,
        claim_dirs: Mapping[str, Path] | None = None,
        injections: Sequence[EnvInjection] = (),
        executables_dir: Path | None = None,
        interval: float = 0.3,
        probe_interval: float = 1.0,
        network: int | None = None,
    ) -> None:
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._apps = kubernetes.client.AppsV1Api(api_client)
        self._batch = kubernetes.client.BatchV1Api(api_client)
        self.workdir = workdir
        self.claim_dirs = dict(claim_dirs or {})
        """``namespace/claim`` → directory backing that PersistentVolumeClaim."""
        self.injections = list(injections)
        self.executables_dir = executables_dir or Path(sys.executable).parent
        self.interval = interval
        self.probe_interval = probe_interval
        # A /16 of the loopback range per runtime, so two sandboxes on one machine never collide.
        self.network = network if network is not None else random.randrange(64, 250)
        self.pods: dict[tuple[str, str], LocalPod] = {}
        self._services: list[Obj] = []
        self._addresses = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="artisan-local-runtime", daemon=True)
        self.proxy = ServiceProxy(self)
        self.errors: list[str] = []
        _LIVE_RUNTIMES.add(self)

    # ---- what the demo reads

    def endpoints(self) -> list[PodEndpoint]:
        with self._lock:
            return [
                PodEndpoint(p.namespace, p.name, p.ip, dict(p.ports), dict(p.labels), p.ready and p.running)
                for p in self.pods.values()
            ]

    def pod(self, namespace: str, name: str) -> LocalPod | None:
        with self._lock:
            return self.pods.get((namespace, name))

    def resolve_service(self, host: str, port: int, turn: int = 0) -> tuple[str, int] | None:
        """A ready endpoint (pod IP, target port) of the Service named by ``host``."""
        named = service_host(host)
        if named is None:
            return None
        namespace, name = named
        service = next(
            (
                s
                for s in self._services
                if s["metadata"]["name"] == name and s["metadata"].get("namespace") == namespace
            ),
            None,
        )
        if service is None:
            return None
        spec = service.get("spec") or {}
        declared = next((p for p in spec.get("ports") or [] if int(p.get("port", 0)) == port), None)
        if declared is None:
            return None
        with self._lock:
            ready = sorted(
                (p for p in self.pods.values() if p.namespace == namespace and p.ready and p.running),
                key=lambda p: p.name,
            )
            ready = [p for p in ready if matches(p.labels, spec.get("selector") or {})]
            if not ready:
                return None
            chosen = ready[turn % len(ready)]
        target = declared.get("targetPort", port)
        if isinstance(target, str) and not target.isdigit():
            resolved = chosen.ports.get(target)
            if resolved is None:
                return None
            return chosen.ip, resolved
        return chosen.ip, int(target)

    # ---- one pass

    def step(self) -> None:
        now = now_rfc3339()
        deployments = self._items(self._apps.list_deployment_for_all_namespaces)
        jobs = self._items(self._batch.list_job_for_all_namespaces)
        pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in self._pods()}
        configmaps = {
            (c["metadata"]["namespace"], c["metadata"]["name"]): c
            for c in self._items(self._core.list_config_map_for_all_namespaces)
        }
        self._services = self._items(self._core.list_service_for_all_namespaces)
        wanted: dict[tuple[str, str], Obj] = {}
        for deployment in deployments:
            wanted.update(self._deployment_pods(deployment, pods))
        for job in jobs:
            pod = self._job_pod(job)
            if pod is not None:
                wanted[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = pod
        for key, manifest in wanted.items():
            if key not in pods:
                self._create_pod(manifest)
        for key, pod in list(pods.items()):
            if key not in wanted and LOCAL_ANNOTATION in ((pod["metadata"].get("annotations")) or {}):
                self._delete_pod(key)
        with self._lock:
            orphans = [key for key in self.pods if key not in wanted]
        for key in orphans:  # the pod object is gone already (deleted with its owner): stop the process
            self._delete_pod(key)
        for key, manifest in wanted.items():
            self._run_pod(key, manifest, configmaps, now)
        for deployment in deployments:
            self._write_deployment_status(deployment)
        for job in jobs:
            self._write_job_status(job, now)
        self._bind_claims()

    def _deployment_pods(
        self, deployment: Obj, pods: Mapping[tuple[str, str], Obj]
    ) -> dict[tuple[str, str], Obj]:
        """The pods this Deployment should have now: the current template's, plus old ones while the
        new ones are not all ready (a surge; maxUnavailable 0)."""
        meta, spec = deployment["metadata"], deployment.get("spec") or {}
        namespace, name = meta["namespace"], meta["name"]
        template = spec.get("template") or {}
        current = template_hash(template)
        replicas = int(spec.get("replicas", 1))
        result: dict[tuple[str, str], Obj] = {}
        for index in range(replicas):
            pod_name = f"{name}-{current}-{index}"
            result[(namespace, pod_name)] = self._pod_manifest(
                namespace=namespace,
                name=pod_name,
                template=template,
                owner=deployment,
                api_version="apps/v1",
                kind="Deployment",
                extra_labels={TEMPLATE_HASH_LABEL: current},
            )
        new_ready = all(self._ready(key) for key in result)
        if replicas > 0 and not new_ready:
            for key, pod in pods.items():
                owners = pod["metadata"].get("ownerReferences") or []
                old = (pod["metadata"].get("labels") or {}).get(TEMPLATE_HASH_LABEL) != current
                mine = key[0] == namespace and any(o.get("uid") == meta["uid"] for o in owners)
                if mine and old and self._ready(key):
                    result[key] = pod  # keep serving until the new pods are ready
        return result

    def _ready(self, key: tuple[str, str]) -> bool:
        with self._lock:
            pod = self.pods.get(key)
            return pod is not None and pod.ready and pod.running

    def _job_pod(self, job: Obj) -> Obj | None:
        meta, spec = job["metadata"], job.get("spec") or {}
        if spec.get("suspend"):
            return None
        labels = {"batch.kubernetes.io/job-name": meta["name"], "job-name": meta["name"]}
        return self._pod_manifest(
            namespace=meta["namespace"],
            name=f"{meta['name']}-pod",
            template=spec.get("template") or {},
            owner=job,
            api_version="batch/v1",
            kind="Job",
            extra_labels=labels,
        )

    @staticmethod
    def _pod_manifest(
        *,
        namespace: str,
        name: str,
        template: Mapping[str, Any],
        owner: Mapping[str, Any],
        api_version: str,
        kind: str,
        extra_labels: Mapping[str, str],
    ) -> Obj:
        template_meta = template.get("metadata") or {}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {**(template_meta.get("labels") or {}), **extra_labels},
                "annotations": {**(template_meta.get("annotations") or {}), LOCAL_ANNOTATION: "true"},
                "ownerReferences": [
                    {
                        "apiVersion": api_version,
                        "kind": kind,
                        "name": owner["metadata"]["name"],
                        "uid": owner["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template.get("spec") or {"containers": []},
        }

    def _create_pod(self, manifest: Obj) -> None:
        body: Any = manifest
        try:
            self._core.create_namespaced_pod(manifest["metadata"]["namespace"], body, _preload_content=False)
        except kubernetes.client.ApiException as error:
            if error.status != 409:
                raise

    def _delete_pod(self, key: tuple[str, str]) -> None:
        with self._lock:
            local = self.pods.pop(key, None)
        if local is not None and local.process is not None:
            _stop_process(local.process)
        with contextlib.suppress(kubernetes.client.ApiException):
            self._core.delete_namespaced_pod(key[1], key[0], _preload_content=False)

    # ---- processes

    def _run_pod(
        self, key: tuple[str, str], manifest: Obj, configmaps: Mapping[tuple[str, str], Obj], now: str
    ) -> None:
        with self._lock:
            local = self.pods.get(key)
        if local is None:
            local = self._prepare(key, manifest)
            if local is None:
                return
            with self._lock:
                self.pods[key] = local
        missing = self._project_configmaps(local, configmaps)
        if local.process is None and not missing:
            self._start(local, now)
        elif local.process is not None and local.process.poll() is not None:
            if local.exit_code is None:
                local.exit_code = local.process.returncode
                local.ready = False
                local.next_restart = time.monotonic() + RESTART_BACKOFF_SECONDS
            if local.restart_always and time.monotonic() >= local.next_restart:
                local.restarts += 1
                local.exit_code = None
                self._start(local, now)
        self._probe(local)
        self._write_pod_status(local, missing, now)

    def _prepare(self, key: tuple[str, str], manifest: Obj) -> LocalPod | None:
        spec = manifest.get("spec") or {}
        containers = spec.get("containers") or []
        if len(containers) != 1:
            self._error(
                f"pod {key[1]}: the local runtime runs exactly one container ({len(containers)} given)"
            )
            return None
        container = containers[0]
        with self._lock:
            ip = pod_address(self._addresses, self.network)
            self._addresses += 1
        root = self.workdir / "pods" / f"{key[0]}_{key[1]}"
        if root.exists():
            shutil.rmtree(root)
        rootfs = root / "rootfs"
        rootfs.mkdir(parents=True)
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        configmap_volumes: dict[str, str] = {}
        mounts: list[str] = []
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                self._error(f"pod {key[1]}: volumeMount {mount['name']} names no volume")
                return None
            source = self._volume_dir(key[0], root, volume)
            if "configMap" in volume:
                configmap_volumes[str(source)] = volume["configMap"]["name"]
            target = rootfs / mount["mountPath"].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source, target_is_directory=True)
            mounts.append(mount["mountPath"])
        env: dict[str, str] = {}
        termination_path = str(container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH)
        for variable in container.get("env") or []:
            if "value" in variable and str(variable["value"]) == termination_path:
                # The kubelet mounts that file into the container; here it lives in the pod's directory.
                env[variable["name"]] = str(root / "termination-log")
            elif "value" in variable:
                env[variable["name"]] = translate_path(str(variable["value"]), rootfs, mounts)
            else:
                self._error(f"pod {key[1]}: env {variable['name']} uses valueFrom, which is not supported")
        labels = dict((manifest["metadata"].get("labels")) or {})
        for injection in self.injections:
            if matches(labels, injection.selector):
                env.update(injection.env)
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        if not command:
            self._error(f"pod {key[1]}: no command (the local runtime does not read images)")
            return None
        executable = self.executables_dir / command[0]
        command = [
            str(executable) if executable.exists() else command[0],
            *(translate_path(str(a), rootfs, mounts) for a in command[1:]),
        ]
        ports = {
            str(p.get("name") or p["containerPort"]): int(p["containerPort"])
            for p in container.get("ports") or []
        }
        probe = (container.get("readinessProbe") or {}).get("httpGet")
        readiness = None
        if probe is not None:
            port = container_port(container, probe.get("port", 80))
            readiness = (str(probe.get("path", "/")), port) if port is not None else None
        return LocalPod(
            namespace=key[0],
            name=key[1],
            ip=ip,
            root=root,
            restart_always=(spec.get("restartPolicy") or "Always") == "Always",
            owner_uid=str(((manifest["metadata"].get("ownerReferences") or [{}])[0]).get("uid", "")),
            labels=labels,
            ports=ports,
            container=str(container.get("name", "main")),
            image=str(container.get("image", "")),
            command=command,
            env=env,
            readiness=readiness,
            configmap_volumes=configmap_volumes,
            termination_policy=str(container.get("terminationMessagePolicy") or "File"),
        )

    def _volume_dir(self, namespace: str, root: Path, volume: Mapping[str, Any]) -> Path:
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            directory = (
                self.claim_dirs.get(f"{namespace}/{claim}") or self.workdir / "pvc" / namespace / claim
            )
        else:  # configMap, emptyDir (and anything else) get a fresh directory of the pod
            directory = root / "volumes" / volume["name"]
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def _project_configmaps(self, local: LocalPod, configmaps: Mapping[tuple[str, str], Obj]) -> list[str]:
        """Write each ConfigMap volume's keys as files (atomically, only what changed); names missing ones."""
        missing: list[str] = []
        for directory, name in local.configmap_volumes.items():
            Path(directory).mkdir(parents=True, exist_ok=True)
            configmap = configmaps.get((local.namespace, name))
            if configmap is None:
                missing.append(name)
                continue
            data = configmap.get("data") or {}
            for key, value in data.items():
                path = Path(directory) / key
                if not path.exists() or path.read_text(encoding="utf-8") != value:
                    temp = path.with_name(f".{key}.tmp")
                    temp.write_text(value, encoding="utf-8")
                    os.replace(temp, path)
            for stale in Path(directory).iterdir():
                if not stale.name.startswith(".") and stale.name not in data:
                    stale.unlink()
        return missing

    def _start(self, local: LocalPod, now: str) -> None:
        env = {k: os.environ[k] for k in PASSED_ENVIRONMENT if k in os.environ}
        env.update({variable: local.ip for variable in BIND_HOST_VARIABLES})
        env.update(
            {
                "HTTP_PROXY": self.proxy.url,
                "http_proxy": self.proxy.url,
                "NO_PROXY": "localhost,127.0.0.1",
                "no_proxy": "localhost,127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(local.env)
        local.termination_path.unlink(missing_ok=True)  # each run of the container reports afresh
        with local.log_path.open("ab") as log:
            local.process = subprocess.Popen(
                local.command,
                cwd=local.root / "rootfs",
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        local.started_at = local.started_at or now
        local.ready = False
        local.last_probe = 0.0

    def _probe(self, local: LocalPod) -> None:
        if not local.running:
            local.ready = False
            return
        if local.readiness is None:
            local.ready = True
            return
        if time.monotonic() - local.last_probe < self.probe_interval:
            return
        local.last_probe = time.monotonic()
        path, port = local.readiness
        try:
            with urllib.request.urlopen(f"http://{local.ip}:{port}{path}", timeout=2) as response:
                local.ready = 200 <= response.status < 400
        except (urllib.error.URLError, OSError, ValueError):
            local.ready = False

    # ---- statuses

    def _write_pod_status(self, local: LocalPod, missing: Sequence[str], now: str) -> None:
        if missing:
            status: Obj = {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now}],
                "containerStatuses": [
                    {
                        "name": local.container,
                        "image": local.image,
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {
                            "waiting": {
                                "reason": "ContainerCreating",
                                "message": f"configmap {', '.join(missing)} not found",
                            }
                        },
                    }
                ],
            }
        else:
            ended = local.exit_code is not None and not local.restart_always
            if ended:
                phase = "Succeeded" if local.exit_code == 0 else "Failed"
                terminated: Obj = {"exitCode": local.exit_code, "finishedAt": now}
                message = termination_message(
                    local.termination_path, local.log_path, local.termination_policy, local.exit_code or 0
                )
                if message is not None:
                    terminated["message"] = message
                state: Obj = {"terminated": terminated}
            elif local.running:
                phase, state = "Running", {"running": {"startedAt": local.started_at}}
            else:
                phase, state = "Running", {"waiting": {"reason": "CrashLoopBackOff"}}
            status = {
                "phase": phase,
                "podIP": local.ip,
                "podIPs": [{"ip": local.ip}],
                "hostIP": "127.0.0.1",
                "startTime": local.started_at,
                "conditions": [
                    {"type": "Ready", "status": "True" if local.ready else "False", "lastTransitionTime": now}
                ],
                "containerStatuses": [
                    {
                        "name": local.container,
                        "image": local.image,
                        "imageID": "",
                        "ready": local.ready,
                        "started": local.running,
                        "restartCount": local.restarts,
                        "state": state,
                    }
                ],
            }
        try:
            raw: Any = self._core.read_namespaced_pod(local.name, local.namespace, _preload_content=False)
            current = json.loads(raw.data)
        except kubernetes.client.ApiException:
            return
        old = current.get("status") or {}
        if _summary(old) != _summary(status):
            self._core.patch_namespaced_pod_status(
                local.name, local.namespace, {"status": status}, _preload_content=False
            )

    def _write_deployment_status(self, deployment: Obj) -> None:
        meta, spec = deployment["metadata"], deployment.get("spec") or {}
        current = template_hash(spec.get("template") or {})
        replicas = int(spec.get("replicas", 1))
        with self._lock:
            owned = [p for p in self.pods.values() if p.owner_uid == meta["uid"]]
            updated = [p for p in owned if p.labels.get(TEMPLATE_HASH_LABEL) == current]
            ready_updated = sum(1 for p in updated if p.ready and p.running)
            ready = sum(1 for p in owned if p.ready and p.running)
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(owned),
            "updatedReplicas": len(updated),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if ready_updated >= replicas else "False",
                    "reason": "MinimumReplicasAvailable"
                    if ready_updated >= replicas
                    else "MinimumReplicasUnavailable",
                }
            ],
        }
        if _summary(deployment.get("status") or {}) != _summary(status):
            self._apps.patch_namespaced_deployment_status(meta["name"], meta["namespace"], {"status": status})

    def _write_job_status(self, job: Obj, now: str) -> None:
        meta = job["metadata"]
        if (job.get("spec") or {}).get("suspend"):
            return
        local = self.pod(meta["namespace"], f"{meta['name']}-pod")
        if local is None:
            return
        previous = job.get("status") or {}
        if previous.get("succeeded") or previous.get("failed"):
            return  # a finished Job stays finished
        exit_code = local.exit_code if not local.running and local.process is not None else None
        status = job_outcome_status(previous, exit_code, now)
        if _summary(previous) != _summary(status):
            self._batch.patch_namespaced_job_status(meta["name"], meta["namespace"], {"status": status})

    def _bind_claims(self) -> None:
        for claim in self._items(self._core.list_persistent_volume_claim_for_all_namespaces):
            if (claim.get("status") or {}).get("phase") == "Bound":
                continue
            spec = claim.get("spec") or {}
            storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
            meta = claim["metadata"]
            directory = self.claim_dirs.get(f"{meta['namespace']}/{meta['name']}")
            (directory or self.workdir / "pvc" / meta["namespace"] / meta["name"]).mkdir(
                parents=True, exist_ok=True
            )
            status = {
                "phase": "Bound",
                "accessModes": spec.get("accessModes", ["ReadWriteOnce"]),
                "capacity": {"storage": storage},
            }
            self._core.patch_namespaced_persistent_volume_claim_status(
                meta["name"], meta["namespace"], {"status": status}
            )

    # ---- plumbing

    def _error(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)
            logger.error(message)

    def _pods(self) -> list[Obj]:
        return self._items(self._core.list_pod_for_all_namespaces)

    @staticmethod
    def _items(list_function: Any) -> list[Obj]:
        return json.loads(list_function(_preload_content=False).data).get("items", [])  # type: ignore[no-any-return]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # the API may be busy; the next pass retries
                logger.exception("local runtime pass failed")
            self._stop.wait(self.interval)

    def stop_processes(self) -> None:
        with self._lock:
            pods = list(self.pods.values())
        for pod in pods:
            if pod.process is not None:
                _stop_process(pod.process)

    def start(self) -> LocalRuntime:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proxy.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(30)
        self.stop_processes()
        self.proxy.stop()

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _summary(status: Mapping[str, Any]) -> str:
    """A status without its timestamps, to tell whether anything changed."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: strip(v)
                for k, v in value.items()
                if k not in ("lastTransitionTime", "startedAt", "finishedAt", "startTime")
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps(strip(status), sort_keys=True)
