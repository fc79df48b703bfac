"""Response cache: keyed by normalized text, mode, response language and model pins; adaptive TTL; LRU.

Adaptive TTL (``adaptive_ttl``), base = normal TTL (3600 s) or downshift TTL (300 s):

| load       | TTL                                       | example (base 3600) | example (base 300) |
|------------|-------------------------------------------|---------------------|--------------------|
| > 0.8      | base × 2, at most 86400                   | 7200                | 600                |
| 0.3 … 0.8  | base                                      | 3600                | 300                |
| < 0.3      | base / 2, never below 600 (nor above base)| 1800                | 300                |

Expired entries are kept (until evicted by LRU) so they can be served stale when every model that
could answer is down (stale-if-error).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from artisan_common.serving import Mode
from artisan_ensemble.ensemble.brief import Language
from artisan_ensemble.ensemble.keywords import normalize_text

T = TypeVar("T")

HIGH_LOAD = 0.8
LOW_LOAD = 0.3
MAX_TTL_SECONDS = 86_400.0
MIN_ADAPTED_TTL_SECONDS = 600.0


def adaptive_ttl(
    base_seconds: float,
    load: float,
    *,
    high_load: float = HIGH_LOAD,
    low_load: float = LOW_LOAD,
    max_seconds: float = MAX_TTL_SECONDS,
    min_seconds: float = MIN_ADAPTED_TTL_SECONDS,
) -> float:
    """Busy: keep answers longer (fewer model calls); idle: refresh them sooner."""
    if load > high_load:
        return min(base_seconds * 2, max_seconds)
    if load < low_load:
        return min(base_seconds, max(base_seconds / 2, min_seconds))
    return base_seconds


def cache_key(text: str, mode: Mode, pins: Mapping[str, str], *, language: Language) -> str:
    """The resolved response language is part of the key: the same text asked for in Korean and in
    English gets different prompts, hints and messages, so one must not answer for the other."""
    pin_part = ",".join(f"{role}={pin}" for role, pin in sorted(pins.items()))
    raw = f"{normalize_text(text)}\x00{mode}\x00{language}\x00{pin_part}"
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class CacheHit(Generic[T]):
    value: T
    stale: bool
    age_seconds: float


@dataclass
class _Entry(Generic[T]):
    value: T
    stored_at: float
    expires_at: float


class ResponseCache(Generic[T]):
    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, *, allow_stale: bool = False) -> CacheHit[T] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            now = self._clock()
            stale = now >= entry.expires_at
            if stale and not allow_stale:
                return None
            self._entries.move_to_end(key)
            return CacheHit(entry.value, stale, now - entry.stored_at)

    def put(self, key: str, value: T, ttl_seconds: float) -> None:
        with self._lock:
            now = self._clock()
            self._entries[key] = _Entry(value, now, now + ttl_seconds)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def ttl_of(self, key: str) -> float | None:
        with self._lock:
            entry = self._entries.get(key)
            return None if entry is None else entry.expires_at - entry.stored_at

    def clear(self) -> int:
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count
