"""Fixtures for tests that need a Kubernetes API: the sandbox's emulator, over real HTTP.

- ``emulated_api``: a fresh emulated API per test (a RunningApi: ``url``, ``kubeconfig_path``,
  ``emulator``), served from its own thread so the blocking ``kubernetes`` client works.
- ``kubeconfig_path``: the kubeconfig file pointing at it.
- ``kube_client``: a ``kubernetes.client.ApiClient`` configured from that kubeconfig.
- ``cluster``: the operator's own ``ClusterClient`` on that kubeconfig (for a reconcile pass).
- ``operator_runner``: starts Artisan's operator in-process against the emulator
  (``operator_runner.start()``); ``stop()``/``kill()`` it and ``start()`` again for restart
  tests. Whatever is still running is stopped at teardown, and a crashed operator fails the test.

Wait with ``artisan_operator.sandbox.testing.wait_for`` (polling), never with a fixed sleep.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes.client
import pytest

from artisan_operator.cluster.client import ClusterClient
from artisan_operator.sandbox.runner import artisan_operator_main
from artisan_operator.sandbox.server import EmulatorThread, RunningApi
from artisan_operator.sandbox.testing import OperatorRunner
from artisan_operator.settings import Settings


@pytest.fixture
def emulated_api(tmp_path: Path) -> Iterator[RunningApi]:
    with EmulatorThread(kubeconfig_path=tmp_path / "kubeconfig") as api:
        yield api


@pytest.fixture
def kubeconfig_path(emulated_api: RunningApi) -> Path:
    return emulated_api.kubeconfig_path


@pytest.fixture
def kube_client(emulated_api: RunningApi) -> Iterator[kubernetes.client.ApiClient]:
    with emulated_api.api_client() as client:
        yield client


@pytest.fixture
def cluster(emulated_api: RunningApi) -> Iterator[ClusterClient]:
    client = ClusterClient(Settings(kubeconfig=emulated_api.kubeconfig_path))
    yield client
    client.close()


@pytest.fixture
def operator_runner(emulated_api: RunningApi) -> Iterator[OperatorRunner]:
    runner = OperatorRunner(artisan_operator_main(emulated_api.kubeconfig_path))
    yield runner
    if runner.current is not None and runner.current.running:
        runner.stop()
