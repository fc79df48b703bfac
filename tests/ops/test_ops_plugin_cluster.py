"""``kubectl artisan`` against the emulated API: real HTTP, real kubernetes client, the real operator.

Annotation actions are checked with the operator stopped (it consumes and removes some of them, which
would race the "nothing else changed" comparison); get, status and emergency-stop/resume run with the
operator and the simulated runtime (kubelet and controllers) doing their work.
"""

from __future__ import annotations

import copy
import socket
import threading
from collections.abc import Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import uvicorn

from artisan_ensemble.app import create_app
from artisan_ensemble.ensemble.ports import GenerationRequest, ModelInfo
from artisan_ensemble.settings import EnsembleSettings
from artisan_operator.cli import main, ops
from artisan_operator.cluster.cli_client import DirectEndpoint
from artisan_operator.handlers.context import OperatorContext
from artisan_operator.main import run_operator
from artisan_operator.metrics.operator_metrics import OperatorMetrics
from artisan_operator.sandbox.runtime import SimulatedRuntime
from artisan_operator.sandbox.server import RunningApi
from artisan_operator.sandbox.testing import OperatorRunner, wait_for
from artisan_operator.settings import Settings

pytestmark = pytest.mark.timeout(120)

GROUP, VERSION, NS = "artisan.dev", "v1alpha1", "default"
PLURALS = {
    "TrainingRun": "trainingruns",
    "ModelPin": "modelpins",
    "Canary": "canaries",
    "ABExperiment": "abexperiments",
}
PRIMARY = {"name": "qwen", "source": "/models/qwen", "revision": "2.5.1"}
TOKEN = "ops-drill-token"


def resource(kind: str, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name, **metadata},
        "spec": spec,
    }


def training_run(name: str, **spec: Any) -> dict[str, Any]:
    return resource("TrainingRun", name, {"ppo": {"totalSteps": 5000}, **spec})


def model_pin(name: str, **metadata: Any) -> dict[str, Any]:
    return resource("ModelPin", name, {"models": {"primary": dict(PRIMARY)}, "replicas": 2}, **metadata)


class Cluster:
    def __init__(self, api: RunningApi, client: kubernetes.client.ApiClient) -> None:
        self.api = api
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.kubeconfig = str(api.kubeconfig_path)
        self.operator_contexts: list[OperatorContext] = []

    def create(self, obj: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURALS[obj["kind"]], obj)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, NS, PLURALS[kind], name
        )
        return found

    def set_status(self, kind: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, NS, PLURALS[kind], name, {"status": status}
        )

    def condition(self, kind: str, name: str, type_: str) -> str | None:
        for item in (self.get(kind, name).get("status") or {}).get("conditions") or []:
            if item["type"] == type_:
                return str(item["status"])
        return None

    def phase(self, kind: str, name: str) -> str | None:
        return (self.get(kind, name).get("status") or {}).get("phase")


def cli(cluster: Cluster, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*args, "--kubeconfig", cluster.kubeconfig])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cluster(emulated_api: RunningApi, kube_client: kubernetes.client.ApiClient) -> Cluster:
    return Cluster(emulated_api, kube_client)


def fast_operator(api: RunningApi, contexts: list[OperatorContext]) -> OperatorRunner:
    settings = Settings(
        kubeconfig=api.kubeconfig_path,
        metrics_enabled=True,
        metrics_host="127.0.0.1",
        metrics_port=0,
        timer_interval_seconds=0.5,
        timer_idle_seconds=0,
        resync_interval_seconds=1.0,
        api_threads=4,
    )

    def run(stop_flag: threading.Event, ready_flag: threading.Event) -> Coroutine[Any, Any, None]:
        context = OperatorContext(settings=settings, metrics=OperatorMetrics())
        contexts.append(context)
        return run_operator(settings, stop_flag=stop_flag, ready_flag=ready_flag, context=context)

    return OperatorRunner(run)


@pytest.fixture
def running(cluster: Cluster, kube_client: kubernetes.client.ApiClient) -> Iterator[Cluster]:
    """The operator and the simulated runtime at work on the emulated API."""
    runner = fast_operator(cluster.api, cluster.operator_contexts)
    with SimulatedRuntime(kube_client, interval=0.3):
        runner.start()
        try:
            yield cluster
        finally:
            runner.stop()


