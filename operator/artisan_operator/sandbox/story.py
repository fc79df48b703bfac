"""``artisan sandbox demo --story full``: the whole story on one machine, with real processes.

The emulated API, Artisan's operator and the :class:`~.local_runtime.LocalRuntime` (the trainer and
ensemble commands as local processes; tiny models built once into a cache), Prometheus when
``/usr/bin/prometheus`` is installed (targets from the local pods, labelled like a ServiceMonitor
would), a direct scrape otherwise. In order:

1. a TrainingRun trains; the demo arms the reward-fault drill; the trainer's returns drop and it rolls
   back to an earlier checkpoint (Rollback);
2. a ModelPin serves briefs in Korean and English through the gateway (Served);
3. a Canary promotes a new revision of the pin through its steps (Promoted);
4. a second rollout is aborted: the demo injects a timeout fault into the canary fleet (admin API),
   its latency breaches the gate (Aborted); the change is then reverted, as a user would;
5. an ABExperiment reaches a winner on synthetic users whose ratings carry a planted effect (Winner);
6. a model fault (admin API) downshifts the fleet (Downshifted) and it recovers after holdSeconds
   (Recovered).

Every event is read from what the system reports (statuses, routing table, the trainer's log), never
from the demo's own actions. The exit code is non-zero when a step did not happen.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kubernetes.client

from artisan_operator.api import KINDS_BY_NAME
from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.sandbox.demo import load_documents
from artisan_operator.sandbox.emulator import SandboxEmulator
from artisan_operator.sandbox.local_runtime import EnvInjection, LocalRuntime, PodEndpoint
from artisan_operator.sandbox.prometheus import PROMETHEUS_BINARY, PrometheusServer
from artisan_operator.sandbox.report import Timeline, assess_story, story_exit_code, write_report
from artisan_operator.sandbox.runner import OperatorThread
from artisan_operator.sandbox.server import EmulatorThread

T = TypeVar("T")
Obj = dict[str, Any]
NAMESPACE = "default"
ADMIN_TOKEN = "artisan-demo-drill"
MODEL_ROLES = ("primary", "validator", "creative")
"""All three: creative mode calls the validator before the creative model (no validator, no creative call)."""
BRIEFS = (
    ("en", "A fresh citrus cologne for summer mornings, light and green"),
    ("ko", "여름 아침을 위한 상큼한 시트러스 향수, 가볍고 싱그럽게"),
)


def synthetic_feedback(rng: random.Random, user_id: str, variant: str) -> Obj:
    """One synthetic user's rating (the /v1/feedback body) with the demo's planted effect: fast
    answers (treatment) please these users more, mean 4.0 against 3.2 stars.

    The gateway counts a rating for its variant only when the feedback is accepted (HTTP 202), so
    the body must pass the default curation: ``responseSeconds`` above ``minResponseSeconds`` (2 s;
    quicker ratings are rejected as careless clicks) and a rating within 1-5 stars.
    """
    mean = 4.0 if variant == "treatment" else 3.2
    return {
        "userId": user_id,
        "rating": round(min(5.0, max(1.0, rng.gauss(mean, 0.6))), 2),
        "responseSeconds": round(rng.uniform(5.0, 40.0), 1),
        "ifraCompliant": True,
    }


class StoryStepFailedError(RuntimeError):
    """A step did not reach its state in time (the message says which and what was seen)."""


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.3,
    *,
    deadline: float | None = None,
) -> T:
    """The predicate's first truthy value, polled every ``interval`` s for ``timeout`` s at most, and
    never past ``deadline`` (the story's overall deadline, on the monotonic clock)."""
    end = time.monotonic() + timeout
    overall = deadline is not None and deadline < end
    if deadline is not None:
        end = min(end, deadline)
    last: Any = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as error:  # not there yet
            last = error
        if time.monotonic() >= end:
            within = "before the story's overall deadline" if overall else f"within {timeout:.0f}s"
            raise StoryStepFailedError(f"{what}: not {within} (last seen: {last!r})")
        time.sleep(interval)


# ------------------------------------------------------------------------------------ tiny models


def prepare_models(cache: Path, revisions: tuple[str, ...]) -> Path:
    """Tiny models built once into ``cache/tiny`` and laid out per revision under ``cache/claim``:
    ``<role>/<revision>/`` links the tiny model's files and carries its own ``artisan-revision``."""
    tiny = cache / "tiny"
    if not (tiny / "primary" / "config.json").is_file():
        import subprocess
        import sys

        if tiny.exists():
            shutil.rmtree(tiny)
        command = [str(Path(sys.executable).parent / "artisan-ensemble"), "make-tiny-models", str(tiny)]
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    claim = cache / "claim"
    for role in MODEL_ROLES:
        for revision in revisions:
            target = claim / role / revision
            if (target / "artisan-revision").is_file():
                continue
            target.mkdir(parents=True, exist_ok=True)
            for item in (tiny / role).iterdir():
                if item.name != "artisan-revision" and not (target / item.name).exists():
                    (target / item.name).symlink_to(item.resolve())
            (target / "artisan-revision").write_text(revision + "\n", encoding="utf-8")
    return claim


# ------------------------------------------------------------------------------------- Prometheus


class PodPrometheus(PrometheusServer):
    """Prometheus scraping the local pods from a file_sd file the demo keeps up to date."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, [], scrape_interval="1s")
        self.targets_file = workdir / "targets.json"

    def config_text(self) -> str:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "pods",
                    "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
                }
            ],
        }
        if not self.targets_file.exists():
            self.targets_file.write_text("[]", encoding="utf-8")
        return json.dumps(config)

    def write_targets(self, endpoints: list[PodEndpoint], services: Mapping[str, Mapping[str, str]]) -> None:
        groups = []
        for pod in endpoints:
            port = pod.ports.get("http") or pod.ports.get("metrics")
            if port is None or not pod.ready:
                continue
            labels = {"namespace": pod.namespace, "pod": pod.name}
            # The labels the chart's PodMonitor copies from the pod (the builtin queries match on them).
            for label in ("track", "modelpin"):
                if value := pod.labels.get(f"artisan.dev/{label}"):
                    labels[label] = value
            for service, selector in services.items():
                if selector and all(pod.labels.get(k) == v for k, v in selector.items()):
                    labels["service"] = service
                    break
            groups.append({"targets": [f"{pod.ip}:{port}"], "labels": labels})
        text = json.dumps(groups, sort_keys=True)
        if not self.targets_file.exists() or self.targets_file.read_text(encoding="utf-8") != text:
            temp = self.targets_file.with_suffix(".tmp")
            temp.write_text(text, encoding="utf-8")
            temp.replace(self.targets_file)


# ------------------------------------------------------------------------------------------ story


@dataclass
class StoryOptions:
    configs: Path = Path("configs/demo")
    crds: Path = Path("crds")
    report_dir: Path = Path("demo-report")
    cache: Path = Path(".cache/artisan-demo")
    prometheus: bool | None = None
    """None: use it when installed."""
    step_timeout: float = 120.0
    deadline_seconds: float = 600.0
    """The whole story (model preparation included) must finish within this (the issue: 10 minutes);
    every wait stops at it and the steps not yet run are reported missing."""


def http_json(
    url: str,
    body: Mapping[str, Any] | None = None,
    *,
    token: str | None = None,
    method: str | None = None,
    timeout: float = 15.0,
) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, dict(response.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        with contextlib.suppress(ValueError):
            return error.code, dict(error.headers), json.loads(raw)
        return error.code, dict(error.headers), raw.decode(errors="replace")


class Story:
    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        runtime: LocalRuntime,
        timeline: Timeline,
        options: StoryOptions,
        workdir: Path,
        *,
        deadline: float | None = None,
    ) -> None:
        self.deadline = deadline
        """The story's overall deadline (monotonic clock); no wait runs past it."""
        self.client = client
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.apps = kubernetes.client.AppsV1Api(client)
        self.runtime = runtime
        self.timeline = timeline
        self.options = options
        self.workdir = workdir
        self.documents = {
            (d["kind"], d["metadata"]["name"]): d
            for d in load_documents(sorted(options.configs.glob("*.yaml")))
        }
        self._traffic_stop = threading.Event()
        self._traffic: threading.Thread | None = None
        self.traffic_counts = {"ok": 0, "failed": 0}

    def wait_until(
        self, predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.3
    ) -> T:
        return wait_until(predicate, timeout, what, interval, deadline=self.deadline)

    # ---- API helpers

    def document(self, kind: str, name: str) -> Obj:
        return copy.deepcopy(self.documents[(kind, name)])

    def create(self, body: Obj) -> None:
        kind, namespace = body["kind"], body["metadata"].get("namespace", NAMESPACE)
        sent: Any = body  # the client sends a dict body as it is; its stubs name only the model classes
        if kind in KINDS_BY_NAME:
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, KINDS_BY_NAME[kind].plural, body
            )
        elif kind == "Deployment":
            self.apps.create_namespaced_deployment(namespace, sent)
        elif kind == "Service":
            self.core.create_namespaced_service(namespace, sent)
        elif kind == "PersistentVolumeClaim":
            self.core.create_namespaced_persistent_volume_claim(namespace, sent)
        else:
            raise ValueError(f"the demo does not apply {kind}")

    def get(self, kind: str, name: str) -> Obj:
        plural = KINDS_BY_NAME[kind].plural
        found: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, name)
        return dict(found)

    def patch_spec(self, kind: str, name: str, spec: Obj) -> None:
        plural = KINDS_BY_NAME[kind].plural
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, name, {"spec": spec})

    def routing(self, pin: str) -> dict[str, str]:
        raw: Any = self.core.read_namespaced_config_map(f"{pin}-routing", NAMESPACE, _preload_content=False)
        return dict(json.loads(raw.data).get("data") or {})

    def pods(self, **selector: str) -> list[PodEndpoint]:
        return [
            p
            for p in self.runtime.endpoints()
            if p.ready and all(p.labels.get(k) == v for k, v in selector.items())
        ]

    def gateway_url(self) -> str:
        pods = self.pods(**{"app.kubernetes.io/name": "artisan-gateway"})
        if not pods:
            raise StoryStepFailedError("no ready gateway pod")
        return f"http://{pods[0].ip}:{pods[0].ports['http']}"

    def ensemble_pods(self, track: str) -> list[PodEndpoint]:
        return self.pods(**{"app.kubernetes.io/name": "artisan-ensemble", "artisan.dev/track": track})

    # ---- traffic

    def start_traffic(self, rate: float = 4.0, mode: str | None = "fast") -> None:
        self.stop_traffic()
        self._traffic_stop = threading.Event()
        stop = self._traffic_stop

        def loop() -> None:
            number = 0
            while not stop.is_set():
                number += 1
                _, text = BRIEFS[number % len(BRIEFS)]
                body: Obj = {"text": f"{text} #{number % 7}", "userId": f"traffic-{number % 50}"}
                if mode:
                    body["mode"] = mode
                try:
                    status, _, _ = http_json(self.gateway_url() + "/v1/briefs", body, timeout=10)
                    self.traffic_counts["ok" if status < 500 else "failed"] += 1
                except (OSError, StoryStepFailedError):
                    self.traffic_counts["failed"] += 1
                stop.wait(1.0 / rate)

        # Two workers: one slow (faulted) request does not starve the rest of the traffic.
        threads = [threading.Thread(target=loop, name=f"demo-traffic-{i}", daemon=True) for i in range(2)]
        for thread in threads:
            thread.start()
        self._traffic = threads[0]
        self._traffic_threads = threads

    def stop_traffic(self) -> None:
        self._traffic_stop.set()
        for thread in getattr(self, "_traffic_threads", []):
            thread.join(15)
        self._traffic_threads = []

    # ---- 1. training

    def training(self) -> None:
        run = self.document("TrainingRun", "demo-ppo")
        arm = self.workdir / "reward-drill.arm"
        arm.unlink(missing_ok=True)
        run["spec"]["env"]["config"]["armFile"] = str(arm)
        self.create(run)
        self.timeline.record(
            "TrainingRun", "demo-ppo", "Created", "PPO on Fragrance-v0 behind the reward-fault drill"
        )
        log = self.trainer_log()
        self.wait_until(
            lambda: self.trainer_progress(log())[0] >= 1536,
            self.options.step_timeout,
            "trainer baseline (step 1536)",
        )
        arm.touch()
        self.timeline.record(
            "TrainingRun", "demo-ppo", "FaultInjected", "reward drill armed: every reward lowered by 2.0"
        )
        rollback = self.wait_until(lambda: self.trainer_progress(log())[1], 60, "trainer rollback")
        arm.unlink(missing_ok=True)
        first = rollback[0]
        self.timeline.record(
            "TrainingRun",
            "demo-ppo",
            "Rollback",
            f"{first['reason']} at step {first['step']} → restored {first['target_checkpoint']} "
            f"({first['detail']})",
        )
        self._training_log = log

    def trainer_log(self) -> Callable[[], list[Obj]]:
        def read() -> list[Obj]:
            for endpoint in self.runtime.endpoints():
                if endpoint.labels.get("app.kubernetes.io/name") == "artisan-trainer":
                    pod = self.runtime.pod(endpoint.namespace, endpoint.name)
                    if pod is not None and pod.log_path.is_file():
                        lines = []
                        for line in pod.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
                            with contextlib.suppress(ValueError):
                                item = json.loads(line)
                                if isinstance(item, dict):
                                    lines.append(item)
                        return lines
            return []

        return read

    @staticmethod
    def trainer_progress(lines: list[Obj]) -> tuple[int, list[Obj]]:
        steps = [int(item["step"]) for item in lines if item.get("event") == "update"]
        rollbacks = [
            item for item in lines if item.get("event") == "rollback" and item.get("reason") == "reward_drop"
        ]
        return (max(steps) if steps else 0), rollbacks

    def finish_training(self) -> None:
        lines = self._training_log()
        self.timeline.series.training = [
            (int(i["step"]), float(i["mean_return"]))
            for i in lines
            if i.get("event") == "update" and i.get("mean_return") is not None
        ]
        self.timeline.series.rollbacks = [
            (int(i["step"]), int(i["target_step"]), str(i["reason"]))
            for i in lines
            if i.get("event") == "rollback"
        ]
        status = self.get("TrainingRun", "demo-ppo").get("status") or {}
        summary = next((i for i in lines if i.get("event") == "summary"), None)
        recorded = status.get("rollbacks") or []
        self.timeline.record(
            "TrainingRun",
            "demo-ppo",
            "Status",
            f"phase {status.get('phase')}, step {status.get('step')}, "
            f"rewardMA {status.get('rewardMA') or status.get('rewardMa')}, "
            f"rollbacks in status: {len(recorded)}; trainer finished: {'yes' if summary else 'not yet'}",
        )

    # ---- 2. serving

    def serving(self) -> None:
        for kind, name in (
            ("PersistentVolumeClaim", "demo-models"),
            ("ModelPin", "demo-pin"),
            ("Deployment", "demo-gateway"),
            ("Service", "demo-gateway"),
        ):
            self.create(self.document(kind, name))
        pin = self.wait_until(
            lambda: self.ready(self.get("ModelPin", "demo-pin")), 240, "ModelPin demo-pin Ready"
        )
        self.timeline.record(
            "ModelPin", "demo-pin", "Ready", f"revision {pin['status'].get('revision')} serving"
        )
        self.wait_until(
            lambda: self.gateway_url() and http_json(self.gateway_url() + "/readyz")[0] == 200,
            120,
            "gateway ready",
        )
        for language, text in BRIEFS:
            status, headers, answer = http_json(
                self.gateway_url() + "/v1/briefs",
                {"text": text, "mode": "fast", "userId": f"demo-{language}"},
                timeout=30,
            )
            if status != 200 or not isinstance(answer, dict):
                raise StoryStepFailedError(f"brief in {language}: HTTP {status}: {answer}")
            brief = answer.get("brief") or {}
            formula = answer.get("formula") or {}
            ingredients = ", ".join(
                f"{item.get('name')} {float(item.get('proportion', 0)):.0%}"
                for item in (formula.get("ingredients") or [])[:4]
                if isinstance(item, dict)
            )
            self.timeline.record(
                "ModelPin",
                "demo-pin",
                "Served",
                f"[{language}] {text!r} → style {brief.get('style')}; formula {ingredients}; "
                f"IFRA compliant {(formula.get('ifra') or {}).get('compliant')} "
                f"(revision {headers.get('X-Artisan-Revision') or headers.get('x-artisan-revision')})",
            )

    @staticmethod
    def ready(obj: Obj) -> Obj | None:
        status = obj.get("status") or {}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        return obj if conditions.get("Ready") == "True" else None

    # ---- 3./4. canary

    def canary_weight_sampler(self, label: str, stop: threading.Event) -> threading.Thread:
        def loop() -> None:
            while not stop.is_set():
                with contextlib.suppress(Exception):
                    entry = self.routing("demo-pin").get("canary.json")
                    weight = int(json.loads(entry)["weight"]) if entry and entry != "null" else 0
                    self.timeline.series.canary_weights.append((self.timeline.elapsed(), weight, label))
                stop.wait(0.5)

        thread = threading.Thread(target=loop, name="demo-canary-weights", daemon=True)
        thread.start()
        return thread

    def set_revision(self, revision: str, failure_threshold: int = 2) -> None:
        models = {
            role: {"name": role, "source": f"pvc://demo-models/{role}", "revision": revision}
            for role in MODEL_ROLES
        }
        downshift = {"failureThreshold": failure_threshold}
        self.patch_spec("ModelPin", "demo-pin", {"models": models, "downshift": downshift})

    def canary_promote(self) -> None:
        self.create(self.document("Canary", "demo-pin"))
        self.wait_until(
            lambda: (self.get("Canary", "demo-pin").get("status") or {}).get("conditions"),
            60,
            "Canary status",
        )
        self.start_traffic()
        stop = threading.Event()
        sampler = self.canary_weight_sampler("rollout 1.1.0 (promoted)", stop)
        # The promotion is seen as a new stable revision: the canary revision is cleared once the
        # stable fleet serves it, so "stable == canary" holds only for that short hold.
        old_stable = (self.get("Canary", "demo-pin").get("status") or {}).get("stableRevision")
        try:
            self.set_revision("1.1.0")
            self.timeline.record(
                "ModelPin", "demo-pin", "Changed", "revision 1.0.0 → 1.1.0 (rolled out under Canary demo-pin)"
            )
            seen: set[int] = set()

            def promoted() -> Obj | None:
                status = self.get("Canary", "demo-pin").get("status") or {}
                weight = int(status.get("weight") or 0)
                if weight not in seen and weight > 0:
                    seen.add(weight)
                    self.timeline.record(
                        "Canary",
                        "demo-pin",
                        "StepReached",
                        f"weight {weight}% (step {status.get('currentStepIndex')})",
                    )
                if status.get("abortedAt"):
                    raise StoryStepFailedError(f"canary aborted unexpectedly: {status.get('abortReason')}")
                return (
                    status
                    if status.get("promotedAt") and status.get("stableRevision") not in (None, old_stable)
                    else None
                )

            status = self.wait_until(promoted, self.options.step_timeout + 60, "Canary promotion")
            self.timeline.record(
                "Canary",
                "demo-pin",
                "Promoted",
                f"stable revision is now {status.get('stableRevision')}: {status.get('message')}",
            )
            self.wait_until(
                lambda: self.ready(self.get("ModelPin", "demo-pin")), 180, "stable fleet on the new revision"
            )
            # The canary keeps its weight and pods until the stable fleet serves the promoted pins;
            # the next rollout must not find (and fault) this one's pods.
            self.wait_until(
                lambda: (
                    not int((self.get("Canary", "demo-pin").get("status") or {}).get("weight") or 0)
                    and not self.ensemble_pods("canary")
                ),
                120,
                "promoted canary cleared",
            )
        finally:
            stop.set()
            sampler.join(5)

    def canary_abort(self) -> None:
        stop = threading.Event()
        sampler = self.canary_weight_sampler("rollout 1.2.0 (aborted)", stop)
        try:
            # The bad change: a new revision whose breaker threshold is so high it never opens, so a
            # slow model's timeouts reach the users. The canary's latency gate must catch it.
            self.set_revision("1.2.0", failure_threshold=10_000)
            self.timeline.record(
                "ModelPin",
                "demo-pin",
                "Changed",
                "revision 1.1.0 → 1.2.0 with downshift.failureThreshold 10000 (second rollout)",
            )
            self.wait_until(
                lambda: (
                    int((self.get("Canary", "demo-pin").get("status") or {}).get("weight") or 0) > 0
                    and self.ensemble_pods("canary")
                ),
                180,
                "second canary serving",
            )
            for pod in self.ensemble_pods("canary"):
                status, _, _ = http_json(
                    f"http://{pod.ip}:{pod.ports['http']}/admin/faults",
                    {"model": "primary", "kind": "timeout", "durationSeconds": 120},
                    token=ADMIN_TOKEN,
                )
                if status != 201:
                    raise StoryStepFailedError(f"fault injection into {pod.name}: HTTP {status}")
            self.timeline.record(
                "Canary",
                "demo-pin",
                "FaultInjected",
                "timeout fault on the canary fleet's primary model (admin API)",
            )
            status = self.wait_until(
                lambda: (s := self.get("Canary", "demo-pin").get("status") or {}).get("abortedAt") and s,
                self.options.step_timeout,
                "Canary abort",
            )
            self.timeline.record(
                "Canary",
                "demo-pin",
                "Aborted",
                f"{status.get('abortReason')}; weight {status.get('weight')}%",
            )
            time.sleep(1.5)  # one more weight sample at 0 for the plot
        finally:
            stop.set()
            sampler.join(5)
        self.set_revision("1.1.0")
        self.timeline.record(
            "ModelPin",
            "demo-pin",
            "Reverted",
            "revision back to the stable 1.1.0 (what a user does after an abort)",
        )
        self.wait_until(
            lambda: self.ready(self.get("ModelPin", "demo-pin")) and not self.ensemble_pods("canary"),
            120,
            "canary fleet gone after the revert",
        )

    # ---- 5. A/B

    def experiment(self) -> None:
        self.stop_traffic()
        self.create(self.document("ABExperiment", "demo-modes"))
        self.wait_until(
            lambda: json.loads(self.routing("demo-pin").get("experiment.json") or "null"),
            60,
            "experiment routing entry",
        )
        self.timeline.record(
            "ABExperiment",
            "demo-modes",
            "Started",
            "users split 50/50 between balanced (control) and fast (treatment)",
        )
        rng = random.Random(7)
        user = 0

        def drive() -> Obj | None:
            nonlocal user
            for _ in range(20):
                user += 1
                uid = f"user-{user}"
                _, text = BRIEFS[user % len(BRIEFS)]
                status, headers, _ = http_json(
                    self.gateway_url() + "/v1/briefs", {"text": text, "userId": uid}, timeout=15
                )
                variant = headers.get("X-Artisan-Variant") or headers.get("x-artisan-variant")
                if status != 200 or variant is None:
                    continue
                http_json(self.gateway_url() + "/v1/feedback", synthetic_feedback(rng, uid, variant))
            current: Obj = self.get("ABExperiment", "demo-modes").get("status") or {}
            return current if current.get("winner") else None

        status: Obj = self.wait_until(
            drive, self.options.step_timeout + 120, "ABExperiment winner", interval=0.1
        )
        self.timeline.series.ab_intervals = [
            (v["name"], v.get("mean"), v.get("ciLower"), v.get("ciUpper"))
            for v in status.get("variants") or []
        ]
        self.timeline.record(
            "ABExperiment",
            "demo-modes",
            "Winner",
            f"{status['winner']} ({float(status.get('improvementPercent') or 0):+.2f}% vs control) after "
            f"{sum(int(v.get('n') or 0) for v in status.get('variants') or [])} ratings; "
            f"{status.get('message')}",
        )

    # ---- 6. downshift

    def downshift(self) -> None:
        def ceiling() -> str:
            return str(json.loads(self.routing("demo-pin")["pin.json"]).get("modeCeiling"))

        pods = self.ensemble_pods("stable")
        if not pods:
            raise StoryStepFailedError("no stable ensemble pod")
        for pod in pods:
            status, _, _ = http_json(
                f"http://{pod.ip}:{pod.ports['http']}/admin/faults",
                {"model": "creative", "kind": "error", "durationSeconds": 6},
                token=ADMIN_TOKEN,
            )
            if status != 201:
                raise StoryStepFailedError(f"fault injection into {pod.name}: HTTP {status}")
        self.timeline.record(
            "ModelPin",
            "demo-pin",
            "FaultInjected",
            "error fault on the creative model of every stable pod for 6s",
        )

        def probe_creative() -> None:
            # Creative requests straight to the pods: they trip the breaker during the fault, and
            # after it they are the probe that closes it again (the gateway no longer sends creative
            # traffic once the fleet is downshifted).
            for pod in self.ensemble_pods("stable"):
                with contextlib.suppress(OSError):
                    http_json(
                        f"http://{pod.ip}:{pod.ports['http']}/v1/briefs",
                        {"text": f"creative probe {time.time()}", "mode": "creative"},
                        timeout=10,
                    )

        def downshifted() -> str | None:
            probe_creative()
            return ceiling() if ceiling() != "creative" else None

        lowered = self.wait_until(downshifted, 90, "fleet downshift", interval=0.5)
        self.timeline.record(
            "ModelPin",
            "demo-pin",
            "Downshifted",
            f"mode ceiling creative → {lowered} (routing table and status)",
        )

        def recovered() -> bool:
            probe_creative()
            return ceiling() == "creative"

        self.wait_until(recovered, 120, "fleet recovery", interval=0.5)
        pin_status: Obj = self.get("ModelPin", "demo-pin").get("status") or {}
        self.timeline.record(
            "ModelPin",
            "demo-pin",
            "Recovered",
            f"mode ceiling back to creative after holdSeconds; modelHealth {pin_status.get('modelHealth')}",
        )

    # ---- operator Events, for the report

    def kubernetes_events(self) -> list[Obj]:
        raw: Any = self.core.list_namespaced_event(NAMESPACE, _preload_content=False)
        items = json.loads(raw.data).get("items") or []
        return [
            {
                "object": "{}/{}".format(
                    (e.get("involvedObject") or {}).get("kind"), (e.get("involvedObject") or {}).get("name")
                ),
                "type": e.get("type"),
                "reason": e.get("reason"),
                "message": e.get("message"),
            }
            for e in items
        ]


