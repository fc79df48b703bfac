"""Operator reconcile benchmark: Artisan's operator vs the floor (a trivial kopf operator), side by side.

For each operator, on a fresh emulated API (``artisan_operator.sandbox``):

1. latency: create N TrainingRuns and N ModelPins; per object, the time from the object's
   creation to the creation of its last child, measured inside the API server (p50, p99),
   and throughput (objects fully reconciled per second). Once per API write latency: 0 ms (the
   emulator answers as fast as its CPU allows: on a small machine the operators, the API and
   the client creating the objects share the cores, so this measures CPU per object), and 5 ms
   (each write waits like an API server's etcd commit: this measures what a cluster would show,
   round trips included). Per object, also the API requests the operator made, and the CPU time
   of the operator's process and of the API's (which share the cores);
2. memory: the operator's peak RSS (VmHWM of its own process) after the first latency run, and
   again on a fresh API with M objects in total.

The operators run in their own processes (``--serve``) so their RSS is theirs alone; the API
runs in this process. The floor creates one ConfigMap per object; Artisan creates the real
children (TrainingRun: Job, PVC, ConfigMap, Service; ModelPin: Deployment, Service, routing
ConfigMap). Each latency run is repeated ``--rounds`` times, floor and Artisan alternating, and the
ratio reported is the median of the rounds' ratios (a shared VM's load swings one run's figures).
Targets: Artisan's p50 within 1.5x of the floor's; RSS under 200 MB with 1000 objects.

    .venv/bin/python bench/operator_reconcile.py [--objects 200] [--memory-objects 1000] \
        [--api-write-latency-ms 0 5] [--rounds 3]

Prints a table and writes bench/results/operator_reconcile-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import yaml
from rich.console import Console
from rich.table import Table

from artisan_operator.sandbox.emulator import SandboxEmulator
from artisan_operator.sandbox.floor import floor_operator_main
from artisan_operator.sandbox.runner import OperatorThread, artisan_operator_main
from artisan_operator.sandbox.server import EmulatorThread, RunningApi
from artisan_operator.sandbox.store import WatchEvent

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
GROUP, VERSION, NAMESPACE = "artisan.dev", "v1alpha1", "bench"
CHILDREN: dict[str, dict[str, frozenset[str]]] = {
    "artisan": {
        "TrainingRun": frozenset({"Job", "PersistentVolumeClaim", "ConfigMap", "Service"}),
        "ModelPin": frozenset({"Deployment", "Service", "ConfigMap"}),
    },
    "floor": {"TrainingRun": frozenset({"ConfigMap"}), "ModelPin": frozenset({"ConfigMap"})},
}
PLURALS = {"TrainingRun": "trainingruns", "ModelPin": "modelpins"}


@dataclass
class SideResult:
    operator: str
    api_write_latency_ms: float
    round: int
    objects: int
    reconciled: int
    p50_ms: float
    p99_ms: float
    throughput_per_s: float
    peak_rss_mb: float
    memory_objects: int
    memory_reconciled: int
    peak_rss_mb_at_memory_objects: float
    api_requests_per_object: float
    """Requests the operator made (watches and Events included) until the last object was done."""
    operator_cpu_ms_per_object: float
    """The operator process's CPU time (user + system) from the first create until the last object
    was done, per object: what one object costs the operator, whatever the latency."""
    api_cpu_ms_per_object: float
    """The same for this process (the emulated API, and the benchmark creating the objects): it
    shares the machine's cores with the operator."""


class ChildClock:
    """Listens to the API server's changes: when each owner was created, when each child."""

    def __init__(self, expected: dict[str, frozenset[str]]) -> None:
        self.expected = expected
        self.created: dict[str, float] = {}
        self.kind_of: dict[str, str] = {}
        self.children: dict[str, dict[str, float]] = defaultdict(dict)
        self.done: dict[str, float] = {}
        self.lock = threading.Lock()

    def __call__(self, event: WatchEvent) -> None:
        if event.type != "ADDED":
            return
        now = time.monotonic()
        meta = event.obj["metadata"]
        kind = event.obj["kind"]
        with self.lock:
            if kind in self.expected and event.obj["apiVersion"] == f"{GROUP}/{VERSION}":
                self.created[meta["uid"]] = now
                self.kind_of[meta["uid"]] = kind
            for ref in meta.get("ownerReferences") or []:
                owner = ref.get("uid")
                if owner in self.kind_of:
                    self.children[owner].setdefault(kind, now)
                    if set(self.children[owner]) >= self.expected[self.kind_of[owner]]:
                        self.done.setdefault(owner, now)

    def latencies(self) -> list[float]:
        with self.lock:
            return sorted(self.done[uid] - self.created[uid] for uid in self.done)


