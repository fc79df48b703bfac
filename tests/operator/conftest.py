"""Operator-test fixtures on top of tests/conftest.py's emulated API.

``artisan_operator_runner`` runs Artisan's operator with short timers (level-triggered passes every
fraction of a second) and exposes its :class:`OperatorContext` (metrics, metrics port).
"""

from __future__ import annotations

import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, cast

import kubernetes.client
import pytest

from artisan_operator.handlers.context import OperatorContext
from artisan_operator.main import run_operator
from artisan_operator.metrics.operator_metrics import OperatorMetrics
from artisan_operator.sandbox.server import RunningApi
from artisan_operator.sandbox.testing import OperatorRunner
from artisan_operator.settings import Settings

NS = "default"
GROUP, VERSION = "artisan.dev", "v1alpha1"


@dataclass
class OperatorHarness:
    runner: OperatorRunner
    contexts: list[OperatorContext]
    settings: Settings

    @property
    def context(self) -> OperatorContext:
        return self.contexts[-1]


def stored(kube_client: kubernetes.client.ApiClient, plural: str, name: str) -> dict[str, Any]:
    """An Artisan object as the API has it (the client returns the JSON object as a dict)."""
    body = kubernetes.client.CustomObjectsApi(kube_client).get_namespaced_custom_object(
        GROUP, VERSION, NS, plural, name
    )
    return cast(dict[str, Any], body)


def is_post_to(request: Any, plural: str) -> bool:
    """Whether an emulator request creates an object of ``plural`` (for a test's failing reaction)."""
    resource = request.resource
    return bool(
        str(request.method).upper().endswith("POST") and resource is not None and resource.plural == plural
    )


def fast_settings(api: RunningApi, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kubeconfig": api.kubeconfig_path,
        "metrics_host": "127.0.0.1",
        "metrics_port": 0,
        "timer_interval_seconds": 0.2,
        "timer_idle_seconds": 0,
        "resync_interval_seconds": 1.0,
        "api_threads": 4,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def artisan_operator_runner(emulated_api: RunningApi) -> Iterator[OperatorHarness]:
    settings = fast_settings(emulated_api)
    contexts: list[OperatorContext] = []

    def main(stop_flag: threading.Event, ready_flag: threading.Event) -> Coroutine[Any, Any, None]:
        context = OperatorContext(settings=settings, metrics=OperatorMetrics())
        contexts.append(context)
        return run_operator(settings, stop_flag=stop_flag, ready_flag=ready_flag, context=context)

    harness = OperatorHarness(OperatorRunner(main), contexts, settings)
    yield harness
    if harness.runner.current is not None and harness.runner.current.running:
        harness.runner.stop()


@pytest.fixture
def custom_api(kube_client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube_client)
