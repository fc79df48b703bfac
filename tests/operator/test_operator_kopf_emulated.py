"""The operator under kopf against the emulated API (real HTTP, real kubernetes client)."""

from __future__ import annotations

import gc
import json
import threading
import urllib.request
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

from artisan_common.routing import CANARY_KEY, PIN_KEY, compose
from artisan_operator.sandbox.server import RunningApi
from artisan_operator.sandbox.testing import wait_for

from .conftest import GROUP, NS, VERSION, OperatorHarness, is_post_to

pytestmark = pytest.mark.timeout(30)

TR_CHILDREN = (
    ("persistentvolumeclaims", "tr-checkpoints"),
    ("configmaps", "tr-trainer-config"),
    ("services", "tr-trainer-metrics"),
)


def training_run(name: str = "tr", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"ppo": {"totalSteps": 5000}, "resources": {"gpus": 1}, **spec},
    }


def model_pin(name: str = "pin", revision: str = "2.5.1") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelPin",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "models": {"primary": {"name": "qwen", "source": "/models/qwen", "revision": revision}},
            "replicas": 2,
        },
    }


def get(custom: kubernetes.client.CustomObjectsApi, plural: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, NS, plural, name)
    return obj


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == type_:
            return dict(item)
    return None


def raw(client: kubernetes.client.ApiClient, path: str) -> dict[str, Any] | None:
    """GET a path as plain JSON; None on 404."""
    response = client.call_api("GET", client.configuration.host + path)
    response.read()
    if response.status == 404:
        return None
    assert response.status == 200, (response.status, response.data)
    data: dict[str, Any] = json.loads(response.data)
    return data


def core_path(plural: str, name: str | None = None) -> str:
    return f"/api/v1/namespaces/{NS}/{plural}" + (f"/{name}" if name else "")


def events(client: kubernetes.client.ApiClient, name: str, reason: str) -> list[dict[str, Any]]:
    listed = raw(client, core_path("events")) or {"items": []}
    return [
        e
        for e in listed["items"]
        if e.get("involvedObject", {}).get("name") == name and e.get("reason") == reason
    ]


def labelled(client: kubernetes.client.ApiClient, path: str, owner: str) -> list[str]:
    listed = raw(client, path) or {"items": []}
    return sorted(
        i["metadata"]["name"]
        for i in listed["items"]
        if (i["metadata"].get("labels") or {}).get("artisan.dev/trainingrun") == owner
    )


def test_the_operator_freezes_its_start_up_heap(artisan_operator_runner: OperatorHarness) -> None:
    # Full garbage collections then skip the modules and client models (each pass over them paused
    # the operator ~0.3 s under a burst of new objects).
    gc.unfreeze()  # from zero: whatever an earlier test froze does not count
    artisan_operator_runner.runner.start()
    assert gc.get_freeze_count() > 10_000


