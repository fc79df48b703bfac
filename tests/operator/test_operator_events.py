"""A reconcile pass posts its own Events; what the API refuses goes to kopf's poster, which retries."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, cast

import kubernetes.client
import pytest

from artisan_operator.cluster.client import ClusterClient
from artisan_operator.cluster.events import (
    MAX_MESSAGE_LENGTH,
    REPORTING_COMPONENT,
    event_manifest,
    shortened,
)
from artisan_operator.handlers import training_run
from artisan_operator.handlers.reconcile import reconcile_pass
from artisan_operator.policy.plan import EventNote
from artisan_operator.sandbox.server import RunningApi
from artisan_operator.sandbox.testing import wait_for
from artisan_operator.settings import Settings

from .conftest import GROUP, NS, VERSION, OperatorHarness, is_post_to, stored

pytestmark = pytest.mark.timeout(60)

INVOLVED = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "TrainingRun",
    "metadata": {"name": "obj", "namespace": NS, "uid": "u-1"},
}


def create_training_run(custom: kubernetes.client.CustomObjectsApi, name: str = "obj") -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingRun",
        "metadata": {"name": name},
        "spec": {"ppo": {"totalSteps": 5000}},
    }
    made = custom.create_namespaced_custom_object(GROUP, VERSION, NS, "trainingruns", body)
    return cast(dict[str, Any], made)


def events_about(core: kubernetes.client.CoreV1Api, uid: str) -> list[Any]:
    return [e for e in core.list_namespaced_event(NS).items if e.involved_object.uid == uid]


def refuse_event_posts(api: RunningApi, count: int | None) -> threading.Event:
    """The API answers 500 to the next ``count`` Event creations (None: all, until the returned
    flag is cleared)."""
    refusing = threading.Event()
    refusing.set()
    left = [count]

    def is_refused_event_post(request: Any) -> bool:
        if not (refusing.is_set() and is_post_to(request, "events")):
            return False
        if left[0] is not None:
            if left[0] == 0:
                return False
            left[0] -= 1
        return True

    api.emulator[is_refused_event_post] << 500
    return refusing


def test_the_event_manifest_names_the_object_and_this_operator() -> None:
    now = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
    manifest = event_manifest(INVOLVED, EventNote("JobFailed", "the Job failed", "Warning"), now)
    assert manifest["metadata"] == {"namespace": NS, "generateName": "artisan-event-"}
    assert manifest["involvedObject"] == {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingRun",
        "name": "obj",
        "namespace": NS,
        "uid": "u-1",
    }
    assert (manifest["type"], manifest["reason"], manifest["message"]) == (
        "Warning",
        "JobFailed",
        "the Job failed",
    )
    assert manifest["source"] == {"component": REPORTING_COMPONENT}
    assert manifest["firstTimestamp"] == manifest["lastTimestamp"] == "2026-12-04T12:00:00+00:00"


def test_a_long_message_is_cut_in_the_middle_to_the_limit() -> None:
    message = "head " + "x" * 5000 + " tail"
    cut = shortened(message)
    assert len(cut) == MAX_MESSAGE_LENGTH
    assert cut.startswith("head ")
    assert cut.endswith(" tail")
    assert " … " in cut
    assert shortened("short") == "short"


def test_a_pass_posts_its_events_itself(
    emulated_api: RunningApi, kube_client: kubernetes.client.ApiClient, cluster: ClusterClient
) -> None:
    owner = create_training_run(kubernetes.client.CustomObjectsApi(kube_client))
    result = reconcile_pass(training_run.RECONCILER, cluster, Settings(), namespace=NS, name="obj")
    assert result.unposted == []
    posted = events_about(kubernetes.client.CoreV1Api(kube_client), owner["metadata"]["uid"])
    assert [(e.reason, e.message, e.type) for e in posted] == [
        (n.reason, n.message, n.type) for n in result.events
    ]
    assert [e.reason for e in posted] == ["ChildCreated"]
    assert posted[0].source.component == REPORTING_COMPONENT


def test_a_refused_event_neither_fails_the_pass_nor_is_lost(
    emulated_api: RunningApi, kube_client: kubernetes.client.ApiClient, cluster: ClusterClient
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    owner = create_training_run(custom)
    refuse_event_posts(emulated_api, None)
    result = reconcile_pass(training_run.RECONCILER, cluster, Settings(), namespace=NS, name="obj")
    # The children and the status are done; the Event is handed back for kopf's poster.
    assert result.status_written
    assert stored(kube_client, "trainingruns", "obj")["status"]["phase"] == "Pending"
    assert [n.reason for n in result.unposted] == ["ChildCreated"]
    assert result.unposted == result.events
    assert events_about(kubernetes.client.CoreV1Api(kube_client), owner["metadata"]["uid"]) == []


def test_the_operator_hands_a_refused_event_to_kopf_which_posts_it(
    emulated_api: RunningApi,
    kube_client: kubernetes.client.ApiClient,
    artisan_operator_runner: OperatorHarness,
) -> None:
    refuse_event_posts(emulated_api, 1)  # the pass's own post fails; kopf's first try gets through
    artisan_operator_runner.runner.start()
    owner = create_training_run(kubernetes.client.CustomObjectsApi(kube_client), name="tr")
    core = kubernetes.client.CoreV1Api(kube_client)
    posted = wait_for(
        lambda: [e for e in events_about(core, owner["metadata"]["uid"]) if e.reason == "ChildCreated"],
        message="the ChildCreated Event, posted by kopf",
    )
    assert len(posted) == 1
    assert posted[0].source.component == REPORTING_COMPONENT
