"""The emulated API behaves like a real API server where controllers depend on it.

Every test talks HTTP through the real ``kubernetes`` client, as the operator does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client import ApiException

from artisan_operator.sandbox.server import RunningApi
from artisan_operator.sandbox.testing import wait_for

GROUP, VERSION, PLURAL = "artisan.dev", "v1alpha1", "trainingruns"
NS = "default"


@pytest.fixture
def custom(kube_client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube_client)


@pytest.fixture
def core(kube_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube_client)


def training_run(name: str, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingRun",
        "metadata": {"name": name, **metadata},
        "spec": {"env": {"id": "CartPole-v1"}},
    }


def create_run(custom: kubernetes.client.CustomObjectsApi, name: str, **metadata: Any) -> dict[str, Any]:
    return custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, training_run(name, **metadata))  # type: ignore[no-any-return]


def get_run(custom: kubernetes.client.CustomObjectsApi, name: str) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)  # type: ignore[no-any-return]


def status_of(error: ApiException) -> dict[str, Any]:
    return json.loads(error.body)  # type: ignore[no-any-return]


def test_create_sets_uid_resource_version_generation_timestamp_and_namespace(custom: Any) -> None:
    first = create_run(custom, "a")
    second = create_run(custom, "b")
    meta = first["metadata"]
    assert meta["uid"]
    assert meta["uid"] != second["metadata"]["uid"]
    assert meta["generation"] == 1
    assert meta["creationTimestamp"].endswith("Z")
    assert meta["namespace"] == NS
    assert int(second["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert first["kind"] == "TrainingRun"
    assert first["apiVersion"] == f"{GROUP}/{VERSION}"


def test_generation_tracks_spec_not_metadata_or_status(custom: Any) -> None:
    create_run(custom, "a")
    after_labels = custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "a", {"metadata": {"labels": {"x": "1"}}}
    )
    assert after_labels["metadata"]["generation"] == 1
    after_status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "a", {"status": {"phase": "Running"}}
    )
    assert after_status["metadata"]["generation"] == 1
    assert int(after_status["metadata"]["resourceVersion"]) > int(after_labels["metadata"]["resourceVersion"])
    after_spec = custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "a", {"spec": {"suspend": True}}
    )
    assert after_spec["metadata"]["generation"] == 2
    unchanged = custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "a", {"spec": {"suspend": True}}
    )
    assert unchanged["metadata"]["resourceVersion"] == after_spec["metadata"]["resourceVersion"]


def test_status_subresource_is_isolated_both_ways(custom: Any) -> None:
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, {**training_run("a"), "status": {"phase": "Forged"}}
    )
    assert "status" not in created  # status is not writable on create
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "a", {"status": {"phase": "Running"}, "spec": {"suspend": True}}
    )
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "a", {"status": {"phase": "Hacked"}, "spec": {"image": "x"}}
    )
    run = get_run(custom, "a")
    assert run["status"] == {"phase": "Running"}
    assert run["spec"] == {"env": {"id": "CartPole-v1"}, "image": "x"}


def test_duplicate_create_is_409_already_exists_with_a_status_body(custom: Any) -> None:
    create_run(custom, "a")
    with pytest.raises(ApiException) as caught:
        create_run(custom, "a")
    assert caught.value.status == 409
    body = status_of(caught.value)
    assert (body["kind"], body["reason"], body["details"]["name"]) == ("Status", "AlreadyExists", "a")


def test_missing_object_is_404_not_found(custom: Any) -> None:
    with pytest.raises(ApiException) as caught:
        get_run(custom, "nope")
    assert caught.value.status == 404
    assert status_of(caught.value)["reason"] == "NotFound"


def test_generate_name_and_namespace_from_url(core: kubernetes.client.CoreV1Api) -> None:
    made = core.create_namespaced_config_map("team-a", {"metadata": {"generateName": "cfg-"}})
    assert made.metadata.name.startswith("cfg-")
    assert len(made.metadata.name) == 9
    assert made.metadata.namespace == "team-a"
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map("team-a", {"metadata": {"name": "x", "namespace": "team-b"}})
    assert caught.value.status == 400


def test_list_has_kind_api_version_resource_version_and_honours_label_selectors(
    core: kubernetes.client.CoreV1Api, kube_client: Any
) -> None:
    for name, labels in (
        ("a", {"app": "web", "tier": "front"}),
        ("b", {"app": "web", "tier": "back"}),
        ("c", {"app": "db"}),
    ):
        core.create_namespaced_config_map(NS, {"metadata": {"name": name, "labels": labels}})

    def names(selector: str) -> list[str]:
        return [
            item.metadata.name for item in core.list_namespaced_config_map(NS, label_selector=selector).items
        ]

    assert names("app=web") == ["a", "b"]
    assert names("tier in (back),app") == ["b"]
    assert names("tier notin (back)") == ["a", "c"]
    assert names("!tier") == ["c"]
    raw = kubernetes.client.CustomObjectsApi(kube_client).list_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL
    )
    assert raw["kind"] == "TrainingRunList"
    assert raw["apiVersion"] == f"{GROUP}/{VERSION}"
    assert int(raw["metadata"]["resourceVersion"]) >= 3


def test_list_pagination_with_limit_and_continue(core: kubernetes.client.CoreV1Api) -> None:
    for index in range(5):
        core.create_namespaced_config_map(NS, {"metadata": {"name": f"cm-{index}"}})
    first = core.list_namespaced_config_map(NS, limit=2)
    second = core.list_namespaced_config_map(NS, limit=2, _continue=first.metadata._continue)
    third = core.list_namespaced_config_map(NS, limit=2, _continue=second.metadata._continue)
    seen = [item.metadata.name for page in (first, second, third) for item in page.items]
    assert seen == [f"cm-{index}" for index in range(5)]
    assert not third.metadata._continue


def test_finalizers_hold_deletion_until_removed(custom: Any) -> None:
    create_run(custom, "a", finalizers=["artisan.dev/finalizer"])
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a")
    marked = get_run(custom, "a")
    assert marked["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiException) as caught:  # no new finalizers while deleting
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, "a", {"metadata": {"finalizers": ["artisan.dev/finalizer", "other"]}}
        )
    assert caught.value.status == 422
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as gone:
        get_run(custom, "a")
    assert gone.value.status == 404


def test_garbage_collection_deletes_owned_children_and_spares_co_owned(
    custom: Any, core: kubernetes.client.CoreV1Api
) -> None:
    owner = create_run(custom, "owner", finalizers=["artisan.dev/finalizer"])
    other = create_run(custom, "other")

    def ref(obj: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"],
        }

    core.create_namespaced_config_map(NS, {"metadata": {"name": "child", "ownerReferences": [ref(owner)]}})
    core.create_namespaced_config_map(
        NS, {"metadata": {"name": "shared", "ownerReferences": [ref(owner), ref(other)]}}
    )
    core.create_namespaced_config_map(NS, {"metadata": {"name": "unrelated"}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "owner")
    assert {cm.metadata.name for cm in core.list_namespaced_config_map(NS).items} == {
        "child",
        "shared",
        "unrelated",
    }
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "owner", {"metadata": {"finalizers": []}}
    )
    remaining = {cm.metadata.name: cm for cm in core.list_namespaced_config_map(NS).items}
    assert set(remaining) == {"shared", "unrelated"}
    assert [r.uid for r in remaining["shared"].metadata.owner_references] == [other["metadata"]["uid"]]


def test_orphan_propagation_keeps_children(custom: Any, core: kubernetes.client.CoreV1Api) -> None:
    owner = create_run(custom, "owner")
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    core.create_namespaced_config_map(NS, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "owner", propagation_policy="Orphan")
    assert core.read_namespaced_config_map("child", NS).metadata.owner_references is None


def test_put_with_a_stale_resource_version_is_a_conflict(core: kubernetes.client.CoreV1Api) -> None:
    made = core.create_namespaced_config_map(NS, {"metadata": {"name": "a"}, "data": {"k": "1"}})
    made.data = {"k": "2"}
    replaced = core.replace_namespaced_config_map("a", NS, made)
    assert replaced.data == {"k": "2"}
    made.data = {"k": "3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as caught:
        core.replace_namespaced_config_map("a", NS, made)
    assert (caught.value.status, status_of(caught.value)["reason"]) == (409, "Conflict")


def test_json_patch_test_failure_is_422_as_kopf_expects(kube_client: Any) -> None:
    core = kubernetes.client.CoreV1Api(kube_client)
    core.create_namespaced_config_map(NS, {"metadata": {"name": "a"}})
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "999"},
        {"op": "add", "path": "/metadata/labels", "value": {"x": "1"}},
    ]
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_config_map("a", NS, ops)
    assert caught.value.status == 422
    assert core.read_namespaced_config_map("a", NS).metadata.labels is None


class Watch:
    """Collect a watch stream in a thread (the kubernetes client's watch is blocking)."""

    def __init__(self, function: Any, *args: Any, **kwargs: Any) -> None:
        self.events: list[tuple[str, str]] = []
        self.error: BaseException | None = None
        self._stopping = False
        self._watch = kubernetes.watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(function, args, kwargs), daemon=True)
        self._thread.start()

    def _run(self, function: Any, args: Any, kwargs: Any) -> None:
        try:
            for event in self._watch.stream(function, *args, timeout_seconds=5, **kwargs):
                self.events.append((event["type"], event["object"].metadata.name))
        except Exception as exc:  # reported by stop(), in the test's thread
            if not self._stopping:  # Watch.stop() closes the response under the reader
                self.error = exc

    def stop(self) -> None:
        self._stopping = True
        self._watch.stop()
        self._thread.join(10)
        assert self.error is None, self.error


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for watch in started:
        watch.stop()


