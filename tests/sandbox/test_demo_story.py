"""The full demo's pieces: the local runtime (pure rules and real processes), the reward drill, the report.

The whole story (`make demo`) takes minutes with real models and a trainer, so it is not run here;
these tests cover each piece it relies on, with real processes where it matters.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from artisan_operator.sandbox.emulator import SandboxEmulator
from artisan_operator.sandbox.local_runtime import (
    EnvInjection,
    LocalRuntime,
    container_port,
    job_outcome_status,
    pod_address,
    service_host,
    template_hash,
    translate_path,
)
from artisan_operator.sandbox.report import (
    REQUIRED_EVENTS,
    Series,
    StoryEvent,
    Timeline,
    assess_story,
    write_report,
)
from artisan_operator.sandbox.reward_drill import DRILL_ENV_ID, RewardDrill
from artisan_operator.sandbox.server import EmulatorThread, RunningApi
from artisan_operator.sandbox.testing import wait_for
from artisan_trainer.envstate import restore_env, snapshot_env

# ------------------------------------------------------------------------------ pure rules


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/etc/artisan/trainer.yaml", "ROOT/etc/artisan/trainer.yaml"),  # under a mount
        ("/checkpoints", "ROOT/checkpoints"),  # the mount itself
        ("/models", "ROOT/models"),  # a parent of a mount (/models/claim)
        ("/usr/bin/python", "/usr/bin/python"),  # elsewhere: unchanged
        ("relative/path", "relative/path"),
        ("8080", "8080"),
        ("/etc/artisanal", "/etc/artisanal"),  # a sibling that only shares a prefix
    ],
)
def test_paths_under_a_mount_are_moved_into_the_pod_root(value: str, expected: str) -> None:
    mounts = ["/etc/artisan", "/checkpoints", "/models/claim"]
    assert translate_path(value, Path("ROOT"), mounts) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("demo-pin-ensemble.default.svc", ("default", "demo-pin-ensemble")),
        ("api.prod.svc.cluster.local", ("prod", "api")),
        ("example.com", None),
        ("a.b.c.svc", None),
        (".default.svc", None),
    ],
)
def test_service_hosts_name_a_namespace_and_a_service(host: str, expected: tuple[str, str] | None) -> None:
    assert service_host(host) == expected


def test_pod_addresses_are_distinct_loopback_addresses() -> None:
    addresses = [pod_address(i, network=90) for i in range(600)]
    assert len(set(addresses)) == 600
    assert addresses[0] == "127.90.0.2"
    assert all(a.startswith("127.90.") for a in addresses)
    with pytest.raises(ValueError, match="network"):
        pod_address(0, network=0)


def test_template_hash_changes_with_the_template_only() -> None:
    template = {"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "x"}]}}
    same = json.loads(json.dumps(template))
    assert template_hash(template) == template_hash(same)
    same["metadata"]["labels"]["a"] = "2"
    assert template_hash(template) != template_hash(same)


def test_named_and_numbered_ports() -> None:
    container = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert container_port(container, "http") == 8080
    assert container_port(container, 9090) == 9090
    assert container_port(container, "9091") == 9091
    assert container_port(container, "metrics") is None


def test_job_status_follows_the_process() -> None:
    running = job_outcome_status({}, None, "T0")
    assert running["active"] == 1
    assert "conditions" not in running
    done = job_outcome_status({"startTime": "T0"}, 0, "T1")
    assert done["succeeded"] == 1
    assert done["conditions"][0]["type"] == "Complete"
    assert done["completionTime"] == "T1"
    assert done["startTime"] == "T0"
    failed = job_outcome_status({}, 3, "T1")
    assert failed["failed"] == 1
    assert failed["conditions"][0]["type"] == "Failed"
    assert "code 3" in failed["conditions"][0]["message"]


# ------------------------------------------------------------------------------ reward drill


class _Constant(gym.Env[np.ndarray, np.ndarray]):
    """One-step episodes, reward 1.0: what the drill does is easy to see."""

    observation_space = gym.spaces.Box(0, 1, (1,))
    action_space = gym.spaces.Box(0, 1, (1,))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: Any) -> Any:
        return np.zeros(1, dtype=np.float32), 1.0, True, False, {}


def test_the_drill_lowers_rewards_while_armed_and_heals_after_a_restore(tmp_path: Path) -> None:
    arm = tmp_path / "arm"
    env = RewardDrill(_Constant(), str(arm), penalty=2.0)
    env.reset()
    assert env.step(np.zeros(1))[1] == 1.0  # not armed
    snapshot = snapshot_env(env)  # what a checkpoint holds
    arm.touch()
    assert env.step(np.zeros(1))[1] == -1.0  # armed: reward - penalty
    assert env.step(np.zeros(1))[1] == -1.0
    restore_env(env, snapshot)  # the trainer rolls back to the checkpoint
    assert env.step(np.zeros(1))[1] == 1.0  # healed, although the arm file is still there
    assert env.healed


def test_the_drill_env_id_registers_through_gymnasium(tmp_path: Path) -> None:
    env = gym.make(DRILL_ENV_ID, envId="CartPole-v1", armFile=str(tmp_path / "arm"), penalty=1.5)
    env.reset(seed=1)
    _, reward, *_ = env.step(env.action_space.sample())
    assert reward == 1.0
    (tmp_path / "arm").touch()
    _, reward, *_ = env.step(env.action_space.sample())
    assert reward == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="armFile"):
        gym.make(DRILL_ENV_ID, envId="CartPole-v1")


# ------------------------------------------------------------------------------ report


def _event(kind: str, type_: str) -> StoryEvent:
    return StoryEvent("2026-01-01T00:00:00.000Z", 1.0, kind, "x", type_, "m")


def test_the_story_is_complete_only_with_every_required_event() -> None:
    everything = [_event(kind, type_) for kind, type_ in REQUIRED_EVENTS]
    assert assess_story(everything) == []
    assert assess_story(everything[1:]) == ["TrainingRun/Rollback"]
    # The right type on the wrong kind does not count.
    assert "Canary/Promoted" in assess_story([_event("ModelPin", "Promoted")])


def test_report_files_hold_the_events_and_the_plots(tmp_path: Path) -> None:
    lines: list[str] = []
    timeline = Timeline(lines.append)
    timeline.record("TrainingRun", "demo-ppo", "Rollback", "reward_drop <at> step 10")
    series = Series(
        training=[(0, -2.0), (256, -1.5), (512, -3.5), (768, -1.2)],
        rollbacks=[(512, 256, "reward_drop")],
        canary_weights=[(1.0, 0, "a"), (2.0, 25, "a"), (3.0, 100, "a"), (4.0, 25, "b"), (5.0, 0, "b")],
        ab_intervals=[("control", 3.2, None, None), ("treatment", 4.0, 0.5, 1.1)],
    )
    events_path, html_path = write_report(
        tmp_path / "demo-report",
        timeline.events,
        series,
        missing=["Canary/Aborted"],
        extra={"wallSeconds": 1},
    )
    document = json.loads(events_path.read_text())
    assert document["complete"] is False
    assert document["missing"] == ["Canary/Aborted"]
    (event,) = document["events"]
    assert {"time", "kind", "name", "type", "message", "elapsedSeconds"} <= set(event)
    assert event["type"] == "Rollback"
    assert event["kind"] == "TrainingRun"
    assert document["series"]["rollbacks"] == [{"step": 512, "targetStep": 256, "reason": "reward_drop"}]
    page = html_path.read_text()
    assert page.count("<svg") == 4  # training, canary weight, A/B means, A/B differences to control
    assert "rollback (reward_drop)" in page
    assert "&lt;at&gt;" in page  # messages are escaped
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched
    assert "Rollback" in lines[0]
    assert not list((tmp_path / "demo-report").glob(".*"))  # no temp files left behind


# ------------------------------------------------------------------------------ real processes

SERVER = r"""
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
greeting = open(sys.argv[1]).read()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = (greeting + " " + os.environ.get("DRILL_TOKEN", "-")).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
HTTPServer((os.environ["ARTISAN_ENSEMBLE_HOST"], 8080), H).serve_forever()
"""


@pytest.fixture
def api() -> Iterator[RunningApi]:
    with EmulatorThread(SandboxEmulator()) as running:
        yield running


def _deployment(script: Path) -> dict[str, Any]:
    labels = {"app": "hello"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hello", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "command": ["python", str(script)],
                            "args": ["/etc/hello/greeting"],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                            "volumeMounts": [{"name": "config", "mountPath": "/etc/hello"}],
                        }
                    ],
                    "volumes": [{"name": "config", "configMap": {"name": "hello"}}],
                },
            },
        },
    }


def test_local_runtime_runs_pods_as_processes_and_cleans_up(api: RunningApi, tmp_path: Path) -> None:
    import kubernetes.client

    script = tmp_path / "server.py"
    script.write_text(SERVER)
    with api.api_client() as client:
        core, apps, batch = (
            kubernetes.client.CoreV1Api(client),
            kubernetes.client.AppsV1Api(client),
            kubernetes.client.BatchV1Api(client),
        )
        runtime = LocalRuntime(
            client,
            tmp_path / "work",
            executables_dir=Path(sys.executable).parent,
            injections=[EnvInjection({"app": "hello"}, {"DRILL_TOKEN": "t0k"})],
            interval=0.1,
            probe_interval=0.2,
        )
        with runtime:
            body: Any = _deployment(script)
            apps.create_namespaced_deployment("default", body)
            # The ConfigMap comes later: the pod waits for it, as kubelet does.
            wait_for(lambda: core.list_namespaced_pod("default").items, timeout=10, message="pod created")
            pod = core.list_namespaced_pod("default").items[0]
            assert runtime.pod("default", pod.metadata.name).process is None
            cm: Any = {"metadata": {"name": "hello"}, "data": {"greeting": "hello"}}
            core.create_namespaced_config_map("default", cm)
            wait_for(
                lambda: apps.read_namespaced_deployment("hello", "default").status.ready_replicas == 1,
                timeout=20,
                message="deployment ready",
            )
            pod = core.list_namespaced_pod("default").items[0]
            assert pod.status.phase == "Running"
            assert pod.status.pod_ip.startswith("127.")
            assert pod.metadata.owner_references[0].kind == "Deployment"
            url = f"http://{pod.status.pod_ip}:8080/"
            with urllib.request.urlopen(url, timeout=5) as response:
                assert response.read() == b"hello t0k"  # projected ConfigMap + injected env

            # A Service resolves through the runtime's proxy to the ready pod.
            service: Any = {
                "metadata": {"name": "hello"},
                "spec": {"selector": {"app": "hello"}, "ports": [{"port": 80, "targetPort": "http"}]},
            }
            core.create_namespaced_service("default", service)
            wait_for(lambda: runtime.resolve_service("hello.default.svc", 80), timeout=5, message="service")
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": runtime.proxy.url}))
            with opener.open("http://hello.default.svc:80/", timeout=5) as response:
                assert response.read() == b"hello t0k"

            # A ConfigMap change reaches the mounted file (kubelet's refresh).
            core.patch_namespaced_config_map("hello", "default", {"data": {"greeting": "bonjour"}})
            mounted = runtime.pod("default", pod.metadata.name).root / "rootfs/etc/hello/greeting"
            wait_for(lambda: mounted.read_text() == "bonjour", timeout=5, message="configmap refreshed")

            # A Job: its process's exit code completes it.
            job: Any = {
                "metadata": {"name": "once"},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "m", "command": ["python", "-c", "raise SystemExit(0)"]}],
                        }
                    }
                },
            }
            batch.create_namespaced_job("default", job)
            wait_for(
                lambda: (batch.read_namespaced_job("once", "default").status.succeeded or 0) == 1,
                timeout=20,
                message="job complete",
            )

            # Deleting the Deployment stops its process and deletes its pod (the emulator has no GC).
            process = runtime.pod("default", pod.metadata.name).process
            assert process is not None
            assert process.poll() is None
            apps.delete_namespaced_deployment("hello", "default")
            wait_for(lambda: process.poll() is not None, timeout=15, message="process stopped")
            wait_for(
                lambda: (
                    not [
                        p
                        for p in core.list_namespaced_pod("default").items
                        if p.metadata.name.startswith("hello")
                    ]
                ),
                timeout=10,
                message="pod deleted",
            )
        # Nothing survives the runtime.
        assert all(p.process is None or p.process.poll() is not None for p in runtime.pods.values())
    assert os.path.isdir(tmp_path / "work")
