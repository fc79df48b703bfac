"""A SIMULATED cluster runtime for the sandbox: what kubelet and the built-in controllers would do.

Nothing runs here: no container is started, no image is pulled. The loop only writes the
statuses a healthy cluster would report, so the operator (which reads them) and the demo show
realistic states:

- Deployments become fully ready (``readyReplicas == availableReplicas == spec.replicas``);
- each unsuspended Job gets one Pod (owned by the Job, labelled like the Job controller's pods)
  that is Running and Ready, and the Job reports ``active: 1, ready: 1``; a suspended Job
  reports the ``Suspended`` condition and no pod;
- PersistentVolumeClaims are Bound with the requested capacity;
- a pod annotated ``artisan.dev/simulated-termination: {"exitCode": N, "message": "..."}`` (a test
  ends the "process") terminates: phase Succeeded/Failed, ``state.terminated`` with that exit code
  and termination message, and its Job Complete or Failed, as the Job controller would report.

Running the real trainer and ensemble processes locally is a later step; this is not it.
The decisions are pure functions (``simulated_*``); :class:`SimulatedRuntime` is the thin
adapter that lists objects over the API and patches what differs.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import kubernetes.client

from artisan_operator.sandbox.store import now_rfc3339

Obj = dict[str, Any]
logger = logging.getLogger(__name__)

SIMULATED_POD_SUFFIX = "-sim"
SIMULATED_TERMINATION_ANNOTATION = "artisan.dev/simulated-termination"
"""On a simulated pod: JSON ``{"exitCode": int, "message": str}``, the end of its container."""


def simulated_termination(pod: Mapping[str, Any]) -> tuple[int, str | None] | None:
    """(exit code, termination message) a test set on the pod, if any."""
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(SIMULATED_TERMINATION_ANNOTATION)
    if not raw:
        return None
    value = json.loads(raw)
    message = value.get("message")
    return int(value["exitCode"]), str(message) if message else None


def simulated_deployment_status(deployment: Mapping[str, Any]) -> Obj:
    """Every desired replica ready and available, observed at the current generation."""
    replicas = int((deployment.get("spec") or {}).get("replicas", 1))
    previous = {c.get("type"): c for c in (deployment.get("status") or {}).get("conditions") or []}
    return {
        "observedGeneration": deployment["metadata"].get("generation", 1),
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            _condition(
                previous, "Available", "MinimumReplicasAvailable", "Deployment has minimum availability."
            ),
            _condition(
                previous, "Progressing", "NewReplicaSetAvailable", "ReplicaSet has successfully progressed."
            ),
        ],
    }


def simulated_job_pod(job: Mapping[str, Any]) -> Obj | None:
    """The one pod the Job controller would create (None while the Job is suspended)."""
    spec = job.get("spec") or {}
    if spec.get("suspend"):
        return None
    meta = job["metadata"]
    template = spec.get("template") or {}
    labels = {
        **((template.get("metadata") or {}).get("labels") or {}),
        "batch.kubernetes.io/job-name": meta["name"],
        "job-name": meta["name"],
        "batch.kubernetes.io/controller-uid": meta["uid"],
        "controller-uid": meta["uid"],
    }
    owner = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{meta['name']}{SIMULATED_POD_SUFFIX}",
            "namespace": meta.get("namespace"),
            "labels": labels,
            "ownerReferences": [owner],
            "annotations": {"artisan.dev/simulated": "true"},
        },
        "spec": template.get("spec") or {"containers": []},
    }


def simulated_pod_status(pod: Mapping[str, Any], now: str) -> Obj:
    """Scheduled, started and Ready; each container running."""
    containers = (pod.get("spec") or {}).get("containers") or []
    previous = pod.get("status") or {}
    started = previous.get("startTime", now)
    ended = simulated_termination(pod)
    if ended is not None:
        exit_code, message = ended
        before = ((previous.get("containerStatuses") or [{}])[0].get("state") or {}).get("terminated") or {}
        terminated: Obj = {
            "exitCode": exit_code,
            "startedAt": started,
            "finishedAt": before.get("finishedAt", now),
        }
        if message is not None:
            terminated["message"] = message
        return {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "startTime": started,
            "podIP": "127.0.0.10",
            "hostIP": "127.0.0.1",
            "containerStatuses": [
                {
                    "name": container.get("name", "main"),
                    "image": container.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
                for container in containers
            ],
        }
    return {
        "phase": "Running",
        "startTime": started,
        "podIP": "127.0.0.10",  # loopback: nothing here may reach a real network
        "hostIP": "127.0.0.1",
        "conditions": [
            {"type": kind, "status": "True", "lastTransitionTime": started}
            for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ],
        "containerStatuses": [
            {
                "name": container.get("name", "main"),
                "image": container.get("image", ""),
                "imageID": "",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            }
            for container in containers
        ],
    }


def simulated_job_status(job: Mapping[str, Any], pod: Mapping[str, Any] | None, now: str) -> Obj:
    """What the Job controller reports for its (simulated) pod."""
    previous = job.get("status") or {}
    if (job.get("spec") or {}).get("suspend"):
        conditions = {c.get("type"): c for c in previous.get("conditions") or []}
        return {
            "active": 0,
            "ready": 0,
            "conditions": [_condition(conditions, "Suspended", "JobSuspended", "Job suspended", now=now)],
        }
    phase = (pod.get("status") or {}).get("phase") if pod is not None else None
    if phase in ("Succeeded", "Failed"):
        succeeded = phase == "Succeeded"
        kind, reason = ("Complete", "Completed") if succeeded else ("Failed", "BackoffLimitExceeded")
        conditions = {c.get("type"): c for c in previous.get("conditions") or []}
        ended: Obj = {
            "active": 0,
            "ready": 0,
            "startTime": previous.get("startTime", now),
            "succeeded" if succeeded else "failed": 1,
            "conditions": [_condition(conditions, kind, reason, f"the pod {phase.lower()}", now=now)],
            "uncountedTerminatedPods": {},
        }
        if succeeded:
            ended["completionTime"] = previous.get("completionTime", now)
        return ended
    running = phase == "Running"
    return {
        "active": 1,
        "ready": 1 if running else 0,
        "startTime": previous.get("startTime", now),
        "uncountedTerminatedPods": {},
    }


def simulated_pvc_status(claim: Mapping[str, Any]) -> Obj:
    spec = claim.get("spec") or {}
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    return {
        "phase": "Bound",
        "accessModes": spec.get("accessModes", ["ReadWriteOnce"]),
        "capacity": {"storage": storage},
    }


def _condition(
    previous: Mapping[str, Mapping[str, Any]], kind: str, reason: str, message: str, *, now: str | None = None
) -> Obj:
    # Keep the transition time of a condition that was already True: nothing transitioned.
    earlier = previous.get(kind) or {}
    kept = earlier.get("status") == "True"
    stamp = earlier.get("lastTransitionTime") if kept else (now or now_rfc3339())
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": stamp}


def _differs(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    current = current or {}
    return any(current.get(key) != value for key, value in wanted.items())


class SimulatedRuntime:
    """Polls the API and writes the simulated statuses; :meth:`step` is one pass."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, interval: float = 0.2) -> None:
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._apps = kubernetes.client.AppsV1Api(api_client)
        self._batch = kubernetes.client.BatchV1Api(api_client)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="artisan-simulated-runtime", daemon=True)

    def step(self) -> int:
        """One pass over Deployments, Jobs, Pods and PVCs; returns how many writes it made."""
        writes = 0
        now = now_rfc3339()
        for deployment in self._items(self._apps.list_deployment_for_all_namespaces):
            wanted = simulated_deployment_status(deployment)
            if _differs(deployment.get("status"), wanted):
                meta = deployment["metadata"]
                self._apps.patch_namespaced_deployment_status(
                    meta["name"], meta["namespace"], {"status": wanted}
                )
                writes += 1
        pods = {
            (p["metadata"]["namespace"], p["metadata"]["name"]): p
            for p in self._items(self._core.list_pod_for_all_namespaces)
        }
        for job in self._items(self._batch.list_job_for_all_namespaces):
            writes += self._step_job(job, pods, now)
        for claim in self._items(self._core.list_persistent_volume_claim_for_all_namespaces):
            wanted = simulated_pvc_status(claim)
            if _differs(claim.get("status"), wanted):
                meta = claim["metadata"]
                self._core.patch_namespaced_persistent_volume_claim_status(
                    meta["name"], meta["namespace"], {"status": wanted}
                )
                writes += 1
        return writes

    def _step_job(self, job: Obj, pods: Mapping[tuple[str, str], Obj], now: str) -> int:
        writes = 0
        meta = job["metadata"]
        wanted_pod = simulated_job_pod(job)
        pod = None
        if wanted_pod is not None:
            pod = pods.get((meta["namespace"], wanted_pod["metadata"]["name"]))
            if pod is None:
                try:
                    # The client sends a dict body as it is; its stubs only name the model class.
                    body: Any = wanted_pod
                    pod = self._raw(
                        self._core.create_namespaced_pod(meta["namespace"], body, _preload_content=False)
                    )
                    writes += 1
                except kubernetes.client.ApiException as exc:
                    if exc.status != 409:
                        raise
                    return writes  # created meanwhile: next pass
            pod_status = simulated_pod_status(pod, now)
            if _differs(pod.get("status"), pod_status):
                pod = self._raw(
                    self._core.patch_namespaced_pod_status(
                        pod["metadata"]["name"],
                        meta["namespace"],
                        {"status": pod_status},
                        _preload_content=False,
                    )
                )
                writes += 1
        job_status = simulated_job_status(job, pod, now)
        if _differs(job.get("status"), job_status):
            self._batch.patch_namespaced_job_status(meta["name"], meta["namespace"], {"status": job_status})
            writes += 1
        return writes

    @staticmethod
    def _raw(response: Any) -> Obj:
        return json.loads(response.data)  # type: ignore[no-any-return]

    def _items(self, list_function: Any) -> list[Obj]:
        return self._raw(list_function(_preload_content=False)).get("items", [])  # type: ignore[no-any-return]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # the API may be restarting; the next pass retries
                logger.exception("simulated runtime pass failed")
            self._stop.wait(self._interval)

    def __enter__(self) -> SimulatedRuntime:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(10)
