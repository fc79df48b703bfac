"""The gateway's routing table: written by the operator, read (and hot-reloaded) by the gateway.

One ConfigMap per ModelPin, named ``<modelpin>-routing``. Each controller owns one key, so no
controller ever overwrites another's decision (each patches only its own key):

| key               | written by            | holds                                              |
|-------------------|-----------------------|----------------------------------------------------|
| ``pin.json``      | ModelPin reconcile    | stable backend, mode ceiling (downshift), mode mix |
| ``canary.json``   | Canary control loop   | canary backend and its weight (0 on abort)         |
| ``experiment.json`` | ABExperiment loop   | variants, weights, salt, promoted winner           |

The gateway mounts the ConfigMap as a directory and composes the parts with :func:`compose`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal, Self

from pydantic import Field, model_validator

from artisan_common.model import ApiModel
from artisan_common.serving import MODES, Mode, TrafficMix

PIN_KEY = "pin.json"
CANARY_KEY = "canary.json"
EXPERIMENT_KEY = "experiment.json"


def routing_configmap_name(model_pin: str) -> str:
    return f"{model_pin}-routing"


class Backend(ApiModel):
    url: str = Field(pattern=r"^https?://")
    """Base URL of the ensemble Service, e.g. http://fragrance-ensemble.prod.svc:8080."""
    revision: str = Field(min_length=1)
    """Pin-set hash served by that backend."""


class PinRoute(ApiModel):
    stable: Backend
    """Where stable traffic goes."""
    mode_ceiling: Mode = "creative"
    """Richest mode the fleet may serve now (a fleet downshift lowers it)."""
    traffic: TrafficMix = Field(default_factory=TrafficMix)
    """Default mode mix for requests that name no mode."""


class CanaryRoute(ApiModel):
    backend: Backend
    """The canary fleet."""
    weight: int = Field(ge=0, le=100)
    """Percent of requests sent to the canary."""
    canary: str
    """Name of the Canary resource (for metrics labels)."""


class VariantRoute(ApiModel):
    name: str
    """Variant name (the first is the control)."""
    weight: int = Field(ge=0, le=100)
    """Percent of users."""
    mode: Mode = "balanced"
    """Mode served to this variant."""


class ExperimentRoute(ApiModel):
    experiment: str
    """Name of the ABExperiment resource."""
    key: Literal["user_id", "session_id"] = "user_id"
    """Request field users are assigned by."""
    salt: str = ""
    """Salt of the assignment hash."""
    variants: list[VariantRoute] = Field(min_length=1)
    """Variants and their weights."""
    promoted: str | None = None
    """When set, every user gets this variant (the experiment's winner)."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if sum(v.weight for v in self.variants) != 100:
            raise ValueError("variant weights must sum to 100")
        if self.promoted is not None and self.promoted not in {v.name for v in self.variants}:
            raise ValueError(f"promoted variant {self.promoted!r} is not a variant")
        return self


class RoutingTable(ApiModel):
    pin: PinRoute
    """Stable backend, ceiling and mode mix."""
    canary: CanaryRoute | None = None
    """The canary in progress, if any."""
    experiment: ExperimentRoute | None = None
    """The experiment in progress, if any."""


def compose(parts: Mapping[str, str]) -> RoutingTable:
    """Build the table from the ConfigMap's data keys; a missing pin.json is an error (no stable route)."""
    if PIN_KEY not in parts:
        raise ValueError(f"routing table has no {PIN_KEY}")
    canary = parts.get(CANARY_KEY)
    experiment = parts.get(EXPERIMENT_KEY)
    return RoutingTable(
        pin=PinRoute.model_validate(json.loads(parts[PIN_KEY])),
        canary=CanaryRoute.model_validate(json.loads(canary)) if canary and canary != "null" else None,
        experiment=(
            ExperimentRoute.model_validate(json.loads(experiment))
            if experiment and experiment != "null"
            else None
        ),
    )


def serialize(part: ApiModel | None) -> str:
    """The ConfigMap value of one part: canonical JSON ("null" clears a part)."""
    if part is None:
        return "null"
    return json.dumps(part.to_wire(), sort_keys=True, separators=(",", ":"))


def cap_mode(requested: Mode, ceiling: Mode) -> Mode:
    """The richest mode allowed: the requested one, lowered to the ceiling if it is above it."""
    return requested if MODES.index(requested) <= MODES.index(ceiling) else ceiling
