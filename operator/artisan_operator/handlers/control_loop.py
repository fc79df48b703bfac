"""What the metric-driven control loops share: a daemon per object, nudges, metric providers.

Each Canary and ABExperiment gets a ``kopf.daemon`` that runs one pass, then waits until the pass's
requeue time (at most the resync interval) or a nudge from a create/update handler, whichever comes
first. (The ModelPin fleet-health loop runs the same kind of pass from the work queue instead, see
:mod:`artisan_operator.handlers.workqueue`; :func:`measured` counts it.) Passes read the object
afresh from the API (never kopf's cached body), so a restarted operator resumes from the records in
status, and each pass is idempotent.

A pass returns the seconds until it wants to run again (``None``: the resync interval). A Kubernetes
API error is retried after :data:`RETRY_SECONDS`; any other exception is logged and retried likewise,
so one bad pass never ends the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import kopf

from artisan_operator.cluster import ApiException
from artisan_operator.handlers.context import OperatorContext, operator_context
from artisan_operator.metrics.providers import MetricProvider, PrometheusProvider
from artisan_operator.policy.plan import EventNote

WAKE_KEY = "control_wake"
RETRY_SECONDS = 2.0

PassFn = Callable[[OperatorContext, str, str, Any], Awaitable[float | None]]


def wake_event(memo: Any) -> asyncio.Event:
    event: asyncio.Event = memo.setdefault(WAKE_KEY, asyncio.Event())
    return event


async def nudge(memo: kopf.Memo, **_: Any) -> None:
    """create/update/resume handlers only nudge the loop: it runs a pass at once."""
    wake_event(memo).set()


async def run_control_loop(
    kind: str,
    one_pass: PassFn,
    *,
    namespace: str,
    name: str,
    memo: Any,
    stopped: kopf.DaemonStopped,
    logger: Any,
) -> None:
    """The daemon body: pass, wait (requeue, nudge or stop), repeat until kopf stops the daemon."""
    context = operator_context(memo)
    wake = wake_event(memo)
    while not stopped:
        wake.clear()
        started = time.monotonic()
        try:
            delay = await one_pass(context, namespace, name, memo)
            context.metrics.record(kind, "requeue" if delay else "success", time.monotonic() - started)
        except ApiException as error:
            context.metrics.record(kind, "error", time.monotonic() - started)
            context.metrics.record_error(kind, f"HTTP{error.status}")
            logger.warning(f"{kind} control pass: Kubernetes API error {error.status} {error.reason}")
            delay = RETRY_SECONDS
        except Exception as error:  # keep the loop alive; the next pass retries
            context.metrics.record(kind, "error", time.monotonic() - started)
            context.metrics.record_error(kind, type(error).__name__)
            logger.exception(f"{kind} control pass failed: {error}")
            delay = RETRY_SECONDS
        resync = context.settings.resync_interval_seconds
        delay = resync if delay is None else min(max(delay, 0.0), resync)
        # Counted from the start of the pass: the plan's "due in N s" was computed then.
        await sleep_until_woken(wake, stopped, deadline=started + delay)


async def sleep_until_woken(wake: asyncio.Event, stopped: kopf.DaemonStopped, *, deadline: float) -> None:
    """Wait until ``deadline`` (monotonic), a nudge, or kopf stopping the daemon; no polling."""
    left = deadline - time.monotonic()
    if left <= 0 or wake.is_set() or stopped:
        return

    async def until_stopped() -> None:
        await stopped.wait()

    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(until_stopped())]
    try:
        await asyncio.wait(waiters, timeout=left, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


def measured(kind: str, one_pass: PassFn) -> PassFn:
    """``one_pass`` for the work queue, counted in the metrics; errors are counted and re-raised
    (the queue retries with backoff)."""

    async def run(context: OperatorContext, namespace: str, name: str, memo: Any) -> float | None:
        started = time.monotonic()
        try:
            delay = await one_pass(context, namespace, name, memo)
        except ApiException as error:
            context.metrics.record(kind, "error", time.monotonic() - started)
            context.metrics.record_error(kind, f"HTTP{error.status}")
            raise
        except Exception as error:
            context.metrics.record(kind, "error", time.monotonic() - started)
            context.metrics.record_error(kind, type(error).__name__)
            raise
        context.metrics.record(kind, "requeue" if delay else "success", time.monotonic() - started)
        return delay

    return run


def post_events_with_kopf(body: dict[str, Any], notes: Iterable[EventNote]) -> None:
    """Post Events on an object read from the API (a plain dict: kopf only reads its reference)."""
    target: Any = body
    for note in notes:
        kopf.event(target, type=note.type, reason=note.reason, message=note.message)


def metric_provider(context: OperatorContext, address: str | None = None) -> MetricProvider | None:
    """Prometheus at ``address`` or the configured URL; None when neither is set (scrape instead)."""
    url = address or context.settings.prometheus_url
    if url is None:
        return None
    return PrometheusProvider(url=url, timeout=context.settings.metric_query_timeout_seconds)
