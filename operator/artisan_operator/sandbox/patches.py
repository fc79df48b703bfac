"""The PATCH flavours of the Kubernetes API, as pure functions on JSON documents.

- ``application/merge-patch+json``: RFC 7386 (dicts merge, ``null`` deletes, lists are replaced).
- ``application/strategic-merge-patch+json``: a merge patch, except that lists of objects whose
  field name has a known merge key (``containers`` by ``name``, ``conditions`` by ``type``, ...)
  are merged item by item. This is the subset of Kubernetes' strategic merge that the
  operator's clients exercise; ``$patch`` directives and per-type schemas are not emulated.
- ``application/json-patch+json``: RFC 6902 (add, remove, replace, move, copy, test).

Inputs are never mutated; each function returns a new document.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# Field name -> merge key of its list items (from the Kubernetes API's patchMergeKey tags).
STRATEGIC_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "ownerReferences": "uid",
    "conditions": "type",
}


class PatchError(ValueError):
    """The patch is malformed or cannot be applied (HTTP 422 on a real API server)."""


class PatchTestFailedError(PatchError):
    """A JSON-patch ``test`` operation did not hold (HTTP 422, as kopf expects)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_key_for(field: str, items: Sequence[Any]) -> str | None:
    if field == "ports":  # container ports merge by containerPort, service ports by port
        return "containerPort" if all("containerPort" in item for item in items) else "port"
    return STRATEGIC_MERGE_KEYS.get(field)


def _strategic_merge_list(field: str, target: Any, patch: list[Any]) -> list[Any]:
    if not isinstance(target, list) or not all(isinstance(item, Mapping) for item in [*target, *patch]):
        return copy.deepcopy(patch)
    key = _merge_key_for(field, [*target, *patch])
    if key is None or not all(key in item for item in [*target, *patch]):
        return copy.deepcopy(patch)
    merged = [dict(item) for item in target]
    positions = {item[key]: index for index, item in enumerate(merged)}
    for item in patch:
        if item[key] in positions:
            index = positions[item[key]]
            merged[index] = strategic_merge_patch(merged[index], item)
        else:
            positions[item[key]] = len(merged)
            merged.append(copy.deepcopy(dict(item)))
    return merged


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Merge patch plus item-wise merging of lists with a known merge key (see module doc)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _strategic_merge_list(key, result.get(key), value)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} must start with '/'")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _list_index(container: list[Any], token: str, *, for_insert: bool) -> int:
    if token == "-" and for_insert:
        return len(container)
    if not token.isdigit():
        raise PatchError(f"list index {token!r} is not a number")
    index = int(token)
    limit = len(container) if for_insert else len(container) - 1
    if index > limit:
        raise PatchError(f"list index {index} is out of range")
    return index


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list):
            current = current[_list_index(current, token, for_insert=False)]
        else:
            raise PatchError(f"path {path!r} does not exist")
    return current


def _get(doc: Any, path: str) -> Any:
    current = doc
    for token in _pointer(path):
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list):
            current = current[_list_index(current, token, for_insert=False)]
        else:
            raise PatchError(f"path {path!r} does not exist")
    return current


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise PatchError(f"path {path!r} does not exist")
        return doc, parent.pop(tokens[-1])
    if isinstance(parent, list):
        return doc, parent.pop(_list_index(parent, tokens[-1], for_insert=False))
    raise PatchError(f"path {path!r} does not exist")


def _add(doc: Any, path: str, value: Any, *, replace: bool) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return copy.deepcopy(value)
    parent = _parent(doc, tokens, path)
    if isinstance(parent, dict):
        if replace and tokens[-1] not in parent:
            raise PatchError(f"path {path!r} does not exist")
        parent[tokens[-1]] = copy.deepcopy(value)
    elif isinstance(parent, list):
        index = _list_index(parent, tokens[-1], for_insert=not replace)
        if replace:
            parent[index] = copy.deepcopy(value)
        else:
            parent.insert(index, copy.deepcopy(value))
    else:
        raise PatchError(f"path {path!r} does not exist")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch; raises PatchTestFailedError when a ``test`` fails, PatchError otherwise."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, Mapping) or "op" not in operation or "path" not in operation:
            raise PatchError(f"malformed JSON patch operation {operation!r}")
        op, path = operation["op"], operation["path"]
        match op:
            case "add" | "replace":
                if "value" not in operation:
                    raise PatchError(f"{op} at {path!r} needs a value")
                doc = _add(doc, path, operation["value"], replace=op == "replace")
            case "remove":
                doc, _ = _remove(doc, path)
            case "move":
                doc, value = _remove(doc, operation.get("from", ""))
                doc = _add(doc, path, value, replace=False)
            case "copy":
                doc = _add(doc, path, _get(doc, operation.get("from", "")), replace=False)
            case "test":
                try:
                    actual = _get(doc, path)
                except PatchError:
                    actual = None
                if actual != operation.get("value"):
                    expected = operation.get("value")
                    raise PatchTestFailedError(f"test at {path!r} failed: {actual!r} != {expected!r}")
            case _:
                raise PatchError(f"unknown JSON patch operation {op!r}")
    return doc
