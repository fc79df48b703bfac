"""Observe the world (read-only): turn API objects into the observations the decisions take."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from artisan_operator.api.canary import PLURAL as CANARY_PLURAL
from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.api.model_pin import PLURAL as MODEL_PIN_PLURAL
from artisan_operator.cluster.client import ClusterClient, decode
from artisan_operator.manifests.common import REVISION_LABEL, Manifest, owner_label_key
from artisan_operator.manifests.ensemble import ensemble_deployment_name
from artisan_operator.manifests.trainer import ATTEMPT_LABEL
from artisan_operator.policy.initial_status import TargetObservation
from artisan_operator.policy.model_pin import DeploymentObservation, ModelPinObservation
from artisan_operator.policy.training_run import JobObservation, PodObservation, TrainingRunObservation


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _labels(obj: Manifest) -> dict[str, str]:
    labels = obj.get("metadata", {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def _matches(obj: Manifest, selector: dict[str, str]) -> bool:
    """Client-side check of a label selector (cheap insurance against a server that ignores it)."""
    labels = _labels(obj)
    return all(labels.get(k) == v for k, v in selector.items())


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _condition(obj: Manifest, type_: str) -> Manifest | None:
    for condition in obj.get("status", {}).get("conditions") or []:
        if condition.get("type") == type_:
            return dict(condition)
    return None


def _attempt(job: Manifest) -> int:
    try:
        return int(_labels(job).get(ATTEMPT_LABEL, "0"))
    except ValueError:
        return 0


def job_observation(job: Manifest) -> JobObservation:
    status = job.get("status") or {}
    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    return JobObservation(
        name=str(job["metadata"]["name"]),
        attempt=_attempt(job),
        suspended=bool((job.get("spec") or {}).get("suspend")),
        active=int(status.get("active") or 0),
        complete=complete is not None and complete.get("status") == "True",
        failed=failed is not None and failed.get("status") == "True",
        failed_reason=failed.get("reason") if failed else None,
        failed_message=failed.get("message") if failed else None,
        start_time=parse_time(status.get("startTime")),
        completion_time=parse_time(status.get("completionTime")),
    )


def pod_observation(pod: Manifest) -> PodObservation:
    status = pod.get("status") or {}
    waiting_reason = waiting_message = None
    restarts = 0
    running_since: datetime | None = None
    exit_code: int | None = None
    message: str | None = None
    for container in status.get("containerStatuses") or []:
        restarts = max(restarts, int(container.get("restartCount") or 0))
        state = container.get("state") or {}
        if state.get("running"):
            running_since = parse_time(state["running"].get("startedAt")) or running_since
        terminated = state.get("terminated")
        if terminated and exit_code is None and terminated.get("exitCode") is not None:
            # The trainer's final report (terminationMessagePath); the pod has one container.
            exit_code = int(terminated["exitCode"])
            message = str(terminated["message"]) if terminated.get("message") else None
        waiting = state.get("waiting")
        if waiting and waiting_reason is None:
            waiting_reason, waiting_message = waiting.get("reason"), waiting.get("message")
    scheduled = _condition(pod, "PodScheduled")
    unschedulable = None
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        unschedulable = str(scheduled.get("message") or "no node fits the pod")
    return PodObservation(
        name=str(pod["metadata"]["name"]),
        phase=str(status.get("phase") or "Pending"),
        waiting_reason=waiting_reason,
        waiting_message=waiting_message,
        unschedulable_message=unschedulable,
        start_time=parse_time(status.get("startTime")),
        restart_count=restarts,
        running_since=running_since,
        ip=str(status["podIP"]) if status.get("podIP") else None,
        exit_code=exit_code,
        termination_message=message,
    )


def observe_training_run(cluster: ClusterClient, namespace: str, name: str) -> TrainingRunObservation:
    """The newest Job of the run (highest attempt) and that Job's newest pod."""
    owner_selector = {owner_label_key("TrainingRun"): name}
    raw_jobs = decode(
        cluster.batch.list_namespaced_job(
            namespace,
            label_selector=_selector(owner_selector),
            _preload_content=False,
            _request_timeout=cluster.request_timeout,
        )
    )
    jobs = [j for j in raw_jobs.get("items") or [] if _matches(j, owner_selector)]
    if not jobs:
        return TrainingRunObservation()
    job = max(jobs, key=_attempt)
    pod_selector = {**owner_selector, ATTEMPT_LABEL: str(_attempt(job))}
    raw_pods = decode(
        cluster.core.list_namespaced_pod(
            namespace,
            label_selector=_selector(pod_selector),
            _preload_content=False,
            _request_timeout=cluster.request_timeout,
        )
    )
    pods = [p for p in raw_pods.get("items") or [] if _matches(p, pod_selector)]
    newest = max(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""), default=None)
    return TrainingRunObservation(
        job=job_observation(job),
        pod=pod_observation(newest) if newest is not None else None,
        jobs=tuple(job_observation(j) for j in sorted(jobs, key=_attempt)),
    )