def test_training_run_children_created_once_with_owner_and_status(
    artisan_operator_runner: OperatorHarness,
    kube_client: kubernetes.client.ApiClient,
    custom_api: kubernetes.client.CustomObjectsApi,
) -> None:
    artisan_operator_runner.runner.start()
    custom_api.create_namespaced_custom_object(GROUP, VERSION, NS, "trainingruns", training_run())
    job = wait_for(
        lambda: raw(kube_client, f"/apis/batch/v1/namespaces/{NS}/jobs/tr-trainer-0"), message="job"
    )
    owner = get(custom_api, "trainingruns", "tr")
    for plural, name in TR_CHILDREN:
        child = wait_for(lambda p=plural, n=name: raw(kube_client, core_path(p, n)), message=name)
        refs = child["metadata"]["ownerReferences"]
        assert refs == [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "TrainingRun",
                "name": "tr",
                "uid": owner["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    status = wait_for(lambda: get(custom_api, "trainingruns", "tr").get("status"), message="status")
    assert status["observedGeneration"] == owner["metadata"]["generation"]
    assert status["jobName"] == "tr-trainer-0"
    assert status["phase"] == "Pending"
    assert {c["type"] for c in status["conditions"]} >= {"Ready", "Reconciling", "Stalled"}
    # No finalizer: nothing is done at deletion (owner references collect the children), and the
    # reconcile loops are driven by watch events, not by per-object kopf timers or daemons.
    assert "finalizers" not in owner["metadata"]

    # Several level-triggered passes later: still exactly one of each child, none re-patched.
    versions = {n: raw(kube_client, core_path(p, n))["metadata"]["resourceVersion"] for p, n in TR_CHILDREN}  # type: ignore[index]
    metrics = artisan_operator_runner.context.metrics
    wait_for(
        lambda: metrics.reconcile_total.labels(kind="TrainingRun", result="requeue")._value.get() >= 4,
        message="four passes",
    )
    assert labelled(kube_client, f"/apis/batch/v1/namespaces/{NS}/jobs", "tr") == ["tr-trainer-0"]
    assert labelled(kube_client, core_path("configmaps"), "tr") == ["tr-trainer-config"]
    assert labelled(kube_client, core_path("persistentvolumeclaims"), "tr") == ["tr-checkpoints"]
    for plural, name in TR_CHILDREN:
        assert raw(kube_client, core_path(plural, name))["metadata"]["resourceVersion"] == versions[name]  # type: ignore[index]
    # One Event names every child the pass created (in the order they were applied) and the phase
    # they start; it is the pass's only Event.
    created = wait_for(lambda: events(kube_client, "tr", "ChildCreated"))
    assert [e["message"] for e in created] == [
        "created PersistentVolumeClaim tr-checkpoints, ConfigMap tr-trainer-config, "
        "Service tr-trainer-metrics, Job tr-trainer-0; JobCreated: creating the trainer Job"
    ]
    assert events(kube_client, "tr", "JobCreated") == []


def test_training_run_status_follows_the_job_and_pod(
    artisan_operator_runner: OperatorHarness,
    kube_client: kubernetes.client.ApiClient,
    custom_api: kubernetes.client.CustomObjectsApi,
) -> None:
    artisan_operator_runner.runner.start()
    custom_api.create_namespaced_custom_object(GROUP, VERSION, NS, "trainingruns", training_run())
    wait_for(lambda: raw(kube_client, f"/apis/batch/v1/namespaces/{NS}/jobs/tr-trainer-0"), message="job")
    # Play the Job controller and kubelet: a running pod of attempt 0.
    core = kubernetes.client.CoreV1Api(kube_client)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "tr-trainer-0-abcde",
            "labels": {"artisan.dev/trainingrun": "tr", "artisan.dev/attempt": "0"},
        },
        "spec": {"containers": [{"name": "trainer", "image": "trainer"}]},
    }
    core.create_namespaced_pod(NS, pod)
    core.patch_namespaced_pod_status("tr-trainer-0-abcde", NS, {"status": {"phase": "Running"}})
    running = wait_for(
        lambda: (o := get(custom_api, "trainingruns", "tr"))["status"]["phase"] == "Running" and o
    )
    assert condition(running, "Ready")["status"] == "True"  # type: ignore[index]
    batch = kubernetes.client.BatchV1Api(kube_client)
    batch.patch_namespaced_job_status(
        "tr-trainer-0",
        NS,
        {"status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}},
    )
    done = wait_for(
        lambda: (o := get(custom_api, "trainingruns", "tr"))["status"]["phase"] == "Succeeded" and o
    )
    ready = condition(done, "Ready")
    assert ready is not None
    assert ready["status"] == "True"
    assert ready["reason"] == "Succeeded"
    # Ready stayed True from Running to Succeeded: its transition time did not move.
    assert ready["lastTransitionTime"] == condition(running, "Ready")["lastTransitionTime"]  # type: ignore[index]


def test_invalid_spec_is_reported_with_the_field_and_not_retried(
    artisan_operator_runner: OperatorHarness,
    kube_client: kubernetes.client.ApiClient,
    custom_api: kubernetes.client.CustomObjectsApi,
) -> None:
    artisan_operator_runner.runner.start()
    bad = training_run("bad", ppo={"clipRange": 1.5, "batchSize": 4096, "stepsPerUpdate": 2048})
    custom_api.create_namespaced_custom_object(GROUP, VERSION, NS, "trainingruns", bad)
    stalled = wait_for(
        lambda: condition(get(custom_api, "trainingruns", "bad"), "Stalled"), message="stalled"
    )
    assert stalled["status"] == "True"
    assert stalled["reason"] == "InvalidSpec"
    assert "spec.ppo.clipRange" in stalled["message"]
    obj = get(custom_api, "trainingruns", "bad")
    assert obj["status"]["phase"] == "Failed"
    assert condition(obj, "Ready")["status"] == "False"  # type: ignore[index]
    metrics = artisan_operator_runner.context.metrics
    wait_for(lambda: metrics.reconcile_total.labels(kind="TrainingRun", result="success")._value.get() >= 4)
    # Passes keep running (level-triggered) but nothing fails, nothing is created, one Event only.
    assert metrics.reconcile_errors._metrics == {}
    assert labelled(kube_client, core_path("configmaps"), "bad") == []
    assert len(wait_for(lambda: events(kube_client, "bad", "InvalidSpec"))) == 1
    assert artisan_operator_runner.runner.current is not None
    assert artisan_operator_runner.runner.current.running

    # Fixing the spec recovers without any other action.
    custom_api.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "trainingruns", "bad", {"spec": {"ppo": {"clipRange": 0.2, "batchSize": 64}}}
    )
    wait_for(lambda: raw(kube_client, f"/apis/batch/v1/namespaces/{NS}/jobs/bad-trainer-0"), message="job")
    recovered = wait_for(
        lambda: (
            (s := condition(get(custom_api, "trainingruns", "bad"), "Stalled"))
            and s["status"] == "False"
            and s
        )
    )
    assert recovered["reason"] != "InvalidSpec"


