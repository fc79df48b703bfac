"""The operator's /healthz: 503 with the reason once its work loop is dead or a stop was requested."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

import pytest

from artisan_operator.metrics.operator_metrics import OperatorMetrics
from artisan_operator.metrics.server import MetricsServer, liveness_problems
from artisan_operator.sandbox.testing import wait_for

from .conftest import OperatorHarness


async def _loop_in(state: str) -> asyncio.Future[Any] | None:
    """A work-loop future in the table's state."""
    if state == "none":
        return None
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if state == "raised":
        future.set_exception(ValueError("x"))
    elif state == "returned":
        future.set_result(None)
    elif state == "cancelled":
        future.cancel()
    return future


# The rows of liveness_problems' docstring table.
@pytest.mark.parametrize(
    ("state", "stopping", "expected"),
    [
        ("none", False, []),
        ("running", False, []),
        ("raised", False, ["work loop crashed: ValueError: x"]),
        ("returned", False, ["work loop stopped"]),
        ("cancelled", False, ["work loop stopped"]),
        ("running", True, ["operator is stopping"]),
        ("raised", True, ["work loop crashed: ValueError: x", "operator is stopping"]),
    ],
)
async def test_liveness_problems(state: str, stopping: bool, expected: list[str]) -> None:
    assert liveness_problems(work_loop=await _loop_in(state), stopping=stopping) == expected


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_healthz_answers_503_with_the_reasons() -> None:
    problems: list[str] = []
    server = MetricsServer(OperatorMetrics(), host="127.0.0.1", port=0, liveness=lambda: list(problems))
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        assert await asyncio.to_thread(get, url) == (200, "ok\n")
        problems.append("work loop stopped")
        assert await asyncio.to_thread(get, url) == (503, "work loop stopped\n")
    finally:
        await server.stop()


def test_healthz_fails_when_the_running_operators_work_loop_dies(
    artisan_operator_runner: OperatorHarness,
) -> None:
    artisan_operator_runner.runner.start()
    context = artisan_operator_runner.context
    server = context.metrics_server
    assert server is not None
    url = f"http://127.0.0.1:{server.port}/healthz"
    task = wait_for(lambda: context.work.task if context.work is not None else None, message="work loop")
    assert get(url) == (200, "ok\n")
    task.get_loop().call_soon_threadsafe(task.cancel)  # the scheduler dies; kopf itself keeps running
    wait_for(task.done, message="work loop cancelled")
    assert get(url) == (503, "work loop stopped\n")
