"""Where one request goes: variant, mode and backend, from the routing table (pure).

| routing table | request | decision |
|---|---|---|
| pin only (mix 60/30/10) | user u1, no mode | mode by rendezvous over the mix, stable |
| pin only | mode=creative | creative (capped at the pin's ceiling) |
| pin with ceiling fast | mode=creative | fast |
| experiment 50/40/10, salt s | user u1 | u1's variant and that variant's mode |
| experiment with promoted=treatment_a | any user | treatment_a |
| canary weight 10 | user u1 | canary for ≈10 % of users (sticky) |
| canary weight 0 (aborted) | any | stable |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from artisan_common.routing import Backend, RoutingTable, cap_mode
from artisan_common.serving import Mode
from artisan_ensemble.gateway.assignment import assign

NO_EXPERIMENT = "none"
DEFAULT_VARIANT = "default"
MODE_MIX_SALT = "artisan-mode-mix"


@dataclass(frozen=True)
class GatewayDecision:
    track: Literal["stable", "canary"]
    backend: Backend
    experiment: str
    variant: str
    mode: Mode


def assignment_key(table: RoutingTable, user_id: str | None, session_id: str | None) -> str | None:
    """Which request field a user is assigned by (the experiment's ``assignment.key``); the same key
    drives the mode mix and the canary split. None: no key, the caller assigns at random.

    | experiment key  | user id | session id | key                             |
    |-----------------|---------|------------|---------------------------------|
    | user_id         | u1      | s1         | u1                              |
    | session_id      | u1      | s1         | s1                              |
    | session_id      | u1      | -          | u1 (no session: the user)       |
    | (no experiment) | u1      | s1         | u1                              |
    | any             | -       | -          | None                            |
    """
    experiment = table.experiment
    if experiment is not None and experiment.key == "session_id" and session_id:
        return session_id
    return user_id or None


def decide_route(table: RoutingTable, user_key: str, requested_mode: Mode | None) -> GatewayDecision:
    experiment = table.experiment
    if experiment is not None:
        weights = {v.name: float(v.weight) for v in experiment.variants}
        name = experiment.promoted or assign(user_key, weights, salt=experiment.salt or experiment.experiment)
        variant = next(v for v in experiment.variants if v.name == name)
        experiment_name, variant_name, mode = experiment.experiment, variant.name, variant.mode
    else:
        experiment_name, variant_name = NO_EXPERIMENT, DEFAULT_VARIANT
        mix = table.pin.traffic
        mode = requested_mode or assign(  # type: ignore[assignment]
            user_key,
            {"fast": mix.fast, "balanced": mix.balanced, "creative": mix.creative},
            salt=MODE_MIX_SALT,
        )
    mode = cap_mode(mode, table.pin.mode_ceiling)
    track: Literal["stable", "canary"] = "stable"
    backend = table.pin.stable
    canary = table.canary
    if canary is not None and canary.weight > 0:
        weights = {"stable": float(100 - canary.weight), "canary": float(canary.weight)}
        if assign(user_key, weights, salt=f"canary:{canary.canary}") == "canary":
            track, backend = "canary", canary.backend
    return GatewayDecision(track, backend, experiment_name, variant_name, mode)
