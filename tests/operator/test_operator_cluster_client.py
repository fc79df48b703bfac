"""The reconcilers' client: credentials from the kubeconfig, token checks not on every request."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import yaml

from artisan_operator.cluster.client import load_configuration, throttled
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
    assert configuration.connection_pool_maxsize == 3
    assert configuration.get_api_key_with_prefix("BearerToken") == "Bearer secret-token"
    # Every request asks for the key; the kubeconfig is re-applied (the token reset) at most once
    # per period, not on each request.
    configuration.api_key["BearerToken"] = "Bearer meanwhile"
    assert configuration.get_api_key_with_prefix("BearerToken") == "Bearer meanwhile"
