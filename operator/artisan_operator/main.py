"""``artisan-operator``: run the kopf operator with Artisan's handlers, metrics and settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator

import kopf

from artisan_operator.handlers import build_registry
from artisan_operator.handlers.context import CONTEXT_KEY, OperatorContext
from artisan_operator.metrics.operator_metrics import OperatorMetrics
from artisan_operator.metrics.server import LivenessCheck, MetricsServer, liveness_problems
from artisan_operator.settings import Settings

Flag = asyncio.Event | threading.Event

logger = logging.getLogger("artisan_operator")


@contextlib.asynccontextmanager
async def metrics_server(
    settings: Settings, metrics: OperatorMetrics, liveness: LivenessCheck | None = None
) -> AsyncIterator[MetricsServer | None]:
    if not settings.metrics_enabled:
        yield None
        return
    server = MetricsServer(metrics, host=settings.metrics_host, port=settings.metrics_port, liveness=liveness)
    await server.start()
    logger.info(f"metrics, /healthz and /readyz on {settings.metrics_host}:{server.port}")
    try:
        yield server
    finally:
        await server.stop()


async def _relay_ready(
    kopf_ready: asyncio.Event, server: MetricsServer | None, ready_flag: Flag | None
) -> None:
    await kopf_ready.wait()
    if server is not None:
        server.ready.set()
    if ready_flag is not None:
        ready_flag.set()


async def run_operator(
    settings: Settings,
    *,
    stop_flag: Flag | None = None,
    ready_flag: Flag | None = None,
    context: OperatorContext | None = None,
) -> None:
    """Run until ``stop_flag`` is set (or cancelled). A fresh registry each time.

    ``ready_flag`` is set once the startup handler has run (and /readyz turns 200). ``context`` lets
    an embedding caller (sandbox, tests) see the metrics and the bound metrics port.
    """
    context = context or OperatorContext(settings=settings, metrics=OperatorMetrics())
    memo = kopf.Memo()
    memo[CONTEXT_KEY] = context
    kopf_ready = asyncio.Event()
    work_context = context

    def liveness() -> list[str]:
        work = work_context.work
        return liveness_problems(
            work_loop=work.task if work is not None else None,
            stopping=stop_flag is not None and stop_flag.is_set(),
        )

    async with metrics_server(settings, context.metrics, liveness) as server:
        context.metrics_server = server
        relay = asyncio.create_task(_relay_ready(kopf_ready, server, ready_flag))
        try:
            await kopf.operator(
                registry=build_registry(settings),
                clusterwide=settings.namespace is None,
                namespaces=[settings.namespace] if settings.namespace else [],
                standalone=True,
                memo=memo,
                stop_flag=stop_flag,
                ready_flag=kopf_ready,
            )
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay


def main() -> None:
    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_operator(settings))


if __name__ == "__main__":
    main()
