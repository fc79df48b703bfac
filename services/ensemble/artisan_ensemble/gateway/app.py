"""The gateway role: assign, forward to the ensemble Services, record per-variant statistics."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from artisan_common.curation import rating_to_reward
from artisan_common.routing import RoutingTable
from artisan_common.training import CurationSpec
from artisan_ensemble.api.errors import UnavailableError, install_error_handlers
from artisan_ensemble.api.middleware import BodyLimitMiddleware, MetricsMiddleware
from artisan_ensemble.api.models import BriefRequest, ChatCompletionRequest, FeedbackRequest, FormulaRequest
from artisan_ensemble.api.streaming import SlotReleasingStream
from artisan_ensemble.ensemble.admission import AdmissionController
from artisan_ensemble.gateway.decide import GatewayDecision, assignment_key, decide_route
from artisan_ensemble.gateway.routing_watch import RoutingWatcher
from artisan_ensemble.metrics import GatewayMetrics
from artisan_ensemble.settings import EnsembleSettings

FORWARDED_HEADERS = ("content-type", "retry-after")
MAX_BODY_BYTES = 65_536
FORWARD_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {"description": "the gateway's (or the fleet's) queue is full; see Retry-After"},
    503: {"description": "no routing table loaded, or the chosen fleet unreachable; see Retry-After"},
}
"""What every forwarding route may answer besides the fleet's own responses (relayed as they are)."""


@dataclass
class GatewayRuntime:
    watcher: RoutingWatcher | None = None
    client: httpx.AsyncClient | None = None

    def table(self) -> RoutingTable:
        if self.watcher is None or self.watcher.table is None:
            reason = self.watcher.error if self.watcher and self.watcher.error else "no routing table loaded"
            raise UnavailableError(reason, 2)
        return self.watcher.table


def _user_key(user_id: str | None) -> str:
    # No user id: a one-off key, so the request is assigned at random (not sticky).
    return user_id or f"anonymous-{uuid.uuid4().hex}"


