"""Serving parameters shared by the ModelPin API and the ensemble service (pure, no I/O).

Defaults are the seeds' values (ARCHITECTURE.md §2.1).
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from artisan_common.model import ApiModel, CelRule, invariant_error

Mode = Literal["fast", "balanced", "creative"]
MODES: tuple[Mode, ...] = ("fast", "balanced", "creative")
"""Modes from the cheapest to the richest; a downshift moves left."""


class ModeParams(ApiModel):
    """Generation parameters of one mode; the field defaults here are balanced's. Each field of
    ``ModelPin.spec.modes`` has its own mode's defaults (:class:`FastModeParams`, ...), so a mode
    given with only some fields gets that mode's values for the rest, not balanced's."""

    max_new_tokens: int = Field(default=512, ge=1, le=32768)
    """Most tokens generated per model call."""
    temperature: float = Field(default=0.7, ge=0, le=5)
    """Sampling temperature (0 = greedy)."""
    top_p: float = Field(default=0.9, gt=0, le=1)
    """Nucleus sampling mass, in (0, 1]."""
    timeout_seconds: float = Field(default=12.0, gt=0, le=600)
    """Deadline of one request in this mode."""


class FastModeParams(ModeParams):
    """Fast mode's parameters; unset fields default to fast's values (256 tokens, 0.3, 0.8, 8 s)."""

    max_new_tokens: int = Field(default=256, ge=1, le=32768)
    """Most tokens generated per model call."""
    temperature: float = Field(default=0.3, ge=0, le=5)
    """Sampling temperature (0 = greedy)."""
    top_p: float = Field(default=0.8, gt=0, le=1)
    """Nucleus sampling mass, in (0, 1]."""
    timeout_seconds: float = Field(default=8.0, gt=0, le=600)
    """Deadline of one request in this mode."""


class BalancedModeParams(ModeParams):
    """Balanced mode's parameters; unset fields default to balanced's values (512 tokens, 0.7, 0.9, 12 s)."""


class CreativeModeParams(ModeParams):
    """Creative mode's parameters; unset fields default to creative's values (1024, 0.8, 0.95, 20 s)."""

    max_new_tokens: int = Field(default=1024, ge=1, le=32768)
    """Most tokens generated per model call."""
    temperature: float = Field(default=0.8, ge=0, le=5)
    """Sampling temperature (0 = greedy)."""
    top_p: float = Field(default=0.95, gt=0, le=1)
    """Nucleus sampling mass, in (0, 1]."""
    timeout_seconds: float = Field(default=20.0, gt=0, le=600)
    """Deadline of one request in this mode."""


MODE_DEFAULTS: dict[Mode, type[ModeParams]] = {
    "fast": FastModeParams,
    "balanced": BalancedModeParams,
    "creative": CreativeModeParams,
}
"""Each mode's parameter model: its field defaults are the mode's seed values."""


class ModesSpec(ApiModel):
    fast: FastModeParams = Field(default_factory=FastModeParams)
    """Primary model only: short, literal."""
    balanced: BalancedModeParams = Field(default_factory=BalancedModeParams)
    """Primary and validator."""
    creative: CreativeModeParams = Field(default_factory=CreativeModeParams)
    """Primary, validator and creative models."""

    def params(self, mode: Mode) -> ModeParams:
        result: ModeParams = getattr(self, mode)
        return result


class TrafficMix(ApiModel):
    fast: int = Field(default=60, ge=0, le=100)
    """Percent of requests served in fast mode."""
    balanced: int = Field(default=30, ge=0, le=100)
    """Percent of requests served in balanced mode."""
    creative: int = Field(default=10, ge=0, le=100)
    """Percent of requests served in creative mode."""

    cel_rules = (
        CelRule(
            "self.fast + self.balanced + self.creative == 100", "fast + balanced + creative must sum to 100"
        ),
    )

    @model_validator(mode="after")
    def _sums_to_100(self) -> Self:
        if self.fast + self.balanced + self.creative != 100:
            raise invariant_error(self, "fast + balanced + creative must sum to 100")
        return self


class DownshiftPolicy(ApiModel):
    failure_threshold: int = Field(default=3, ge=1)
    """Consecutive failures that open a model's circuit breaker."""
    hold_seconds: int = Field(default=300, ge=1)
    """How long a breaker stays open (and a fleet stays downshifted) before probing recovery."""
    normal_ttl_seconds: int = Field(default=3600, ge=1, alias="normalTTLSeconds")
    """Cache TTL while every model is healthy."""
    downshift_ttl_seconds: int = Field(default=300, ge=1, alias="downshiftTTLSeconds")
    """Cache TTL while downshifted."""
    unhealthy_pod_fraction: float = Field(default=0.5, gt=0, le=1)
    """Fleet downshift: share of pods on which a model must be down."""
    unhealthy_for_seconds: int = Field(default=60, ge=0)
    """Fleet downshift: how long that share must hold before the fleet's ceiling is lowered."""


# --- the pinned models (ModelPin spec.models; the ensemble reads the same shape) -------------------


class ModelRef(ApiModel):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    """Model name (the role it plays is the key it sits under)."""
    source: str = Field(min_length=1, max_length=1024)
    """A local path in the image, or pvc://<claim>/<path> for a model on a PersistentVolumeClaim."""
    revision: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    """Pinned revision; loaded with local_files_only, never downloaded."""
    quantization: Literal["none", "8bit", "4bit"] = "none"
    """Weight quantization on GPU (bitsandbytes)."""


class ModelsSpec(ApiModel):
    primary: ModelRef
    """Text → structured brief (the "Qwen" role). Required."""
    validator: ModelRef | None = None
    """Schema, units and IFRA checks (the "Mistral" role); rule-based when unset."""
    creative: ModelRef | None = None
    """Evocative hints (the "Llama" role); template-based when unset."""