def operator_main(
    kubeconfig: Path, prometheus_url: str | None
) -> Callable[[threading.Event, threading.Event], Any]:
    from artisan_operator.main import run_operator
    from artisan_operator.settings import Settings

    settings = Settings(
        kubeconfig=kubeconfig,
        metrics_enabled=False,
        prometheus_url=prometheus_url,
        experiment_interval_seconds=2,
        fleet_interval_seconds=1,
        timer_interval_seconds=1,
        resync_interval_seconds=10,
        metric_query_timeout_seconds=3,
    )

    def main(stop_flag: threading.Event, ready_flag: threading.Event) -> Any:
        return run_operator(settings, stop_flag=stop_flag, ready_flag=ready_flag)

    return main


@contextlib.contextmanager
def target_writer(
    prometheus: PodPrometheus | None, runtime: LocalRuntime, story: Callable[[], Story | None]
) -> Iterator[None]:
    if prometheus is None:
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                services: dict[str, dict[str, str]] = {}
                current = story()
                if current is not None:
                    raw: Any = current.core.list_namespaced_service(NAMESPACE, _preload_content=False)
                    for service in json.loads(raw.data).get("items") or []:
                        selector = (service.get("spec") or {}).get("selector") or {}
                        services[str(service["metadata"]["name"])] = dict(selector)
                prometheus.write_targets(runtime.endpoints(), services)
            stop.wait(0.5)

    thread = threading.Thread(target=loop, name="demo-prometheus-targets", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def run_story(options: StoryOptions, emit: Callable[[str], None] = print) -> int:
    """Run the full story within ``options.deadline_seconds``; write the report; 0 only if every step
    happened, no step failed and the local runtime reported no error."""
    started = time.monotonic()
    deadline = started + options.deadline_seconds
    timeline = Timeline(emit)
    options.cache.mkdir(parents=True, exist_ok=True)
    emit(f"preparing tiny models in {options.cache}/ (built once, then cached)")
    claim = prepare_models(options.cache.resolve(), ("1.0.0", "1.1.0", "1.2.0"))
    # A work dir per run: two demos (or a demo and a test) on one machine never share pod roots.
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=options.cache.resolve()))
    use_prometheus = (
        options.prometheus if options.prometheus is not None else Path(PROMETHEUS_BINARY).exists()
    )
    failure: str | None = None
    runtime_errors: list[str] = []
    events: list[Obj] = []
    holder: dict[str, Story] = {}
    with contextlib.ExitStack() as stack:
        # Registered first, so it runs last: after the pods are stopped, also on SIGTERM (SystemExit).
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        api = stack.enter_context(EmulatorThread(SandboxEmulator(declare_artisan_kinds=False)))
        client = stack.enter_context(api.api_client())
        extensions = kubernetes.client.ApiextensionsV1Api(client)
        for crd in load_documents(sorted(options.crds.glob("*.yaml"))):
            extensions.create_custom_resource_definition(crd)  # type: ignore[arg-type]
        runtime = stack.enter_context(
            LocalRuntime(
                client,
                workdir,
                claim_dirs={f"{NAMESPACE}/demo-models": claim},
                injections=[
                    EnvInjection(
                        {"app.kubernetes.io/name": "artisan-ensemble"},
                        {"ARTISAN_ENSEMBLE_ADMIN_TOKEN": ADMIN_TOKEN},
                    )
                ],
            )
        )
        prometheus: PodPrometheus | None = None
        if use_prometheus:
            prometheus = PodPrometheus(workdir / "prometheus")
            stack.enter_context(prometheus)
            emit(f"Prometheus on {prometheus.url} scraping the local pods")
        else:
            emit("no Prometheus: the operator scrapes the pods' /metrics directly")
        stack.enter_context(target_writer(prometheus, runtime, lambda: holder.get("story")))
        stack.enter_context(
            OperatorThread(operator_main(api.kubeconfig_path, prometheus.url if prometheus else None))
        )
        emit(f"emulated API on {api.url}; operator and local runtime started (work dir {workdir})")
        story = Story(client, runtime, timeline, options, workdir, deadline=deadline)
        holder["story"] = story
        steps: list[tuple[str, Callable[[], None]]] = [
            ("training", story.training),
            ("serving", story.serving),
            ("canary promotion", story.canary_promote),
            ("canary abort", story.canary_abort),
            ("A/B experiment", story.experiment),
            ("fleet downshift", story.downshift),
        ]
        try:
            for label, step in steps:
                if time.monotonic() >= deadline:
                    raise StoryStepFailedError(
                        f"the overall deadline ({options.deadline_seconds:.0f}s) passed before {label}"
                    )
                emit(f"--- {label}")
                step()
        except Exception as error:  # any failure ends the story; the report says where
            failure = f"{type(error).__name__}: {error}"
            emit(f"step failed: {failure}")
        finally:
            story.stop_traffic()
            with contextlib.suppress(Exception):
                story.finish_training()
            with contextlib.suppress(Exception):
                events = story.kubernetes_events()
            runtime_errors = list(runtime.errors)
            if runtime_errors:
                emit("local runtime problems: " + "; ".join(runtime_errors))
    missing = assess_story(timeline.events)
    elapsed = time.monotonic() - started
    events_path, html_path = write_report(
        options.report_dir,
        timeline.events,
        timeline.series,
        missing=missing,
        extra={
            "wallSeconds": round(elapsed, 1),
            "prometheus": use_prometheus,
            "failure": failure,
            "runtimeErrors": runtime_errors,
            "kubernetesEvents": events,
        },
    )
    emit(f"report: {events_path} and {html_path}")
    code = story_exit_code(missing, failure, runtime_errors)
    if missing:
        emit(f"the story is incomplete after {elapsed:.0f}s; missing: {', '.join(missing)}")
    elif code:
        emit(f"every step of the story happened in {elapsed:.0f}s, but something went wrong (see above)")
    else:
        emit(f"every step of the story happened in {elapsed:.0f}s")
    return code
