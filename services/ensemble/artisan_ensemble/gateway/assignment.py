"""Weighted rendezvous hashing: sticky, exactly proportional assignment of users to options.

Each option gets the score ``−w / ln(u)`` with ``u ∈ (0, 1)`` uniform from a salted hash of
(user, option); the highest score wins. For independent uniform ``u``, option *i* wins with
probability exactly ``wᵢ / Σw`` (the scores are scaled exponential variates), unlike
``(w/Σw)·hash`` bucketing. A user keeps their option as long as weights do not change; when one
weight changes only the users that must move do (rendezvous property).

| weights                | share of users (100k)        |
|------------------------|------------------------------|
| control 50 / a 40 / b 10 | ≈ 50 / 40 / 10 (±1 point)  |
| stable 90 / canary 10  | ≈ 90 / 10                    |
| x 100 / y 0            | 100 / 0 (a zero weight never wins) |
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

_SCALE = 2.0**64


def unit_hash(salt: str, key: str, option: str) -> float:
    """A uniform number in the open interval (0, 1) from a salted 64-bit hash."""
    digest = hashlib.blake2b(f"{salt}\x1f{key}\x1f{option}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


def rendezvous_score(weight: float, u: float) -> float:
    if weight <= 0:
        return 0.0
    return -weight / math.log(u)


def assign(key: str, weights: Mapping[str, float], salt: str = "") -> str:
    """The option this key belongs to; ties (impossible in practice) go to the first by name."""
    if not weights or all(w <= 0 for w in weights.values()):
        raise ValueError("at least one option needs a positive weight")
    return max(
        sorted(weights), key=lambda option: rendezvous_score(weights[option], unit_hash(salt, key, option))
    )