def test_watch_with_label_selector_sees_transitions_as_added_and_deleted(
    core: kubernetes.client.CoreV1Api, watches: list[Watch]
) -> None:
    core.create_namespaced_config_map(NS, {"metadata": {"name": "a", "labels": {"app": "web"}}})
    core.create_namespaced_config_map(NS, {"metadata": {"name": "b", "labels": {"app": "db"}}})
    watch = Watch(core.list_namespaced_config_map, NS, label_selector="app=web")
    watches.append(watch)
    wait_for(lambda: watch.events == [("ADDED", "a")])
    core.patch_namespaced_config_map("b", NS, {"metadata": {"labels": {"app": "web"}}})
    core.patch_namespaced_config_map("a", NS, {"metadata": {"labels": {"app": "db"}}})
    core.patch_namespaced_config_map("a", NS, {"data": {"ignored": "yes"}})
    core.delete_namespaced_config_map("b", NS)
    wait_for(
        lambda: watch.events[1:] == [("ADDED", "b"), ("DELETED", "a"), ("DELETED", "b")],
        message=f"events {watch.events}",
    )


def test_watch_resumes_from_a_resource_version_without_replaying_everything(
    core: kubernetes.client.CoreV1Api, watches: list[Watch]
) -> None:
    core.create_namespaced_config_map(NS, {"metadata": {"name": "old"}})
    listed = core.list_namespaced_config_map(NS)
    core.create_namespaced_config_map(NS, {"metadata": {"name": "new"}})
    watch = Watch(core.list_namespaced_config_map, NS, resource_version=listed.metadata.resource_version)
    watches.append(watch)
    wait_for(lambda: watch.events == [("ADDED", "new")], message=f"events {watch.events}")


