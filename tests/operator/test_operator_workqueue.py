"""The reconcile work queue: one pass at a time per loop, requeues, backoff, nudges, forgetting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from artisan_operator.handlers.control_loop import sleep_until_woken
from artisan_operator.handlers.workqueue import (
    GONE,
    PassOutcome,
    WorkQueue,
    backoff_delay,
    event_fingerprint,
)

KEY = ("TrainingRun", "ns", "run")


class Recorder:
    """A pass that records its calls and returns scripted outcomes (the last one repeats)."""

    def __init__(self, *outcomes: PassOutcome | Exception, hold: float = 0.0) -> None:
        self.outcomes = list(outcomes) or [None]
        self.hold = hold
        self.calls: list[tuple[str, str]] = []
        self.running = 0
        self.most_at_once = 0

    async def __call__(self, namespace: str, name: str, state: dict[str, Any]) -> PassOutcome:
        self.calls.append((namespace, name))
        state["passes"] = state.get("passes", 0) + 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.hold)
        finally:
            self.running -= 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


@pytest.fixture
async def queue() -> AsyncIterator[WorkQueue]:
    work = WorkQueue(workers=2, resync=0.3, retry_base=0.05, max_backoff=0.3)
    work.start()
    yield work
    await work.stop()


async def settle(seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)


async def until(predicate: Any, within: float = 2.0) -> None:
    """Poll (the machine may be busy): fixed sleeps only ever show that something did NOT happen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition did not hold in time"
        await asyncio.sleep(0.005)


async def test_a_nudged_loop_runs_once_and_is_requeued_after_its_delay(queue: WorkQueue) -> None:
    record = Recorder(0.1)
    queue.nudge(KEY, "TrainingRun", record)
    await until(lambda: len(record.calls) == 1)
    started = asyncio.get_running_loop().time()
    assert record.calls == [("ns", "run")]
    await until(lambda: len(record.calls) == 2)
    assert asyncio.get_running_loop().time() - started >= 0.09  # requeued 0.1 s after the first pass


async def test_no_requeue_wish_means_the_resync_interval(queue: WorkQueue) -> None:
    record = Recorder(None)
    queue.nudge(KEY, "TrainingRun", record)
    await until(lambda: len(record.calls) == 1)
    started = asyncio.get_running_loop().time()
    await until(lambda: len(record.calls) == 2)
    assert asyncio.get_running_loop().time() - started >= 0.28  # resync is 0.3 s


async def test_a_nudge_during_a_pass_runs_it_again_right_after_never_concurrently(
    queue: WorkQueue,
) -> None:
    record = Recorder(None, hold=0.1)
    queue.nudge(KEY, "TrainingRun", record)
    await until(lambda: record.running == 1)
    queue.nudge(KEY, "TrainingRun", record)
    queue.nudge(KEY, "TrainingRun", record)
    await until(lambda: len(record.calls) == 2 and record.running == 0)
    await settle(0.05)
    assert len(record.calls) == 2  # the two nudges coalesce into one more pass (resync is 0.3 s)
    assert record.most_at_once == 1


async def test_at_most_workers_passes_at_once(queue: WorkQueue) -> None:
    record = Recorder(None, hold=0.05)
    for index in range(5):
        queue.nudge(("TrainingRun", "ns", f"run-{index}"), "TrainingRun", record)
    await until(lambda: len(record.calls) == 5)
    assert record.most_at_once == 2


async def test_a_failing_pass_is_retried_with_backoff_and_the_loop_survives(queue: WorkQueue) -> None:
    record = Recorder(RuntimeError("boom"), RuntimeError("boom"), None)
    queue.nudge(KEY, "TrainingRun", record)
    await until(lambda: len(record.calls) == 3)  # retried 0.05 s, then 0.1 s later
    assert backoff_delay(1, base=0.05, cap=0.3) == pytest.approx(0.05)
    assert backoff_delay(2, base=0.05, cap=0.3) == pytest.approx(0.1)
    assert backoff_delay(10, base=0.05, cap=0.3) == pytest.approx(0.3)


