"""Operator-wide activities: kopf's settings, the shared clients in ``memo``, login, cleanup."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable
from typing import Any, cast

import kopf

from artisan_operator.api.common import GROUP
from artisan_operator.cluster import ClusterClient, connection_info
from artisan_operator.cluster.aio import AsyncApi, async_supported
from artisan_operator.cluster.events import REPORTING_COMPONENT
from artisan_operator.handlers.context import operator_context
from artisan_operator.handlers.workqueue import WorkQueue
from artisan_operator.settings import Settings

FINALIZER = "artisan.dev/finalizer"
ANNOTATION_PREFIX = "artisan.dev"
RETRY_BASE_SECONDS = 1.0
"""A failed pass is retried after 1 s, then 2 s, 4 s, ... up to the resync interval."""
EVENT_DRIVEN_KINDS = frozenset({"TrainingRun", "ModelPin"})
"""Kinds handled by ``kopf.on.event`` alone (the work queue's nudges): no kopf change handler, so
kopf's diff base of them is never used (see :class:`DiffBaseOfChangeHandledKinds`)."""


class DiffBaseOfChangeHandledKinds(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base, left empty for :data:`EVENT_DRIVEN_KINDS`.

    kopf builds (a deep copy of the body) and fetches the diff base of every object on every watch
    event, whether or not a change handler (create/update/resume) will compare them: for TrainingRuns
    and ModelPins, ~a third of kopf's CPU per event, for nothing. Canary and ABExperiment have change
    handlers and keep kopf's behaviour. (A test holds that the event-driven kinds have no change
    handler, so no handler can ever see this empty base.)
    """

    def __init__(self, *, skipped_kinds: Iterable[str], prefix: str, key: str) -> None:
        super().__init__(prefix=prefix, key=key)
        self.skipped_kinds = frozenset(skipped_kinds)

    def _skipped(self, body: kopf.Body) -> bool:
        return body.get("kind") in self.skipped_kinds and str(body.get("apiVersion", "")).startswith(
            f"{GROUP}/"
        )

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        if self._skipped(body):
            return cast(kopf.BodyEssence, {})
        return super().build(body=body, extra_fields=extra_fields)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        if self._skipped(body):
            return cast(kopf.BodyEssence, {})
        return super().fetch(body=body)


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: Settings) -> None:
    """Our finalizer and annotations instead of kopf's defaults; timeouts with their reasons in Settings."""
    kopf_settings.persistence.finalizer = FINALIZER
    # Handler progress and the last-handled spec live in annotations under artisan.dev, so kopf
    # never writes into our status (which the CRD schema defines exactly).
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    kopf_settings.persistence.diffbase_storage = DiffBaseOfChangeHandledKinds(
        skipped_kinds=EVENT_DRIVEN_KINDS, prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    kopf_settings.watching.server_timeout = settings.watch_server_timeout_seconds
    kopf_settings.watching.client_timeout = settings.watch_client_timeout_seconds
    kopf_settings.watching.connect_timeout = settings.watch_connect_timeout_seconds
    kopf_settings.posting.level = logging.getLevelName(settings.event_level)
    kopf_settings.posting.reporting_component = REPORTING_COMPONENT
    # Namespaced mode runs with a Role only: no cluster-wide CRD watch (resources are found once at
    # start-up through discovery, which needs no RBAC).
    kopf_settings.scanning.disabled = settings.namespace is not None


async def operator_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    context = operator_context(memo)
    configure_kopf(settings, context.settings)
    if context.cluster is None:
        context.cluster = ClusterClient(context.settings)
    if context.async_api is None and async_supported(context.cluster.configuration):
        context.async_api = AsyncApi(context.cluster, connections=2 * context.settings.api_threads)
    if context.work is None:
        # Started here, inside kopf's context, so that passes can post Events through kopf.
        context.work = WorkQueue(
            workers=context.settings.api_threads,
            resync=context.settings.resync_interval_seconds,
            retry_base=RETRY_BASE_SECONDS,
            max_backoff=context.settings.resync_interval_seconds,
        )
        context.work.start()
    # The start-up heap (modules, the API client's models, schemas: ~200k objects) lives as long
    # as the process: frozen, full collections stop traversing it. Each one paused the operator for
    # ~0.3 s (~0.08 s once frozen) under a burst of new objects (bench/operator_reconcile.py).
    gc.collect()
    gc.freeze()


async def operator_login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf connects with the credentials of the reconcilers' client (kubeconfig or in-cluster)."""
    return connection_info(operator_context(memo).require_cluster().configuration)


async def operator_cleanup(memo: kopf.Memo, **_: Any) -> None:
    context = operator_context(memo)
    if context.work is not None:
        await context.work.stop()
        context.work = None
    if context.async_api is not None:
        await context.async_api.close()
        context.async_api = None
    if context.cluster is not None:
        context.cluster.close()
        context.cluster = None


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    kopf.on.startup(id="operator_startup", registry=registry)(operator_startup)
    kopf.on.login(id="operator_login", registry=registry)(operator_login)
    kopf.on.cleanup(id="operator_cleanup", registry=registry)(operator_cleanup)
