"""Request and response bodies of the ensemble's HTTP API (pure pydantic; camelCase on the wire)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from artisan_common.model import ApiModel, invariant_error
from artisan_common.serving import Mode
from artisan_ensemble.ensemble.brief import Brief, BriefSource, Language
from artisan_ensemble.ensemble.downshift import Role
from artisan_ensemble.ensemble.faults import FaultKind
from artisan_ensemble.ensemble.validation import ValidationSource

MAX_TEXT_CHARS = 2000
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"


class BriefRequest(ApiModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, pattern=r"\S")
    """What the user wants, in Korean or English."""
    mode: Mode = "balanced"
    """fast, balanced or creative."""
    user_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """Caller's user id (used by the gateway for assignment; echoed in logs only)."""
    session_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """Caller's session id: the gateway assigns by it when the experiment's ``assignment.key`` is
    ``session_id`` (else by the user id)."""
    language: Language | None = None
    """Force the language of prompts and hints; detected from the text when unset."""


class ModeDecision(ApiModel):
    requested: Mode
    """The mode the caller asked for."""
    served: Mode
    """The mode whose models actually answered (or fast for cache/rules answers)."""
    route: Literal["models", "cache", "stale-cache", "keywords"]
    """How the answer was produced."""
    downshifted: bool
    """True when served below the request or without the primary model."""
    reason: str
    """Why this route was taken."""


class ValidationOut(ApiModel):
    valid: bool
    issues: list[str]
    source: ValidationSource


class HintsOut(ApiModel):
    items: list[str] = Field(min_length=5, max_length=8)
    source: Literal["model", "template"]


class FormulaIngredient(ApiModel):
    id: str
    name: str
    family: str
    tier: Literal["top", "middle", "base"]
    proportion: float = Field(gt=0, le=1)
    """Share of the concentrate."""


class IfraViolationOut(ApiModel):
    ingredient: str
    limit_percent: float
    actual_percent: float


class AllergenOut(ApiModel):
    allergen: str
    actual_percent: float


class IfraOut(ApiModel):
    compliant: bool
    """The served formula respects every IFRA limit."""
    violations: list[IfraViolationOut]
    """Violations of the served formula (empty when compliant)."""
    raw_violations: list[IfraViolationOut]
    """Violations the generator produced before the safety projection."""
    allergens: list[AllergenOut]
    """Allergens above the labelling threshold (must be declared)."""


class FormulaOut(ApiModel):
    source: Literal["heuristic", "policy"]
    concentration: float = Field(gt=0, le=1)
    """Share of concentrate in the finished product."""
    ingredients: list[FormulaIngredient]
    ifra: IfraOut


class BriefResponse(ApiModel):
    id: str
    brief: Brief
    brief_source: BriefSource
    mode: ModeDecision
    validation: ValidationOut
    hints: HintsOut
    formula: FormulaOut
    fallbacks: list[str]
    """Every place a deterministic fallback replaced model output, and why."""
    models: dict[str, str]
    """Role → name@revision of the models that answered."""
    elapsed_ms: float


class FormulaRequest(ApiModel):
    brief: Brief
    """A brief, as returned by /v1/briefs (possibly edited)."""


class FeedbackRequest(ApiModel):
    sample_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """Idempotency key; generated when unset."""
    user_id: str = Field(pattern=ID_PATTERN)
    session_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """The session the rated brief came from (the gateway's variant key under session assignment)."""
    brief_id: str | None = Field(default=None, pattern=ID_PATTERN)
    brief: Brief | None = None
    formula: dict[str, float] | None = Field(default=None, max_length=200)
    """Ingredient id → proportion of the rated formula (its IFRA compliance is recomputed)."""
    rating: float = Field(ge=0, le=10, allow_inf_nan=False)
    reward: float | None = Field(default=None, ge=-100, le=100, allow_inf_nan=False)
    """Derived from the rating when unset."""
    response_seconds: float = Field(ge=0, le=86_400, allow_inf_nan=False)
    ifra_compliant: bool | None = None
    """Required when no formula is given."""
    variant: str | None = Field(default=None, pattern=ID_PATTERN)


class FeedbackResponse(ApiModel):
    sample_id: str
    accepted: bool
    stored: bool
    """False when the sample id was already stored (idempotent retry)."""
    reason: str | None = None


class ModelOut(ApiModel):
    role: str
    name: str
    revision: str
    """The pinned revision (as the ModelPin names it)."""
    commit: str | None = None
    """The commit sha actually loaded, when known (a Hugging Face cache snapshot)."""
    source: str
    device: str
    parameters: int
    breaker: str
    healthy: bool


class ModelsResponse(ApiModel):
    models: list[ModelOut]
    formula_policy: str
    modes: dict[str, dict[str, int | float]]


class FaultRequest(ApiModel):
    model: Role
    kind: FaultKind
    duration_seconds: float = Field(gt=0, le=86_400)


class ChatMessage(ApiModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_TEXT_CHARS * 4)


class StreamOptions(ApiModel):
    """OpenAI's ``stream_options`` (snake_case on the wire, as OpenAI spells it)."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool = Field(default=False, alias="include_usage")
    """Send one more chunk before ``data: [DONE]``: empty ``choices`` and the request's ``usage``
    (every other chunk then carries ``"usage": null``)."""


class ChatCompletionRequest(ApiModel):
    """The OpenAI chat-completions request (the fields this server honours; others are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(default=None, max_length=128)
    messages: list[ChatMessage] = Field(min_length=1, max_length=64)
    max_tokens: int | None = Field(default=None, ge=1, le=4096, alias="max_tokens")
    temperature: float | None = Field(default=None, ge=0, le=2, alias="temperature")
    top_p: float | None = Field(default=None, gt=0, le=1, alias="top_p")
    stream: bool = False
    stream_options: StreamOptions | None = Field(default=None, alias="stream_options")
    """Only with ``stream: true`` (as OpenAI and vLLM refuse it otherwise)."""
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> ChatCompletionRequest:
        if self.stream_options is not None and not self.stream:
            raise invariant_error(self, "only allowed when stream is true", ".stream_options")
        return self
