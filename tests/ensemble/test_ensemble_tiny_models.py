"""The real transformers path with tiny random models: loading by pin, garbage output, streaming."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from fastapi.testclient import TestClient

from artisan_ensemble.api.models import ChatCompletionRequest
from artisan_ensemble.api.routes import _chat_prompt
from artisan_ensemble.app import create_app
from artisan_ensemble.backends.tiny import TINY_REVISION
from artisan_ensemble.backends.transformers_backend import TransformersGenerator, finish_reason
from artisan_ensemble.ensemble.ports import Generation, GenerationRequest, TokenUsage
from artisan_ensemble.settings import EnsembleSettings

from .conftest import fast_config, pin_file, sse_events

hf: Any = transformers


@pytest.fixture
def client(tiny_client: TestClient) -> TestClient:
    return tiny_client


def test_pinned_tiny_models_load_and_report(client: TestClient) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["loaded"] == ["creative", "primary", "validator"]
    models = {m["role"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["primary"]["name"] == "qwen"
    assert models["validator"]["revision"] == TINY_REVISION
    assert models["creative"]["device"] == "cpu"
    assert 10_000 < models["primary"]["parameters"] < 5_000_000
    # the pin's modes override the file's dev profile, field by field
    assert client.get("/v1/models").json()["modes"]["fast"] == {
        "maxNewTokens": 6,
        "temperature": 0.3,
        "topP": 0.8,
        "timeoutSeconds": 8.0,
    }


@pytest.mark.parametrize(
    ("text", "language", "family"),
    [
        ("상큼한 레몬과 꽃향기, 은은하게", "ko", "citrus"),
        ("a bold leather and amber evening scent", "en", "leather"),
    ],
)
def test_tiny_models_garbage_still_gives_valid_briefs(
    client: TestClient, text: str, language: str, family: str
) -> None:
    response = client.post("/v1/briefs", json={"text": text, "mode": "creative"})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    assert body["briefSource"] == "keywords"
    assert any("primary output unusable" in f for f in body["fallbacks"])
    assert body["brief"]["language"] == language
    assert family in body["brief"]["noteFamilies"]
    assert body["mode"]["requested"] == "creative"
    assert body["hints"]["source"] == "template"
    assert body["formula"]["ifra"]["compliant"] is True
    assert body["models"] == {
        "primary": "qwen@tiny-1",
        "validator": "mistral@tiny-1",
        "creative": "llama@tiny-1",
    }


CHAT = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}


def reference_generation(models: Path, request: dict[str, Any]) -> tuple[int, list[int], str]:
    """What the tiny primary produces greedily for ``request``, computed without the service: the
    prompt's token count (the tokenizer's), the new ids and their text."""
    tokenizer = hf.AutoTokenizer.from_pretrained(str(models / "primary"), local_files_only=True)
    model = hf.AutoModelForCausalLM.from_pretrained(str(models / "primary"), local_files_only=True)
    prompt_ids = tokenizer(_chat_prompt(ChatCompletionRequest.model_validate(request)), return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(
            **prompt_ids,
            max_new_tokens=request["max_tokens"],
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    prompt_tokens = int(prompt_ids["input_ids"].shape[1])
    new_ids = [int(i) for i in output[0][prompt_tokens:]]
    return prompt_tokens, new_ids, tokenizer.decode(new_ids, skip_special_tokens=True)


@pytest.mark.parametrize("max_tokens", [1, 4])
def test_chat_usage_is_the_tokenizers_count_and_a_cut_answer_is_length(
    client: TestClient, tiny_models: Path, max_tokens: int
) -> None:
    request = {**CHAT, "max_tokens": max_tokens, "temperature": 0}
    prompt_tokens, new_ids, text = reference_generation(tiny_models, request)
    eos = hf.AutoTokenizer.from_pretrained(str(tiny_models / "primary")).eos_token_id
    assert len(new_ids) == max_tokens
    assert eos not in new_ids  # the random model does not end by itself: cut by max_tokens
    body = client.post("/v1/chat/completions", json=request).json()
    assert body["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": max_tokens,
        "total_tokens": prompt_tokens + max_tokens,
    }
    assert prompt_tokens > 5  # the whole built prompt, not the last message
    assert body["choices"][0]["message"]["content"] == text
    assert body["choices"][0]["finish_reason"] == "length"


def test_streamed_usage_chunk_matches_the_plain_answer_for_the_same_seed(client: TestClient) -> None:
    request = {**CHAT, "max_tokens": 5, "temperature": 1.0, "seed": 7}
    plain = client.post("/v1/chat/completions", json=request).json()
    events = sse_events(client, {**request, "stream_options": {"include_usage": True}})
    *chunks, final, usage = events
    assert usage["choices"] == []
    assert usage["object"] == "chat.completion.chunk"
    assert usage["usage"] == plain["usage"]
    assert plain["usage"]["completion_tokens"] == 5
    assert final["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"] == "length"
    assert all(event["usage"] is None for event in [*chunks, final])  # as OpenAI: only the last has it
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert content == plain["choices"][0]["message"]["content"]  # the seed reaches the stream too


def test_stream_without_include_usage_sends_no_usage(client: TestClient) -> None:
    for options in ({}, {"stream_options": {"include_usage": False}}):
        events = sse_events(client, {**CHAT, "max_tokens": 2, **options})
        assert all("usage" not in event and event["choices"] for event in events)
        assert events[-1]["choices"][0]["finish_reason"] == "length"


def test_stream_options_need_stream(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json={**CHAT, "stream_options": {"include_usage": True}})
    assert response.status_code == 422
    assert response.json()["field"] == "stream_options"


def test_an_answer_ended_by_eos_is_stop_and_counts_the_eos(tiny_models: Path) -> None:
    generator = TransformersGenerator("primary", "qwen", tiny_models / "primary", TINY_REVISION, device="cpu")
    eos = generator.tokenizer.eos_token_id
    generator.model.generation_config.sequence_bias = {(eos,): 100.0}  # the model now ends at once
    request = GenerationRequest("user: hi\nassistant:", 4, 0.0, 1.0, time.monotonic() + 30)
    prompt_tokens = len(generator.tokenizer("user: hi\nassistant:").input_ids)
    expected = Generation("", "stop", TokenUsage(prompt_tokens, 1))
    assert generator.generate_counted(request) == expected
    assert list(generator.stream_counted(request)) == [expected]
    cut = GenerationRequest("user: hi\nassistant:", 1, 0.0, 1.0, time.monotonic() + 30)
    generator.model.generation_config.sequence_bias = {(eos,): -100.0}  # and now never
    assert generator.generate_counted(cut).finish_reason == "length"


@pytest.mark.parametrize(
    ("generated", "eos_ids", "reason"),
    [
        ([5, 9, 2], {2}, "stop"),
        ([2], {2}, "stop"),
        ([5, 9, 7], {2}, "length"),
        ([5, 9, 7], {2, 7}, "stop"),
        ([5], {2}, "length"),
        ([], {2}, "length"),
    ],
)
def test_finish_reason_table(generated: list[int], eos_ids: set[int], reason: str) -> None:
    assert finish_reason(generated, eos_ids) == reason


def test_wrong_revision_keeps_the_pod_unready(tiny_models: Path, tmp_path: Path) -> None:
    settings = EnsembleSettings(
        models_dir=tiny_models, pin_config=pin_file(tmp_path, tiny_models, "2.5.1"), device="cpu"
    )
    with TestClient(create_app(settings, config=fast_config())) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["missing"] == ["primary"]
        assert "2.5.1" in ready.json()["errors"]["primary"]
        assert client.post("/v1/briefs", json={"text": "fresh"}).status_code == 503
