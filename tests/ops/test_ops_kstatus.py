"""GitOps health end to end: every kind reaches kstatus Ready (and Stalled on an invalid spec).

The real operator runs against the emulated API with the simulated runtime (Deployments become
ready, Jobs get Running pods) and a real Prometheus scraping an exporter that plays the gateway's
per-variant counters. Every status the tests observe is judged three ways, and they must agree:

- ``kubectl wait --for=condition=Ready`` (:func:`kubectl_wait_ready`, kubectl's rule);
- kstatus, what Flux health checks compute for a custom resource (:func:`kstatus_of`);
- the chart's Argo CD health script of the kind (Lua, run with lupa: :func:`argocd_health`).

One API, runtime, Prometheus and operator serve the whole module; the ``world`` fixture creates
every object at once so the operator works on them concurrently and the waits overlap.

What Ready means per kind (the operator's policy decides; these tests hold it to it):

| kind         | Ready=True when                                                   |
|--------------|-------------------------------------------------------------------|
| TrainingRun  | its pod trains (Running) or the Job completed (Succeeded)         |
| ModelPin     | every replica of the current revision is ready                    |
| Canary       | the stable revision serves all traffic (steady state, promoted)   |
| ABExperiment | the experiment routes its variants and is analysed (Running), or  |
|              | it ended cleanly (Concluded, Inconclusive)                        |

A Running experiment is Ready: its spec (the traffic split and the analysis) is in force, and what
it still waits for is data, not reconciliation; it may run for days (``maxDurationSeconds``), and a
GitOps apply must not block on it. Wait for its end with
``kubectl wait --for=jsonpath='{.status.phase}'=Concluded``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import kubernetes.client
import numpy as np
import pytest
from lupa import LuaRuntime

from artisan_operator.handlers.context import OperatorContext
from artisan_operator.main import run_operator
from artisan_operator.metrics.operator_metrics import OperatorMetrics
from artisan_operator.sandbox.prometheus import ControlledExporter, PrometheusServer
from artisan_operator.sandbox.runtime import SimulatedRuntime
from artisan_operator.sandbox.server import EmulatorThread
from artisan_operator.sandbox.testing import OperatorRunner, wait_for
from artisan_operator.settings import Settings
from artisan_operator.validation import validate_object

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

NS = "default"
GROUP, VERSION = "artisan.dev", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURALS = {
    "TrainingRun": "trainingruns",
    "ModelPin": "modelpins",
    "Canary": "canaries",
    "ABExperiment": "abexperiments",
}
LUA_SCRIPTS = Path(__file__).resolve().parents[2] / "charts" / "artisan" / "files" / "argocd"
KStatus = Literal["Current", "InProgress", "Failed"]


# ------------------------------------------------------------------------------ the three judges


def _generation_is_stale(obj: dict[str, Any], condition: dict[str, Any]) -> bool:
    generation = (obj.get("metadata") or {}).get("generation")
    status = obj.get("status") or {}
    observed = condition.get("observedGeneration", status.get("observedGeneration"))
    return generation is not None and observed is not None and int(observed) < int(generation)


def kubectl_wait_ready(obj: dict[str, Any]) -> bool:
    """Whether ``kubectl wait --for=condition=Ready`` is satisfied by ``obj`` (pure).

    kubectl compares the condition type and status case-insensitively, uses the first condition of
    that type, and refuses a condition whose ``observedGeneration`` (the condition's own, else the
    status's) is older than ``metadata.generation``: the status may describe an older spec.
    """
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if str(condition.get("type", "")).lower() != "ready":
            continue
        if _generation_is_stale(obj, condition):
            return False
        return str(condition.get("status", "")).lower() == "true"
    return False


def kstatus_of(obj: dict[str, Any]) -> KStatus:
    """kstatus's generic verdict for a custom resource, as Flux health checks compute it (pure).

    A status older than the spec is InProgress; then the first of Reconciling=True (InProgress)
    or Stalled=True (Failed) in the conditions decides; otherwise the object is Current.
    """
    generation = (obj.get("metadata") or {}).get("generation")
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and int(observed) != int(generation):
        return "InProgress"
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Reconciling":
            return "InProgress"
        if condition.get("type") == "Stalled":
            return "Failed"
    return "Current"


def argocd_health(obj: dict[str, Any]) -> dict[str, str]:
    """The chart's Argo CD health script of the object's kind, run on the object (status, message)."""
    lua = LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    script = LUA_SCRIPTS / f"health-{obj['kind'].lower()}.lua"
    result = lua.execute(script.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in result.items()}


def condition_of(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def disagreements(obj: dict[str, Any]) -> list[str]:
    """How the three judges disagree about one observed object (empty: they agree)."""
    ready, kstatus, health = kubectl_wait_ready(obj), kstatus_of(obj), argocd_health(obj)["status"]
    stalled = condition_of(obj, "Stalled")
    problems = []
    if ready and kstatus != "Current":
        problems.append(f"Ready but kstatus {kstatus}")
    if ready != (health == "Healthy"):
        problems.append(f"kubectl wait Ready={ready} but Argo CD {health}")
    if stalled is not None and stalled["status"] == "True" and (ready or health != "Degraded"):
        problems.append(f"Stalled but Ready={ready}, Argo CD {health}")
    if kstatus == "Failed" and health != "Degraded":
        problems.append(f"kstatus Failed but Argo CD {health}")
    return problems


# ------------------------------------------------------------------------------ the world


def meta(name: str) -> dict[str, str]:
    return {"name": name, "namespace": NS}


def training_run(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "TrainingRun", "metadata": meta(name), "spec": spec}


def model_pin(name: str, revision: str = "2.5.1", **spec: Any) -> dict[str, Any]:
    primary = {"name": "qwen", "source": "/models/qwen", "revision": revision}
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelPin",
        "metadata": meta(name),
        "spec": {"models": {"primary": primary}, "replicas": 1, **spec},
    }


def canary(name: str, pin: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    spec = {"targetRef": {"name": pin}, "steps": steps, "abortScaleDownDelaySeconds": 1}
    return {"apiVersion": API_VERSION, "kind": "Canary", "metadata": meta(name), "spec": spec}


def experiment(name: str, pin: str, weights: tuple[int, int] = (50, 50)) -> dict[str, Any]:
    variants = [{"name": "control", "weight": weights[0]}, {"name": "treatment", "weight": weights[1]}]
    spec = {"targetRef": {"name": pin}, "variants": variants, "analysis": {"minSamplesPerVariant": 100}}
    return {"apiVersion": API_VERSION, "kind": "ABExperiment", "metadata": meta(name), "spec": spec}


INVALID_CASES: dict[str, tuple[dict[str, Any], str]] = {
    # object, the field the Stalled message must name
    "TrainingRun": (
        training_run("tr-bad", ppo={"batchSize": 4096, "stepsPerUpdate": 2048}),
        "spec.ppo.batchSize",
    ),
    "ModelPin": (
        model_pin("pin-bad", traffic={"fast": 50, "balanced": 30, "creative": 10}),
        "spec.traffic",
    ),
    "Canary": (
        canary(
            "cny-bad",
            "pin-cny",
            [
                {
                    "analysis": {
                        "metrics": [
                            {
                                "name": "errors",
                                "successCondition": "result <<< 0.05",
                                "provider": {"builtin": {"name": "errorRate"}},
                            }
                        ]
                    }
                }
            ],
        ),
        "spec.steps[0].analysis.metrics[0].successCondition",
    ),
    "ABExperiment": (experiment("abx-bad", "pin-ok", weights=(50, 40)), "spec.variants"),
}
PASSES_ADMISSION = {"Canary"}
"""Invalid specs the API server's schema and CEL rules accept: only the operator can refuse them
(the success condition's expression language is ours). The others would be refused at admission
on a real cluster; the emulator admits anything, so they show the operator's second line."""


def plant(exporter: ControlledExporter, name: str, variant: str, values: Any) -> None:
    """What the gateway's counters would say after observing ``values`` of ``rating``."""
    array = np.asarray(values, dtype=float)
    labels = {"experiment": name, "variant": variant, "metric": "rating"}
    exporter.set("artisan_variant_observations_total", float(array.size), **labels)
    exporter.set("artisan_variant_sum_total", float(array.sum()), **labels)
    exporter.set("artisan_variant_sum_squares_total", float((array**2).sum()), **labels)


@dataclass
class World:
    client: kubernetes.client.ApiClient
    seen: list[str] = field(default_factory=list)
    """Every disagreement between the judges, over every object observed (must stay empty)."""

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.client)

    def create(self, body: dict[str, Any]) -> None:
        plural = PLURALS[body["kind"]]
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural, body)

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURALS[kind], name, body)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """The object as stored, judged by the three judges on the way."""
        obj = cast(
            "dict[str, Any]",
            self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURALS[kind], name),
        )
        obj.setdefault("kind", kind)
        self.seen.extend(
            f"{kind}/{name} {(obj.get('status') or {}).get('phase')}: {p}" for p in disagreements(obj)
        )
        return obj

    def wait_until(
        self, kind: str, name: str, predicate: Callable[[dict[str, Any]], object], timeout: float = 30.0
    ) -> dict[str, Any]:
        """Poll the object until ``predicate`` holds for it; the last status seen explains a timeout."""
        last: dict[str, Any] = {}

        def check() -> dict[str, Any] | None:
            obj = last["obj"] = self.get(kind, name)
            return obj if predicate(obj) else None

        try:
            return wait_for(check, timeout=timeout, interval=0.1, message=f"{kind}/{name}")
        except AssertionError as error:
            raise AssertionError(f"{error}; last status: {(last.get('obj') or {}).get('status')}") from None


