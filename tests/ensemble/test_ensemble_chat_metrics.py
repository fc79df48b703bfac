"""Chat completion metrics: token counters, finish_reason counts, queue-wait and end-to-end time."""

from __future__ import annotations

import collections

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from artisan_common.catalog import IngredientCatalog

from .conftest import FakeClock, fake_generators, sse_events
from .test_ensemble_api import make_app

CHAT = {"messages": [{"role": "user", "content": "a fresh citrus scent"}]}


def sample(client: TestClient, name: str, **labels: str) -> float | None:
    """One sample's value from /metrics, None when the series is not exported."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def test_token_and_finish_reason_counters_add_up_the_answers_usage(tiny_client: TestClient) -> None:
    plain = tiny_client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 3, "seed": 1})
    assert plain.status_code == 200
    events = sse_events(
        tiny_client, {**CHAT, "max_tokens": 5, "seed": 2, "stream_options": {"include_usage": True}}
    )
    usages = [plain.json()["usage"], events[-1]["usage"]]
    reasons = [plain.json()["choices"][0]["finish_reason"], events[-2]["choices"][0]["finish_reason"]]
    assert all(u["prompt_tokens"] > 0 and u["completion_tokens"] > 0 for u in usages)
    assert sample(tiny_client, "artisan_prompt_tokens_total", model="primary") == sum(
        u["prompt_tokens"] for u in usages
    )
    assert sample(tiny_client, "artisan_generation_tokens_total", model="primary") == sum(
        u["completion_tokens"] for u in usages
    )
    expected = collections.Counter(reasons)
    for outcome in ("stop", "length", "error"):
        counted = sample(tiny_client, "artisan_chat_completions_total", finish_reason=outcome)
        assert counted == expected[outcome]
    e2e = "artisan_request_end_to_end_seconds_count"
    assert sample(tiny_client, e2e, endpoint="chat_completions") == 2
    assert sample(tiny_client, e2e, endpoint="briefs") is None  # chat is not recorded as a brief
    assert sample(tiny_client, "artisan_queue_wait_seconds_count") == 2


def test_brief_model_calls_count_their_tokens_per_role(tiny_client: TestClient) -> None:
    """The brief pipeline's calls take the same counted path: every role that ran adds tokens, each
    call at most the mode's 6 new tokens (the primary may be called twice: the parse retry)."""
    response = tiny_client.post("/v1/briefs", json={"text": "a bold leather scent", "mode": "creative"})
    assert response.status_code == 200
    assert set(response.json()["models"]) == {"primary", "validator", "creative"}
    for role, calls in (("primary", 2), ("validator", 1), ("creative", 1)):
        assert (sample(tiny_client, "artisan_prompt_tokens_total", model=role) or 0) > 0
        generated = sample(tiny_client, "artisan_generation_tokens_total", model=role) or 0
        assert 1 <= generated <= 6 * calls
    assert sample(tiny_client, "artisan_chat_completions_total", finish_reason="stop") == 0


def test_backend_without_tokenizer_counts_no_tokens_and_failures_count_as_error(
    catalog: IngredientCatalog, clock: FakeClock
) -> None:
    fakes = fake_generators()
    with TestClient(make_app(fakes, catalog, clock)) as client:
        assert client.post("/v1/chat/completions", json=CHAT).json()["usage"] is None
        assert sample(client, "artisan_prompt_tokens_total", model="primary") is None
        assert sample(client, "artisan_generation_tokens_total", model="primary") is None
        assert sample(client, "artisan_chat_completions_total", finish_reason="stop") == 1
        fakes["primary"].failing = True
        events = sse_events(client, CHAT)  # fails after the 200: an SSE error event
        assert "error" in events[-1]
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 503
        assert sample(client, "artisan_chat_completions_total", finish_reason="error") == 2
        # only the answered request has an end-to-end time; all three waited in the queue
        e2e = "artisan_request_end_to_end_seconds_count"
        assert sample(client, e2e, endpoint="chat_completions") == 1
        assert sample(client, "artisan_queue_wait_seconds_count") == 3