class CountingEmulator(SandboxEmulator):
    """The sandbox's API, counting the requests it serves (the benchmark's own creates are subtracted)."""

    served = 0

    async def _handle(self, request: Any) -> Any:
        self.served += 1
        return await super()._handle(request)


def sample_bodies() -> dict[str, dict[str, Any]]:
    bodies = {}
    for kind, path in (("TrainingRun", "trainingrun.yaml"), ("ModelPin", "modelpin.yaml")):
        body = yaml.safe_load((REPO / "configs" / "samples" / path).read_text())
        body["metadata"] = {"namespace": NAMESPACE}
        bodies[kind] = body
    return bodies


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(fraction * (len(values) - 1)))]


def start_operator(which: str, api: RunningApi) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", which, "--kubeconfig", str(api.kubeconfig_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "READY":
        process.kill()
        raise RuntimeError(f"the {which} operator did not start: {line!r}")
    return process


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_operator(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()  # the child stops its operator gracefully on EOF
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_side(
    which: str, count: int, timeout: float, write_latency_ms: float = 0.0
) -> tuple[list[float], float, float, int, float, float, float]:
    """(latencies, throughput, peak RSS MB, reconciled, API requests per object, operator CPU ms per
    object, API CPU ms per object) for count TrainingRuns + count ModelPins."""
    clock = ChildClock(CHILDREN[which])
    bodies = sample_bodies()
    emulator = CountingEmulator(request_log_limit=100, write_latency_seconds=write_latency_ms / 1000)
    with EmulatorThread(emulator) as api, api.api_client() as client:
        api.emulator.store.subscribe(clock)
        custom = kubernetes.client.CustomObjectsApi(client)
        process = start_operator(which, api)
        try:
            served_before = emulator.served
            cpu_before = cpu_seconds(process.pid)
            api_cpu_before = time.process_time()
            started = time.monotonic()
            for index in range(count):
                for kind, body in bodies.items():
                    obj = {
                        **body,
                        "metadata": {"name": f"{kind.lower()}-{index:04d}", "namespace": NAMESPACE},
                    }
                    custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURALS[kind], obj)
            deadline = started + timeout
            while len(clock.done) < 2 * count and time.monotonic() < deadline:
                time.sleep(0.1)
            latencies = clock.latencies()
            finished = max(clock.done.values()) if clock.done else time.monotonic()
            requests = emulator.served - served_before - 2 * count  # less the benchmark's creates
            cpu = cpu_seconds(process.pid) - cpu_before
            api_cpu = time.process_time() - api_cpu_before
            rss = peak_rss_mb(process.pid)
        finally:
            stop_operator(process)
    throughput = len(latencies) / max(finished - started, 1e-9)
    per_object = 1000 / (2 * count)
    return (
        latencies,
        throughput,
        rss,
        len(latencies),
        requests / (2 * count),
        cpu * per_object,
        api_cpu * per_object,
    )


def round_ratios(results: list[SideResult]) -> list[float]:
    """Artisan's p50 over the floor's, per round in which both ran (one API write latency)."""
    p50 = {(r.round, r.operator): r.p50_ms for r in results}
    rounds = sorted({r.round for r in results})
    return [
        p50[n, "artisan"] / p50[n, "floor"] for n in rounds if (n, "artisan") in p50 and (n, "floor") in p50
    ]