def create_gateway_app(
    settings: EnsembleSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    metrics = GatewayMetrics()
    runtime = GatewayRuntime()
    curation = CurationSpec()
    # Backpressure: a bounded number of forwards in flight and waiting; beyond it 429 + Retry-After at
    # once, so an overloaded gateway neither grows memory nor piles requests onto the ensemble fleet.
    admission = AdmissionController(
        settings.gateway_max_concurrent,
        settings.gateway_max_waiting,
        settings.gateway_retry_after_seconds,
        on_reject=metrics.rejected.labels(reason="overload").inc,
    )
    metrics.watch_queue(admission)

    def on_reload(ok: bool) -> None:
        metrics.routing_reloads.labels(result="ok" if ok else "error").inc()
        if ok:
            metrics.routing_age.set(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.routing_dir is None:
            raise ValueError("the gateway needs ARTISAN_ENSEMBLE_ROUTING_DIR (the mounted routing ConfigMap)")
        runtime.watcher = RoutingWatcher(settings.routing_dir, settings.routing_poll_seconds, on_reload)
        runtime.watcher.start()
        runtime.client = httpx.AsyncClient(transport=transport, timeout=settings.upstream_timeout_seconds)
        try:
            yield
        finally:
            await runtime.watcher.stop()
            await runtime.client.aclose()

    async def forward(decision: GatewayDecision, path: str, payload: dict[str, Any]) -> httpx.Response:
        assert runtime.client is not None
        try:
            async with admission.admit():
                return await runtime.client.post(decision.backend.url.rstrip("/") + path, json=payload)
        except httpx.HTTPError as error:
            metrics.upstream_errors.labels(track=decision.track).inc()
            raise UnavailableError(
                f"{decision.track} backend unreachable: {type(error).__name__}", 1
            ) from error

    def relay(upstream: httpx.Response, decision: GatewayDecision) -> Response:
        headers = {k: v for k, v in upstream.headers.items() if k.lower() in FORWARDED_HEADERS}
        headers |= {
            "X-Artisan-Track": decision.track,
            "X-Artisan-Variant": decision.variant,
            "X-Artisan-Mode": decision.mode,
            "X-Artisan-Revision": decision.backend.revision,
        }
        return Response(content=upstream.content, status_code=upstream.status_code, headers=headers)

    router = APIRouter()

    @router.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", tags=["health"], responses={503: {"description": "no routing table"}})
    async def readyz() -> JSONResponse:
        watcher = runtime.watcher
        ready = watcher is not None and watcher.table is not None
        body = {"ready": ready, "error": watcher.error if watcher else None}
        return JSONResponse(status_code=200 if ready else 503, content=body)

    @router.get("/metrics", tags=["health"])
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @router.get("/v1/routing", tags=["gateway"], responses={503: FORWARD_RESPONSES[503]})
    async def routing() -> dict[str, Any]:
        """The routing table in force (as loaded from the ConfigMap)."""
        return runtime.table().to_wire()

    @router.post("/v1/briefs", tags=["gateway"], responses=FORWARD_RESPONSES)
    async def briefs(body: BriefRequest, request: Request) -> Response:
        """Assign the user, forward to the chosen ensemble fleet and record the variant's statistics."""
        requested = body.mode if "mode" in body.model_fields_set else None
        table = runtime.table()
        decision = decide_route(
            table, _user_key(assignment_key(table, body.user_id, body.session_id)), requested
        )
        metrics.assignments.labels(decision.experiment, decision.variant).inc()
        metrics.ab_requests.labels(variant=decision.variant).inc()
        metrics.routed.labels(track=decision.track, mode=decision.mode).inc()
        started = time.perf_counter()
        upstream = await forward(decision, "/v1/briefs", {**body.to_wire(), "mode": decision.mode})
        elapsed = time.perf_counter() - started
        ok = upstream.is_success
        metrics.observe(decision.experiment, decision.variant, "success", 1.0 if ok else 0.0)
        metrics.observe(decision.experiment, decision.variant, "latency", elapsed)
        if ok:
            try:
                compliant = bool(upstream.json()["formula"]["ifra"]["compliant"])
            except (ValueError, KeyError, TypeError):
                compliant = False
            metrics.observe(
                decision.experiment, decision.variant, "ifraCompliance", 1.0 if compliant else 0.0
            )
        return relay(upstream, decision)

    @router.post("/v1/formulas", tags=["gateway"], responses=FORWARD_RESPONSES)
    async def formulas(body: FormulaRequest) -> Response:
        decision = decide_route(runtime.table(), _user_key(None), None)
        return relay(await forward(decision, "/v1/formulas", body.to_wire()), decision)

    @router.post("/v1/feedback", tags=["gateway"], responses=FORWARD_RESPONSES)
    async def feedback(body: FeedbackRequest) -> Response:
        """Forward to the user's fleet, tagged with the user's variant; rating and reward statistics."""
        table = runtime.table()
        key = assignment_key(table, body.user_id, body.session_id) or body.user_id
        decision = decide_route(table, key, None)
        payload = {**body.to_wire(), "variant": body.variant or decision.variant}
        upstream = await forward(decision, "/v1/feedback", payload)
        if upstream.status_code == 202:
            reward = body.reward if body.reward is not None else rating_to_reward(body.rating, curation)
            metrics.observe(decision.experiment, decision.variant, "rating", body.rating)
            metrics.observe(decision.experiment, decision.variant, "reward", reward)
        return relay(upstream, decision)

    @router.post("/v1/chat/completions", tags=["gateway"], responses=FORWARD_RESPONSES)
    async def chat(body: ChatCompletionRequest) -> Response:
        """OpenAI-compatible pass-through to the stable (or canary) fleet; SSE streams are relayed."""
        decision = decide_route(runtime.table(), _user_key(None), None)
        payload = body.model_dump(mode="json", by_alias=True, exclude_none=True)
        if not body.stream:
            return relay(await forward(decision, "/v1/chat/completions", payload), decision)
        assert runtime.client is not None
        url = decision.backend.url.rstrip("/") + "/v1/chat/completions"
        request = runtime.client.build_request("POST", url, json=payload)
        await admission.acquire()  # the slot is held until the relayed stream ends
        release = admission.releaser()
        try:
            upstream = await runtime.client.send(request, stream=True)
        except BaseException as error:
            release()
            if isinstance(error, httpx.HTTPError):
                metrics.upstream_errors.labels(track=decision.track).inc()
                raise UnavailableError(
                    f"{decision.track} backend unreachable: {type(error).__name__}", 1
                ) from error
            raise

        async def relay_stream() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()
                release()

        return SlotReleasingStream(
            relay_stream(),
            release,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type", "text/event-stream"),
            headers={"X-Artisan-Track": decision.track},
            aclose=upstream.aclose,
        )

    app = FastAPI(title="Artisan gateway", version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