async def test_gone_and_forget_end_the_loops_and_drop_their_state(queue: WorkQueue) -> None:
    gone = Recorder(GONE)
    queue.nudge(KEY, "TrainingRun", gone)
    await until(lambda: not queue.knows(KEY))
    assert len(gone.calls) == 1

    other = ("ModelPin", "ns", "pin")
    kept = Recorder(0.05)
    queue.nudge(other, "ModelPin", kept)
    await until(lambda: len(kept.calls) == 1)
    queue.forget(other)
    calls = len(kept.calls)
    await settle(0.2)
    assert len(kept.calls) == calls
    assert len(queue) == 0


async def test_state_is_kept_across_passes_of_one_loop(queue: WorkQueue) -> None:
    states: list[int] = []

    async def one_pass(namespace: str, name: str, state: dict[str, Any]) -> PassOutcome:
        state["n"] = state.get("n", 0) + 1
        states.append(state["n"])
        return 0.02

    queue.nudge(KEY, "TrainingRun", one_pass)
    await until(lambda: len(states) >= 3)
    assert states[:3] == [1, 2, 3]


async def test_offers_nudge_only_on_a_new_fingerprint_and_first_sight_waits(queue: WorkQueue) -> None:
    record = Recorder(None)
    offered = asyncio.get_running_loop().time()
    assert queue.offer(KEY, "ModelPinFleet", record, ("uid", 1), first_delay=0.1)
    await until(lambda: len(record.calls) == 1)
    assert asyncio.get_running_loop().time() - offered >= 0.09  # first sight: after first_delay
    assert not queue.offer(KEY, "ModelPinFleet", record, ("uid", 1), first_delay=0.1)
    assert queue.offer(KEY, "ModelPinFleet", record, ("uid", 2), first_delay=0.1)
    await until(lambda: len(record.calls) == 2, within=0.25)  # a change runs at once, not at resync


def test_the_fingerprint_ignores_status_but_not_spec_annotations_or_deletion() -> None:
    body: dict[str, Any] = {
        "metadata": {"uid": "u", "generation": 1, "annotations": {"a": "1"}},
        "spec": {"x": 1},
        "status": {"phase": "Pending"},
    }
    base = event_fingerprint(body)
    assert event_fingerprint({**body, "status": {"phase": "Running"}}) == base
    assert event_fingerprint({**body, "metadata": {**body["metadata"], "generation": 2}}) != base
    assert event_fingerprint({**body, "metadata": {**body["metadata"], "annotations": {"a": "2"}}}) != base
    deleting = {**body, "metadata": {**body["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert event_fingerprint(deleting) != base


def test_at_least_one_worker() -> None:
    with pytest.raises(ValueError, match="workers"):
        WorkQueue(workers=0, resync=1.0)


class FakeStopped:
    """kopf's DaemonStopped as the control loops use it: truthiness and ``await stopped.wait()``."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        await self.event.wait()


async def test_a_control_daemon_sleeps_until_its_deadline_a_nudge_or_a_stop() -> None:
    loop = asyncio.get_running_loop()
    wake, stopped = asyncio.Event(), FakeStopped()

    started = loop.time()
    await sleep_until_woken(wake, stopped, deadline=time.monotonic() + 0.05)  # type: ignore[arg-type]
    assert loop.time() - started >= 0.04

    loop.call_later(0.02, wake.set)
    started = loop.time()
    await sleep_until_woken(wake, stopped, deadline=time.monotonic() + 5)  # type: ignore[arg-type]
    assert loop.time() - started < 1

    wake.clear()
    loop.call_later(0.02, stopped.event.set)
    started = loop.time()
    await sleep_until_woken(wake, stopped, deadline=time.monotonic() + 5)  # type: ignore[arg-type]
    assert loop.time() - started < 1
    assert len(asyncio.all_tasks()) == 1  # no waiter left behind


async def test_has_run_turns_true_with_the_objects_first_pass_and_forget_resets_it(queue: WorkQueue) -> None:
    record = Recorder(None)
    queue.offer(KEY, "TrainingRun", record, ("uid", 1), first_delay=0.05)
    state = queue.state(KEY, "TrainingRun")
    assert state is not None
    assert not queue.has_run(KEY)
    assert queue.state(KEY, "Other") is None
    await until(lambda: len(record.calls) == 1)
    assert queue.has_run(KEY)
    assert queue.state(KEY, "TrainingRun") is state
    queue.forget(KEY)
    assert not queue.has_run(KEY)
