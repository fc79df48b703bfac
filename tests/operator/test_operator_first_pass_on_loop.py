"""A brand-new object's first pass runs on the event loop: the client builds each request, aiohttp
sends it (no thread); anything it cannot finish goes to the full pass on the thread pool."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import certifi
import kubernetes.client
import pytest

from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.cluster.aio import AsyncApi, async_supported, built_request, ssl_option
from artisan_operator.cluster.apply import apply_child
from artisan_operator.cluster.client import MERGE_PATCH, ApiException, ClusterClient, unvalidated
from artisan_operator.handlers import model_pin, training_run
from artisan_operator.handlers.context import OperatorContext
from artisan_operator.handlers.reconcile import (
    CREATED_ON_THE_LOOP_KEY,
    WATCHED_BODY_KEY,
    PassResult,
    Reconciler,
    brand_new_body,
    first_pass_on_the_loop,
    reconcile_pass,
)
from artisan_operator.metrics.operator_metrics import OperatorMetrics
from artisan_operator.sandbox.server import RunningApi
from artisan_operator.settings import Settings

from .conftest import NS, stored
from .test_operator_first_pass import (
    PIN_CHILDREN,
    create,
    first_pass_children,
    owned,
    pin_spec,
    requests_since,
)

pytestmark = pytest.mark.timeout(30)


def run_on_loop(
    reconciler: Reconciler[Any, Any], cluster: ClusterClient, state: dict[str, Any]
) -> PassResult | None:
    """``first_pass_on_the_loop`` with the watched body in ``state``, on a loop of its own."""
    context = OperatorContext(settings=Settings(), metrics=OperatorMetrics(), cluster=cluster)

    async def run() -> PassResult | None:
        api = AsyncApi(cluster, connections=8)
        try:
            body = brand_new_body(state)
            assert body is not None
            return await first_pass_on_the_loop(reconciler, context, api, state, body)
        finally:
            await api.close()

    return asyncio.run(run())


def test_the_client_builds_the_request_the_blocking_call_would_send(cluster: ClusterClient) -> None:
    body = {"metadata": {"name": "x"}, "data": {"a": "b"}}
    method, url, headers, sent = built_request(
        unvalidated(cluster.core.create_namespaced_config_map), NS, body
    )
    assert (method, url) == ("POST", f"{cluster.configuration.host}/api/v1/namespaces/{NS}/configmaps")
    assert headers["Accept"].startswith("application/json")
    assert sent == body
    method, url, headers, _ = built_request(
        cluster.custom.patch_namespaced_custom_object_status,
        GROUP,
        VERSION,
        NS,
        "trainingruns",
        "obj",
        {"status": {}},
        content_type=MERGE_PATCH,
    )
    assert (method, url) == (
        "PATCH",
        f"{cluster.configuration.host}/apis/{GROUP}/{VERSION}/namespaces/{NS}/trainingruns/obj/status",
    )
    assert headers["Content-Type"] == MERGE_PATCH


def test_the_bearer_token_goes_with_every_request(cluster: ClusterClient) -> None:
    # The sandbox's kubeconfig has a token: the header is the one the blocking client sends.
    token = cluster.configuration.auth_settings()["BearerToken"]["value"]
    assert "artisan-sandbox" in token
    _, _, headers, _ = built_request(cluster.core.create_namespaced_event, NS, {})
    assert headers["authorization"] == token


def test_a_proxy_keeps_every_call_on_the_blocking_client(cluster: ClusterClient) -> None:
    assert async_supported(cluster.configuration)
    cluster.configuration.proxy = "http://proxy.example:3128"
    assert not async_supported(cluster.configuration)


@pytest.mark.parametrize(
    ("change", "new"),
    [
        ({}, True),
        ({"status": {"phase": "Pending"}}, False),
        ({"metadata": {"deletionTimestamp": "2026-12-04T00:00:00Z"}}, False),
        ({"metadata": {"annotations": {"artisan.dev/rollback-to": "3"}}}, False),
        ({"metadata": {"annotations": {"argocd.argoproj.io/sync-wave": "1"}}}, True),
    ],
)
def test_which_watched_bodies_are_brand_new(change: dict[str, Any], new: bool) -> None:
    body: dict[str, Any] = {"metadata": {"name": "obj", "namespace": NS}, "spec": {}}
    body["metadata"].update(change.get("metadata", {}))
    body.update({k: v for k, v in change.items() if k != "metadata"})
    assert (brand_new_body({WATCHED_BODY_KEY: body}) is body) is new
    assert brand_new_body({}) is None


def test_a_new_model_pin_is_reconciled_on_the_loop_with_writes_only(
    emulated_api: RunningApi, kube_client: kubernetes.client.ApiClient, cluster: ClusterClient
) -> None:
    owner = create(kube_client, "modelpins", "ModelPin", pin_spec())
    state: dict[str, Any] = {WATCHED_BODY_KEY: stored(kube_client, "modelpins", "pin")}
    start = len(emulated_api.emulator)
    result = run_on_loop(model_pin.RECONCILER, cluster, state)
    assert result is not None
    methods = sorted(method for method, _ in requests_since(emulated_api, start))
    assert methods == ["PATCH"] + ["POST"] * 5  # 4 children, the status, 1 Event; nothing read
    assert owned(kube_client, owner.uid) == sorted(PIN_CHILDREN)
    status = stored(kube_client, "modelpins", "pin")["status"]
    assert (status["phase"], status["observedGeneration"]) == ("Pending", 1)
    assert [e.reason for e in result.events] == ["ChildCreated"]
    assert result.unposted == []
    assert WATCHED_BODY_KEY not in state
    core = kubernetes.client.CoreV1Api(kube_client)
    assert [e.reason for e in core.list_namespaced_event(NS).items if e.involved_object.uid == owner.uid] == [
        "ChildCreated"
    ]


def test_a_child_that_exists_sends_the_object_to_the_full_pass(
    emulated_api: RunningApi, kube_client: kubernetes.client.ApiClient, cluster: ClusterClient
) -> None:
    owner = create(kube_client, "trainingruns", "TrainingRun", {"ppo": {"totalSteps": 5000}})
    # An interrupted pass left the first child behind.
    assert apply_child(cluster, first_pass_children(cluster, owner)[0], owner.uid).action == "created"
    state: dict[str, Any] = {WATCHED_BODY_KEY: stored(kube_client, "trainingruns", "obj")}
    assert run_on_loop(training_run.RECONCILER, cluster, state) is None
    # The loop created the other three; the full pass gets the watched body and tells them.
    assert len(state[CREATED_ON_THE_LOOP_KEY]) == 3
    assert WATCHED_BODY_KEY in state
    result = reconcile_pass(
        training_run.RECONCILER, cluster, Settings(), namespace=NS, name="obj", memo=state
    )
    assert len(owned(kube_client, owner.uid)) == 4
    created = [e.message for e in result.events if e.reason == "ChildCreated"]
    assert len(created) == 1
    for name in ("obj-trainer-config", "obj-trainer-metrics", "obj-trainer-0"):
        assert name in created[0]
    assert "obj-checkpoints" not in created[0]  # the interrupted pass's, not this one's
    assert stored(kube_client, "trainingruns", "obj")["status"]["jobName"] == "obj-trainer-0"


def test_an_api_error_is_raised_as_the_blocking_client_raises_it(
    emulated_api: RunningApi, cluster: ClusterClient
) -> None:
    async def call() -> None:
        api = AsyncApi(cluster, connections=2)
        try:
            await api.call(cluster.core.create_namespaced_config_map, NS, {"metadata": {}})
        finally:
            await api.close()

    with pytest.raises(ApiException) as raised:
        asyncio.run(call())
    assert raised.value.status in (400, 422)
    assert raised.value.body


def test_tls_settings_follow_the_blocking_client(cluster: ClusterClient) -> None:
    configuration = cluster.configuration
    configuration.verify_ssl = False
    assert ssl_option(configuration) is False  # insecure-skip-tls-verify
    configuration.verify_ssl = True
    configuration.ssl_ca_cert = certifi.where()
    context = ssl_option(configuration)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # the configured CA bundle is what it trusts
    configuration.assert_hostname = False
    context = ssl_option(configuration)
    assert isinstance(context, ssl.SSLContext)
    assert not context.check_hostname
