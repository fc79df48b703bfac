"""The RBAC rules the operator needs, derived from the code (never written by hand).

Two sources:

* this package's own calls: every ``<api>.<verb>_namespaced_<resource>[_status]`` attribute in the
  modules of ``artisan_operator.cluster`` (the only code that talks to the API), read with ``ast``.
  The API group comes from the client object (``core``, ``apps``, ``batch``, ``custom``); for custom
  objects the ``plural`` argument is resolved in the module (``model_pin.PLURAL``) or, when it is a
  parameter, stands for every Artisan kind;
* kopf's own needs: list/watch/patch on the four kinds (watching, finalizers, annotations), create
  Events, and, cluster-wide only, list/watch CustomResourceDefinitions (kopf's resource scanning;
  namespaced mode disables it, see ``handlers.startup``);
* owner references: children carry ``blockOwnerDeletion: true`` (a foreground deletion of a
  TrainingRun waits until its Job's pods are gone, so no trainer still writes the checkpoint PVC
  when the run is reported deleted). Setting it needs ``update`` on ``<owner>/finalizers`` where the
  OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift and hardened clusters), so
  it is granted for exactly the kinds that own children (:data:`OWNER_KINDS`).

The chart's rendered RBAC must equal :func:`required_rules` exactly (tests compare them); the
flattening of rendered rules lives in the pure :mod:`artisan_operator.rbac`.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from typing import Any

from artisan_operator.api import KINDS
from artisan_operator.api.canary import KIND as CANARY
from artisan_operator.api.common import GROUP
from artisan_operator.api.model_pin import KIND as MODEL_PIN
from artisan_operator.api.training_run import KIND as TRAINING_RUN
from artisan_operator.rbac import Permission

Rule = Permission
"""(apiGroup, resource[/subresource], verb)."""

OWNER_KINDS = (TRAINING_RUN, MODEL_PIN, CANARY)
"""Kinds whose children carry an owner reference with ``blockOwnerDeletion`` (manifests/): the
TrainingRun's Job, PVC, ConfigMap and Service; the ModelPin's Deployment, Service and routing
ConfigMap; the Canary's canary Deployment and Service. An ABExperiment owns no object."""

CALL = re.compile(
    r"^(?P<verb>create|read|get|patch|delete|list|replace)_namespaced_(?P<resource>\w+?)(?P<status>_status)?$"
)
VERBS = {
    "create": "create",
    "read": "get",
    "get": "get",
    "patch": "patch",
    "delete": "delete",
    "list": "list",
    "replace": "update",
}
CLIENT_GROUPS = {"core": "", "apps": "apps", "batch": "batch", "custom": GROUP}
ARTISAN_PLURALS = tuple(kind.plural for kind in KINDS)
PLURAL_ARGUMENT_INDEX = 3  # (group, version, namespace, plural, ...)
# Modules of cluster/ that the operator process does not run: the kubectl plugin's client (its
# calls are the user's, made with the user's credentials) and this module.
NOT_OPERATOR_MODULES = frozenset(
    {"artisan_operator.cluster.cli_client", "artisan_operator.cluster.permissions"}
)


def _receiver(node: ast.Attribute) -> str | None:
    value = node.value
    if isinstance(value, ast.Name):
        return value.id
    if isinstance(value, ast.Attribute):
        return value.attr
    return None


def _resolve(expr: ast.expr, namespace: dict[str, Any]) -> str | None:
    """The value of a constant or a dotted name defined in the module; None for anything else."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, ast.Name):
        value = namespace.get(expr.id)
        return value if isinstance(value, str) else None
    if isinstance(expr, ast.Attribute):
        owner = _resolve_object(expr.value, namespace)
        value = getattr(owner, expr.attr, None) if owner is not None else None
        return value if isinstance(value, str) else None
    return None


def _resolve_object(expr: ast.expr, namespace: dict[str, Any]) -> Any:
    if isinstance(expr, ast.Name):
        return namespace.get(expr.id)
    if isinstance(expr, ast.Attribute):
        owner = _resolve_object(expr.value, namespace)
        return getattr(owner, expr.attr, None) if owner is not None else None
    return None


def _argument(call: ast.Call, name: str, index: int, namespace: dict[str, Any]) -> str | None:
    expr = next((k.value for k in call.keywords if k.arg == name), None)
    if expr is None and len(call.args) > index:
        expr = call.args[index]
    return _resolve(expr, namespace) if expr is not None else None


def _custom_resources(call: ast.Call | None, namespace: dict[str, Any]) -> list[tuple[str, str]]:
    """(group, plural) pairs a custom-object call may touch; a parameter means every Artisan kind."""
    if call is None:
        return [(GROUP, plural) for plural in ARTISAN_PLURALS]
    group = _argument(call, "group", 0, namespace) or GROUP
    plural = _argument(call, "plural", PLURAL_ARGUMENT_INDEX, namespace)
    return [(group, plural)] if plural else [(group, p) for p in ARTISAN_PLURALS]


def rules_in_source(source: str, namespace: dict[str, Any]) -> set[Rule]:
    """The API calls made in one module's source."""
    tree = ast.parse(source)
    calls = {id(node.func): node for node in ast.walk(tree) if isinstance(node, ast.Call)}
    rules: set[Rule] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        match = CALL.match(node.attr)
        receiver = _receiver(node)
        if match is None or receiver not in CLIENT_GROUPS:
            continue
        verb = VERBS[match["verb"]]
        suffix = "/status" if match["status"] else ""
        if match["resource"] == "custom_object":
            for group, plural in _custom_resources(calls.get(id(node)), namespace):
                rules.add(Permission(group, plural + suffix, verb))
        else:
            plural = match["resource"].replace("_", "") + "s"
            rules.add(Permission(CLIENT_GROUPS[receiver], plural + suffix, verb))
    return rules


def code_rules() -> set[Rule]:
    """Every API call in ``artisan_operator.cluster``."""
    package = importlib.import_module("artisan_operator.cluster")
    rules: set[Rule] = set()
    for info in pkgutil.iter_modules(package.__path__, prefix="artisan_operator.cluster."):
        if info.name in NOT_OPERATOR_MODULES:
            continue
        module = importlib.import_module(info.name)
        if module.__file__ is None:
            continue
        with open(module.__file__, encoding="utf-8") as handle:
            rules |= rules_in_source(handle.read(), vars(module))
    return rules


def kopf_rules(*, clusterwide: bool) -> set[Rule]:
    rules = {
        Permission(GROUP, plural, verb) for plural in ARTISAN_PLURALS for verb in ("list", "watch", "patch")
    }
    rules.add(Permission("", "events", "create"))
    if clusterwide:
        rules |= {
            Permission("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")
        }
    return rules


def owner_rules() -> set[Rule]:
    """``update`` on the finalizers subresource of each kind that owns children (blockOwnerDeletion)."""
    plurals = {kind.kind: kind.plural for kind in KINDS}
    return {Permission(GROUP, f"{plurals[kind]}/finalizers", "update") for kind in OWNER_KINDS}


def required_rules(*, clusterwide: bool = True) -> set[Rule]:
    return code_rules() | kopf_rules(clusterwide=clusterwide) | owner_rules()
