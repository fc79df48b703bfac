"""A brand-new object's first pass creates its children without reading anything first.

An object with no status at all has never had a pass get past its children (every such pass
writes a status), so the pass skips the observations whose answer can only be "nothing yet" and
only creates. If a child answers 409 anyway (a pass interrupted before its status write, or a
stranger's object with that name), the pass decides again from a full observation: nothing twice,
nothing foreign touched.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes.client
import pytest

from artisan_operator.api.training_run import TrainingRunSpec, TrainingRunStatus
from artisan_operator.cluster.apply import apply_child
from artisan_operator.cluster.client import ClusterClient
from artisan_operator.handlers import model_pin, training_run
from artisan_operator.handlers.reconcile import PassInput, pass_events, reconcile_pass, utc_now
from artisan_operator.manifests.common import Owner
from artisan_operator.policy.plan import EnsureChild, EventNote
from artisan_operator.sandbox.server import RunningApi
from artisan_operator.settings import Settings

from .conftest import GROUP, NS, VERSION
from .doc_tables import doc_table

pytestmark = pytest.mark.timeout(30)

PIN_CHILDREN = {
    ("configmaps", "pin-pin-config"),
    ("configmaps", "pin-routing"),
    ("deployments", "pin-ensemble"),
    ("services", "pin-ensemble"),
}


def create(kube_client: kubernetes.client.ApiClient, plural: str, kind: str, spec: dict[str, Any]) -> Owner:
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    name = "pin" if kind == "ModelPin" else "obj"
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}
    made: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural, body)
    meta = made["metadata"]
    return Owner(kind=kind, name=meta["name"], namespace=NS, uid=meta["uid"], generation=meta["generation"])


def pin_spec() -> dict[str, Any]:
    return {"models": {"primary": {"name": "qwen", "source": "/models/qwen", "revision": "1"}}, "replicas": 2}


def requests_since(api: RunningApi, start: int) -> list[tuple[str, str]]:
    """(method, path) of the requests the emulator served after the first ``start``."""
    return [(str(r.method.value), str(r.url.path)) for r in list(api.emulator)[start:]]


def owned(kube_client: kubernetes.client.ApiClient, uid: str) -> list[tuple[str, str]]:
    """(plural, name) of every object in the namespace whose ownerReferences name ``uid``."""
    core, apps = kubernetes.client.CoreV1Api(kube_client), kubernetes.client.AppsV1Api(kube_client)
    batch = kubernetes.client.BatchV1Api(kube_client)
    listings = {
        "configmaps": core.list_namespaced_config_map(NS).items,
        "services": core.list_namespaced_service(NS).items,
        "persistentvolumeclaims": core.list_namespaced_persistent_volume_claim(NS).items,
        "deployments": apps.list_namespaced_deployment(NS).items,
        "jobs": batch.list_namespaced_job(NS).items,
    }
    return sorted(
        (plural, item.metadata.name)
        for plural, items in listings.items()
        for item in items
        if any(ref.uid == uid for ref in item.metadata.owner_references or [])
    )


def test_a_new_model_pin_is_created_with_no_read(
    emulated_api: RunningApi, kube_client: kubernetes.client.ApiClient, cluster: ClusterClient
) -> None:
    owner = create(kube_client, "modelpins", "ModelPin", pin_spec())
    start = len(emulated_api.emulator)
    result = reconcile_pass(model_pin.RECONCILER, cluster, Settings(), namespace=NS, name="pin")
    methods = [method for method, _ in requests_since(emulated_api, start)]
    # One read of the object itself (no watched body here), then only writes: 4 creates, 1 status,
    # 1 Event.
    assert methods == ["GET", "POST", "POST", "POST", "POST", "PATCH", "POST"]
    assert owned(kube_client, owner.uid) == sorted(PIN_CHILDREN)
    # One Event: the children created, and the phase they start.
    assert [(e.reason, e.message) for e in result.events] == [
        (
            "ChildCreated",
            "created ConfigMap pin-pin-config, Deployment pin-ensemble, Service pin-ensemble, "
            "ConfigMap pin-routing; DeploymentCreated: creating the ensemble Deployment",
        )
    ]
    # The next pass observes (a status is written): the Canaries and the Deployment are read, and
    # nothing is created or changed twice.
    start = len(emulated_api.emulator)
    again = reconcile_pass(model_pin.RECONCILER, cluster, Settings(), namespace=NS, name="pin")
    paths = [path for method, path in requests_since(emulated_api, start) if method == "GET"]
    assert f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/canaries" in paths
    assert f"/apis/apps/v1/namespaces/{NS}/deployments/pin-ensemble" in paths
    assert [e.reason for e in again.events] == ["RollingOut"]  # the Deployment exists now
    assert owned(kube_client, owner.uid) == sorted(PIN_CHILDREN)


def test_a_pass_interrupted_before_its_status_write_is_finished_from_a_full_observation(
    emulated_api: RunningApi, kube_client: kubernetes.client.ApiClient, cluster: ClusterClient
) -> None:
    owner = create(kube_client, "trainingruns", "TrainingRun", {"ppo": {"totalSteps": 5000}})
    # The interrupted pass: it created the first two children, then died (no status).
    for child in first_pass_children(cluster, owner)[:2]:
        assert apply_child(cluster, child, owner.uid).action == "created"
    result = reconcile_pass(training_run.RECONCILER, cluster, Settings(), namespace=NS, name="obj")
    assert owned(kube_client, owner.uid) == sorted(
        [
            ("configmaps", "obj-trainer-config"),
            ("jobs", "obj-trainer-0"),
            ("persistentvolumeclaims", "obj-checkpoints"),
            ("services", "obj-trainer-metrics"),
        ]
    )
    created = [e.message for e in result.events if e.reason == "ChildCreated"]
    assert created == [
        # The first pass creates every child at once: the Job is there when the pass decides again.
        "created Service obj-trainer-metrics, Job obj-trainer-0; PodPending: Job obj-trainer-0 has no pod yet"
    ]
    status = kubernetes.client.CustomObjectsApi(kube_client).get_namespaced_custom_object(
        GROUP, VERSION, NS, "trainingruns", "obj"
    )["status"]
    assert (status["phase"], status["jobName"], status["observedGeneration"]) == (
        "Pending",
        "obj-trainer-0",
        1,
    )


def test_a_strangers_object_with_a_childs_name_is_left_untouched(
    emulated_api: RunningApi, kube_client: kubernetes.client.ApiClient, cluster: ClusterClient
) -> None:
    core = kubernetes.client.CoreV1Api(kube_client)
    core.create_namespaced_service(
        NS, {"metadata": {"name": "pin-ensemble"}, "spec": {"ports": [{"port": 1}]}}
    )
    owner = create(kube_client, "modelpins", "ModelPin", pin_spec())
    result = reconcile_pass(model_pin.RECONCILER, cluster, Settings(), namespace=NS, name="pin")
    assert ("ChildConflict", "Warning") in {(e.reason, e.type) for e in result.events}
    assert ("services", "pin-ensemble") not in owned(kube_client, owner.uid)
    assert core.read_namespaced_service("pin-ensemble", NS).spec.ports[0].port == 1
    # Every other child is there, once.
    assert owned(kube_client, owner.uid) == sorted(PIN_CHILDREN - {("services", "pin-ensemble")})


def first_pass_children(cluster: ClusterClient, owner: Owner) -> list[EnsureChild]:
    """The children a brand-new TrainingRun's first pass would create, in order."""
    given = PassInput(
        cluster,
        owner,
        TrainingRunSpec.model_validate({"ppo": {"totalSteps": 5000}}),
        TrainingRunStatus(),
        Settings(),
        utc_now(),
        blind=True,
    )
    return list(training_run.RECONCILER.decide(given).children)


