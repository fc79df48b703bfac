"""The downshift tree: which mode a request is served in, given which models can be called.

| requested | primary | validator | creative | fresh cache | stale cache | route                         |
|-----------|---------|-----------|----------|-------------|-------------|-------------------------------|
| creative  | up      | up        | up       | -           | -           | creative (models)             |
| creative  | up      | up        | down     | -           | -           | balanced: creative model down |
| creative  | up      | down      | down     | -           | -           | fast: validator model down    |
| creative  | up      | down      | up       | -           | -           | fast: validator model down    |
| balanced  | up      | down      | up       | -           | -           | fast: validator model down    |
| any       | down    | some up   | -        | -           | yes         | stale cache (stale-if-error)  |
| any       | down    | some up   | -        | -           | no          | keyword brief (rule-based)    |
| any       | down    | down      | down     | -           | yes         | stale cache only              |
| any       | down    | down      | down     | -           | no          | reject 503 + Retry-After      |

A model that is not pinned counts as down for the mode that needs it (creative = all three), so
creative with the validator down is served fast even when the creative model is up.
Fresh cache hits are served before this tree is consulted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from artisan_common.serving import Mode

Role = Literal["primary", "validator", "creative"]
ROLES: tuple[Role, ...] = ("primary", "validator", "creative")
MODE_ROLES: dict[Mode, tuple[Role, ...]] = {
    "fast": ("primary",),
    "balanced": ("primary", "validator"),
    "creative": ("primary", "validator", "creative"),
}
Route = Literal["models", "stale-cache", "keywords", "reject"]


@dataclass(frozen=True)
class RoutePlan:
    requested: Mode
    served: Mode
    route: Route
    reason: str

    @property
    def downshifted(self) -> bool:
        return self.served != self.requested or self.route != "models"


def _down_reason(role: Role, pinned: bool) -> str:
    return f"{role} model {'unavailable (circuit open)' if pinned else 'not pinned'}"


def plan_route(
    requested: Mode,
    available: Mapping[Role, bool],
    pinned: Mapping[Role, bool],
    has_stale_cache: bool,
) -> RoutePlan:
    """Walk down the tree until a rung can serve; ``available`` already means pinned and breaker allows."""
    up = {role: bool(available.get(role)) and bool(pinned.get(role)) for role in ROLES}
    if not up["primary"]:
        reason = _down_reason("primary", bool(pinned.get("primary")))
        if not any(up.values()):
            if has_stale_cache:
                return RoutePlan(requested, requested, "stale-cache", f"all models down: {reason}")
            return RoutePlan(requested, "fast", "reject", f"all models down: {reason}")
        if has_stale_cache:
            return RoutePlan(requested, requested, "stale-cache", reason)
        return RoutePlan(requested, "fast", "keywords", reason)
    served: Mode = requested
    reasons: list[str] = []
    if served == "creative" and not up["creative"]:
        reasons.append(_down_reason("creative", bool(pinned.get("creative"))))
        served = "balanced"
    # Both richer modes need the validator: creative falls straight to fast without it.
    if served in ("balanced", "creative") and not up["validator"]:
        reasons.append(_down_reason("validator", bool(pinned.get("validator"))))
        served = "fast"
    return RoutePlan(requested, served, "models", "; ".join(reasons) or "as requested")
