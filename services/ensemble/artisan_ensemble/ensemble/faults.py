"""Fault injection for drills: make one model fail (error) or hang (timeout) for a while."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from artisan_ensemble.ensemble.downshift import Role

FaultKind = Literal["error", "timeout"]


class InjectedFaultError(RuntimeError):
    pass


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    until: float


class FaultInjector:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._faults: dict[Role, Fault] = {}
        self._lock = threading.Lock()

    def inject(self, role: Role, kind: FaultKind, duration_seconds: float) -> Fault:
        fault = Fault(kind, self._clock() + duration_seconds)
        with self._lock:
            self._faults[role] = fault
        return fault

    def clear(self, role: Role | None = None) -> None:
        with self._lock:
            if role is None:
                self._faults.clear()
            else:
                self._faults.pop(role, None)

    def active(self, role: Role) -> Fault | None:
        with self._lock:
            fault = self._faults.get(role)
            if fault is not None and self._clock() >= fault.until:
                del self._faults[role]
                return None
            return fault

    def snapshot(self) -> dict[Role, Fault]:
        with self._lock:
            now = self._clock()
            return {role: f for role, f in self._faults.items() if f.until > now}
