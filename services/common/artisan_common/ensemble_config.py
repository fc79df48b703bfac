"""The ensemble service's configuration: configs/llm_ensemble.yaml (base + dev/staging/prod profile),
then the ModelPin.

Precedence, lowest first: built-in defaults (the seeds' values) → the file's top level → the chosen
profile → the ModelPin's ``modes`` / ``traffic`` / ``downshift`` (the operator passes them as JSON).
It lives here, not in the ensemble package, so that ``artisan config`` (``ConfigLoader``) validates
``llm_ensemble.yaml`` with the very models the service loads it with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import ConfigDict, Field, ValidationError

from artisan_common.mappings import deep_merge
from artisan_common.model import ApiModel
from artisan_common.serving import DownshiftPolicy, ModelRef, ModelsSpec, ModesSpec, TrafficMix
from artisan_common.training import CurationSpec

Profile = Literal["dev", "staging", "prod"]


class BreakerSettings(ApiModel):
    window: int = Field(default=20, ge=1, le=10_000)
    """Calls in the sliding window of the failure-rate rule."""
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    """Failure share over the window that opens the breaker."""
    min_calls: int = Field(default=10, ge=1)
    """Calls needed in the window before the rate rule applies."""
    probe_timeout_seconds: float = Field(default=10.0, gt=0)
    """How long the background prober's one-token probe may take before it counts as failed. A request
    that is the half-open probe is given at least its mode's timeout (creative: 20 s) instead."""
    probe_interval_seconds: float = Field(default=5.0, ge=0)
    """How often the background prober looks for open breakers whose hold has passed and probes their
    model itself (a downshifted fleet sends no traffic that could probe); 0 turns it off."""


class CacheSettings(ApiModel):
    max_entries: int = Field(default=10_000, ge=1)
    """LRU bound on cached responses."""
    high_load: float = Field(default=0.8, ge=0, le=1)
    """Above this load the TTL doubles."""
    low_load: float = Field(default=0.3, ge=0, le=1)
    """Below this load the TTL halves."""
    max_ttl_seconds: float = Field(default=86_400, gt=0)
    """Upper bound of the adapted TTL."""
    min_ttl_seconds: float = Field(default=600, gt=0)
    """Lower bound of the halved TTL."""


class QueueSettings(ApiModel):
    max_concurrent: int = Field(default=4, ge=1, le=1024)
    """Requests generating at once (worker threads)."""
    max_waiting: int = Field(default=100, ge=0, le=100_000)
    """Requests allowed to wait; beyond it 429."""
    retry_after_seconds: float = Field(default=1.0, gt=0)
    """Retry-After sent with a 429."""


class LimitSettings(ApiModel):
    max_text_chars: int = Field(default=2000, ge=1)
    """Longest user text accepted."""
    max_body_bytes: int = Field(default=65_536, ge=1024)
    """Largest request body accepted (413 beyond)."""


class ServiceConfig(ApiModel):
    modes: ModesSpec = Field(default_factory=ModesSpec)
    traffic: TrafficMix = Field(default_factory=TrafficMix)
    downshift: DownshiftPolicy = Field(default_factory=DownshiftPolicy)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    curation: CurationSpec = Field(default_factory=CurationSpec)


PinnedModel = ModelRef
"""One pinned model, exactly as the ModelPin's ``spec.models`` holds it."""
PinnedModels = ModelsSpec


class PinConfig(ApiModel):
    """The part of ModelPinSpec (camelCase wire shape) the ensemble reads; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    models: PinnedModels
    modes: dict[str, Any] | None = None
    traffic: dict[str, Any] | None = None
    downshift: dict[str, Any] | None = None


PROFILES: tuple[Profile, ...] = get_args(Profile)


def resolve_config(
    document: Mapping[str, Any] | None, profile: Profile, pin: PinConfig | None = None
) -> ServiceConfig:
    """Merge file, profile and pin; raises ValueError naming the bad field."""
    document = dict(document or {})
    profiles = document.pop("profiles", {}) or {}
    if not isinstance(profiles, Mapping):
        raise ValueError("profiles: must be a mapping of profile name to overrides")
    merged = deep_merge(document, profiles.get(profile) or {})
    if pin is not None:
        for part in ("modes", "traffic", "downshift"):
            value = getattr(pin, part)
            if value:
                merged[part] = deep_merge(merged.get(part) or {}, value)
    return ServiceConfig.model_validate(merged)


def validate_ensemble_document(document: Mapping[str, Any]) -> dict[Profile, ServiceConfig]:
    """The configuration each profile gets from ``document`` (the content of llm_ensemble.yaml).

    Raises ``ValueError`` naming the profile and the field (a profile other than dev, staging or prod
    would never be read, so it is refused too); a ``ValidationError`` of the top level is raised as is.
    """
    profiles = document.get("profiles") or {}
    if not isinstance(profiles, Mapping):
        raise ValueError("profiles: must be a mapping of profile name to overrides")
    unknown = sorted(str(name) for name in profiles if name not in PROFILES)
    if unknown:
        raise ValueError(f"profiles.{unknown[0]}: unknown profile; known are {', '.join(PROFILES)}")
    ServiceConfig.model_validate({k: v for k, v in document.items() if k != "profiles"})
    resolved: dict[Profile, ServiceConfig] = {}
    for profile in PROFILES:
        try:
            resolved[profile] = resolve_config(document, profile)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"profiles.{profile} gives {where}: {first['msg']}") from None
    return resolved
