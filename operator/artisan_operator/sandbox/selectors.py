"""Label and field selectors as the Kubernetes API server reads them (pure).

Label selectors (``labelSelector=``) support both syntaxes of ``kubectl -l``:

==========================  =================================================
selector                    matches labels where ...
==========================  =================================================
``app=web`` / ``app==web``  ``app`` is ``web``
``app!=web``                ``app`` is absent or not ``web``
``tier in (a, b)``          ``tier`` is ``a`` or ``b``
``tier notin (a, b)``       ``tier`` is absent or neither ``a`` nor ``b``
``app``                     ``app`` is present
``!app``                    ``app`` is absent
``a=1,b``                   every comma-separated requirement holds
(empty)                     everything
==========================  =================================================

Field selectors (``fieldSelector=``) support ``path=value``, ``path==value`` and ``path!=value``
on dotted paths such as ``metadata.name`` or ``status.phase``; a missing field reads as "".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Operator = Literal["=", "!=", "in", "notin", "exists", "!exists"]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_KEY_RE = re.compile(rf"^{_KEY}$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")
_SET_RE = re.compile(rf"^(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")


class SelectorError(ValueError):
    """A selector that cannot be parsed; the message names the offending requirement."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!exists":
                return not present


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``( ... )`` value sets."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts]


def _checked_key(key: str, requirement: str) -> str:
    if not _KEY_RE.match(key):
        raise SelectorError(f"invalid label key {key!r} in requirement {requirement!r}")
    return key


def _checked_value(value: str, requirement: str) -> str:
    if not _VALUE_RE.match(value):
        raise SelectorError(f"invalid label value {value!r} in requirement {requirement!r}")
    return value


def _parse_requirement(text: str) -> Requirement:
    if not text:
        raise SelectorError("empty requirement (a stray comma?)")
    if set_match := _SET_RE.match(text):
        values = frozenset(_checked_value(value.strip(), text) for value in set_match["values"].split(","))
        operator: Operator = "in" if set_match["op"] == "in" else "notin"
        return Requirement(_checked_key(set_match["key"], text), operator, values)
    for token, op in (("!=", "!="), ("==", "="), ("=", "=")):
        if token in text:
            key, _, value = text.partition(token)
            return Requirement(
                _checked_key(key.strip(), text),
                "!=" if op == "!=" else "=",
                frozenset({_checked_value(value.strip(), text)}),
            )
    if text.startswith("!"):
        return Requirement(_checked_key(text[1:].strip(), text), "!exists")
    return Requirement(_checked_key(text, text), "exists")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a ``labelSelector`` query value; raise SelectorError naming the bad part."""
    if text is None or not text.strip():
        return LabelSelector()
    return LabelSelector(tuple(_parse_requirement(part) for part in _split_top_level(text)))


@dataclass(frozen=True)
class FieldRequirement:
    path: tuple[str, ...]
    equal: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        current: Any = obj
        for step in self.path:
            current = current.get(step) if isinstance(current, Mapping) else None
        actual = "" if current is None else str(current)
        return (actual == self.value) == self.equal


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(requirement.matches(obj) for requirement in self.requirements)


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse a ``fieldSelector`` query value (``metadata.name=x,status.phase!=Failed``)."""
    if text is None or not text.strip():
        return FieldSelector()
    requirements: list[FieldRequirement] = []
    for part in (part.strip() for part in text.split(",")):
        for token, equal in (("!=", False), ("==", True), ("=", True)):
            if token in part:
                path, _, value = part.partition(token)
                if not path.strip():
                    raise SelectorError(f"field selector {part!r} has no field path")
                requirements.append(FieldRequirement(tuple(path.strip().split(".")), equal, value.strip()))
                break
        else:
            raise SelectorError(f"field selector {part!r} needs =, == or !=")
    return FieldSelector(tuple(requirements))
