"""End-to-end fixtures: a real Prometheus scraping a controlled exporter, the sandbox API, the operator.

- ``exporter`` (module scope): a loopback /metrics whose values the test sets;
- ``prometheus`` (module scope): Debian's Prometheus scraping it every second, started once per module
  (its first sample takes a few seconds) and terminated at teardown;
- ``control``: per test, the simulated runtime (Deployments become ready, Jobs get pods) and an
  operator with short intervals pointed at that Prometheus; ``control.restart()`` kills and restarts
  the operator in the middle of whatever it is doing.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest

from artisan_common.routing import compose
from artisan_operator.handlers.context import OperatorContext
from artisan_operator.main import run_operator
from artisan_operator.metrics.operator_metrics import OperatorMetrics
from artisan_operator.sandbox.prometheus import ControlledExporter, PrometheusServer
from artisan_operator.sandbox.runtime import SimulatedRuntime
from artisan_operator.sandbox.server import RunningApi
from artisan_operator.sandbox.testing import OperatorRunner, wait_for
from artisan_operator.settings import Settings

NS = "default"
GROUP, VERSION = "artisan.dev", "v1alpha1"
_unique = itertools.count()


@pytest.fixture(scope="module")
def exporter() -> Iterator[ControlledExporter]:
    with ControlledExporter() as running:
        running.set("artisan_e2e_up", 1)
        yield running


@pytest.fixture(scope="module")
def prometheus(
    exporter: ControlledExporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), [exporter.target], scrape_interval="1s")
    with server:
        server.wait_for_sample("artisan_e2e_up", timeout=60)
        yield server


@dataclass
class Control:
    api: RunningApi
    client: kubernetes.client.ApiClient
    runner: OperatorRunner
    contexts: list[OperatorContext]
    settings: Settings

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.client)

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.client)

    @property
    def apps(self) -> kubernetes.client.AppsV1Api:
        return kubernetes.client.AppsV1Api(self.client)

    def restart(self) -> None:
        """Kill the operator wherever it is and start a fresh one (a killed pod, in-process)."""
        self.runner.restart(kill=True)

    # -- reading ------------------------------------------------------------------------------
    def get(self, plural: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, plural, name)
        return obj

    def create(self, body: dict[str, Any]) -> None:
        plural = {"ModelPin": "modelpins", "Canary": "canaries", "ABExperiment": "abexperiments"}
        plural |= {"TrainingRun": "trainingruns"}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural[body["kind"]], body)

    def patch(self, plural: str, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, plural, name, body)

    def raw(self, path: str) -> dict[str, Any] | None:
        response = self.client.call_api("GET", self.client.configuration.host + path)
        response.read()
        if response.status == 404:
            return None
        data: dict[str, Any] = json.loads(response.data)
        return data

    def routing(self, pin: str) -> dict[str, str]:
        configmap = self.raw(f"/api/v1/namespaces/{NS}/configmaps/{pin}-routing") or {}
        return dict(configmap.get("data") or {})

    def canary_weight(self, pin: str) -> int | None:
        """The canary weight in the routing table; None when there is no canary entry."""
        table = compose(self.routing(pin))
        return table.canary.weight if table.canary is not None else None

    def events(self, name: str, reason: str | None = None) -> list[dict[str, Any]]:
        listed = self.raw(f"/api/v1/namespaces/{NS}/events") or {"items": []}
        return [
            e
            for e in listed["items"]
            if e.get("involvedObject", {}).get("name") == name
            and (reason is None or e.get("reason") == reason)
        ]

    def posted_events(
        self, name: str, reason: str, count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The Events once ``count`` of them are there: kopf posts Events from a queue, after the
        status and children writes a test usually waits for, so reading them at once is a race."""
        return wait_for(
            lambda: (found := self.events(name, reason)) and len(found) >= count and found,
            timeout=timeout,
            message=f"{count} {reason} Event(s) on {name}",
        )

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.raw(f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == type_:
            return dict(item)
    return None


def unique(prefix: str) -> str:
    return f"{prefix}{next(_unique)}"


def model_pin(name: str = "pin", revision: str = "2.5.1", replicas: int = 2, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelPin",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "models": {"primary": {"name": "qwen", "source": "/models/qwen", "revision": revision}},
            "replicas": replicas,
            **spec,
        },
    }


def control_settings(api: RunningApi, prometheus_url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kubeconfig": api.kubeconfig_path,
        "metrics_enabled": False,
        "prometheus_url": prometheus_url,
        "timer_interval_seconds": 0.2,
        "timer_idle_seconds": 0,
        "resync_interval_seconds": 1.0,
        "api_threads": 4,
        "metric_query_timeout_seconds": 2.0,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def control_factory(emulated_api: RunningApi, kube_client: kubernetes.client.ApiClient) -> Iterator[Any]:
    """``control_factory(prometheus_url, **settings)`` → a started :class:`Control`."""
    started: list[Control] = []
    runtime = SimulatedRuntime(kube_client, interval=0.2)
    runtime.__enter__()

    def make(prometheus_url: str | None, **overrides: Any) -> Control:
        settings = control_settings(emulated_api, prometheus_url, **overrides)
        contexts: list[OperatorContext] = []

        def main(stop_flag: threading.Event, ready_flag: threading.Event) -> Coroutine[Any, Any, None]:
            context = OperatorContext(settings=settings, metrics=OperatorMetrics())
            contexts.append(context)
            return run_operator(settings, stop_flag=stop_flag, ready_flag=ready_flag, context=context)

        control = Control(emulated_api, kube_client, OperatorRunner(main), contexts, settings)
        control.runner.start()
        started.append(control)
        return control

    yield make
    for control in started:
        if control.runner.current is not None and control.runner.current.running:
            control.runner.stop()
    runtime.__exit__(None, None, None)


@pytest.fixture
def control(control_factory: Any, prometheus: PrometheusServer) -> Control:
    made: Control = control_factory(prometheus.url)
    return made


def stable_pin(control: Control, name: str = "pin", **spec: Any) -> str:
    """Create a ModelPin and wait until its first revision is stable; returns that revision."""
    control.create(model_pin(name, **spec))
    pin = wait_for(
        lambda: (p := control.get("modelpins", name)).get("status", {}).get("stable") and p,
        timeout=20,
        message="first stable revision",
    )
    revision: str = pin["status"]["stable"]["revision"]
    return revision


__all__ = ["NS", "Control", "Path", "condition", "model_pin", "stable_pin", "unique"]


def ab_experiment(name: str, promote: bool = False, **analysis: Any) -> dict[str, Any]:
    """A two-variant ABExperiment on the ModelPin ``pin``."""
    return {
        "apiVersion": "artisan.dev/v1alpha1",
        "kind": "ABExperiment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "targetRef": {"name": "pin"},
            "variants": [{"name": "control", "weight": 50}, {"name": "treatment", "weight": 50}],
            "analysis": {"minSamplesPerVariant": 100, **analysis},
            "onConclusion": {"promote": promote},
        },
    }
