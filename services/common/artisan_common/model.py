"""The base for every API model: camelCase on the wire, snake_case in Python, unknown fields refused."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


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

    def to_wire(self) -> dict[str, object]:
        """The JSON shape Kubernetes stores: camelCase, no unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m(?!s))?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?$")
DURATION_PATTERN = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$"


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


Duration = Annotated[str, AfterValidator(_check_duration)]
"""A Go-style duration string, validated on input and kept as written (GitOps diffs stay clean)."""