def test_deletion_removes_finalizer_and_children_are_collected(
    artisan_operator_runner: OperatorHarness,
    kube_client: kubernetes.client.ApiClient,
    custom_api: kubernetes.client.CustomObjectsApi,
) -> None:
    artisan_operator_runner.runner.start()
    custom_api.create_namespaced_custom_object(GROUP, VERSION, NS, "trainingruns", training_run())
    wait_for(lambda: raw(kube_client, f"/apis/batch/v1/namespaces/{NS}/jobs/tr-trainer-0"), message="job")
    custom_api.delete_namespaced_custom_object(GROUP, VERSION, NS, "trainingruns", "tr")

    def gone() -> bool:
        try:
            get(custom_api, "trainingruns", "tr")
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, message="TrainingRun deleted")
    for plural, name in TR_CHILDREN:
        wait_for(
            lambda p=plural, n=name: raw(kube_client, core_path(p, n)) is None, message=f"{name} collected"
        )
    wait_for(lambda: raw(kube_client, f"/apis/batch/v1/namespaces/{NS}/jobs/tr-trainer-0") is None)


def test_restart_in_the_middle_leaves_no_duplicate_and_no_gap(
    artisan_operator_runner: OperatorHarness,
    emulated_api: RunningApi,
    kube_client: kubernetes.client.ApiClient,
    custom_api: kubernetes.client.CustomObjectsApi,
) -> None:
    # The Job cannot be created yet: the operator gets as far as the PVC, ConfigMap and Service.
    jobs_blocked = threading.Event()
    jobs_blocked.set()

    def blocks_job_creation(request: Any) -> bool:
        return jobs_blocked.is_set() and is_post_to(request, "jobs")

    emulated_api.emulator[blocks_job_creation] << 500
    runner = artisan_operator_runner.runner
    runner.start()
    custom_api.create_namespaced_custom_object(GROUP, VERSION, NS, "trainingruns", training_run())
    before = {
        name: wait_for(lambda p=plural, n=name: raw(kube_client, core_path(p, n)), message=name)["metadata"]
        for plural, name in TR_CHILDREN
    }
    runner.kill()
    assert raw(kube_client, f"/apis/batch/v1/namespaces/{NS}/jobs/tr-trainer-0") is None

    jobs_blocked.clear()
    runner.start()
    wait_for(lambda: raw(kube_client, f"/apis/batch/v1/namespaces/{NS}/jobs/tr-trainer-0"), message="job")
    wait_for(lambda: get(custom_api, "trainingruns", "tr")["status"]["jobName"] == "tr-trainer-0")
    for plural, name in TR_CHILDREN:
        after = raw(kube_client, core_path(plural, name))["metadata"]  # type: ignore[index]
        assert (after["uid"], after["resourceVersion"]) == (
            before[name]["uid"],
            before[name]["resourceVersion"],
        )
    assert labelled(kube_client, f"/apis/batch/v1/namespaces/{NS}/jobs", "tr") == ["tr-trainer-0"]
    assert labelled(kube_client, core_path("services"), "tr") == ["tr-trainer-metrics"]


