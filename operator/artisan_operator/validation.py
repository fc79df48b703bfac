"""Offline validation of Artisan custom resources, as the API server would judge them (pure).

The checks run in the API server's order, against the CRDs that :mod:`artisan_operator.crdgen`
generates from the models:

1. the envelope: ``apiVersion`` ``artisan.dev/v1alpha1``, a known ``kind``, ``metadata.name``;
2. pruning: a field the schema does not know is reported (the server would drop it silently;
   ``kubectl --validate=strict`` refuses it), and ``null`` on a non-nullable field is dropped;
3. defaulting, then the OpenAPI schema (types, enums, bounds, required fields) with jsonschema;
4. the CEL ``x-kubernetes-validations`` rules, evaluated with cel-python on the defaulted object
   (only on parts that passed step 3, as a rule over a mistyped field says nothing useful).

Every problem names the object, the file and the field path (``spec.ppo.entropy.final``).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import celpy
import jsonschema
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel

from artisan_operator.api import API_VERSION, GROUP, KINDS_BY_NAME
from artisan_operator.crdgen import apply_defaults, build_crds

Schema = Mapping[str, Any]
Path = tuple[str | int, ...]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENVELOPE_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")


@dataclass(frozen=True)
class Problem:
    """One reason an object would be refused."""

    source: str
    """File the object came from (or ``<stdin>``)."""
    obj: str
    """``Kind namespace/name`` (or ``document N`` when the object cannot be named)."""
    path: str
    """Field path, e.g. ``spec.ppo.entropy.final``; empty for the document as a whole."""
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.source}: {self.obj}: {where}{self.message}"


def format_path(path: Path) -> str:
    """``("spec", "steps", 2, "setWeight")`` → ``spec.steps[2].setWeight``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@functools.cache
def crd_schemas() -> Mapping[str, Schema]:
    """The ``openAPIV3Schema`` of each kind, from the generated CRDs."""
    return {
        kind: crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] for kind, crd in build_crds().items()
    }


# --- step 2: pruning -------------------------------------------------------------------------


