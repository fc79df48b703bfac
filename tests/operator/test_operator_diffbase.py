"""kopf's diff base is left empty for the kinds driven by watch events alone (TrainingRun, ModelPin).

That is only safe while no kopf change handler (create/update/resume/delete) exists for them: the
first test holds that, so adding one fails here rather than silently seeing an empty diff base.
"""

from __future__ import annotations

from typing import Any

import kopf

from artisan_operator.api import KINDS
from artisan_operator.handlers import build_registry
from artisan_operator.handlers.startup import (
    ANNOTATION_PREFIX,
    EVENT_DRIVEN_KINDS,
    DiffBaseOfChangeHandledKinds,
)
from artisan_operator.settings import Settings

PLURAL_OF = {kind.kind: kind.plural for kind in KINDS}
STORAGE = DiffBaseOfChangeHandledKinds(
    skipped_kinds=EVENT_DRIVEN_KINDS, prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
)


def body(kind: str, api_version: str = "artisan.dev/v1alpha1") -> kopf.Body:
    raw: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": "x",
            "namespace": "default",
            "annotations": {"artisan.dev/last-handled-configuration": '{"spec": {"a": 1}}'},
        },
        "spec": {"a": 2},
    }
    return kopf.Body(raw)


def test_event_driven_kinds_have_watch_handlers_and_no_change_handler() -> None:
    registry = build_registry(Settings())
    changed = {handler.selector.any_name for handler in registry._changing.get_all_handlers()}
    event_driven = {PLURAL_OF[kind] for kind in EVENT_DRIVEN_KINDS}
    assert changed, "Canary and ABExperiment have change handlers"
    assert not changed & event_driven
    watched = {handler.id for handler in registry._watching.get_all_handlers()}
    assert {"training_run_event", "model_pin_event"} <= watched


def test_the_diff_base_of_an_event_driven_kind_is_empty() -> None:
    for kind in EVENT_DRIVEN_KINDS:
        assert STORAGE.build(body=body(kind)) == {}
        assert STORAGE.fetch(body=body(kind)) == {}


def test_a_change_handled_kind_keeps_kopfs_diff_base() -> None:
    canary = body("Canary")
    assert STORAGE.fetch(body=canary) == {"spec": {"a": 1}}
    assert STORAGE.build(body=canary)["spec"] == {"a": 2}
    # A kind of another API group that happens to share a name is not ours: kopf's behaviour.
    foreign = body("ModelPin", api_version="example.com/v1")
    assert STORAGE.fetch(body=foreign) == {"spec": {"a": 1}}
