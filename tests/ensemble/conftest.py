"""Fixtures for the ensemble service: scripted fake backends, a test clock, tiny real models."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from artisan_common.catalog import IngredientCatalog, load_catalog
from artisan_ensemble.app import create_app
from artisan_ensemble.backends.tiny import TINY_REVISION
from artisan_ensemble.ensemble.config import ServiceConfig, resolve_config
from artisan_ensemble.ensemble.ports import GenerationRequest, ModelInfo
from artisan_ensemble.settings import EnsembleSettings

GOOD_BRIEF = json.dumps(
    {"style": "citrus", "intensity": 0.4, "complexity": 0.5, "noteFamilies": {"citrus": 0.9, "fresh": 0.6}}
)
GOOD_VALIDATION = json.dumps({"valid": True, "issues": []})
GOOD_HINTS = json.dumps(
    ["Morning light on lemons", "A cool breeze", "Fresh linen", "Sea salt", "Green leaves", "Open window"]
)
DEFAULT_OUTPUTS = {"primary": GOOD_BRIEF, "validator": GOOD_VALIDATION, "creative": GOOD_HINTS}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeGenerator:
    """A scripted backend: returns ``output``, or raises while ``failing``; can block on ``gate`` or
    take ``delay`` seconds."""

    role: str
    output: str
    failing: bool = False
    gate: threading.Event | None = None
    delay: float = 0.0
    """Seconds each call takes (a slow but healthy model)."""
    calls: list[GenerationRequest] = field(default_factory=list)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.role, f"fake-{self.role}", "r1", "memory", "cpu", 0)

    def generate(self, request: GenerationRequest) -> str:
        self.calls.append(request)
        if self.gate is not None:
            self.gate.wait(timeout=5)
        if self.delay:
            time.sleep(self.delay)
        if self.failing:
            raise RuntimeError(f"{self.role} backend down")
        return self.output

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        text = self.generate(request)
        for start in range(0, len(text), 4):
            yield text[start : start + 4]


def fake_generators(**outputs: str) -> dict[str, FakeGenerator]:
    merged = {**DEFAULT_OUTPUTS, **outputs}
    return {role: FakeGenerator(role, text) for role, text in merged.items()}


def fast_config(**overrides: object) -> ServiceConfig:
    """Seeds' structure with test-sized numbers (short timeouts, small breaker windows)."""
    document: dict[str, object] = {
        "modes": {
            "fast": {"maxNewTokens": 8, "timeoutSeconds": 5},
            "balanced": {"maxNewTokens": 8, "timeoutSeconds": 5},
            "creative": {"maxNewTokens": 8, "timeoutSeconds": 5},
        },
        "downshift": {"failureThreshold": 2, "holdSeconds": 60},
        # No background prober by default: tests drive probes (probe_open_breakers) or opt in.
        "breaker": {"window": 10, "minCalls": 5, "probeTimeoutSeconds": 2, "probeIntervalSeconds": 0},
        "queue": {"maxConcurrent": 2, "maxWaiting": 4},
        **overrides,
    }
    return resolve_config(document, "prod")


@pytest.fixture(scope="session")
def catalog() -> IngredientCatalog:
    return load_catalog()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from artisan_ensemble.cli import main

    directory = tmp_path_factory.mktemp("tiny-models")
    assert main(["make-tiny-models", str(directory)]) == 0
    return directory


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
def tiny_client(tiny_models: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = EnsembleSettings(
        models_dir=tiny_models, pin_config=pin_file(tmp_path, tiny_models), device="cpu", profile="dev"
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def sse_events(client: TestClient, request: dict[str, Any]) -> list[dict[str, Any]]:
    """A streamed chat completion's JSON events, checked to end with ``data: [DONE]``."""
    with client.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as response:
        assert response.status_code == 200
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