def prune(value: Any, schema: Schema, path: Path, unknown: list[Path]) -> Any:
    """The value the API server keeps, collecting the paths of the fields it would drop."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or not isinstance(value, dict | list):
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if items is None:
            return value
        return [prune(item, items, (*path, index), unknown) for index, item in enumerate(value)]
    properties: Mapping[str, Schema] | None = schema.get("properties")
    extra = schema.get("additionalProperties")
    if properties is None and not isinstance(extra, Mapping):
        return value  # not an object schema: a type error, reported by the schema check
    kept: dict[str, Any] = {}
    for name, item in value.items():
        sub = properties.get(name) if properties is not None else None
        if sub is None and isinstance(extra, Mapping):
            sub = extra
        if sub is None:
            unknown.append((*path, name))
        elif item is None and not sub.get("nullable"):
            continue  # a null on a non-nullable field is dropped, then defaulted
        else:
            kept[name] = prune(item, sub, (*path, name), unknown)
    return kept


# --- step 3: schema ---------------------------------------------------------------------------


def _schema_problems(obj: Mapping[str, Any], schema: Schema) -> list[tuple[Path, str]]:
    validator = jsonschema.Draft4Validator(schema)
    found: list[tuple[Path, str]] = []
    for error in validator.iter_errors(obj):
        path: Path = tuple(error.absolute_path)
        if error.validator == "required" and isinstance(error.validator_value, list):
            missing = [
                f
                for f in error.validator_value
                if isinstance(error.instance, dict) and f not in error.instance
            ]
            found.extend(((*path, name), "required field is missing") for name in missing)
            continue
        found.append((path, error.message))
    return sorted(set(found), key=lambda item: (format_path(item[0]), item[1]))


# --- step 4: CEL ------------------------------------------------------------------------------


def _cel_sum(values: Sequence[Any]) -> Any:
    if not values:
        return celtypes.IntType(0)
    total = values[0]
    for item in values[1:]:
        total = total + item
    return total


def _cel_is_sorted(values: Sequence[Any]) -> celtypes.BoolType:
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(values)))


def _cel_min(values: Sequence[Any]) -> Any:
    if not values:
        raise ValueError("min() of an empty list")
    return min(values)


def _cel_max(values: Sequence[Any]) -> Any:
    if not values:
        raise ValueError("max() of an empty list")
    return max(values)


# The Kubernetes CEL list library functions our rules may use (cel-python lacks them).
KUBERNETES_CEL_FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "isSorted": _cel_is_sorted,
    "sum": _cel_sum,
    "min": _cel_min,
    "max": _cel_max,
}


@functools.cache
def compile_rule(rule: str) -> Any:
    """A cel-python program for one rule (compiled once; raises on a syntax error)."""
    env = celpy.Environment()
    return env.program(env.compile(rule), functions=dict(KUBERNETES_CEL_FUNCTIONS))


def to_cel(value: Any, schema: Schema) -> Any:
    """A JSON value as CEL sees it under its schema (a ``number`` is a double even when written 3)."""
    kind = schema.get("type")
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return json_to_cel(value)
    if isinstance(value, dict):
        properties: Mapping[str, Schema] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return celtypes.MapType(
            {
                celtypes.StringType(k): to_cel(
                    v, properties.get(k, extra if isinstance(extra, Mapping) else {})
                )
                for k, v in value.items()
            }
        )
    if isinstance(value, list):
        items = schema.get("items", {})
        return celtypes.ListType([to_cel(item, items) for item in value])
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if kind == "number" and isinstance(value, int | float):
        return celtypes.DoubleType(float(value))
    return json_to_cel(value)


def _join(path: Path, field_path: str | None) -> Path:
    if not field_path:
        return path
    return (*path, *(part for part in field_path.lstrip(".").split(".") if part))


def _cel_problems(
    value: Any, schema: Schema, path: Path, skip: Callable[[Path], bool]
) -> Iterator[tuple[Path, str]]:
    """Evaluate every rule on every node, depth first; no rule runs over a part with a schema error."""
    if isinstance(value, dict):
        properties: Mapping[str, Schema] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            sub = properties.get(name, extra if isinstance(extra, Mapping) else None)
            if sub is not None:
                yield from _cel_problems(item, sub, (*path, name), skip)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _cel_problems(item, schema["items"], (*path, index), skip)
    if skip(path):
        return
    for rule in schema.get("x-kubernetes-validations", ()):
        blamed = _join(path, rule.get("fieldPath"))
        try:
            result = compile_rule(rule["rule"]).evaluate({"self": to_cel(value, schema)})
        except Exception as error:  # cel-python raises several types; the rule text is what matters
            yield path, f"rule {rule['rule']!r} could not be evaluated: {error}"
            continue
        if isinstance(result, Exception):
            yield path, f"rule {rule['rule']!r} could not be evaluated: {result}"
        elif result is not True and result != celtypes.BoolType(True):
            yield blamed, rule.get("message") or f"failed rule: {rule['rule']}"


# --- the object -------------------------------------------------------------------------------


def object_label(obj: Any, index: int) -> str:
    """How problems name an object: ``Kind namespace/name``, or its position when it has no name."""
    if not isinstance(obj, Mapping):
        return f"document {index + 1}"
    kind = obj.get("kind") if isinstance(obj.get("kind"), str) else None
    metadata: Mapping[str, Any] = obj["metadata"] if isinstance(obj.get("metadata"), Mapping) else {}
    name = metadata.get("name") if isinstance(metadata.get("name"), str) else None
    namespace = metadata.get("namespace") if isinstance(metadata.get("namespace"), str) else None
    who = f"{namespace}/{name}" if namespace and name else name or f"(unnamed, document {index + 1})"
    return f"{kind or '(no kind)'} {who}"


def _envelope_problems(obj: Mapping[str, Any]) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    api_version = obj.get("apiVersion")
    if api_version is None:
        found.append((("apiVersion",), f"required field is missing (expected {API_VERSION})"))
    elif api_version != API_VERSION:
        found.append((("apiVersion",), f"unsupported apiVersion {api_version!r}: expected {API_VERSION}"))
    kind = obj.get("kind")
    if kind is None:
        found.append((("kind",), f"required field is missing (one of {', '.join(KINDS_BY_NAME)})"))
    elif kind not in KINDS_BY_NAME:
        found.append((("kind",), f"unknown kind {kind!r}: expected one of {', '.join(KINDS_BY_NAME)}"))
    metadata = obj.get("metadata")
    if metadata is None:
        found.append((("metadata",), "required field is missing"))
    elif not isinstance(metadata, Mapping):
        found.append((("metadata",), "must be a mapping"))
    else:
        found.extend(_metadata_problems(metadata))
    found.extend(((name,), "unknown field") for name in obj if name not in _ENVELOPE_FIELDS)
    return found


def _metadata_problems(metadata: Mapping[str, Any]) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    name = metadata.get("name")
    if name is None and not metadata.get("generateName"):
        found.append((("metadata", "name"), "required field is missing"))
    elif name is not None and (
        not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name)
    ):
        found.append(
            (
                ("metadata", "name"),
                f"invalid name {name!r}: lower-case letters, digits, '-' and '.', at most 253",
            )
        )
    namespace = metadata.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.match(namespace)
    ):
        found.append((("metadata", "namespace"), f"invalid namespace {namespace!r}"))
    for field in ("labels", "annotations"):
        entries = metadata.get(field)
        if entries is None:
            continue
        if not isinstance(entries, Mapping):
            found.append((("metadata", field), "must be a mapping of strings"))
            continue
        found.extend(
            (("metadata", field, str(key)), "value must be a string")
            for key, item in entries.items()
            if not isinstance(item, str)
        )
    return found


def validate_object(obj: Any, *, source: str = "<input>", index: int = 0) -> list[Problem]:
    """Every reason the API server (with strict field validation) would refuse ``obj``."""
    label = object_label(obj, index)

    def problems(found: Iterable[tuple[Path, str]]) -> list[Problem]:
        return [Problem(source, label, format_path(path), message) for path, message in found]

    if not isinstance(obj, Mapping):
        return problems([((), f"expected a Kubernetes object (a mapping), got {type(obj).__name__}")])
    if not is_artisan_object(obj) and obj.get("kind") not in KINDS_BY_NAME and "apiVersion" in obj:
        found = f"apiVersion {obj.get('apiVersion')!r}, kind {obj.get('kind')!r}"
        return problems([(("apiVersion",), f"not an Artisan resource ({found}): expected {API_VERSION}")])
    envelope = _envelope_problems(obj)
    if obj.get("kind") not in KINDS_BY_NAME:
        return problems(envelope)  # no schema to check the rest against
    schema = crd_schemas()[obj["kind"]]
    body = {k: v for k, v in obj.items() if k in ("spec", "status")}
    unknown: list[Path] = []
    pruned = prune(body, schema, (), unknown)
    defaulted = apply_defaults(pruned, schema)
    schema_found = _schema_problems(
        defaulted, {**schema, "properties": {**schema["properties"], "metadata": {}}}
    )
    broken = [path for path, _ in schema_found]

    def has_schema_error(path: Path) -> bool:
        return any(bad[: len(path)] == path for bad in broken)

    cel_found = list(_cel_problems(defaulted, schema, (), has_schema_error))
    unknown_found = [(path, "unknown field") for path in unknown]
    return problems([*envelope, *unknown_found, *schema_found, *cel_found])


def _expand_lists(documents: Iterable[Any]) -> Iterator[Any]:
    """Objects of ``kind: List`` (``kubectl get -o yaml``) are validated item by item."""
    for document in documents:
        if isinstance(document, Mapping) and document.get("kind") == "List" and "items" in document:
            yield from document.get("items") or []
        elif document is not None:
            yield document


def is_artisan_object(obj: Any) -> bool:
    api_version = obj.get("apiVersion") if isinstance(obj, Mapping) else None
    return isinstance(api_version, str) and api_version.split("/", 1)[0] == GROUP


def validate_text(
    text: str, *, source: str = "<input>", only_artisan: bool = False
) -> tuple[int, list[Problem]]:
    """Validate every object of a (multi-document) YAML or JSON text: (objects checked, problems).

    With ``only_artisan``, objects of other API groups (a Namespace next to the samples) are skipped.
    """
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        return 0, [Problem(source, "(file)", "", f"not valid YAML: {error}")]
    checked = 0
    found: list[Problem] = []
    for index, obj in enumerate(_expand_lists(documents)):
        if only_artisan and not is_artisan_object(obj):
            continue
        checked += 1
        found.extend(validate_object(obj, source=source, index=index))
    return checked, found


def validate_objects(objects: Sequence[Any], *, source: str = "<input>") -> list[Problem]:
    """Validate already-parsed objects (tests, the sandbox)."""
    return [
        problem
        for index, obj in enumerate(objects)
        for problem in validate_object(obj, source=source, index=index)
    ]
