"""``/metrics``, ``/healthz`` and ``/readyz`` of the operator, served by aiohttp in its event loop.

``/healthz`` (the liveness probe) answers 503 with the reasons when the operator cannot do its work
any more although the process lives: the work queue's scheduler task ended (crashed or returned), or
a stop was requested (kopf is shutting down). Answering at all proves the event loop is responsive
(a blocked loop fails the probe by timing out). ``/readyz`` turns 200 once kopf has started and the
startup handler has run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from artisan_operator.metrics.operator_metrics import OperatorMetrics

LivenessCheck = Callable[[], list[str]]
"""Returns why the operator is not alive; an empty list means alive."""


def liveness_problems(*, work_loop: asyncio.Future[Any] | None, stopping: bool) -> list[str]:
    """Why the operator is not alive (empty when it is).

    | work loop                    | stopping | problems                                  |
    |------------------------------|----------|-------------------------------------------|
    | None (startup not run yet)   | False    | [] (readiness reports the start-up)       |
    | running                      | False    | []                                        |
    | done, raised ValueError("x") | False    | ["work loop crashed: ValueError: x"]      |
    | done, returned or cancelled  | False    | ["work loop stopped"]                     |
    | running                      | True     | ["operator is stopping"]                  |
    """
    problems = []
    if work_loop is not None and work_loop.done():
        error = None if work_loop.cancelled() else work_loop.exception()
        problems.append(
            f"work loop crashed: {type(error).__name__}: {error}"
            if error is not None
            else "work loop stopped"
        )
    if stopping:
        problems.append("operator is stopping")
    return problems


class MetricsServer:
    def __init__(
        self, metrics: OperatorMetrics, *, host: str, port: int, liveness: LivenessCheck | None = None
    ) -> None:
        self.metrics = metrics
        self.host = host
        self.requested_port = port
        self.ready = asyncio.Event()
        self.liveness = liveness
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        """The bound port (the OS's choice when 0 was requested)."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the metrics server is not started")
        return int(self._runner.addresses[0][1])

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.exposition(), headers={"Content-Type": self.metrics.content_type}
        )

    async def _healthz(self, _: web.Request) -> web.Response:
        problems = self.liveness() if self.liveness is not None else []
        if problems:
            return web.Response(status=503, text="".join(f"{p}\n" for p in problems))
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self.ready.is_set():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="starting\n")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.requested_port)
        await self._site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
