"""Service configuration (configs/llm_ensemble.yaml, then the ModelPin): the models live in
:mod:`artisan_common.ensemble_config`, shared with ``artisan config``'s validation."""

from __future__ import annotations

from artisan_common.ensemble_config import (
    BreakerSettings,
    CacheSettings,
    LimitSettings,
    PinConfig,
    PinnedModel,
    PinnedModels,
    Profile,
    QueueSettings,
    ServiceConfig,
    resolve_config,
)

__all__ = [
    "BreakerSettings",
    "CacheSettings",
    "LimitSettings",
    "PinConfig",
    "PinnedModel",
    "PinnedModels",
    "Profile",
    "QueueSettings",
    "ServiceConfig",
    "resolve_config",
]
