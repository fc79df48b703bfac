"""The reconcile work queue: level-triggered passes for many objects from one scheduler task.

TrainingRuns and ModelPins are reconciled the way controller-runtime does it, not with a kopf
timer or daemon per object: a watch event (``kopf.on.event``: no finalizer, no progress
annotations, no patch of the object) only *nudges* the object's loops here, and this queue runs
the passes:

* one pass at a time per (object, loop); a nudge during a pass runs the loop once more right after;
* at most ``workers`` passes at once (they block on the API thread pool anyway);
* each pass says when it wants to run again (counted from its start); the object is always
  scheduled, so every known object is looked at again at least every resync interval, whatever
  happened in between;
* a failed pass is retried with exponential backoff (capped at ``max_backoff``);
* an object whose pass reports it :data:`GONE` (or whose DELETED event arrives) is forgotten.

A restarted operator rebuilds everything from the watch's initial listing: each object is nudged
once and its pass reads it afresh from the API, so nothing here needs to survive a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

GONE: Final = "gone"
"""What a pass returns when its object no longer exists: all its loops are forgotten."""

PassOutcome = float | None | Literal["gone"]
"""Seconds until the next pass, ``None`` for the resync interval, or :data:`GONE`."""

ObjectKey = tuple[str, str, str]
"""(kind, namespace, name)."""

PassFn = Callable[[str, str, dict[str, Any]], Awaitable[PassOutcome]]
"""``one_pass(namespace, name, state)``; ``state`` is the loop's scratch for this object."""

logger = logging.getLogger("artisan_operator.workqueue")


@dataclass
class _Loop:
    one_pass: PassFn
    state: dict[str, Any] = field(default_factory=dict)
    due: float | None = None
    running: bool = False
    again: bool = False
    failures: int = 0
    fingerprint: tuple[Any, ...] | None = None
    context: contextvars.Context | None = None
    """The context of the last nudge (a kopf handler's: its Event queue), for the passes to run in."""


def backoff_delay(failures: int, *, base: float, cap: float) -> float:
    """base, 2·base, 4·base, ... capped: the delay before retrying after ``failures`` failed passes."""
    return float(min(cap, base * 2 ** max(0, min(failures - 1, 30))))


