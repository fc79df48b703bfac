"""What a decision returns (pure): the children to ensure, the new status, events, when to look again.

Handlers apply a plan with ``cluster.apply_plan`` (idempotent: create, or patch when the desired
manifest changed) and write ``plan.status``; nothing in a plan talks to the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

Manifest = dict[str, Any]
EventType = Literal["Normal", "Warning"]

StatusT = TypeVar("StatusT", bound=BaseModel)

# Reasons of the Events the operator posts for its actions.
CHILD_CREATED = "ChildCreated"
CHILD_UPDATED = "ChildUpdated"
CHILD_CONFLICT = "ChildConflict"


@dataclass(frozen=True)
class EnsureChild:
    """A child object that must exist with this content.

    ``patchable`` lists the dotted paths that may be patched when the desired content changes
    (``None``: the whole manifest). Jobs and PVCs are mostly immutable after creation, so only
    their labels, annotations and a few mutable fields are ever patched.

    ``replaced_maps`` lists dotted paths of maps the patch replaces whole: keys the live object has
    and the manifest lacks are removed (a JSON merge patch alone keeps them), e.g. a Service's
    ``spec.selector`` that drops a label.
    """

    manifest: Manifest
    patchable: tuple[str, ...] | None = None
    replaced_maps: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])


@dataclass(frozen=True)
class EventNote:
    """A Kubernetes Event to post on the reconciled object."""

    reason: str
    message: str
    type: EventType = "Normal"


@dataclass(frozen=True)
class Plan(Generic[StatusT]):
    """The output of every ``decide_*`` function."""

    status: StatusT
    children: tuple[EnsureChild, ...] = ()
    events: tuple[EventNote, ...] = ()
    requeue_after: float | None = None
    """Seconds until the next look; ``None``: only the periodic resync."""
