"""The base for every API model: camelCase on the wire, snake_case in Python, unknown fields refused."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, WithJsonSchema
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError


@dataclass(frozen=True)
class CelRule:
    """A cross-field invariant as the API server enforces it: one CRD `x-kubernetes-validations` entry.

    ``rule`` is a Kubernetes CEL expression over ``self`` (the object the model describes, after
    defaulting, camelCase field names); ``field_path`` (e.g. ``.final``) names the field blamed.
    Each model lists the rules that mirror its pydantic ``model_validator`` in ``cel_rules``.
    """

    rule: str
    message: str
    field_path: str | None = None


def invariant_error(model: BaseModel, message: str, field_path: str | None = None) -> ValidationError:
    """A cross-field error located at ``field_path`` (``.batchSize``, the CEL ``fieldPath`` form;
    ``.steps.2.setWeight`` for a list item).

    Raised from a ``model_validator``, pydantic prefixes the location with the model's own, so the
    error names the same field as the API server's CEL rule (``spec.ppo.batchSize``), not just the
    object that holds it.
    """
    loc = tuple(int(part) if part.isdigit() else part for part in (field_path or "").split(".") if part)
    value: object = model.model_dump(mode="json", by_alias=True)
    for part in loc:
        if isinstance(part, int):
            value = value[part] if isinstance(value, list) and part < len(value) else None
        else:
            value = value.get(part) if isinstance(value, dict) else None
    error = InitErrorDetails(type=PydanticCustomError("invariant", message), loc=loc, input=value)
    return ValidationError.from_exception_data(type(model).__name__, [error])


class ApiModel(BaseModel):
    """Frozen, strict about unknown fields, camelCase aliases (the Kubernetes convention)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
        use_attribute_docstrings=True,
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()
    """CEL twins of this model's cross-field validators (written into the CRD by crdgen)."""

    def to_wire(self) -> dict[str, object]:
        """The JSON shape Kubernetes stores: camelCase, no unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m(?!s))?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?$")
DURATION_PATTERN = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$"
# What parse_duration accepts, for the CRD schema: a bare number of seconds or a Go-style duration.
DURATION_SCHEMA_PATTERN = r"^([0-9]+(\.[0-9]+)?|([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)$"


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration ("90s", "5m", "1h30m", "250ms"); a bare number means seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    match = _DURATION.fullmatch(text)
    if not text or match is None or not any(match.groupdict().values()):
        raise ValueError(f"invalid duration {text!r}: use forms like 30s, 5m, 1h30m or 250ms")
    parts = {k: int(v) for k, v in match.groupdict().items() if v}
    return (
        parts.get("h", 0) * 3600.0 + parts.get("m", 0) * 60.0 + parts.get("s", 0) + parts.get("ms", 0) / 1000
    )


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    WithJsonSchema({"type": "string", "minLength": 1, "pattern": DURATION_SCHEMA_PATTERN}),
]
"""A Go-style duration string, validated on input and kept as written (GitOps diffs stay clean)."""
