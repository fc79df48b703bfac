"""The reconcilers' client: credentials from the kubeconfig, token checks not on every request."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes.client
import pytest
import yaml

from artisan_operator.cluster.client import load_configuration, throttled, unvalidated
from artisan_operator.settings import Settings


def test_throttled_runs_the_hook_at_most_once_per_period() -> None:
    calls: list[str] = []
    hook = throttled(lambda target: calls.append(target.name), 0.05)
    hook(SimpleNamespace(name="a"))
    hook(SimpleNamespace(name="b"))
    assert calls == ["a"]
    time.sleep(0.06)
    hook(SimpleNamespace(name="c"))
    assert calls == ["a", "c"]


def test_a_token_kubeconfig_keeps_its_credentials_with_a_throttled_refresh(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "secret-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    configuration = load_configuration(Settings(kubeconfig=kubeconfig, api_threads=3))
    assert configuration.host == "http://127.0.0.1:1"
    assert configuration.connection_pool_maxsize == 6  # passes + the children they apply at once
    assert configuration.get_api_key_with_prefix("BearerToken") == "Bearer secret-token"
    # Every request asks for the key; the kubeconfig is re-applied (the token reset) at most once
    # per period, not on each request.
    configuration.api_key["BearerToken"] = "Bearer meanwhile"
    assert configuration.get_api_key_with_prefix("BearerToken") == "Bearer meanwhile"


def test_unvalidated_calls_the_same_api_method_without_parsing_the_body_into_a_model() -> None:
    api = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient())
    seen: list[Any] = []

    def serialize(**kwargs: Any) -> Any:
        seen.append(kwargs["body"])
        raise RuntimeError("stop before any request")

    api._create_namespaced_config_map_serialize = serialize  # type: ignore[method-assign]
    body = {"metadata": {"name": "x"}, "data": {"k": "v"}, "unknownToTheModel": 1}
    with pytest.raises(RuntimeError, match="stop"):
        unvalidated(api.create_namespaced_config_map)("ns", body)
    assert seen == [body]  # the dict itself: not a V1ConfigMap built and dumped again
    with pytest.raises(RuntimeError, match="stop"):
        api.create_namespaced_config_map("ns", {"metadata": {"name": "x"}})  # type: ignore[arg-type]
    assert type(seen[-1]).__name__ == "V1ConfigMap"  # what the validated call does


def test_unvalidated_leaves_a_plain_callable_alone() -> None:
    def plain(value: int) -> int:
        return value + 1

    assert unvalidated(plain) is plain