def serve(which: str, kubeconfig: Path) -> int:
    """Child process: run one operator until stdin closes."""
    logging.basicConfig(level=logging.ERROR)
    main = artisan_operator_main(kubeconfig) if which == "artisan" else floor_operator_main(kubeconfig)
    operator = OperatorThread(main).start(60)
    print("READY", flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or exits)
    operator.stop(60)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=200, help="TrainingRuns and as many ModelPins")
    parser.add_argument("--memory-objects", type=int, default=1000, help="objects in total for the RSS run")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds per run to reconcile everything"
    )
    parser.add_argument(
        "--api-write-latency-ms",
        type=float,
        nargs="+",
        default=[0.0, 5.0],
        help="how long each write waits in the API (one latency run per value)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="latency runs per side and API write latency, the sides alternating (the ratio reported "
        "is the median of the rounds' ratios: one run's swings with the machine's load)",
    )
    parser.add_argument("--only", choices=["artisan", "floor"], help="run one side only")
    parser.add_argument("--serve", choices=["artisan", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.kubeconfig)
    # On SIGTERM (e.g. `timeout`), unwind normally so the operator processes are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    console = Console(width=max(Console().width, 120))
    results: list[SideResult] = []
    memory: dict[str, tuple[float, int]] = {}
    runs = [
        (latency, round_index, which)
        for latency in args.api_write_latency_ms
        for round_index in range(args.rounds)
        for which in ("floor", "artisan")
        if not args.only or which == args.only
    ]
    for latency, round_index, which in runs:
        console.print(
            f"[bold]{which}[/bold]: {args.objects} TrainingRuns + {args.objects} ModelPins, "
            f"API writes +{latency:g} ms, round {round_index + 1}/{args.rounds}"
        )
        latencies, throughput, rss, reconciled, per_object, cpu_ms, api_cpu_ms = run_side(
            which, args.objects, args.timeout, latency
        )
        if which not in memory:
            console.print(f"[bold]{which}[/bold]: {args.memory_objects} objects for the memory run")
            _, _, memory_rss, memory_reconciled, *_ = run_side(which, args.memory_objects // 2, args.timeout)
            memory[which] = (memory_rss, memory_reconciled)
        memory_rss, memory_reconciled = memory[which]
        results.append(
            SideResult(
                operator=which,
                api_write_latency_ms=latency,
                round=round_index + 1,
                objects=2 * args.objects,
                reconciled=reconciled,
                p50_ms=1000 * percentile(latencies, 0.50),
                p99_ms=1000 * percentile(latencies, 0.99),
                throughput_per_s=throughput,
                peak_rss_mb=rss,
                memory_objects=2 * (args.memory_objects // 2),
                memory_reconciled=memory_reconciled,
                peak_rss_mb_at_memory_objects=memory_rss,
                api_requests_per_object=per_object,
                operator_cpu_ms_per_object=cpu_ms,
                api_cpu_ms_per_object=api_cpu_ms,
            )
        )

    table = Table(title="Operator reconcile: create -> children created (inside the API server)")
    for column in (
        "operator",
        "API write +ms",
        "round",
        "reconciled",
        "p50 ms",
        "p99 ms",
        "objects/s",
        "peak RSS MB",
        "RSS MB @ memory run",
        "API req/object",
        "operator CPU ms/object",
        "API CPU ms/object",
    ):
        table.add_column(column, justify="right")
    for result in results:
        table.add_row(
            result.operator,
            f"{result.api_write_latency_ms:g}",
            str(result.round),
            f"{result.reconciled}/{result.objects}",
            f"{result.p50_ms:.0f}",
            f"{result.p99_ms:.0f}",
            f"{result.throughput_per_s:.1f}",
            f"{result.peak_rss_mb:.0f}",
            f"{result.peak_rss_mb_at_memory_objects:.0f} "
            f"({result.memory_reconciled}/{result.memory_objects})",
            f"{result.api_requests_per_object:.1f}",
            f"{result.operator_cpu_ms_per_object:.1f}",
            f"{result.api_cpu_ms_per_object:.1f}",
        )
    console.print(table)
    summary: dict[str, Any] = {"p50_ratio_vs_floor": {}, "p50_ratio_vs_floor_per_round": {}}
    for latency in args.api_write_latency_ms:
        ratios = round_ratios([r for r in results if r.api_write_latency_ms == latency])
        if ratios:
            median = statistics.median(ratios)
            summary["p50_ratio_vs_floor"][f"{latency:g}ms"] = median
            summary["p50_ratio_vs_floor_per_round"][f"{latency:g}ms"] = ratios
            console.print(
                f"API writes +{latency:g} ms: Artisan p50 / floor p50 = {median:.2f} (median of "
                f"{len(ratios)} rounds; {min(ratios):.2f}-{max(ratios):.2f}) (target <= 1.5)"
            )
    artisan = next((r for r in results if r.operator == "artisan"), None)
    if artisan is not None:
        rss = artisan.peak_rss_mb_at_memory_objects
        summary["artisan_rss_mb_at_memory_objects"] = rss
        console.print(f"Artisan peak RSS with {artisan.memory_objects} objects = {rss:.0f} MB (target < 200)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"operator_reconcile-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "operator_reconcile",
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "args": {k: v for k, v in vars(args).items() if k not in ("serve", "kubeconfig")},
                "results": [asdict(result) for result in results],
                "summary": summary,
            },
            indent=2,
        )
    )
    console.print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
