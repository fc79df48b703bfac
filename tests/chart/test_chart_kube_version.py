"""Chart.yaml's kubeVersion is the oldest Kubernetes that understands everything the CRDs use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "artisan"

# The Kubernetes minor version from which the API server honours each part of a validation rule
# (apiextensions.k8s.io/v1 ValidationRule): CEL rules on by default from 1.25 (the list library's
# isSorted and sum included), messageExpression from 1.27, fieldPath and reason from 1.28.
RULE_FIELD_SINCE = {"rule": 25, "message": 25, "messageExpression": 27, "fieldPath": 28, "reason": 28}


def validation_rules(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "x-kubernetes-validations":
                yield from value
            else:
                yield from validation_rules(value)
    elif isinstance(node, list):
        for item in node:
            yield from validation_rules(item)


def needed_minor() -> int:
    rules = [
        r
        for path in sorted((ROOT / "crds").glob("*.yaml"))
        for r in validation_rules(yaml.safe_load(path.read_text()))
    ]
    assert rules
    unknown = {k for r in rules for k in r} - set(RULE_FIELD_SINCE)
    assert unknown == set(), f"add the Kubernetes version that introduced {unknown}"
    return max(RULE_FIELD_SINCE[k] for r in rules for k in r)


def test_kube_version_is_the_minimum_the_crds_need() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    minor = needed_minor()
    assert minor == 28  # fieldPath is used
    assert chart["kubeVersion"] == f">=1.{minor}.0-0"
