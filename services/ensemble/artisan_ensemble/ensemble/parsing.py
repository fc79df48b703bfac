"""Robust parsing of model output: extract a JSON object, repair the usual slips, validate.

| model output                                   | result                                |
|------------------------------------------------|---------------------------------------|
| ``{"style": "woody", ...}``                    | Brief                                 |
| ``Sure! {'style': 'woody', ...,}`` + chatter    | Brief (quotes, trailing comma repaired) |
| ``{"style": "woody", "intensity": 0.7``         | Brief (missing braces closed)         |
| ``{"style": "banana", ...}``                   | ParseFailure("style: ...")            |
| random bytes                                   | ParseFailure("no JSON object found")  |
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from artisan_ensemble.ensemble.brief import NOTE_FAMILIES, Brief, Language

_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}
_MAX_SCAN = 20_000


@dataclass(frozen=True)
class ParseFailure:
    reason: str


def extract_json_object(text: str) -> str | None:
    """The first balanced ``{...}`` in the text; an unterminated one is returned as is (repair closes it)."""
    text = text[:_MAX_SCAN]
    start = text.find("{")
    if start < 0:
        return None
    depth = 0
    in_string: str | None = None
    escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == in_string:
                in_string = None
        elif char in "\"'":
            in_string = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start : index + 1]
    return text[start:]


def repair_json(candidate: str) -> str:
    """Fix the slips small models make: single quotes, Python literals, trailing commas, open braces."""
    fixed = candidate.strip()
    if '"' not in fixed and "'" in fixed:
        fixed = fixed.replace("'", '"')
    for python, js in _PY_LITERALS.items():
        fixed = re.sub(rf"\b{python}\b", js, fixed)
    fixed = _TRAILING_COMMA.sub(r"\1", fixed)
    if fixed.count('"') % 2:
        fixed += '"'
    fixed = fixed.rstrip().rstrip(",")
    fixed += "]" * max(0, fixed.count("[") - fixed.count("]"))
    fixed += "}" * max(0, fixed.count("{") - fixed.count("}"))
    return fixed


def _families(value: Any) -> Any:
    """Accept {"citrus": 0.8}, [{"family": "citrus", "weight": 0.8}] or ["citrus", "woody"]."""
    if isinstance(value, list):
        result: dict[str, Any] = {}
        for rank, item in enumerate(value):
            if isinstance(item, str):
                result[item.lower()] = round(max(0.1, 1.0 - 0.15 * rank), 3)
            elif isinstance(item, dict) and "family" in item:
                result[str(item["family"]).lower()] = item.get("weight", 1.0)
        return result
    if isinstance(value, dict):
        return {str(k).lower(): v for k, v in value.items()}
    return value


def brief_from_object(data: dict[str, Any], language: Language) -> Brief:
    """Validate a decoded object; unknown keys are dropped, common aliases accepted, names lower-cased."""
    families = data.get("noteFamilies", data.get("note_families", data.get("families", data.get("notes"))))
    cleaned: dict[str, Any] = {
        "style": str(data.get("style", "")).lower(),
        "intensity": data.get("intensity"),
        "complexity": data.get("complexity"),
        "noteFamilies": _families(families),
        "language": language,
    }
    if isinstance(cleaned["noteFamilies"], dict):
        unknown = sorted(set(cleaned["noteFamilies"]) - set(NOTE_FAMILIES))
        if unknown:
            raise ValueError(f"noteFamilies: unknown families {unknown}")
    return Brief.model_validate(cleaned)


def parse_brief(text: str, language: Language) -> Brief | ParseFailure:
    """Extract, repair and validate; the failure names what was wrong (for the response's fallbacks)."""
    candidate = extract_json_object(text)
    if candidate is None:
        return ParseFailure("no JSON object found")
    for attempt in (candidate, repair_json(candidate)):
        try:
            data = json.loads(attempt)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            return ParseFailure("JSON is not an object")
        try:
            return brief_from_object(data, language)
        except ValidationError as error:
            first = error.errors()[0]
            location = ".".join(str(p) for p in first["loc"]) or "brief"
            return ParseFailure(f"{location}: {first['msg']}")
        except ValueError as error:
            return ParseFailure(str(error))
    return ParseFailure("JSON could not be repaired")


def parse_string_list(text: str, min_items: int, max_items: int, max_len: int = 160) -> list[str] | None:
    """A JSON array of short printable strings (creative hints), or None when the output is unusable."""
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(repair_json(text[start : end + 1]))
    except json.JSONDecodeError:
        return None
    if not isinstance(data, list):
        return None
    items = [s.strip() for s in data if isinstance(s, str)]
    items = [s for s in items if 3 <= len(s) <= max_len and s.isprintable() and any(c.isalpha() for c in s)]
    if not min_items <= len(items):
        return None
    return items[:max_items]
