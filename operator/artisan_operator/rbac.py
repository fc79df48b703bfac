"""RBAC as data (pure): what a rendered chart grants, in a form to compare with what the code calls.

The chart keeps the operator's rules in one place, ``charts/artisan/templates/_rbac.tpl``, rendered
into a ClusterRole (default) or a Role (``rbac.namespaced``). Tests render the chart and compare
:func:`permissions_from_rendered_chart` with the calls the operator makes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

ROLE_KINDS = ("Role", "ClusterRole")


class Permission(NamedTuple):
    """One allowed request: API group ("" for core), resource (``pods/log`` for a subresource), verb."""

    group: str
    resource: str
    verb: str


class WildcardError(ValueError):
    """A rule grants "*": least privilege forbids it."""


def rules_from_rendered_chart(objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rules of every Role and ClusterRole among rendered manifests (``None`` documents skipped)."""
    return [
        rule
        for obj in objects
        if obj and obj.get("apiVersion") == "rbac.authorization.k8s.io/v1" and obj.get("kind") in ROLE_KINDS
        for rule in obj.get("rules") or []
    ]


def wildcards(rules: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every use of "*" (or a non-resource URL, which no operator needs), described."""
    found = []
    for index, rule in enumerate(rules):
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            if "*" in (rule.get(field) or []):
                found.append(f"rules[{index}].{field} contains '*'")
            found.extend(
                f"rules[{index}].{field} contains {value!r}"
                for value in rule.get(field) or []
                if value != "*" and "*" in value
            )
        if rule.get("nonResourceURLs"):
            found.append(f"rules[{index}] grants nonResourceURLs")
    return found


def permissions_from_rules(rules: Iterable[Mapping[str, Any]]) -> frozenset[Permission]:
    """Expand rules into single permissions; refuses wildcards (they cannot be compared exactly)."""
    rules = list(rules)
    problems = wildcards(rules)
    if problems:
        raise WildcardError("; ".join(problems))
    return frozenset(
        Permission(group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups") or []
        for resource in rule.get("resources") or []
        for verb in rule.get("verbs") or []
    )


def permissions_from_rendered_chart(objects: Iterable[Mapping[str, Any]]) -> frozenset[Permission]:
    """What the chart's Role/ClusterRole lets the operator do."""
    return permissions_from_rules(rules_from_rendered_chart(objects))
