"""What operator tests share: poll until something holds, and an operator that can be restarted.

Kept in the package (not under ``tests/``) so tests, the demo and the benchmark import it the
same way. Tests poll the emulated API; they never sleep for a fixed time and hope.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from artisan_operator.sandbox.runner import OperatorMain, OperatorThread

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    """The condition did not hold in time; the message carries the last value seen."""


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,
    *,
    interval: float = 0.05,
    message: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that value.

    Exceptions raised by the predicate count as "not yet" (the object may not exist yet); the
    last one is reported if time runs out.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as exc:  # not there yet: keep polling, remember why
            last = exc
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(f"{message} did not hold within {timeout}s; last seen: {last!r}")
        time.sleep(interval)


class OperatorRunner:
    """Start, stop, kill and restart one operator against one API (one instance at a time)."""

    def __init__(self, main: OperatorMain) -> None:
        self._main = main
        self.current: OperatorThread | None = None
        self.starts = 0

    def start(self, timeout: float = 30.0) -> OperatorThread:
        if self.current is not None and self.current.running:
            raise RuntimeError("the operator is already running; stop() or kill() it first")
        self.current = OperatorThread(self._main, name=f"operator-{self.starts}")
        self.starts += 1
        return self.current.start(timeout)

    def stop(self) -> None:
        """Graceful stop; raises OperatorCrashedError if the operator had failed."""
        if self.current is not None:
            self.current.stop()

    def kill(self) -> None:
        """Interrupt the operator wherever it is (a killed pod, in-process)."""
        if self.current is not None:
            self.current.kill()

    def restart(self, *, kill: bool = True, timeout: float = 30.0) -> OperatorThread:
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(timeout)
