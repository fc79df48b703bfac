"""``/metrics``, ``/healthz`` and ``/readyz`` of the operator, served by aiohttp in its event loop.

``/healthz`` answering at all proves the event loop is responsive (a blocked loop fails the
liveness probe); ``/readyz`` turns 200 once kopf has started and the startup handler has run.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from artisan_operator.metrics.operator_metrics import OperatorMetrics


class MetricsServer:
    def __init__(self, metrics: OperatorMetrics, *, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.requested_port = port
        self.ready = asyncio.Event()
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
