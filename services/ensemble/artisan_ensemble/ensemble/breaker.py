"""A circuit breaker per model.

| state     | event                                              | next state |
|-----------|----------------------------------------------------|------------|
| closed    | ``failure_threshold`` consecutive failures          | open       |
| closed    | failure rate ≥ ``failure_rate`` over the window     | open       |
|           | (once ``min_calls`` calls are in the window)        |            |
| open      | ``hold_seconds`` elapsed, a call asks to go through  | half-open (that call is the probe) |
| half-open | the probe succeeds                                 | closed     |
| half-open | the probe fails, or reports nothing within          | open (hold restarts) |
|           | ``probe_timeout_seconds``                          |            |

Only one probe is let through while half-open; other calls are refused until it reports.
The clock is injected so tests drive time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


BREAKER_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
"""Numeric encoding for the breaker-state gauge."""


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 3,
        hold_seconds: float = 300.0,
        window: int = 20,
        failure_rate: float = 0.5,
        min_calls: int = 10,
        probe_timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.hold_seconds = hold_seconds
        self.failure_rate = failure_rate
        self.min_calls = min_calls
        self.probe_timeout_seconds = probe_timeout_seconds
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._results: deque[bool] = deque(maxlen=window)
        self._consecutive_failures = 0
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probe_started: float | None = None

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._expire_probe()
            return self._state

    def retry_after(self) -> float:
        """Seconds until the breaker will let a probe through (0 when it would now)."""
        with self._lock:
            if self._state is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.hold_seconds - self._clock())

    def available(self) -> bool:
        """Whether a call could go through now (without claiming the probe): used to plan a route."""
        with self._lock:
            self._expire_probe()
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.OPEN:
                return self._clock() - self._opened_at >= self.hold_seconds
            return self._probe_started is None

    def try_acquire(self) -> bool:
        """Claim the right to call the model; in half-open only the first caller gets the probe."""
        with self._lock:
            self._expire_probe()
            now = self._clock()
            if self._state is BreakerState.OPEN and now - self._opened_at >= self.hold_seconds:
                self._set(BreakerState.HALF_OPEN)
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.HALF_OPEN and self._probe_started is None:
                self._probe_started = now
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._results.append(True)
            self._consecutive_failures = 0
            if self._state is BreakerState.HALF_OPEN:
                self._probe_started = None
                self._results.clear()
                self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        with self._lock:
            self._results.append(False)
            self._consecutive_failures += 1
            trips = self._state is BreakerState.CLOSED and self._should_trip()
            if self._state is BreakerState.HALF_OPEN or trips:
                self._open()

    def force_open(self) -> None:
        with self._lock:
            self._open()

    def reset(self) -> None:
        with self._lock:
            self._results.clear()
            self._consecutive_failures = 0
            self._probe_started = None
            self._set(BreakerState.CLOSED)

    def _should_trip(self) -> bool:
        if self._consecutive_failures >= self.failure_threshold:
            return True
        if len(self._results) < self.min_calls:
            return False
        failures = sum(1 for ok in self._results if not ok)
        return failures / len(self._results) >= self.failure_rate

    def _expire_probe(self) -> None:
        # A probe that never reports (hung call) must not wedge the breaker half-open forever.
        if (
            self._state is BreakerState.HALF_OPEN
            and self._probe_started is not None
            and self._clock() - self._probe_started > self.probe_timeout_seconds
        ):
            self._open()

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._probe_started = None
        self._consecutive_failures = 0
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(self.name, state)
