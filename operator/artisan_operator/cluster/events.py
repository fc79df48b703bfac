"""Kubernetes Events about our objects, posted by a reconcile pass with the reconcilers' client.

kopf's poster (``kopf.event``) sends each Event through its own aiohttp client from a queue: about
twice the CPU of one request of the pass's own client. A pass therefore posts its Events itself,
once its status is written, as core/v1 Events shaped like kopf's (``kubectl describe`` shows them
the same way). An Event the API refuses is returned to the caller, which hands it to kopf's poster:
that one retries with backoff, so a passing API hiccup loses no Event.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from urllib3.exceptions import HTTPError

from artisan_operator.cluster.client import ApiException, ClusterClient, discard, unvalidated
from artisan_operator.policy.plan import EventNote

REPORTING_COMPONENT = "artisan-operator"
"""The Events' ``source.component`` ("From" in ``kubectl describe``), kopf's posts included."""
REPORTING_INSTANCE = socket.gethostname()
"""The pod's name in a cluster."""
EVENT_NAME_PREFIX = "artisan-event-"
MAX_MESSAGE_LENGTH = 1024
"""Longer messages are cut in the middle (as kopf does): the API refuses very long ones."""

logger = logging.getLogger("artisan_operator.events")


def shortened(message: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    if len(message) <= limit:
        return message
    infix = " … "
    head = (limit - len(infix)) // 2
    return message[:head] + infix + message[len(message) - (limit - len(infix) - head) :]


def event_manifest(involved: Mapping[str, Any], note: EventNote, now: datetime) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (``apiVersion``, ``kind``, and ``metadata`` with name,
    namespace and uid), at ``now`` (timezone-aware)."""
    meta = involved["metadata"]
    namespace = str(meta["namespace"])
    stamp = now.isoformat()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"namespace": namespace, "generateName": EVENT_NAME_PREFIX},
        "type": note.type,
        "reason": note.reason,
        "message": shortened(note.message),
        "action": note.reason,
        "reportingComponent": REPORTING_COMPONENT,
        "reportingInstance": REPORTING_INSTANCE,
        "source": {"component": REPORTING_COMPONENT},
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": meta["name"],
            "namespace": namespace,
            "uid": meta["uid"],
        },
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def try_post_event(cluster: ClusterClient, manifest: Mapping[str, Any]) -> bool:
    """Post one Event; False (logged) when the API refused it or could not be reached."""
    create = unvalidated(cluster.core.create_namespaced_event)
    try:
        discard(
            create(
                manifest["metadata"]["namespace"],
                manifest,
                _preload_content=False,
                _request_timeout=cluster.request_timeout,
            )
        )
    except (ApiException, HTTPError) as error:
        logger.warning("Event %s not posted: %s", manifest["reason"], error)
        return False
    return True


def post_events(
    cluster: ClusterClient, involved: Mapping[str, Any], notes: Sequence[EventNote], now: datetime
) -> list[EventNote]:
    """Post ``notes`` at once; the notes that could not be posted (for kopf's poster to retry)."""
    manifests = [event_manifest(involved, note, now) for note in notes]
    calls = [functools.partial(try_post_event, cluster, manifest) for manifest in manifests]
    posted = cluster.fan_out(calls)
    return [note for note, ok in zip(notes, posted, strict=True) if not ok]