class WorkQueue:
    """Per-object loops, scheduled by due time; run with :meth:`start`, ended with :meth:`stop`."""

    def __init__(
        self,
        *,
        workers: int,
        resync: float,
        retry_base: float = 1.0,
        max_backoff: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.resync = resync
        self.retry_base = retry_base
        self.max_backoff = max_backoff
        self._clock = clock
        self._objects: dict[ObjectKey, dict[str, _Loop]] = {}
        self._started: set[ObjectKey] = set()
        self._heap: list[tuple[float, int, ObjectKey, str]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._active: set[asyncio.Task[None]] = set()
        self._scheduler: asyncio.Task[None] | None = None

    # --- what handlers call ------------------------------------------------------------------------

    def nudge(self, key: ObjectKey, loop: str, one_pass: PassFn, *, delay: float = 0.0) -> None:
        """Run ``loop`` of the object within ``delay`` seconds (sooner if already due sooner).

        Its passes run in (a copy of) the caller's context: nudged from a kopf handler, they can
        post Events with ``kopf.event`` as the handler could.
        """
        loops = self._objects.setdefault(key, {})
        entry = loops.get(loop)
        if entry is None:
            entry = loops[loop] = _Loop(one_pass)
        entry.one_pass = one_pass
        entry.context = contextvars.copy_context()
        if entry.running:
            if delay <= 0:
                entry.again = True
            return
        self._schedule(key, loop, entry, self._clock() + max(0.0, delay))

    def offer(
        self,
        key: ObjectKey,
        loop: str,
        one_pass: PassFn,
        fingerprint: tuple[Any, ...],
        *,
        first_delay: float = 0.0,
    ) -> bool:
        """A watch event of the object: nudge ``loop`` if ``fingerprint`` changed since the last one.

        An object seen for the first time (created, or listed after a restart) runs after
        ``first_delay``; a change after that runs at once. True when the loop was nudged.
        """
        entry = self._objects.get(key, {}).get(loop)
        if entry is not None and entry.fingerprint == fingerprint:
            return False
        self.nudge(key, loop, one_pass, delay=first_delay if entry is None else 0.0)
        self._objects[key][loop].fingerprint = fingerprint
        return True

    def state(self, key: ObjectKey, loop: str) -> dict[str, Any] | None:
        """The loop's scratch for the object (None when the loop is unknown)."""
        entry = self._objects.get(key, {}).get(loop)
        return entry.state if entry is not None else None

    def has_run(self, key: ObjectKey) -> bool:
        """Whether any loop of the object has started a pass in this process."""
        return key in self._started

    def knows(self, key: ObjectKey, loop: str | None = None) -> bool:
        loops = self._objects.get(key)
        return loops is not None and (loop is None or loop in loops)

    def forget(self, key: ObjectKey) -> None:
        """Drop every loop of the object (deleted); a pass still running finishes and is not requeued."""
        self._objects.pop(key, None)
        self._started.discard(key)

    def __len__(self) -> int:
        return len(self._objects)

    def due(self, key: ObjectKey, loop: str) -> float | None:
        """When the loop runs next (monotonic clock); None while running or unknown."""
        entry = self._objects.get(key, {}).get(loop)
        return entry.due if entry is not None else None

    # --- running -----------------------------------------------------------------------------------

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The scheduler task (None before start and after stop): /healthz fails once it is done."""
        return self._scheduler

    def start(self) -> None:
        if self._scheduler is None:
            self._scheduler = asyncio.create_task(self._run(), name="artisan work queue")

    async def stop(self) -> None:
        tasks = [t for t in (self._scheduler, *self._active) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._scheduler = None
        self._active.clear()

    def _schedule(self, key: ObjectKey, loop: str, entry: _Loop, when: float) -> None:
        if entry.due is not None and entry.due <= when:
            return  # already due sooner
        entry.due = when
        heapq.heappush(self._heap, (when, next(self._order), key, loop))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock()
            while self._heap and len(self._active) < self.workers and self._heap[0][0] <= now:
                when, _, key, loop = heapq.heappop(self._heap)
                entry = self._objects.get(key, {}).get(loop)
                if entry is None or entry.due != when or entry.running:
                    continue  # forgotten, rescheduled (a stale heap item), or running
                entry.due = None
                entry.running = True
                self._started.add(key)
                task = asyncio.create_task(
                    self._one(key, loop, entry),
                    name=f"{loop} {key[1]}/{key[2]}",
                    context=entry.context.copy() if entry.context is not None else None,
                )
                self._active.add(task)
            timeout = None
            if self._heap and len(self._active) < self.workers:
                timeout = max(0.0, self._heap[0][0] - self._clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _one(self, key: ObjectKey, loop: str, entry: _Loop) -> None:
        started = self._clock()
        try:
            try:
                outcome: PassOutcome = await entry.one_pass(key[1], key[2], entry.state)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the loop lives on: retried with backoff
                entry.failures += 1
                delay = backoff_delay(entry.failures, base=self.retry_base, cap=self.max_backoff)
                logger.warning(f"{loop} {key[1]}/{key[2]}: pass failed ({error!r}); retry in {delay:.1f}s")
                outcome = delay
            else:
                entry.failures = 0
            entry.running = False
            if outcome == GONE:
                self.forget(key)
                return
            if self._objects.get(key, {}).get(loop) is not entry:
                return  # forgotten meanwhile (deleted)
            delay = self.resync if outcome is None else min(max(float(outcome), 0.0), self.resync)
            if entry.again:
                entry.again, delay = False, 0.0
            # Counted from the start of the pass: a plan's "due in N s" was computed then.
            self._schedule(key, loop, entry, max(started + delay, self._clock()))
        finally:
            entry.running = False
            task = asyncio.current_task()
            if task is not None:
                self._active.discard(task)
            self._wake.set()


def event_fingerprint(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes a watch event worth a pass: the spec's generation, the annotations, deletion.

    Status-only changes (most of them this operator's own writes) are not: like controller-runtime's
    GenerationChangedPredicate. Annotations count because manual actions arrive as annotations.
    """
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return (
        meta.get("uid"),
        meta.get("generation"),
        tuple(sorted((str(k), str(v)) for k, v in annotations.items())),
        meta.get("deletionTimestamp") is not None,
    )
