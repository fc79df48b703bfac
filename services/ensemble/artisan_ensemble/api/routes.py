"""Routes of the ensemble role. Handlers are thin: validate, call the service, shape the answer."""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from artisan_common.curation import CurationHistory, FeedbackSample, filter_sample, rating_to_reward
from artisan_common.feedback_store import FeedbackStore
from artisan_common.ifra import check_formula
from artisan_ensemble.api.errors import UnavailableError
from artisan_ensemble.api.models import (
    BriefRequest,
    BriefResponse,
    ChatCompletionRequest,
    FaultRequest,
    FeedbackRequest,
    FeedbackResponse,
    FormulaOut,
    FormulaRequest,
    ModelOut,
    ModelsResponse,
)
from artisan_ensemble.api.streaming import SlotReleasingStream
from artisan_ensemble.ensemble.breaker import BreakerState
from artisan_ensemble.ensemble.formula import concentration_for
from artisan_ensemble.ensemble.ports import FinishReason, Generation, GenerationRequest, TokenUsage
from artisan_ensemble.service import EnsembleService, ModelCallError, NoModelAvailableError

REFERENCE_REWARDS = 1000
"""Recent curated rewards the outlier test compares a new sample against."""


@dataclass
class EnsembleRuntime:
    """Everything the handlers share; built by the app's lifespan, kept on ``app.state.runtime``."""

    service: EnsembleService | None = None
    store: FeedbackStore | None = None
    admin_token: str | None = None
    load_errors: dict[str, str] = field(default_factory=dict)
    expected_roles: tuple[str, ...] = ()
    loaded_roles: tuple[str, ...] = ()
    policy_description: str = "heuristic"
    feedback_lock: threading.Lock = field(default_factory=threading.Lock)
    """Makes the feedback rate limit's check and insert one step within this pod."""


async def runtime(request: Request) -> EnsembleRuntime:
    state: EnsembleRuntime = request.app.state.runtime
    return state


Runtime = Annotated[EnsembleRuntime, Depends(runtime)]


async def ready_service(rt: Runtime) -> EnsembleService:
    if rt.service is None:
        raise UnavailableError("models are not loaded yet", 5)
    return rt.service


Service = Annotated[EnsembleService, Depends(ready_service)]


ADMIN_TOKEN_HEADER = "X-Artisan-Admin-Token"
"""The admin token in its own header: the API server's service proxy (``kubectl artisan cache clear``
without --url) consumes ``Authorization`` and does not forward it (kubernetes/kubernetes#38775)."""