def test_get_tree_and_status_exit_codes(running: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    running.create(training_run("tr"))
    running.create(model_pin("pin"))
    running.create(training_run("bad", ppo={"clipRange": 2.0}))
    running.create(training_run("held", suspend=True))

    # status --watch: 0 once Ready, 1 once unhealthy (the message names the field).
    code, out, _ = cli(
        running, capsys, "status", "mpin/pin", "--watch", "--timeout", "40", "--interval", "0.2"
    )
    assert code == 0
    assert "Ready" in out
    code, out, _ = cli(running, capsys, "status", "tr/bad", "--watch", "--timeout", "40", "--interval", "0.2")
    assert code == 1
    assert "Unhealthy (InvalidSpec)" in out
    assert "spec.ppo.clipRange" in out
    wait_for(lambda: running.phase("TrainingRun", "held") == "Suspended", 40, message="Suspended")
    code, out, _ = cli(running, capsys, "status", "trainingrun", "held")
    assert code == 3
    assert "Idle" in out
    code, out, _ = cli(running, capsys, "status", "held")  # a bare name: its kind is looked up
    assert code == 3
    assert "TrainingRun default/held: Idle" in out
    code, out, _ = cli(running, capsys, "status", "pin")
    assert code == 0
    assert "ModelPin default/pin: Ready" in out
    code, _, err = cli(running, capsys, "status", "nothing")
    assert code == 2
    assert "no trainingrun, modelpin, canary, abexperiment named 'nothing'" in err
    code, out, _ = cli(
        running, capsys, "status", "tr/held", "--watch", "--timeout", "0.5", "--interval", "0.2"
    )
    assert code == 3
    assert "timed out" in out
    code, _, err = cli(running, capsys, "status", "tr/nothing")
    assert code == 2
    assert "HTTP 404" in err

    # get: each resource with its children and their status.
    wait_for(lambda: running.phase("TrainingRun", "tr") == "Running", 40, message="TrainingRun Running")
    code, out, _ = cli(running, capsys, "get")
    assert code == 0
    for line in (
        "TrainingRun tr  Running · Ready",
        "Job tr-trainer-0  1 active",
        "Pod tr-trainer-0-sim  Running",
        "PersistentVolumeClaim tr-checkpoints  Bound 10Gi",
        "ConfigMap tr-trainer-config",
        "Service tr-trainer-metrics",
        "TrainingRun bad  Failed · Unhealthy (InvalidSpec)",
        "ModelPin pin  Ready · Ready (AllReplicasReady)",
        "Deployment pin-ensemble  2/2 ready",
        "ConfigMap pin-routing  keys: pin.json",
        "Service pin-ensemble  ClusterIP 8080",
    ):
        assert line in out, (line, out)
    server = running.operator_contexts[-1].metrics_server
    assert server is not None
    code, out, _ = cli(running, capsys, "metrics-check", "--operator-url", f"http://127.0.0.1:{server.port}")
    assert code == 0
    assert "artisan_reconcile_total" in out
    assert "kind=ModelPin" in out
    code, out, _ = cli(running, capsys, "get", "mpin", "pin")
    assert code == 0
    assert "ModelPin pin" in out
    assert "TrainingRun" not in out
    code, _, err = cli(running, capsys, "get", "pods")
    assert code == 2
    assert "unknown kind 'pods'" in err
    code, _, err = cli(running, capsys, "get", "tr", "missing")
    assert code == 2
    assert "HTTP 404" in err


USER_ANNOTATIONS = ("team", "artisan.dev/emergency-stop", "artisan.dev/emergency-stop-restore")


def user_view(obj: dict[str, Any]) -> dict[str, Any]:
    """Spec, labels and the annotations users and this plugin set (kopf's own bookkeeping excluded)."""
    annotations = obj["metadata"].get("annotations") or {}
    return {
        "spec": obj["spec"],
        "labels": obj["metadata"].get("labels"),
        "annotations": {k: v for k, v in annotations.items() if k in USER_ANNOTATIONS},
    }


def test_emergency_stop_and_resume_restore_exactly(
    running: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    running.create(training_run("tr"))
    running.create(training_run("held", suspend=True))
    running.create(training_run("explicit", suspend=False))
    running.create(model_pin("pin", annotations={"team": "ml"}))
    wait_for(lambda: running.phase("TrainingRun", "tr") == "Running", 40, message="tr Running")
    names = [("TrainingRun", "tr"), ("TrainingRun", "held"), ("TrainingRun", "explicit"), ("ModelPin", "pin")]
    before = {ref: user_view(running.get(*ref)) for ref in names}

    code, out, _ = cli(running, capsys, "emergency-stop")
    assert code == 0
    assert "4 object(s) stopped" in out
    for kind, name in names:
        stopped = running.get(kind, name)
        assert stopped["metadata"]["annotations"]["artisan.dev/emergency-stop"] == "true"
        assert stopped["spec"] == before[(kind, name)]["spec"]  # never spec: GitOps self-heal reverts it
    wait_for(
        lambda: running.phase("TrainingRun", "tr") == "Suspended", 15, message="the operator suspends tr"
    )
    conditions = running.get("TrainingRun", "tr")["status"]["conditions"]
    assert next(c for c in conditions if c["type"] == "Ready")["reason"] == "EmergencyStopped"

    code, out, _ = cli(running, capsys, "emergency-stop")  # twice: the first records are kept
    assert code == 0
    assert "0 object(s) stopped" in out

    code, out, _ = cli(running, capsys, "resume")
    assert code == 0
    assert "4 object(s) resumed" in out
    assert {ref: user_view(running.get(*ref)) for ref in names} == before
    wait_for(lambda: running.phase("TrainingRun", "tr") == "Running", 40, message="tr Running again")
    assert running.phase("TrainingRun", "held") == "Suspended"
    code, out, _ = cli(running, capsys, "resume")
    assert code == 0
    assert "0 object(s) resumed" in out


def diff_paths(before: Any, after: Any, path: str = "") -> set[str]:
    """The leaf paths where two objects differ (an absent mapping counts as empty)."""
    if isinstance(before, dict) or isinstance(after, dict):
        before = before if isinstance(before, dict) else {}
        after = after if isinstance(after, dict) else {}
        paths: set[str] = set()
        for key in set(before) | set(after):
            paths |= diff_paths(before.get(key), after.get(key), f"{path}.{key}")
        return paths
    return set() if before == after else {path}


SERVER_MANAGED = {".metadata.resourceVersion", ".metadata.generation", ".metadata.managedFields"}


def changed_paths(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return diff_paths(before, after) - SERVER_MANAGED


def test_each_action_changes_its_annotation_or_spec_and_nothing_else(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.create(model_pin("pin"))
    cluster.create(training_run("tr"))
    cluster.create(
        resource("Canary", "cny", {"targetRef": {"name": "pin"}, "steps": [{"setWeight": 10}, {"pause": {}}]})
    )
    cluster.set_status("Canary", "cny", {"phase": "Paused", "weight": 10})
    cluster.set_status("TrainingRun", "tr", {"phase": "Running", "lastCheckpoint": {"step": 3000}})
    history = [
        {
            "revision": "old",
            "models": {"primary": {**PRIMARY, "revision": "2.4.0"}},
            "time": "2026-01-01T00:00:00Z",
        }
    ]
    stable = {"revision": "now", "models": {"primary": PRIMARY}, "time": "2026-01-02T00:00:00Z"}
    cluster.set_status(
        "ModelPin", "pin", {"phase": "Ready", "revision": "now", "stable": stable, "history": history}
    )

    cases: list[tuple[tuple[str, ...], str, str, set[str]]] = [
        (("promote", "cny"), "Canary", "cny", {".metadata.annotations.artisan.dev/action"}),
        (("promote", "cny", "--full"), "Canary", "cny", {".metadata.annotations.artisan.dev/action"}),
        (("abort", "cny"), "Canary", "cny", {".metadata.annotations.artisan.dev/action"}),
        (
            ("downshift", "pin", "--to", "fast", "--for", "10m"),
            "ModelPin",
            "pin",
            {".metadata.annotations.artisan.dev/downshift"},
        ),
        (("restart", "pin"), "ModelPin", "pin", {".metadata.annotations.artisan.dev/restartedAt"}),
        # a TrainingRun restarts from its newest checkpoint: a manual rollback to that step
        (("restart", "tr"), "TrainingRun", "tr", {".metadata.annotations.artisan.dev/rollback-to"}),
        (
            ("rollback", "tr", "tr", "--to-checkpoint", "2500"),
            "TrainingRun",
            "tr",
            {".metadata.annotations.artisan.dev/rollback-to"},
        ),
        (
            ("pin", "pin", "--role", "primary", "--revision", "2.6.0"),
            "ModelPin",
            "pin",
            {".spec.models.primary.revision"},
        ),
        (("undo", "pin"), "ModelPin", "pin", {".spec.models.primary.revision"}),
    ]
    for args, kind, name, expected in cases:
        before = copy.deepcopy(cluster.get(kind, name))
        code, _, err = cli(cluster, capsys, *args)
        assert code == 0, (args, err)
        assert changed_paths(before, cluster.get(kind, name)) == expected, args
    canary_action = cluster.get("Canary", "cny")["metadata"]["annotations"]["artisan.dev/action"]
    assert canary_action.startswith("abort@")
    pin = cluster.get("ModelPin", "pin")
    assert pin["spec"]["models"]["primary"]["revision"] == "2.4.0"  # undo: the history record
    assert pin["metadata"]["annotations"]["artisan.dev/downshift"] == "fast/10m"
    assert cluster.get("TrainingRun", "tr")["metadata"]["annotations"]["artisan.dev/rollback-to"].startswith(
        "2500@"
    )


def test_refused_actions_change_nothing(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.create(model_pin("pin"))
    cluster.create(training_run("tr"))
    cluster.create(resource("Canary", "cny", {"targetRef": {"name": "pin"}, "steps": [{"setWeight": 10}]}))
    cluster.set_status("Canary", "cny", {"phase": "Healthy"})
    cluster.set_status("TrainingRun", "tr", {"phase": "Running", "lastCheckpoint": {"step": 1000}})
    cluster.create(training_run("fresh"))  # no checkpoint yet
    cluster.create(model_pin("tr"))  # a ModelPin and a TrainingRun by one name
    before = {
        k: copy.deepcopy(cluster.get(*k))
        for k in (
            ("ModelPin", "pin"),
            ("TrainingRun", "tr"),
            ("Canary", "cny"),
            ("TrainingRun", "fresh"),
            ("ModelPin", "tr"),
        )
    }
    refusals = [
        (("abort", "cny"), "no rollout in progress"),
        (("retry", "cny"), "not aborted"),
        (("downshift", "pin", "--to", "fast", "--for", "ten"), "downshift"),
        (("downshift", "pin"), "either --to MODE --for DURATION or --off"),
        (("rollback", "tr", "tr", "--to-checkpoint", "5000"), "newest checkpoint is at step 1000"),
        (("rollback", "mpin", "pin", "--to-checkpoint", "5"), "applies to trainingruns"),
        (("pin", "pin", "--role", "primary", "--revision", "not valid!"), "spec.models.primary.revision"),
        (("undo", "pin"), "no previous revision"),
        (("promote", "nothing"), "HTTP 404"),
        (("restart", "fresh"), "no checkpoint yet"),
        (("restart", "cny"), "no modelpin, trainingrun named 'cny'"),
        (("restart", "canary/cny"), "restart applies to modelpins and trainingruns"),
        (("restart", "tr"), "ambiguous"),
        (("status", "tr"), "say trainingrun/tr or modelpin/tr"),
        (("pin", "pin", "--role", "creative", "--revision", "3.1.1"), "give --model-name and --source"),
    ]
    for args, message in refusals:
        code, _, err = cli(cluster, capsys, *args)
        assert (code, message in err) == (2, True), (args, err)
    for key, obj in before.items():
        assert changed_paths(obj, cluster.get(*key)) == set(), key


def test_undo_print_emits_the_manifest_and_changes_nothing(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.create(model_pin("pin"))
    history = [
        {
            "revision": "old",
            "models": {"primary": {**PRIMARY, "revision": "2.4.0"}},
            "time": "2026-01-01T00:00:00Z",
        }
    ]
    cluster.set_status(
        "ModelPin",
        "pin",
        {
            "revision": "now",
            "stable": {"revision": "now", "models": {"primary": PRIMARY}, "time": "2026-01-02T00:00:00Z"},
            "history": history,
        },
    )
    before = copy.deepcopy(cluster.get("ModelPin", "pin"))
    code, out, _ = cli(cluster, capsys, "undo", "pin", "--print")
    assert code == 0
    import yaml

    manifest = yaml.safe_load(out)
    assert manifest["kind"] == "ModelPin"
    assert manifest["spec"]["models"]["primary"]["revision"] == "2.4.0"
    assert manifest["spec"]["replicas"] == 2
    assert changed_paths(before, cluster.get("ModelPin", "pin")) == set()


def test_validate_works_through_the_plugin(tmp_path: Path) -> None:
    good = tmp_path / "pin.yaml"
    good.write_text(
        "apiVersion: artisan.dev/v1alpha1\nkind: ModelPin\nmetadata: {name: p}\n"
        "spec: {models: {primary: {name: qwen, source: /m, revision: '1'}}}\n"
    )
    assert main(["validate", "-f", str(good)]) == 0
    good.write_text(good.read_text().replace("spec: {", "spec: {replicas: -1, "))
    assert main(["validate", "-f", str(good)]) == 1


# Endpoints: a real ensemble app on loopback.


class FakeModel:
    def __init__(self, role: str) -> None:
        self.role = role

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.role, f"fake-{self.role}", "r1", "memory", "cpu", 0)

    def generate(self, request: GenerationRequest) -> str:
        return "{}"

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        yield "{}"


@pytest.fixture
def ensemble_url() -> Iterator[str]:
    settings = EnsembleSettings(admin_token=TOKEN)  # type: ignore[arg-type]
    app = create_app(settings, generators={"primary": FakeModel("primary")})  # type: ignore[dict-item]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="on"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, message="ensemble server started")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_health_cache_and_metrics_checks_against_a_live_ensemble(
    cluster: Cluster, ensemble_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(cluster, capsys, "health-check", "pin", "--url", ensemble_url)
    assert code == 0
    assert "loaded primary" in out
    code, out, _ = cli(cluster, capsys, "cache", "clear", "pin", "--url", ensemble_url, "--token", TOKEN)
    assert code == 0
    assert "cleared 0 entries" in out
    code, out, _ = cli(cluster, capsys, "cache", "clear", "pin", "--url", ensemble_url, "--token", "wrong")
    assert code == 1
    assert "HTTP 401" in out
    code, out, _ = cli(cluster, capsys, "metrics-check", "--ensemble-url", ensemble_url)
    assert code == 0
    assert "model_health_status" in out


class ProxyLikeEndpoint:
    """Like the API server's service/pod proxy: ``Authorization`` is consumed, never forwarded."""

    def __init__(self, url: str) -> None:
        self.inner = DirectEndpoint(url)
        self.description = f"{url} (proxy-like)"
        self.forwarded: list[dict[str, str]] = []

    def request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, body: Any = None
    ) -> Any:
        kept = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
        self.forwarded.append(kept)
        return self.inner.request(method, path, headers=kept, body=body)


def test_cache_clear_authenticates_through_a_proxy_that_strips_authorization(
    cluster: Cluster,
    ensemble_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = ProxyLikeEndpoint(ensemble_url)
    monkeypatch.setattr(ops, "ensemble_targets", lambda *args: [ops.Target("pod pin-ensemble-0", endpoint)])
    code, out, _ = cli(cluster, capsys, "cache", "clear", "pin", "--token", TOKEN)
    assert (code, "cleared 0 entries" in out) == (0, True)
    assert endpoint.forwarded[-1] == {ops.ADMIN_TOKEN_HEADER: TOKEN}
    code, out, _ = cli(cluster, capsys, "cache", "clear", "pin", "--token", "wrong")
    assert code == 1
    assert "HTTP 401" in out


def test_checks_say_so_when_nothing_answers(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    url = closed_port_url()
    code, out, _ = cli(cluster, capsys, "health-check", "pin", "--url", url)
    assert code == 3
    assert "unreachable" in out
    code, out, _ = cli(cluster, capsys, "metrics-check", "--ensemble-url", url)
    assert code == 3
    assert "unreachable" in out
    cluster.create(model_pin("pin"))
    code, out, _ = cli(cluster, capsys, "health-check", "pin")
    assert code == 1
    assert "no running ensemble pod of ModelPin pin" in out
    code, _, err = cli(cluster, capsys, "cache", "clear", "pin")
    assert code == 2
    assert "bearer token" in err


def test_retry_is_accepted_for_a_canary_paused_on_an_inconclusive_metric(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.create(model_pin("pin"))
    cluster.create(resource("Canary", "cny", {"targetRef": {"name": "pin"}, "steps": [{"setWeight": 10}]}))
    cluster.set_status(
        "Canary", "cny", {"phase": "Paused", "metrics": [{"name": "errors", "phase": "Successful"}]}
    )
    code, _, err = cli(cluster, capsys, "retry", "cny")
    assert (code, "not aborted" in err) == (2, True)
    cluster.set_status(
        "Canary", "cny", {"phase": "Paused", "metrics": [{"name": "errors", "phase": "Inconclusive"}]}
    )
    code, _, err = cli(cluster, capsys, "retry", "cny")
    assert code == 0, err
    assert cluster.get("Canary", "cny")["metadata"]["annotations"]["artisan.dev/action"].startswith("retry")