def test_model_pin_fleet_routing_and_revision_rollout(
    artisan_operator_runner: OperatorHarness,
    kube_client: kubernetes.client.ApiClient,
    custom_api: kubernetes.client.CustomObjectsApi,
) -> None:
    artisan_operator_runner.runner.start()
    custom_api.create_namespaced_custom_object(GROUP, VERSION, NS, "modelpins", model_pin())
    deployments = f"/apis/apps/v1/namespaces/{NS}/deployments"
    first = wait_for(lambda: raw(kube_client, f"{deployments}/pin-ensemble"), message="deployment")
    routing = wait_for(lambda: raw(kube_client, core_path("configmaps", "pin-routing")), message="routing")
    table = compose(routing["data"])
    assert table.pin.stable.url == f"http://pin-ensemble.{NS}.svc:8080"
    assert table.pin.stable.revision == first["metadata"]["labels"]["artisan.dev/revision"]
    assert raw(kube_client, core_path("services", "pin-ensemble")) is not None
    assert raw(kube_client, core_path("configmaps", "pin-pin-config")) is not None

    # The Deployment controller reports the fleet ready: the ModelPin is Ready and records stable.
    apps = kubernetes.client.AppsV1Api(kube_client)
    ready_status = {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}
    apps.patch_namespaced_deployment_status(
        "pin-ensemble",
        NS,
        {"status": {**ready_status, "observedGeneration": first["metadata"]["generation"]}},
    )
    ready = wait_for(lambda: (o := get(custom_api, "modelpins", "pin"))["status"]["phase"] == "Ready" and o)
    assert ready["status"]["stable"]["revision"] == table.pin.stable.revision
    assert ready["status"]["readyReplicas"] == 2

    # Another revision: the same Deployment is patched (new revision label), not duplicated.
    custom_api.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "modelpins", "pin", {"spec": {"models": {"primary": {"revision": "2.5.2"}}}}
    )

    def rolled() -> dict[str, Any] | None:
        deployment = raw(kube_client, f"{deployments}/pin-ensemble")
        label = deployment["metadata"]["labels"]["artisan.dev/revision"] if deployment else None
        return deployment if label != table.pin.stable.revision else None

    second = wait_for(rolled, message="new revision")
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    progressing = wait_for(
        lambda: (o := get(custom_api, "modelpins", "pin"))["status"]["phase"] == "Progressing" and o
    )
    assert progressing["status"]["stable"]["revision"] == table.pin.stable.revision  # old one still stable
    new_routing = wait_for(
        lambda: (
            (r := raw(kube_client, core_path("configmaps", "pin-routing")))
            and compose(r["data"]).pin.stable.revision == second["metadata"]["labels"]["artisan.dev/revision"]
            and r
        )
    )
    assert set(new_routing["data"]) == {PIN_KEY}


