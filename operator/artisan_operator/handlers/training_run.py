"""TrainingRun handlers: watch events nudge a pass at once; the work queue keeps it level-triggered.

One pass (``observe_and_decide``, on the API thread pool): observe the run's Jobs and the current
attempt's pod (a brand-new run has none: its first pass reads nothing, see ``PassInput.blind``),
read the trainer's metrics (Prometheus by pod when configured, else a scrape of the pod's /metrics
on port 9090; once the container has ended, its final values come from the pod's termination
message instead, which ``observe_training_run`` reads), decide
(``policy.training_run.decide_supervised_training_run``), then act in the order that keeps a restart
safe: the status recording a rollback first, then the old Job's deletion, then the consumed
``artisan.dev/rollback-to`` annotation; the shared pass creates the children and writes the status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import kopf

from artisan_operator.api.training_run import (
    KIND,
    PLURAL,
    ROLLBACK_TO_ANNOTATION,
    TrainingRunSpec,
    TrainingRunStatus,
)
from artisan_operator.cluster import observe_training_run, patch_status, status_patch
from artisan_operator.cluster.control import delete_job, remove_annotation
from artisan_operator.handlers.reconcile import (
    PassInput,
    Reconciler,
    register_reconciler,
)
from artisan_operator.manifests.trainer import METRICS_PORT
from artisan_operator.metrics.providers import PrometheusProvider, Sample, ScrapeProvider
from artisan_operator.policy.plan import Plan
from artisan_operator.policy.training_run import (
    PodObservation,
    SupervisionInput,
    TrainingRunObservation,
    decide_supervised_training_run,
)
from artisan_operator.policy.training_supervision import (
    TRAINER_METRIC_NAMES,
    SupervisionSettings,
    TrainerMetrics,
    trainer_metrics_from_samples,
)
from artisan_operator.settings import Settings

LAST_WRITE_KEY = "training_last_status_write"


def current_pod(observation: TrainingRunObservation, previous: TrainingRunStatus) -> PodObservation | None:
    """The pod of the attempt the status says is current (an older attempt's pod says nothing)."""
    job = observation.job
    if job is None or job.attempt < previous.attempt:
        return None
    return observation.pod


def trainer_query(namespace: str, pod: str) -> str:
    names = "|".join(TRAINER_METRIC_NAMES)
    return f'{{__name__=~"{names}",namespace="{namespace}",pod="{pod}"}}'


async def trainer_samples(settings: Settings, namespace: str, pod: PodObservation) -> Sequence[Sample] | str:
    timeout = settings.metric_query_timeout_seconds
    if settings.prometheus_url:
        provider = PrometheusProvider(url=settings.prometheus_url, timeout=timeout)
        return await provider.samples(trainer_query(namespace, pod.name))
    if pod.ip is None:
        return "the trainer pod has no IP yet"
    url = f"http://{pod.ip}:{METRICS_PORT}/metrics"
    return await ScrapeProvider(targets=lambda: [url], timeout=timeout).scrape()


def read_trainer_metrics(
    settings: Settings, namespace: str, pod: PodObservation | None
) -> TrainerMetrics | None:
    """The running trainer's metrics; None when there is no running pod or the read failed."""
    if pod is None or pod.phase != "Running":
        return None
    samples = asyncio.run(trainer_samples(settings, namespace, pod))
    if isinstance(samples, str):
        return None  # no data is not evidence of a stall: supervision waits for the next read
    return trainer_metrics_from_samples(samples)


def observe_and_decide(given: PassInput[TrainingRunSpec, TrainingRunStatus]) -> Plan[TrainingRunStatus]:
    cluster, owner, settings = given.cluster, given.owner, given.settings
    if given.blind and ROLLBACK_TO_ANNOTATION not in given.annotations:
        # Brand-new: no Job of ours yet (see PassInput.blind). A rollback request is observed:
        # acting on it writes status and deletes Jobs before the children are applied.
        observation = TrainingRunObservation()
    else:
        observation = observe_training_run(cluster, owner.namespace, owner.name)
    metrics = read_trainer_metrics(settings, owner.namespace, current_pod(observation, given.previous))
    supervision = SupervisionInput(
        metrics=metrics,
        annotations=given.annotations,
        last_write=given.memo.get(LAST_WRITE_KEY),
        settings=SupervisionSettings(
            stall_seconds=settings.training_stall_seconds,
            crash_loop_restarts=settings.training_crash_loop_restarts,
        ),
    )
    decision = decide_supervised_training_run(
        owner,
        given.spec,
        observation,
        given.previous,
        supervision,
        image=settings.trainer_image,
        now=given.now,
    )
    desired = decision.plan.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    if decision.write_first:
        # The record of the rollback goes first: a pass that dies after it is finished by the next.
        patch = status_patch(given.raw_status, desired)
        if patch is not None:
            patch_status(cluster, PLURAL, owner.namespace, owner.name, patch)
    for job in decision.delete_jobs:
        delete_job(cluster, owner.namespace, job, foreground=True)
    if decision.consume_annotation:
        remove_annotation(cluster, PLURAL, owner.namespace, owner.name, ROLLBACK_TO_ANNOTATION)
    if status_patch(given.raw_status, desired) is not None:
        given.memo[LAST_WRITE_KEY] = given.now
    return decision.plan


RECONCILER = Reconciler(
    kind=KIND,
    plural=PLURAL,
    spec_model=TrainingRunSpec,
    status_model=TrainingRunStatus,
    invalid_phase="Failed",
    decide=observe_and_decide,
)


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    register_reconciler(registry, RECONCILER, "training_run_event")
