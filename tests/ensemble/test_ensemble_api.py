"""The ensemble HTTP API with scripted fake backends: fallbacks, downshift, cache, queue, admin, feedback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from artisan_common.catalog import IngredientCatalog
from artisan_ensemble.app import create_app
from artisan_ensemble.ensemble.cache import cache_key
from artisan_ensemble.ensemble.config import ServiceConfig
from artisan_ensemble.settings import EnsembleSettings

from .conftest import FakeClock, FakeGenerator, fake_generators, fast_config

TOKEN = "drill-token"
GARBAGE = "\x17�ZK complexity� sty 8hello{{ :: ]]"


def make_app(
    generators: dict[str, FakeGenerator],
    catalog: IngredientCatalog,
    clock: FakeClock | None = None,
    config: ServiceConfig | None = None,
) -> FastAPI:
    settings = EnsembleSettings(admin_token=TOKEN)  # type: ignore[arg-type]
    return create_app(
        settings,
        config=config or fast_config(),
        generators=generators,  # type: ignore[arg-type]
        catalog=catalog,
        **({"clock": clock} if clock is not None else {}),
    )


@pytest.fixture
def fakes() -> dict[str, FakeGenerator]:
    return fake_generators()


@pytest.fixture
def client(
    fakes: dict[str, FakeGenerator], catalog: IngredientCatalog, clock: FakeClock
) -> Iterator[TestClient]:
    with TestClient(make_app(fakes, catalog, clock)) as test_client:
        yield test_client


def brief(client: TestClient, text: str, mode: str = "creative") -> dict[str, Any]:
    response = client.post("/v1/briefs", json={"text": text, "mode": mode})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def admin(client: TestClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return client.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"}, **kwargs)


def test_healthy_models_answer_in_the_requested_mode(
    client: TestClient, fakes: dict[str, FakeGenerator]
) -> None:
    body = brief(client, "상큼한 시트러스 향수")
    assert body["briefSource"] == "model"
    assert body["mode"] == {
        "requested": "creative",
        "served": "creative",
        "route": "models",
        "downshifted": False,
        "reason": "as requested",
    }
    assert body["validation"]["source"] == "model"
    assert body["hints"]["source"] == "model"
    assert body["formula"]["ifra"]["compliant"] is True
    assert sum(i["proportion"] for i in body["formula"]["ingredients"]) == pytest.approx(1, abs=1e-3)
    assert set(body["models"]) == {"primary", "validator", "creative"}
    assert body["fallbacks"] == []
    assert fakes["primary"].calls[0].max_new_tokens == 8


@pytest.mark.parametrize(
    ("text", "language", "family"),
    [("상큼한 꽃향기가 나는 향수", "ko", "floral"), ("a woody, smoky evening", "en", "woody")],
)
def test_garbage_model_output_still_yields_a_valid_brief_and_says_so(
    catalog: IngredientCatalog, text: str, language: str, family: str
) -> None:
    fakes = fake_generators(primary=GARBAGE, validator=GARBAGE, creative=GARBAGE)
    with TestClient(make_app(fakes, catalog)) as client:
        body = brief(client, text)
    assert body["briefSource"] == "keywords"
    assert body["brief"]["language"] == language
    assert family in body["brief"]["noteFamilies"]
    assert len(fakes["primary"].calls) == 2  # one retry, greedy
    assert fakes["primary"].calls[1].temperature == 0
    fallbacks = " | ".join(body["fallbacks"])
    assert "primary output unusable" in fallbacks
    assert "validator output unusable" in fallbacks
    assert "creative output unusable" in fallbacks
    assert body["validation"]["source"] == "rules"
    assert body["hints"]["source"] == "template"
    assert 5 <= len(body["hints"]["items"]) <= 8
    # every model answered, only their output was unusable: a fallback, not a downshift
    assert body["mode"]["served"] == "creative"
    assert body["mode"]["route"] == "keywords"
    assert body["mode"]["downshifted"] is False
    assert body["mode"]["reason"] == "primary output unusable: brief from the keyword dictionary"


def test_downshift_tree_every_rung_and_back(catalog: IngredientCatalog, clock: FakeClock) -> None:
    fakes = fake_generators()
    config = fast_config(downshift={"failureThreshold": 2, "holdSeconds": 10_000})
    with TestClient(make_app(fakes, catalog, clock, config)) as client:
        _walk_the_tree(client, fakes, clock)


def _walk_the_tree(client: TestClient, fakes: dict[str, FakeGenerator], clock: FakeClock) -> None:
    cached = brief(client, "cached request", "balanced")
    assert cached["mode"]["route"] == "models"

    # creative model fails: served balanced; after 2 failures the breaker opens and plans balanced directly.
    fakes["creative"].failing = True
    first = brief(client, "creative down 1")
    assert (first["mode"]["served"], first["mode"]["downshifted"]) == ("balanced", True)
    assert "creative model call failed" in first["mode"]["reason"]
    brief(client, "creative down 2")
    third = brief(client, "creative down 3")
    assert third["mode"]["served"] == "balanced"
    assert "creative model unavailable (circuit open)" in third["mode"]["reason"]

    # validator down too: fast.
    fakes["validator"].failing = True
    for n in range(2):
        brief(client, f"validator down {n}")
    fast = brief(client, "validator down 3")
    assert fast["mode"]["served"] == "fast"
    assert "validator model unavailable" in fast["mode"]["reason"]
    assert fast["validation"]["source"] == "rules"

    # primary down as well (everything down): cache only, else 503 with Retry-After.
    fakes["primary"].failing = True
    for n in range(2):
        brief(client, f"primary down {n}")
    clock.advance(2000)  # everything cached so far is now expired: only stale-if-error may serve it
    stale = brief(client, "cached request", "balanced")
    assert stale["mode"]["route"] == "stale-cache"
    assert "all models down" in stale["mode"]["reason"]
    assert stale["briefSource"] == "cache"
    assert stale["brief"] == cached["brief"]
    refused = client.post("/v1/briefs", json={"text": "never seen before", "mode": "fast"})
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1

    # the validator recovers, the primary does not: rule-based (keyword) briefs for new texts.
    fakes["validator"].failing = False
    clock.advance(10_001)
    probe = brief(client, "상큼한 레몬 향", "balanced")  # the primary's half-open probe fails
    assert (probe["mode"]["route"], probe["briefSource"]) == ("keywords", "keywords")
    assert "primary model call failed" in probe["mode"]["reason"]
    assert "citrus" in probe["brief"]["noteFamilies"]
    rules = brief(client, "a woody forest", "balanced")
    assert rules["mode"]["route"] == "keywords"
    assert "primary model unavailable" in rules["mode"]["reason"]
    assert brief(client, "cached request", "balanced")["mode"]["route"] == "stale-cache"

    metrics = client.get("/metrics").text
    assert 'model_health_status{model="fake-primary",role="primary"} 0.0' in metrics
    assert 'artisan_breaker_state{model="creative"} 2.0' in metrics
    assert 'hybrid_switch_total{from_mode="creative",to_mode="balanced"}' in metrics
    assert 'hybrid_switch_total{from_mode="balanced",to_mode="rules"}' in metrics

    # recovery: after holdSeconds one probe per model closes each breaker again.
    for generator in fakes.values():
        generator.failing = False
    clock.advance(10_001)
    recovered = brief(client, "all healthy again")
    assert (recovered["mode"]["served"], recovered["mode"]["route"]) == ("creative", "models")
    assert 'model_health_status{model="fake-primary",role="primary"} 1.0' in client.get("/metrics").text


def test_cache_hits_and_ttl_rules(
    client: TestClient, fakes: dict[str, FakeGenerator], clock: FakeClock
) -> None:
    service = client.app.state.runtime.service  # type: ignore[attr-defined]
    first = brief(client, "Fresh citrus", "fast")
    again = brief(client, "  fresh   CITRUS ", "fast")
    assert again["mode"]["route"] == "cache"
    assert again["brief"] == first["brief"]
    assert len(fakes["primary"].calls) == 1
    # idle (load < 0.3): normal TTL 3600 halves to 1800
    assert service.cache.ttl_of(cache_key("fresh citrus", "fast", service.pins, language="en")) == 1800
    clock.advance(1801)
    assert brief(client, "fresh citrus", "fast")["mode"]["route"] == "models"
    # downshifted answers get the short TTL (300, never raised by the low-load rule)
    fakes["validator"].failing = True
    brief(client, "validator failing", "balanced")
    validator_key = cache_key("validator failing", "balanced", service.pins, language="en")
    assert service.cache.ttl_of(validator_key) == 300
    text = client.get("/metrics").text
    assert 'artisan_cache_hits_total{kind="fresh"} 1.0' in text
    cleared = admin(client, "POST", "/admin/cache/clear")
    assert cleared.json()["removed"] >= 2


async def test_queue_overflow_gets_429_with_retry_after(catalog: IngredientCatalog) -> None:
    gate = threading.Event()
    fakes = fake_generators()
    fakes["primary"].gate = gate
    config = fast_config(queue={"maxConcurrent": 1, "maxWaiting": 1, "retryAfterSeconds": 3})
    app = make_app(fakes, catalog, config=config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def send(n: int) -> httpx.Response:
                return await client.post("/v1/briefs", json={"text": f"queued {n}", "mode": "fast"})

            running = asyncio.create_task(send(0))
            waiting = asyncio.create_task(send(1))
            for _ in range(200):
                service = app.state.runtime.service
                if service.admission.running == 1 and service.admission.waiting == 1:
                    break
                await asyncio.sleep(0.01)
            refused = await send(2)
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == "3"
            metrics = (await client.get("/metrics")).text
            assert "artisan_queue_size 1.0" in metrics
            assert "artisan_queue_capacity 1.0" in metrics  # the alert's denominator: maxWaiting
            assert 'artisan_requests_rejected_total{reason="overload"} 1.0' in metrics
            gate.set()
            assert (await running).status_code == 200
            assert (await waiting).status_code == 200


def test_admin_needs_the_token_and_injects_faults(client: TestClient) -> None:
    assert client.post("/admin/cache/clear").status_code == 401
    assert client.post("/admin/cache/clear", headers={"Authorization": "Bearer wrong"}).status_code == 401
    fault = admin(
        client, "POST", "/admin/faults", json={"model": "primary", "kind": "error", "durationSeconds": 30}
    )
    assert fault.status_code == 201
    body = brief(client, "fault drill", "fast")
    assert body["briefSource"] == "keywords"
    assert "injected error fault" in body["mode"]["reason"]
    assert admin(client, "GET", "/admin/state").json()["faults"] == {"primary": "error"}
    admin(client, "DELETE", "/admin/faults")
    assert brief(client, "after the drill", "fast")["briefSource"] == "model"
    bad = admin(client, "POST", "/admin/faults", json={"model": "gpu", "kind": "error", "durationSeconds": 1})
    assert bad.status_code == 422
    assert bad.json()["field"] == "model"


def test_admin_token_also_works_in_its_own_header(client: TestClient) -> None:
    """The API server's proxy strips Authorization (kubernetes#38775): X-Artisan-Admin-Token gets through."""
    assert client.post("/admin/cache/clear", headers={"X-Artisan-Admin-Token": TOKEN}).status_code == 200
    wrong = client.post("/admin/cache/clear", headers={"X-Artisan-Admin-Token": "wrong"})
    assert wrong.status_code == 401
    assert "X-Artisan-Admin-Token" in wrong.text
    assert client.post("/admin/cache/clear", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_admin_is_disabled_without_a_configured_token(
    fakes: dict[str, FakeGenerator], catalog: IngredientCatalog
) -> None:
    app = create_app(EnsembleSettings(), config=fast_config(), generators=fakes, catalog=catalog)  # type: ignore[arg-type]
    with TestClient(app) as client:
        assert client.post("/admin/cache/clear", headers={"Authorization": "Bearer x"}).status_code == 403


def test_timeout_fault_counts_as_a_failure(catalog: IngredientCatalog) -> None:
    config = fast_config(modes={"fast": {"timeoutSeconds": 0.2}})
    with TestClient(make_app(fake_generators(), catalog, config=config)) as client:
        admin(
            client,
            "POST",
            "/admin/faults",
            json={"model": "primary", "kind": "timeout", "durationSeconds": 30},
        )
        body = brief(client, "slow primary", "fast")
    assert body["briefSource"] == "keywords"
    assert "timeout" in body["mode"]["reason"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"text": "x" * 2001}, "text"),
        ({"text": "   "}, "text"),
        ({"text": "ok", "mode": "turbo"}, "mode"),
        ({"text": "ok", "userId": "bad id!"}, "userId"),
        ({"text": "ok", "surprise": 1}, "surprise"),
        ({}, "text"),
    ],
)
def test_invalid_input_is_refused_naming_the_field(
    client: TestClient, payload: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/briefs", json=payload)
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_configured_text_limit(catalog: IngredientCatalog) -> None:
    config = fast_config(limits={"maxTextChars": 10})
    with TestClient(make_app(fake_generators(), catalog, config=config)) as client:
        response = client.post("/v1/briefs", json={"text": "x" * 11})
        assert response.status_code == 422
        assert response.json()["field"] == "text"
        assert client.post("/v1/briefs", json={"text": "x" * 10}).status_code == 200


def test_request_body_limit(client: TestClient) -> None:
    response = client.post(
        "/v1/briefs", content=b"{" + b" " * 70_000 + b"}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["field"] == "body"


def test_feedback_is_curated_then_stored(client: TestClient) -> None:
    body = brief(client, "fresh citrus", "fast")
    formula = {i["id"]: i["proportion"] for i in body["formula"]["ingredients"]}
    good = {
        "sampleId": "s-1",
        "userId": "u-1",
        "brief": body["brief"],
        "formula": formula,
        "rating": 4,
        "responseSeconds": 12,
    }
    accepted = client.post("/v1/feedback", json=good)
    assert accepted.status_code == 202
    assert accepted.json() == {"sampleId": "s-1", "accepted": True, "stored": True, "reason": None}
    assert client.post("/v1/feedback", json=good).json()["stored"] is False  # idempotent retry
    careless = {**good, "sampleId": "s-2", "responseSeconds": 0.3}
    rejected = client.post("/v1/feedback", json=careless)
    assert rejected.status_code == 422
    assert rejected.json()["reason"] == "response_too_fast"
    unsafe = {"userId": "u-2", "formula": {"citral": 1.0}, "rating": 5, "responseSeconds": 10}
    assert client.post("/v1/feedback", json=unsafe).json()["reason"] == "ifra_noncompliant"
    unknown = client.post("/v1/feedback", json={**good, "sampleId": "s-3", "formula": {"unobtainium": 1.0}})
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "formula"
    not_json = client.post("/v1/feedback", content=b"{not json", headers={"content-type": "application/json"})
    assert not_json.status_code in (400, 422)
    assert set(not_json.json()) >= {"error"}  # the same shape as every other error
    assert client.get("/v1/nowhere").json() == {"error": "Not Found"}
    store = client.app.state.runtime.store  # type: ignore[attr-defined]
    assert store.counts() == {"accepted": 1, "response_too_fast": 1, "ifra_noncompliant": 1}
    metrics = client.get("/metrics").text
    assert 'data_curation_samples_total{outcome="accepted"} 1.0' in metrics
    assert "data_curation_acceptance_rate 0.333" in metrics


def test_formulas_models_health_and_metrics(client: TestClient) -> None:
    brief_body = brief(client, "warm vanilla amber", "fast")
    formula = client.post("/v1/formulas", json={"brief": brief_body["brief"]})
    assert formula.status_code == 200
    assert formula.json()["ingredients"] == brief_body["formula"]["ingredients"]
    models = client.get("/v1/models").json()
    assert {m["role"] for m in models["models"]} == {"primary", "validator", "creative"}
    assert models["modes"]["fast"]["maxNewTokens"] == 8
    assert isinstance(models["modes"]["fast"]["maxNewTokens"], int)  # a token count, not 8.0
    assert models["formulaPolicy"] == "heuristic"
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json()["ready"] is True
    text = client.get("/metrics").text
    for name in (
        "artisan_brief_latency_seconds_bucket",
        "llm_brief_elapsed_ms_bucket",
        "artisan_queue_wait_seconds_bucket",
        "artisan_request_end_to_end_seconds_bucket",
        "ifra_compliance_rate 1.0",
        "allergen_hits_total",
        'artisan_http_requests_total{method="POST",route="/v1/briefs",status="200"}',
    ):
        assert name in text


def test_chat_completions_plain_and_streaming(client: TestClient) -> None:
    request = {"model": "any", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    plain = client.post("/v1/chat/completions", json=request)
    assert plain.status_code == 200
    assert plain.json()["choices"][0]["message"]["content"]
    # The fake backend has no tokenizer: usage is null (never estimated) and it ended by itself.
    assert plain.json()["usage"] is None
    assert plain.json()["choices"][0]["finish_reason"] == "stop"
    stream_request = {**request, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=stream_request) as response:
        counted = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert json.loads(counted[-2]) | {"created": 0, "id": ""} == {
        "id": "",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake-primary",
        "choices": [],
        "usage": None,
    }
    assert json.loads(counted[-3])["choices"][0]["finish_reason"] == "stop"
    with client.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == json.dumps(
        {
            "style": "citrus",
            "intensity": 0.4,
            "complexity": 0.5,
            "noteFamilies": {"citrus": 0.9, "fresh": 0.6},
        }
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "artisan_time_to_first_token_seconds_count" in client.get("/metrics").text


def test_model_health_series_name_each_pinned_model_and_its_role_only(catalog: IngredientCatalog) -> None:
    """The contract the operator's fleet health and ``kubectl artisan metrics-check`` read: one
    ``model_health_status{model=<pinned name>, role=<role>}`` per pinned role, none for unpinned roles."""
    fakes = fake_generators()
    del fakes["creative"]
    with TestClient(make_app(fakes, catalog)) as client:
        health = [
            line
            for line in client.get("/metrics").text.splitlines()
            if line.startswith("model_health_status{")
        ]
    assert sorted(health) == [
        'model_health_status{model="fake-primary",role="primary"} 1.0',
        'model_health_status{model="fake-validator",role="validator"} 1.0',
    ]


async def test_time_spent_queued_does_not_trip_healthy_models_breakers(catalog: IngredientCatalog) -> None:
    """Overload must not look like model failure: a request that waited most of its mode's timeout
    in the admission queue still gets the whole generation budget once admitted, and no breaker opens
    for a healthy (if slow) model."""
    fakes = fake_generators()
    fakes["primary"].delay = 0.15  # well within the fast mode's 0.4 s, but the queue waits 6 x 0.15 s
    config = fast_config(
        modes={"fast": {"timeoutSeconds": 0.4}},
        queue={"maxConcurrent": 1, "maxWaiting": 6},
        downshift={"failureThreshold": 2, "holdSeconds": 60},
    )
    app = make_app(fakes, catalog, config=config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(
                *(
                    client.post("/v1/briefs", json={"text": f"queued request {n}", "mode": "fast"})
                    for n in range(7)
                )
            )
            service = app.state.runtime.service
            assert [r.status_code for r in responses] == [200] * 7
            assert {r.json()["briefSource"] for r in responses} == {"model"}
            assert {r.json()["mode"]["downshifted"] for r in responses} == {False}
            assert {b.state.value for b in service.breakers.values()} == {"closed"}
            metrics = (await client.get("/metrics")).text
            assert 'artisan_model_calls_total{model="primary",result="error"}' not in metrics
            assert "hybrid_switch_total{" not in metrics


def test_the_cache_answers_only_in_the_language_asked_for(
    client: TestClient, fakes: dict[str, FakeGenerator]
) -> None:
    english = client.post("/v1/briefs", json={"text": "fresh citrus", "mode": "fast", "language": "en"})
    korean = client.post("/v1/briefs", json={"text": "fresh citrus", "mode": "fast", "language": "ko"})
    assert english.json()["brief"]["language"] == "en"
    assert korean.json()["mode"]["route"] != "cache"
    assert korean.json()["brief"]["language"] == "ko"
    again = client.post("/v1/briefs", json={"text": "fresh citrus", "mode": "fast", "language": "ko"})
    assert again.json()["mode"]["route"] == "cache"
    assert again.json()["brief"]["language"] == "ko"
    assert len(fakes["primary"].calls) == 2


def test_a_primary_failing_mid_request_counts_one_switch_to_the_stale_cache(
    client: TestClient, fakes: dict[str, FakeGenerator], clock: FakeClock
) -> None:
    assert brief(client, "stale if error", "fast")["briefSource"] == "model"
    clock.advance(100_000)  # expired, kept for stale-if-error
    fakes["primary"].failing = True  # breaker still closed: the route plans the model, the call fails
    body = brief(client, "stale if error", "fast")
    assert body["mode"]["route"] == "stale-cache"
    assert body["briefSource"] == "cache"
    text = client.get("/metrics").text
    assert 'hybrid_switch_total{from_mode="fast",to_mode="cache"} 1.0' in text
    assert 'artisan_cache_hits_total{kind="stale"} 1.0' in text


def test_the_keyword_pre_parse_runs_once_per_request(
    catalog: IngredientCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-request overhead: the prompt hints, the rule-based brief and validation share one parse."""
    import artisan_ensemble.ensemble.validation as validation
    import artisan_ensemble.service as service_module

    calls: list[str] = []
    real = service_module.keyword_parse

    def counting(text: str, language: Any = None) -> Any:
        calls.append(text)
        return real(text, language)

    monkeypatch.setattr(service_module, "keyword_parse", counting)
    monkeypatch.setattr(validation, "keyword_parse", counting)
    with TestClient(make_app(fake_generators(primary=GARBAGE), catalog)) as client:
        body = brief(client, "상큼한 레몬 once", "balanced")
    assert body["briefSource"] == "keywords"  # the garbage path: prompt, retry prompt, fallback, rules
    assert calls == ["상큼한 레몬 once"]


CHAT = {"model": "any", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, "stream": True}


async def _chat_then_disconnect(app: FastAPI, spec_version: str, fail_sends: bool) -> list[dict[str, Any]]:
    """Drive the ASGI app as a server would for a client that goes away before the first chunk:
    ``fail_sends`` — the server's send raises (ASGI ≥ 2.4); otherwise it reports http.disconnect."""
    body = json.dumps(CHAT).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "app": app,
    }
    delivered = False
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if fail_sends:
            raise OSError("client went away")
        sent.append(message)

    with contextlib.suppress(Exception):
        await app(scope, receive, send)
    return sent


@pytest.mark.parametrize(("spec_version", "fail_sends"), [("2.4", True), ("2.0", False)])
async def test_a_stream_whose_client_leaves_before_the_first_chunk_frees_its_slot(
    catalog: IngredientCatalog, spec_version: str, fail_sends: bool
) -> None:
    gate = threading.Event()
    fakes = fake_generators()
    fakes["primary"].gate = gate  # the model has produced nothing when the client leaves
    config = fast_config(queue={"maxConcurrent": 1, "maxWaiting": 0})
    app = make_app(fakes, catalog, config=config)
    async with app.router.lifespan_context(app):
        service = app.state.runtime.service
        await _chat_then_disconnect(app, spec_version, fail_sends)
        # Freed by the response itself, not later by the garbage collector finalizing an abandoned
        # generator (which a server holding a reference, e.g. in a traceback, would delay forever).
        assert (service.admission.running, service.admission.waiting) == (0, 0)
        gate.set()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            after = await client.post("/v1/chat/completions", json={**CHAT, "stream": False})
        assert after.status_code == 200  # the only slot is free again
        assert (service.admission.running, service.admission.waiting) == (0, 0)


def test_a_stream_is_refused_with_503_and_retry_after_when_the_primary_cannot_answer(
    client: TestClient,
) -> None:
    fault = {"model": "primary", "kind": "error", "durationSeconds": 30}
    assert admin(client, "POST", "/admin/faults", json=fault).status_code == 201
    refused = client.post("/v1/chat/completions", json=CHAT)
    assert refused.status_code == 503
    assert "injected error fault" in refused.json()["error"]
    assert refused.headers["Retry-After"] == "1"
    client.post("/v1/chat/completions", json=CHAT)  # the second failure opens the breaker (threshold 2)
    admin(client, "DELETE", "/admin/faults")
    service = client.app.state.runtime.service  # type: ignore[attr-defined]
    assert service.breakers["primary"].state.value == "open"
    open_breaker = client.post("/v1/chat/completions", json=CHAT)
    assert open_breaker.status_code == 503
    assert "circuit open" in open_breaker.json()["error"]
    assert open_breaker.headers["Retry-After"] == "60"  # the breaker's hold
    assert (service.admission.running, service.admission.waiting) == (0, 0)


async def test_concurrent_feedback_cannot_overrun_the_per_user_rate_limit(catalog: IngredientCatalog) -> None:
    """The rate limit's read and the insert are one step: 12 simultaneous ratings from one user (limit
    5 per window) store exactly 5 accepted, even when reading the history is slow."""
    app = make_app(fake_generators(), catalog)
    async with app.router.lifespan_context(app):
        store = app.state.runtime.store
        read_history = store.user_submissions_since

        def slow_read(*args: Any) -> Any:
            history = read_history(*args)
            time.sleep(0.02)  # widens the window between the check and the insert
            return history

        store.user_submissions_since = slow_read
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            rating = {"userId": "eager", "ifraCompliant": True, "rating": 4, "responseSeconds": 9}
            responses = await asyncio.gather(
                *(client.post("/v1/feedback", json={**rating, "sampleId": f"r-{n}"}) for n in range(12))
            )
        reasons = sorted(str(r.json()["reason"]) for r in responses)
        assert reasons == ["None"] * 5 + ["rate_limited"] * 7
        assert store.counts() == {"accepted": 5, "rate_limited": 7}


def test_a_briefs_validation_lists_its_formulas_allergens_and_ifra_findings(client: TestClient) -> None:
    body = brief(client, "fresh citrus", "balanced")
    ifra = body["formula"]["ifra"]
    issues = body["validation"]["issues"]
    allergens = {a["allergen"] for a in ifra["allergens"]}
    assert allergens  # the citrus formula carries labelled allergens (limonene and friends)
    assert {i.split()[1] for i in issues if i.startswith("allergen:")} == allergens
    capped = {v["ingredient"] for v in ifra["rawViolations"]}
    assert {i.split()[1] for i in issues if i.startswith("ifra:")} == capped
    assert body["validation"]["valid"] is ifra["compliant"]
