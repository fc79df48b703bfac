"""The pure parts of the emulator: label/field selectors and the PATCH flavours."""

from __future__ import annotations

import pytest

from artisan_operator.sandbox.patches import (
    PatchError,
    PatchTestFailedError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from artisan_operator.sandbox.selectors import SelectorError, parse_field_selector, parse_label_selector

LABELS = {"app": "web", "tier": "front"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("missing!=x", True),
        ("tier in (front, back)", True),
        ("tier in (back)", False),
        ("tier notin (back)", True),
        ("tier notin (front,back)", False),
        ("missing notin (a)", True),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("app=web,tier in (front),!missing", True),
        ("app=web,tier=back", False),
    ],
)
def test_label_selector_matches_like_the_api_server(selector: str, expected: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is expected


@pytest.mark.parametrize("selector", ["app=web,", "=web", "app in (a", "bad key!=x", "app=in valid"])
def test_malformed_label_selectors_are_rejected_with_the_requirement_named(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(selector)


def test_field_selector_reads_dotted_paths_and_missing_fields_as_empty() -> None:
    pod = {"metadata": {"name": "p1", "namespace": "ns"}, "status": {"phase": "Running"}}
    assert parse_field_selector("metadata.name=p1,status.phase!=Failed").matches(pod)
    assert not parse_field_selector("metadata.namespace==other").matches(pod)
    assert parse_field_selector("spec.nodeName=").matches(pod)
    with pytest.raises(SelectorError):
        parse_field_selector("metadata.name")


def test_merge_patch_merges_dicts_deletes_nulls_and_replaces_lists() -> None:
    target = {"a": {"b": 1, "c": 2}, "l": [1, 2], "keep": True}
    patched = merge_patch(target, {"a": {"b": None, "d": 3}, "l": [3]})
    assert patched == {"a": {"c": 2, "d": 3}, "l": [3], "keep": True}
    assert target == {"a": {"b": 1, "c": 2}, "l": [1, 2], "keep": True}  # input untouched


def test_strategic_merge_patch_merges_named_lists_item_by_item() -> None:
    target = {
        "spec": {
            "containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}],
            "args": ["--one"],
        }
    }
    patched = strategic_merge_patch(
        target,
        {
            "spec": {
                "containers": [{"name": "b", "image": "y:2"}, {"name": "c", "image": "z:1"}],
                "args": ["--two"],
            }
        },
    )
    assert patched["spec"]["containers"] == [
        {"name": "a", "image": "x:1"},
        {"name": "b", "image": "y:2"},
        {"name": "c", "image": "z:1"},
    ]
    assert patched["spec"]["args"] == ["--two"]  # lists without a merge key are replaced


def test_json_patch_applies_operations_in_order() -> None:
    target = {"metadata": {"finalizers": ["a"], "resourceVersion": "7"}}
    patched = json_patch(
        target,
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "b"},
            {"op": "replace", "path": "/metadata/finalizers/0", "value": "z"},
            {"op": "copy", "from": "/metadata/finalizers", "path": "/spec"},
            {"op": "move", "from": "/spec", "path": "/copied"},
            {"op": "remove", "path": "/metadata/resourceVersion"},
        ],
    )
    assert patched == {"metadata": {"finalizers": ["z", "b"]}, "copied": ["z", "b"]}


def test_json_patch_failed_test_and_bad_paths_raise() -> None:
    with pytest.raises(PatchTestFailedError):
        json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])
    with pytest.raises(PatchError):
        json_patch({"a": 1}, [{"op": "remove", "path": "/missing"}])
    with pytest.raises(PatchError):
        json_patch({"a": 1}, {"op": "add"})