def test_passes_reuse_their_connections(
    kube_client: kubernetes.client.ApiClient, cluster: ClusterClient
) -> None:
    # A create or status write whose response is never read keeps its connection from the pool:
    # every such request then opens a new TCP connection (the cost of one more request, twice over).
    create(kube_client, "modelpins", "ModelPin", pin_spec())
    create(kube_client, "trainingruns", "TrainingRun", {"ppo": {"totalSteps": 5000}})
    reconcile_pass(model_pin.RECONCILER, cluster, Settings(), namespace=NS, name="pin")
    reconcile_pass(training_run.RECONCILER, cluster, Settings(), namespace=NS, name="obj")
    reconcile_pass(model_pin.RECONCILER, cluster, Settings(), namespace=NS, name="pin")
    # At most one connection per request in flight at once: a new ModelPin's four children are
    # created at once; every later request reuses those connections.
    pool = cluster.api_client.rest_client.pool_manager.connection_from_url(cluster.configuration.host)
    assert pool.num_connections <= 4


def notes(cell: str) -> list[EventNote]:
    """``Reason "message"`` notes of a table cell (``(Warning)`` marks a Warning; ``-``: none)."""
    return [
        EventNote(reason, message, "Warning" if warning else "Normal")
        for reason, message, warning in re.findall(r'(\w+) "([^"]*)"( \(Warning\))?', cell)
    ]


@pytest.mark.parametrize("row", doc_table(pass_events.__doc__, "applied"), ids=lambda row: row["decided"])
def test_pass_events_follow_the_docstring_table(row: dict[str, str]) -> None:
    assert pass_events(notes(row["applied"]), notes(row["decided"])) == notes(row["posted"])


def test_only_the_first_normal_note_is_told_in_the_child_created_event() -> None:
    warning = EventNote("RolledBack", "b", "Warning")
    posted = pass_events(
        [EventNote("ChildCreated", "created A")],
        [warning, EventNote("JobCreated", "c"), EventNote("Other", "d")],
    )
    assert posted == [EventNote("ChildCreated", "created A; JobCreated: c"), warning, EventNote("Other", "d")]
