"""Bounded admission: at most ``max_concurrent`` requests run, at most ``max_waiting`` wait; the rest get 429.

Memory stays bounded under any overload: a refused request holds nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass


class OverloadedError(Exception):
    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(f"queue full; retry after {retry_after_seconds:.0f}s")
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class Ticket:
    queued_seconds: float


class AdmissionController:
    def __init__(
        self,
        max_concurrent: int,
        max_waiting: int,
        retry_after_seconds: float = 1.0,
        *,
        on_reject: Callable[[], object] | None = None,
    ) -> None:
        if max_concurrent < 1 or max_waiting < 0:
            raise ValueError("max_concurrent must be ≥ 1 and max_waiting ≥ 0")
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.retry_after_seconds = retry_after_seconds
        self.on_reject = on_reject
        """Called for every refused request (the owner's rejection counter)."""
        self._slots = asyncio.Semaphore(max_concurrent)
        self.running = 0
        self.waiting = 0

    @property
    def load(self) -> float:
        """Occupancy in [0, 1]: running and waiting requests over everything that may be admitted."""
        return min(1.0, (self.running + self.waiting) / (self.max_concurrent + self.max_waiting))

    async def acquire(self) -> Ticket:
        """Wait for a slot (OverloadedError at once when the queue is full); pair with ``release``."""
        if self.running >= self.max_concurrent and self.waiting >= self.max_waiting:
            if self.on_reject is not None:
                self.on_reject()
            raise OverloadedError(self.retry_after_seconds)
        started = time.perf_counter()
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        return Ticket(time.perf_counter() - started)

    def release(self) -> None:
        self.running -= 1
        self._slots.release()

    def releaser(self) -> Callable[[], None]:
        """A once-only ``release`` for a slot whose end several paths may reach (a stream's end, its
        cleanup, the response's close on disconnect): the first call frees the slot, later ones do
        nothing, so the slot is neither leaked nor freed twice."""
        released = False

        def release_once() -> None:
            nonlocal released
            if not released:
                released = True
                self.release()

        return release_once

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[Ticket]:
        ticket = await self.acquire()
        try:
            yield ticket
        finally:
            self.release()
