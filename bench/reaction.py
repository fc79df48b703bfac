"""Canary reaction benchmark: time from a metric breach to weight 0 in the routing table.

Everything real except the cluster: the sandbox's emulated API and simulated runtime, Artisan's
operator in-process, Debian's Prometheus scraping a loopback exporter every second. The Canary has one
``setWeight: 20`` step and a long inline analysis of ``e2e_error_rate`` (interval 2 s,
``successCondition: result < 0.05``). Per trial:

1. wait until the canary is at weight 20 and one measurement has passed;
2. flip the exporter's value to 0.5 (the breach) and poll the routing ConfigMap every 10 ms until
   ``canary.json`` says weight 0: that time is the reaction;
3. restore the value and retry the rollout (``artisan.dev/action: retry@<n>``).

Target: p95 ≤ interval + 3 s = 5 s. Flagger, with its default analysis settings, acts on a breach
after interval × threshold = 60 s (the figure the issue gives); the ratio 60 s / ours is reported.

    .venv/bin/python bench/reaction.py [--trials 20]

Prints a table and writes bench/results/reaction-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import kubernetes.client
from rich.console import Console
from rich.table import Table

from artisan_common.routing import compose
from artisan_operator.main import run_operator
from artisan_operator.sandbox.prometheus import ControlledExporter, PrometheusServer
from artisan_operator.sandbox.runtime import SimulatedRuntime
from artisan_operator.sandbox.server import EmulatorThread
from artisan_operator.sandbox.testing import OperatorRunner, wait_for
from artisan_operator.settings import Settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
GROUP, VERSION, NS = "artisan.dev", "v1alpha1", "default"
INTERVAL_SECONDS = 2.0
SCRAPE_INTERVAL = "1s"
FLAGGER_DEFAULT_SECONDS = 60.0
"""Flagger rolls back after ``threshold`` failed checks taken every ``interval``: 60 s with the
defaults the issue names (interval × threshold)."""
QUERY = 'e2e_error_rate{bench="reaction"}'


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()

    reactions: list[float] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        ControlledExporter() as exporter,
        EmulatorThread(kubeconfig_path=Path(tmp) / "kubeconfig") as api,
        api.api_client() as client,
        SimulatedRuntime(client, interval=0.2),
    ):
        exporter.set("e2e_error_rate", 0.0, bench="reaction")
        prometheus = PrometheusServer(
            Path(tmp) / "prometheus", [exporter.target], scrape_interval=SCRAPE_INTERVAL
        )
        with prometheus:
            prometheus.wait_for_sample(QUERY, timeout=60)
            settings = Settings(
                kubeconfig=api.kubeconfig_path,
                metrics_enabled=False,
                prometheus_url=prometheus.url,
                timer_interval_seconds=0.5,
                timer_idle_seconds=0,
                resync_interval_seconds=5.0,
                api_threads=4,
                metric_query_timeout_seconds=2.0,
            )

            def operator(stop: threading.Event, ready: threading.Event) -> Coroutine[Any, Any, None]:
                return run_operator(settings, stop_flag=stop, ready_flag=ready)

            runner = OperatorRunner(operator)
            runner.start()
            try:
                reactions = run_trials(client, exporter, args.trials)
            finally:
                runner.stop()

    p50, p95 = statistics.median(reactions), percentile(reactions, 95)
    target = INTERVAL_SECONDS + 3.0
    result = {
        "benchmark": "canary reaction: metric breach → weight 0 in the routing table",
        "trials": len(reactions),
        "analysis_interval_seconds": INTERVAL_SECONDS,
        "scrape_interval": SCRAPE_INTERVAL,
        "reaction_seconds": reactions,
        "p50_seconds": p50,
        "p95_seconds": p95,
        "max_seconds": max(reactions),
        "target_p95_seconds": target,
        "meets_target": p95 <= target,
        "flagger_default_seconds": FLAGGER_DEFAULT_SECONDS,
        "speedup_vs_flagger_p50": FLAGGER_DEFAULT_SECONDS / p50,
        "speedup_vs_flagger_p95": FLAGGER_DEFAULT_SECONDS / p95,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    table = Table(title="Canary reaction (breach → weight 0)")
    for column in ("trials", "p50 s", "p95 s", "max s", "target p95 s", "Flagger s", "ratio (p95)"):
        table.add_column(column)
    table.add_row(
        str(len(reactions)),
        f"{p50:.2f}",
        f"{p95:.2f}",
        f"{max(reactions):.2f}",
        f"{target:.1f}",
        f"{FLAGGER_DEFAULT_SECONDS:.0f}",
        f"{FLAGGER_DEFAULT_SECONDS / p95:.1f}x faster",
    )
    Console().print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"reaction-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


def run_trials(client: kubernetes.client.ApiClient, exporter: ControlledExporter, trials: int) -> list[float]:
    custom = kubernetes.client.CustomObjectsApi(client)
    core = kubernetes.client.CoreV1Api(client)

    def weight() -> int | None:
        data = core.read_namespaced_config_map("pin-routing", NS).data or {}
        table = compose(data)
        return table.canary.weight if table.canary is not None else None

    def get(plural: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, NS, plural, name)
        return obj

    pin = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelPin",
        "metadata": {"name": "pin", "namespace": NS},
        "spec": {
            "models": {"primary": {"name": "qwen", "source": "/models/qwen", "revision": "1"}},
            "replicas": 2,
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "modelpins", pin)
    wait_for(lambda: get("modelpins", "pin").get("status", {}).get("stable"), timeout=60)
    metric = {
        "name": "errors",
        "interval": f"{INTERVAL_SECONDS:g}s",
        "count": 10_000,
        "successCondition": "result < 0.05",
        "provider": {"prometheus": {"query": QUERY}},
    }
    canary = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Canary",
        "metadata": {"name": "cny", "namespace": NS},
        "spec": {
            "targetRef": {"name": "pin"},
            "steps": [{"setWeight": 20}, {"analysis": {"metrics": [metric]}}],
            "abortScaleDownDelaySeconds": 600,
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "canaries", canary)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "modelpins", "pin", {"spec": {"models": {"primary": {"revision": "2"}}}}
    )
    reactions: list[float] = []
    for trial in range(trials):
        wait_for(lambda: weight() == 20, timeout=60, message=f"trial {trial}: weight 20")

        def passed() -> bool:
            metrics = (get("canaries", "cny").get("status") or {}).get("metrics") or []
            return any(m.get("successful", 0) >= 1 for m in metrics)

        wait_for(passed, timeout=60, message=f"trial {trial}: a passing measurement")
        exporter.set("e2e_error_rate", 0.5, bench="reaction")
        breached = time.monotonic()
        reacted = poll(lambda: weight() == 0, timeout=60)
        reactions.append(reacted - breached)
        print(f"trial {trial + 1:2d}: {reacted - breached:.2f}s")
        exporter.set("e2e_error_rate", 0.0, bench="reaction")
        wait_for(lambda: get("canaries", "cny")["status"].get("phase") == "Degraded", timeout=30)
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            "canaries",
            "cny",
            {"metadata": {"annotations": {"artisan.dev/action": f"retry@{trial}"}}},
        )
    return reactions


def poll(predicate: Callable[[], bool], timeout: float) -> float:
    """The monotonic time at which ``predicate`` first held (polled every 10 ms)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the canary did not react")
        time.sleep(0.01)
    return time.monotonic()


if __name__ == "__main__":
    main()