def test_watch_from_a_compacted_resource_version_gets_410(emulated_api: RunningApi, kube_client: Any) -> None:
    emulated_api.emulator.store._log.clear()  # as if compacted
    core = kubernetes.client.CoreV1Api(kube_client)
    core.create_namespaced_config_map(NS, {"metadata": {"name": "a"}})
    core.create_namespaced_config_map(NS, {"metadata": {"name": "b"}})
    core.create_namespaced_config_map(NS, {"metadata": {"name": "c"}})
    emulated_api.emulator.store._log.popleft()
    emulated_api.emulator.store._log.popleft()  # the oldest change left is version 3: 2 is lost
    with pytest.raises(ApiException) as caught:
        for _ in kubernetes.watch.Watch().stream(
            core.list_namespaced_config_map, NS, resource_version="1", timeout_seconds=2
        ):
            pass
    assert caught.value.status == 410


def test_posting_a_crd_serves_its_resource(kube_client: Any) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }
    extensions = kubernetes.client.ApiextensionsV1Api(kube_client)
    extensions.create_custom_resource_definition(crd)
    established = extensions.read_custom_resource_definition("widgets.example.com")
    assert {c.type: c.status for c in established.status.conditions}["Established"] == "True"
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    made = custom.create_namespaced_custom_object(
        "example.com", "v1", NS, "widgets", {"metadata": {"name": "w"}, "status": {"x": 1}}
    )
    assert made["kind"] == "Widget"
    assert "status" not in made
    resources = kubernetes.client.CustomObjectsApi(kube_client).get_api_resources("example.com", "v1")
    assert {r.name for r in resources.resources} == {"widgets", "widgets/status"}


def test_discovery_lists_artisan_kinds_with_status_and_core_group_version(kube_client: Any) -> None:
    artisan = kubernetes.client.CustomObjectsApi(kube_client).get_api_resources(GROUP, VERSION)
    names = {r.name: r for r in artisan.resources}
    assert {"trainingruns", "trainingruns/status", "modelpins", "canaries", "abexperiments"} <= set(names)
    assert names["trainingruns"].kind == "TrainingRun"
    assert names["trainingruns"].namespaced
    core = kubernetes.client.CoreV1Api(kube_client).get_api_resources()
    assert core.group_version == "v1"
    assert {"pods", "configmaps", "services", "persistentvolumeclaims", "events"} <= {
        r.name for r in core.resources
    }