def _same_token(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


async def require_admin(
    rt: Runtime,
    authorization: Annotated[str | None, Header()] = None,
    x_artisan_admin_token: Annotated[str | None, Header(alias=ADMIN_TOKEN_HEADER)] = None,
) -> None:
    if rt.admin_token is None:
        raise HTTPException(403, "admin endpoints are disabled: set ARTISAN_ENSEMBLE_ADMIN_TOKEN")
    scheme, _, bearer = (authorization or "").partition(" ")
    by_bearer = scheme.lower() == "bearer" and _same_token(bearer, rt.admin_token)
    by_header = x_artisan_admin_token is not None and _same_token(x_artisan_admin_token, rt.admin_token)
    if not (by_bearer or by_header):
        raise HTTPException(
            401,
            f"a valid bearer token (or {ADMIN_TOKEN_HEADER} header) is required",
            headers={"WWW-Authenticate": "Bearer"},
        )


router = APIRouter()
admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], tags=["admin"])


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """Liveness: the process serves HTTP."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
async def readyz(rt: Runtime) -> JSONResponse:
    """Readiness: every pinned model is loaded."""
    loaded = sorted(rt.loaded_roles)
    missing = [r for r in rt.expected_roles if r not in loaded]
    ready = rt.service is not None and not missing
    body = {
        "ready": ready,
        "loaded": loaded,
        "missing": missing,
        "errors": rt.load_errors,
        # "heuristic" when no policy is configured or the configured checkpoint was unusable
        # (then errors["policy"] says why): the service answers either way.
        "formulaPolicy": rt.policy_description,
    }
    return JSONResponse(status_code=200 if ready else 503, content=body)


@router.get("/metrics", tags=["health"], response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.post(
    "/v1/briefs",
    response_model=BriefResponse,
    response_model_by_alias=True,
    tags=["ensemble"],
    responses={429: {"description": "queue full"}, 503: {"description": "no model can answer"}},
)
async def create_brief(body: BriefRequest, service: Service) -> Response:
    """Text → brief → validation → hints → formula; the answer states requested and served mode."""
    limit = service.config.limits.max_text_chars
    if len(body.text) > limit:
        return JSONResponse(
            status_code=422,
            content={"error": f"text: at most {limit} characters", "field": "text"},
        )
    try:
        result = await service.brief(body.text, body.mode, body.language)
    except NoModelAvailableError as error:
        raise UnavailableError(str(error), error.retry_after_seconds) from error
    # The service built a validated model: serialize it once (FastAPI would validate it again).
    return Response(result.model_dump_json(by_alias=True), media_type="application/json")


@router.post("/v1/formulas", response_model=FormulaOut, response_model_by_alias=True, tags=["ensemble"])
async def create_formula(body: FormulaRequest, service: Service) -> FormulaOut:
    """A formula for a (possibly edited) brief, checked against IFRA limits and allergens."""
    return service.formula(body.brief)


@router.post(
    "/v1/feedback",
    status_code=202,
    response_model=FeedbackResponse,
    response_model_by_alias=True,
    tags=["feedback"],
    responses={422: {"description": "rejected by curation (the reason is given)"}},
)
async def submit_feedback(body: FeedbackRequest, service: Service, rt: Runtime) -> Any:
    """Curate a rating and store it: 202 when accepted, 422 with the curation reason when rejected."""
    store = rt.store
    if store is None:
        raise UnavailableError("feedback store is not open", 5)
    spec = service.config.curation
    compliant = body.ifra_compliant
    if body.formula is not None:
        unknown = sorted(i for i in body.formula if i not in service.catalog)
        if unknown:
            raise HTTPException(422, {"error": f"formula: unknown ingredients {unknown}", "field": "formula"})
        concentration = concentration_for(body.brief) if body.brief is not None else 0.2
        try:
            compliant = check_formula(body.formula, service.catalog, concentration).compliant
        except ValueError as error:
            raise HTTPException(422, {"error": f"formula: {error}", "field": "formula"}) from error
    if compliant is None:
        raise HTTPException(
            422, {"error": "ifraCompliant: required when no formula is given", "field": "ifraCompliant"}
        )
    now = datetime.now(UTC)
    sample = FeedbackSample(
        sample_id=body.sample_id or uuid.uuid4().hex,
        user_id=body.user_id,
        brief_id=body.brief_id,
        brief=body.brief.to_wire() if body.brief is not None else None,
        formula=body.formula,
        rating=body.rating,
        reward=body.reward if body.reward is not None else rating_to_reward(body.rating, spec),
        response_seconds=body.response_seconds,
        ifra_compliant=compliant,
        created_at=now,
        variant=body.variant,
    )

    def curate_and_store() -> tuple[FeedbackSample, str | None, bool]:
        reference_rewards = [s.reward for s in store.curated(limit=REFERENCE_REWARDS)]  # not racy
        # The rate limit reads the user's recent submissions and then inserts: one step under the
        # lock, or concurrent submissions would all read the same history and all pass. The time is
        # taken inside, so every sample's window sees the ones stored before it.
        with rt.feedback_lock:
            at = datetime.now(UTC)
            stamped = sample.model_copy(update={"created_at": at})
            history = CurationHistory(
                user_submissions=store.user_submissions_since(
                    stamped.user_id, at - timedelta(minutes=spec.rate_limit_window_minutes)
                ),
                reference_rewards=reference_rewards,
            )
            reason = filter_sample(stamped, spec, history)
            stored = store.add(stamped, reason)
        return stamped, (reason.value if reason is not None else None), stored

    sample, reason, stored = await asyncio.to_thread(curate_and_store)
    if stored:  # an idempotent retry is not a new sample
        service.metrics.record_curation(reason or "accepted")
    result = FeedbackResponse(
        sample_id=sample.sample_id, accepted=reason is None, stored=stored, reason=reason
    )
    if reason is not None:
        return JSONResponse(
            status_code=422, content={**result.to_wire(), "field": "feedback", "error": reason}
        )
    return result


@router.get("/v1/models", response_model=ModelsResponse, response_model_by_alias=True, tags=["ensemble"])
async def list_models(service: Service, rt: Runtime) -> ModelsResponse:
    models = []
    for role, generator in service.generators.items():
        info = generator.info
        state = service.breakers[role].state
        models.append(
            ModelOut(
                role=role,
                name=info.name,
                revision=info.revision,
                commit=info.commit,
                source=info.source,
                device=info.device,
                parameters=info.parameters,
                breaker=state.value,
                healthy=state is not BreakerState.OPEN,
            )
        )
    return ModelsResponse(
        models=models,
        formula_policy=rt.policy_description,
        modes={m: service.config.modes.params(m).to_wire() for m in ("fast", "balanced", "creative")},
    )


def _chat_prompt(body: ChatCompletionRequest) -> str:
    lines = [f"{m.role}: {m.content}" for m in body.messages]
    return "\n".join([*lines, "assistant:"])


@router.post(
    "/v1/chat/completions",
    tags=["openai"],
    responses={429: {"description": "queue full"}, 503: {"description": "primary model down"}},
)
async def chat_completions(body: ChatCompletionRequest, service: Service) -> Response:
    """OpenAI-compatible chat completion on the primary model (``stream: true`` sends SSE chunks).

    ``usage`` counts tokens with the model's tokenizer (null for a backend that cannot count);
    ``finish_reason`` is ``length`` when max_tokens (or the deadline) cut the answer, else ``stop``.
    Streamed, ``stream_options.include_usage`` adds OpenAI's last chunk: empty choices, the usage."""
    fast = service.config.modes.params("fast")

    def generation(admitted: float) -> GenerationRequest:
        # The budget starts at admission, as for briefs: queue time is not the model's fault.
        return GenerationRequest(
            prompt=_chat_prompt(body),
            max_new_tokens=body.max_tokens or fast.max_new_tokens,
            temperature=body.temperature if body.temperature is not None else fast.temperature,
            top_p=body.top_p if body.top_p is not None else fast.top_p,
            deadline=admitted + fast.timeout_seconds,
            seed=body.seed,
        )

    model_name = service.generators["primary"].info.name
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    metrics = service.metrics
    started = service.clock()
    if not body.stream:
        async with service.admit() as ticket:
            metrics.queue_wait.observe(ticket.queued_seconds)
            try:
                result = await service.complete("primary", generation(time.monotonic()), "fast")
            except ModelCallError as error:
                metrics.record_chat("error")
                raise UnavailableError(str(error), service.retry_after("primary")) from error
        metrics.record_chat(result.finish_reason, service.clock() - started)
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": result.text},
                        "finish_reason": result.finish_reason,
                    }
                ],
                "usage": _usage(result.usage),
            }
        )
    ticket = await service.admission.acquire()  # 429 when the queue is full
    metrics.queue_wait.observe(ticket.queued_seconds)
    release = service.admission.releaser()
    try:
        service.check_chat_stream()
    except ModelCallError as error:
        release()
        metrics.record_chat("error")
        raise UnavailableError(str(error), service.retry_after("primary")) from error
    request = generation(time.monotonic())
    include_usage = body.stream_options is not None and body.stream_options.include_usage

    def event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_name,
            "choices": choices,
        }
        if include_usage:  # as OpenAI: null on every chunk but the last
            payload["usage"] = usage
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

    def chunk(delta: dict[str, str], finish: FinishReason | None) -> bytes:
        return event([{"index": 0, "delta": delta, "finish_reason": finish}])

    async def events() -> AsyncIterator[bytes]:
        try:
            yield chunk({"role": "assistant"}, None)
            result: Generation | None = None
            try:
                async for item in service.chat_stream(request):
                    if isinstance(item, Generation):
                        result = item
                    else:
                        yield chunk({"content": item}, None)
            except ModelCallError as error:  # failed after the 200 was sent: all SSE can still say
                metrics.record_chat("error")
                yield f"data: {json.dumps({'error': {'message': str(error)}})}\n\n".encode()
            else:
                finish = result.finish_reason if result is not None else "stop"
                # Generation is over: its end-to-end time stops here, not when the client reads the end.
                metrics.record_chat(finish, service.clock() - started)
                yield chunk({}, finish)
                if include_usage:
                    yield event([], _usage(result.usage if result is not None else None))
            yield b"data: [DONE]\n\n"
        finally:
            release()  # at once when the stream ends; the response's close covers a stream never started

    return SlotReleasingStream(events(), release)