def test_canary_status_and_its_routing_entry_is_cleared_on_delete(
    artisan_operator_runner: OperatorHarness,
    kube_client: kubernetes.client.ApiClient,
    custom_api: kubernetes.client.CustomObjectsApi,
) -> None:
    artisan_operator_runner.runner.start()
    canary = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Canary",
        "metadata": {"name": "cny", "namespace": NS},
        "spec": {"targetRef": {"name": "pin"}, "steps": [{"setWeight": 10}, {"pause": {}}]},
    }
    custom_api.create_namespaced_custom_object(GROUP, VERSION, NS, "canaries", canary)
    missing = wait_for(lambda: condition(get(custom_api, "canaries", "cny"), "Reconciling"), message="status")
    assert missing["reason"] == "TargetNotFound"
    assert missing["status"] == "True"

    custom_api.create_namespaced_custom_object(GROUP, VERSION, NS, "modelpins", model_pin())
    routing = wait_for(lambda: raw(kube_client, core_path("configmaps", "pin-routing")), message="routing")
    waiting = wait_for(
        lambda: (
            (c := condition(get(custom_api, "canaries", "cny"), "Reconciling"))
            and c["reason"] == "WaitingForTarget"
            and c
        )
    )
    assert waiting["status"] == "True"

    # Play the Canary control loop: it writes its own key, the ModelPin's passes leave it alone.
    entry = {
        "backend": {"url": "http://pin-ensemble-canary.default.svc:8080", "revision": "abc"},
        "weight": 10,
        "canary": "cny",
    }
    core = kubernetes.client.CoreV1Api(kube_client)
    core.patch_namespaced_config_map("pin-routing", NS, {"data": {CANARY_KEY: json.dumps(entry)}})
    metrics = artisan_operator_runner.context.metrics
    passes = metrics.reconcile_total.labels(kind="ModelPin", result="requeue")._value.get()
    wait_for(
        lambda: metrics.reconcile_total.labels(kind="ModelPin", result="requeue")._value.get() >= passes + 2
    )
    assert compose(raw(kube_client, core_path("configmaps", "pin-routing"))["data"]).canary is not None  # type: ignore[index]
    assert routing["data"][PIN_KEY]

    custom_api.delete_namespaced_custom_object(GROUP, VERSION, NS, "canaries", "cny")
    wait_for(
        lambda: raw(kube_client, core_path("configmaps", "pin-routing"))["data"][CANARY_KEY] == "null",  # type: ignore[index]
        message="canary entry cleared",
    )


def test_ab_experiment_gets_an_honest_running_status(
    artisan_operator_runner: OperatorHarness,
    custom_api: kubernetes.client.CustomObjectsApi,
) -> None:
    artisan_operator_runner.runner.start()
    custom_api.create_namespaced_custom_object(GROUP, VERSION, NS, "modelpins", model_pin())
    experiment = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ABExperiment",
        "metadata": {"name": "abx", "namespace": NS},
        "spec": {
            "targetRef": {"name": "pin"},
            "variants": [{"name": "control", "weight": 50}, {"name": "treatment", "weight": 50}],
        },
    }
    custom_api.create_namespaced_custom_object(GROUP, VERSION, NS, "abexperiments", experiment)
    status = wait_for(lambda: get(custom_api, "abexperiments", "abx").get("status"), message="status")
    assert status["phase"] == "Running"
    assert [v["name"] for v in status["variants"]] == ["control", "treatment"]
    reconciling = next(c for c in status["conditions"] if c["type"] == "Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "WaitingForData")


def test_metrics_health_and_readiness_endpoints(
    artisan_operator_runner: OperatorHarness,
    custom_api: kubernetes.client.CustomObjectsApi,
) -> None:
    artisan_operator_runner.runner.start()
    server = artisan_operator_runner.context.metrics_server
    assert server is not None
    base = f"http://127.0.0.1:{server.port}"
    custom_api.create_namespaced_custom_object(GROUP, VERSION, NS, "trainingruns", training_run())
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
        assert response.status == 200

    def scraped() -> str | None:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            text: str = response.read().decode()
        return text if 'artisan_reconcile_total{kind="TrainingRun",result="requeue"}' in text else None

    text = wait_for(scraped, message="reconcile metric")
    assert 'artisan_reconcile_time_seconds_count{kind="TrainingRun"}' in text
