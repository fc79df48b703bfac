"""The real transformers path with tiny random models: loading by pin, garbage output, streaming."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from artisan_ensemble.app import create_app
from artisan_ensemble.backends.tiny import TINY_REVISION
from artisan_ensemble.settings import EnsembleSettings

from .conftest import fast_config


def pin_file(tmp_path: Path, models: Path, primary_revision: str = TINY_REVISION) -> Path:
    pin = {
        "models": {
            "primary": {"name": "qwen", "source": "primary", "revision": primary_revision},
            "validator": {"name": "mistral", "source": str(models / "validator"), "revision": TINY_REVISION},
            "creative": {"name": "llama", "source": "creative", "revision": TINY_REVISION},
        },
        "modes": {
            "fast": {"maxNewTokens": 6},
            "balanced": {"maxNewTokens": 6},
            "creative": {"maxNewTokens": 6},
        },
        "replicas": 2,
    }
    path = tmp_path / "pin.json"
    path.write_text(json.dumps(pin))
    return path


@pytest.fixture
def client(tiny_models: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = EnsembleSettings(
        models_dir=tiny_models, pin_config=pin_file(tmp_path, tiny_models), device="cpu", profile="dev"
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


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


def test_streaming_chat_from_the_primary_model(client: TestClient) -> None:
    request = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True, "seed": 1}
    with client.stream("POST", "/v1/chat/completions", json=request) as response:
        assert response.status_code == 200
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "stop"


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