def deployment_observation(deployment: Manifest) -> DeploymentObservation:
    status = deployment.get("status") or {}
    progressing = _condition(deployment, "Progressing")
    deadline = (
        progressing is not None
        and progressing.get("status") == "False"
        and progressing.get("reason") == "ProgressDeadlineExceeded"
    )
    generation = deployment["metadata"].get("generation")
    observed = status.get("observedGeneration")
    return DeploymentObservation(
        name=str(deployment["metadata"]["name"]),
        generation=int(generation) if generation is not None else None,
        observed_generation=int(observed) if observed is not None else None,
        revision=_labels(deployment).get(REVISION_LABEL),
        replicas=int(status.get("replicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        available_replicas=int(status.get("availableReplicas") or 0),
        progress_deadline_exceeded=deadline,
        progress_message=progressing.get("message") if progressing else None,
    )


def canary_routers(cluster: ClusterClient, namespace: str, model_pin: str) -> set[str]:
    """The traffic routers (gateway, gatewayAPI, replicas) of the Canaries targeting ``model_pin``;
    empty when none does (a targeted ModelPin's spec changes go through its Canary)."""
    raw = decode(
        cluster.custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            CANARY_PLURAL,
            _preload_content=False,
            _request_timeout=cluster.request_timeout,
        )
    )
    return {
        _router((item.get("spec") or {}).get("trafficRouting") or {})
        for item in raw.get("items") or []
        if ((item.get("spec") or {}).get("targetRef") or {}).get("name") == model_pin
        and not (item.get("metadata") or {}).get("deletionTimestamp")
    }


def _router(routing: Manifest) -> str:
    return next((key for key in ("replicas", "gatewayAPI") if routing.get(key) is not None), "gateway")


def observe_model_pin(cluster: ClusterClient, namespace: str, name: str) -> ModelPinObservation:
    routers = canary_routers(cluster, namespace, name)
    return ModelPinObservation(
        deployment=read_stable_fleet(cluster, namespace, name),
        canary_guarded=bool(routers),
        replica_routed="replicas" in routers,
    )


def observe_target(cluster: ClusterClient, namespace: str, name: str) -> TargetObservation:
    """A ModelPin named by a Canary or ABExperiment, as its status reports it."""
    raw = cluster.read(
        cluster.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, MODEL_PIN_PLURAL, name
    )
    if raw is None:
        return TargetObservation(name=name, exists=False)
    status = raw.get("status") or {}
    stable = status.get("stable") or {}
    return TargetObservation(
        name=name,
        exists=True,
        phase=status.get("phase"),
        revision=status.get("revision"),
        stable_revision=stable.get("revision"),
    )


def read_stable_fleet(cluster: ClusterClient, namespace: str, model_pin: str) -> DeploymentObservation | None:
    """The ModelPin's stable ensemble Deployment as observed (None when absent), for the Canary loop
    (a promotion keeps the canary route until the stable fleet serves the promoted pins)."""
    raw = cluster.read(
        cluster.apps.read_namespaced_deployment, ensemble_deployment_name(model_pin), namespace
    )
    return None if raw is None else deployment_observation(raw)