def _usage(usage: TokenUsage | None) -> dict[str, int] | None:
    """OpenAI's ``usage``; null when the backend has no tokenizer to count with (never estimated)."""
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


@admin.post("/faults", status_code=201)
async def inject_fault(body: FaultRequest, service: Service) -> dict[str, Any]:
    """Make one model fail (error) or hang (timeout) for a while: a drill for the downshift runbooks."""
    fault = service.faults.inject(body.model, body.kind, body.duration_seconds)
    return {"model": body.model, "kind": fault.kind, "expiresInSeconds": body.duration_seconds}


@admin.delete("/faults")
async def clear_faults(service: Service) -> dict[str, Any]:
    service.faults.clear()
    return {"cleared": True}


@admin.post("/cache/clear")
async def clear_cache(service: Service) -> dict[str, int]:
    return {"removed": service.cache.clear()}


@admin.post("/breakers/reset")
async def reset_breakers(service: Service) -> dict[str, bool]:
    for breaker in service.breakers.values():
        breaker.reset()
    return {"reset": True}


@admin.get("/state")
async def admin_state(service: Service) -> dict[str, Any]:
    return {
        "breakers": {role: b.state.value for role, b in service.breakers.items()},
        "faults": {role: f.kind for role, f in service.faults.snapshot().items()},
        "cacheEntries": len(service.cache),
        "queue": {"running": service.admission.running, "waiting": service.admission.waiting},
        "load": service.admission.load,
    }