def operator_settings(kubeconfig: Path, prometheus_url: str) -> Settings:
    return Settings(
        kubeconfig=kubeconfig,
        metrics_enabled=False,
        prometheus_url=prometheus_url,
        timer_interval_seconds=0.2,
        timer_idle_seconds=0,
        resync_interval_seconds=1.0,
        api_threads=4,
        metric_query_timeout_seconds=2.0,
        experiment_interval_seconds=1.0,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The API, runtime, Prometheus and operator, with every object of the module created."""
    workdir = tmp_path_factory.mktemp("kstatus")
    with (
        EmulatorThread(kubeconfig_path=workdir / "kubeconfig") as api,
        api.api_client() as client,
        SimulatedRuntime(client, interval=0.2),
        ControlledExporter() as exporter,
        PrometheusServer(workdir / "prometheus", [exporter.target], scrape_interval="1s") as prometheus,
    ):
        rng = np.random.default_rng(7)
        plant(exporter, "abx-win", "control", rng.normal(3.5, 1.0, 400).clip(0))
        plant(exporter, "abx-win", "treatment", rng.normal(3.9, 1.0, 400).clip(0))
        plant(exporter, "abx-aa", "control", rng.normal(3.5, 1.0, 400).clip(0))
        plant(exporter, "abx-aa", "treatment", rng.normal(3.5, 1.0, 400).clip(0))
        settings = operator_settings(api.kubeconfig_path, prometheus.url)

        def main(stop_flag: threading.Event, ready_flag: threading.Event) -> Coroutine[Any, Any, None]:
            context = OperatorContext(settings=settings, metrics=OperatorMetrics())
            return run_operator(settings, stop_flag=stop_flag, ready_flag=ready_flag, context=context)

        runner = OperatorRunner(main)
        made = World(client)
        for body in (
            training_run("tr-ok", ppo={"totalSteps": 5000}),
            model_pin("pin-ok"),
            model_pin("pin-cny"),
            canary("cny-ok", "pin-cny", [{"setWeight": 50}, {"pause": {"duration": "1s"}}]),
            experiment("abx-win", "pin-ok"),
            experiment("abx-aa", "pin-ok"),
            *(body for body, _ in INVALID_CASES.values()),
        ):
            made.create(body)
        runner.start()
        try:
            yield made
        finally:
            runner.stop()


# ------------------------------------------------------------------------------ the tests


def obj_with(status: dict[str, Any] | None, generation: int = 2) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "ModelPin", "metadata": {"name": "x", "generation": generation}}
    if status is not None:
        body["status"] = status
    return body


def ready(status: str, **extra: Any) -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": "R", "message": "", **extra}


@pytest.mark.parametrize(
    ("obj", "waited", "kstatus"),
    [
        (obj_with(None), False, "Current"),
        (obj_with({"observedGeneration": 2, "conditions": [ready("True")]}), True, "Current"),
        (
            obj_with({"observedGeneration": 2, "conditions": [{**ready("true"), "type": "ready"}]}),
            True,
            "Current",
        ),
        (obj_with({"observedGeneration": 1, "conditions": [ready("True")]}), False, "InProgress"),
        (
            obj_with({"observedGeneration": 2, "conditions": [ready("True", observedGeneration=1)]}),
            False,
            "Current",
        ),
        (obj_with({"observedGeneration": 2, "conditions": [ready("False")]}), False, "Current"),
        (
            obj_with(
                {
                    "observedGeneration": 2,
                    "conditions": [ready("False"), {**ready("True"), "type": "Reconciling"}],
                }
            ),
            False,
            "InProgress",
        ),
        (
            obj_with(
                {
                    "observedGeneration": 2,
                    "conditions": [ready("False"), {**ready("True"), "type": "Stalled"}],
                }
            ),
            False,
            "Failed",
        ),
    ],
    ids=[
        "no-status",
        "ready",
        "case-folded",
        "old-status",
        "old-condition",
        "not-ready",
        "reconciling",
        "stalled",
    ],
)
def test_the_judges_read_conditions_as_kubectl_and_kstatus_do(
    obj: dict[str, Any], waited: bool, kstatus: KStatus
) -> None:
    assert kubectl_wait_ready(obj) is waited
    assert kstatus_of(obj) == kstatus


def is_ready(obj: dict[str, Any]) -> bool:
    return kubectl_wait_ready(obj)


def assert_ready(world: World, obj: dict[str, Any]) -> None:
    """Ready=True at the current generation, Reconciling and Stalled False, Healthy for Argo CD."""
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    for type_, expected in (("Ready", "True"), ("Reconciling", "False"), ("Stalled", "False")):
        found = condition_of(obj, type_)
        assert found is not None, type_
        assert found["status"] == expected, (type_, found)
        assert found["observedGeneration"] == obj["metadata"]["generation"]
    assert kstatus_of(obj) == "Current"
    assert argocd_health(obj)["status"] == "Healthy"
    assert world.seen == []


def test_training_run_is_ready_while_it_trains_and_after_it_succeeds(world: World) -> None:
    running = world.wait_until(
        "TrainingRun", "tr-ok", lambda o: o.get("status", {}).get("phase") == "Running"
    )
    assert_ready(world, running)
    assert condition_of(running, "Ready")["reason"] == "Running"  # type: ignore[index]
    # Play the Job controller: the trainer finished.
    job = running["status"]["jobName"]
    kubernetes.client.BatchV1Api(world.client).patch_namespaced_job_status(
        job, NS, {"status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}}
    )
    done = world.wait_until("TrainingRun", "tr-ok", lambda o: o["status"]["phase"] == "Succeeded")
    assert_ready(world, done)
    assert "completed" in argocd_health(done)["message"]


def test_model_pin_is_ready_again_at_its_new_generation(world: World) -> None:
    first = world.wait_until("ModelPin", "pin-ok", is_ready)
    assert_ready(world, first)
    assert first["metadata"]["generation"] == 1
    world.patch("ModelPin", "pin-ok", {"spec": {"models": {"primary": {"revision": "2.5.2"}}}})
    again = world.wait_until("ModelPin", "pin-ok", lambda o: o["metadata"]["generation"] == 2 and is_ready(o))
    assert_ready(world, again)
    assert again["status"]["phase"] == "Ready"
    assert again["status"]["stable"]["revision"] == again["status"]["revision"]


def test_canary_is_ready_in_steady_state_and_after_a_promotion(world: World) -> None:
    steady = world.wait_until("Canary", "cny-ok", is_ready)
    assert_ready(world, steady)
    assert steady["status"]["phase"] == "Healthy"
    pin = world.wait_until("ModelPin", "pin-cny", is_ready)
    first = pin["status"]["stable"]["revision"]

    world.patch("ModelPin", "pin-cny", {"spec": {"models": {"primary": {"revision": "2.5.2"}}}})
    promoted = world.wait_until(
        "Canary", "cny-ok", lambda o: is_ready(o) and o["status"].get("stableRevision") not in (None, first)
    )
    assert_ready(world, promoted)
    assert condition_of(promoted, "Promoted")["status"] == "True"  # type: ignore[index]
    # Ready again only once the stable fleet serves the promoted pins: the canary is then cleared.
    assert promoted["status"].get("canaryRevision") is None
    assert promoted["status"]["currentStepIndex"] == len(promoted["spec"]["steps"])
    serving = world.wait_until(
        "ModelPin",
        "pin-cny",
        lambda o: is_ready(o) and o["status"]["stable"]["revision"] == promoted["status"]["stableRevision"],
    )
    assert_ready(world, serving)
    assert serving["metadata"]["generation"] == 2


def test_ab_experiment_is_ready_when_concluded_with_a_winner(world: World) -> None:
    concluded = world.wait_until(
        "ABExperiment", "abx-win", lambda o: (o.get("status") or {}).get("phase") == "Concluded"
    )
    assert_ready(world, concluded)
    assert concluded["status"]["winner"] == "treatment"
    assert argocd_health(concluded) == {"status": "Healthy", "message": "Winner: treatment"}


def test_running_ab_experiment_is_ready_but_not_concluded(world: World) -> None:
    analysed = world.wait_until(
        "ABExperiment",
        "abx-aa",
        lambda o: any(v.get("n") == 400 for v in (o.get("status") or {}).get("variants") or []),
    )
    assert analysed["status"]["phase"] == "Running"
    assert analysed["status"].get("winner") is None
    assert_ready(world, analysed)
    assert "no significant difference" in argocd_health(analysed)["message"]


@pytest.mark.parametrize("kind", list(INVALID_CASES))
def test_invalid_spec_is_stalled_naming_the_field(world: World, kind: str) -> None:
    body, field_path = INVALID_CASES[kind]
    refused = [p.path for p in validate_object(body)]
    assert refused == ([] if kind in PASSES_ADMISSION else [field_path])
    name = body["metadata"]["name"]
    obj = world.wait_until(kind, name, lambda o: (condition_of(o, "Stalled") or {}).get("status") == "True")
    stalled = condition_of(obj, "Stalled")
    assert stalled is not None
    assert stalled["reason"] == "InvalidSpec"
    assert field_path in stalled["message"]
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert condition_of(obj, "Ready")["status"] == "False"  # type: ignore[index]
    assert condition_of(obj, "Reconciling")["status"] == "False"  # type: ignore[index]
    assert not kubectl_wait_ready(obj)
    assert kstatus_of(obj) == "Failed"
    health = argocd_health(obj)
    assert health["status"] == "Degraded"
    assert field_path in health["message"]
    assert world.seen == []


def test_every_object_is_judged_alike_now(world: World) -> None:
    # The polls above judged every status they saw on the way; this judges every object once more.
    objects = [
        ("TrainingRun", "tr-ok"),
        ("ModelPin", "pin-ok"),
        ("ModelPin", "pin-cny"),
        ("Canary", "cny-ok"),
    ]
    objects += [("ABExperiment", "abx-win"), ("ABExperiment", "abx-aa")]
    objects += [(kind, body["metadata"]["name"]) for kind, (body, _) in INVALID_CASES.items()]
    for kind, name in objects:
        world.wait_until(kind, name, lambda o: o.get("status") is not None)
    assert world.seen == []
