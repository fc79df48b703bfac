"""Ensemble service latency with the tiny random models (not part of the test run).

Measures, side by side in one process (speed claims are ratios, never absolute times):

1. per mode (fast / balanced / creative) p50 / p95 latency and throughput at concurrency 1, 8, 32,
   through the whole HTTP app (httpx ASGI transport, no network), cache bypassed (unique texts);
2. service overhead at concurrency 1: the service's fast-mode request against the same model calls
   made directly on the backend (brief prompt + the greedy retry the garbage output triggers);
   target ≤ 1.10x;
3. cache-hit p50 (target ≤ 2 ms);
4. overload: 4x and 8x (maxConcurrent + maxWaiting) requests at once; the admitted ones keep a
   bounded p99 that does not grow with the offer (within 1.25x of the p99 of the same admitted
   load offered alone), the rest get 429 at once.

Usage: ``python bench/ensemble_latency.py [--models DIR] [--quick]``; writes
``bench/results/ensemble_latency.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from artisan_common.catalog import load_catalog
from artisan_ensemble.app import create_app
from artisan_ensemble.backends.tiny import TINY_MODELS, TINY_REVISION, make_tiny_models
from artisan_ensemble.backends.transformers_backend import TransformersGenerator
from artisan_ensemble.ensemble.config import resolve_config
from artisan_ensemble.ensemble.keywords import keyword_parse
from artisan_ensemble.ensemble.ports import GenerationRequest
from artisan_ensemble.ensemble.prompts import brief_prompt
from artisan_ensemble.settings import EnsembleSettings

RESULTS = Path(__file__).resolve().parent / "results"
MAX_NEW_TOKENS = 16
MODES = ("fast", "balanced", "creative")
TEXTS = (
    "상큼한 레몬과 꽃향기",
    "a warm woody amber evening",
    "은은한 머스크와 바다향",
    "fresh green tea and mint",
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def config(max_concurrent: int = 4, max_waiting: int = 100) -> Any:
    modes = {m: {"maxNewTokens": MAX_NEW_TOKENS, "timeoutSeconds": 60} for m in MODES}
    return resolve_config(
        {"modes": modes, "queue": {"maxConcurrent": max_concurrent, "maxWaiting": max_waiting}}, "prod"
    )


async def timed_post(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[float, int]:
    started = time.perf_counter()
    response = await client.post("/v1/briefs", json=body)
    return time.perf_counter() - started, response.status_code


async def run_load(
    client: httpx.AsyncClient, mode: str, concurrency: int, total: int, tag: str
) -> dict[str, float]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(n: int) -> None:
        async with gate:
            elapsed, status = await timed_post(
                client, {"text": f"{TEXTS[n % len(TEXTS)]} #{tag}-{n}", "mode": mode}
            )
            if status != 200:
                raise RuntimeError(f"unexpected status {status}")
            latencies.append(elapsed)

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(total)))
    wall = time.perf_counter() - started
    return {
        "requests": total,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p95_ms": 1000 * percentile(latencies, 95),
        "throughput_rps": total / wall,
    }


def direct_fast(generator: TransformersGenerator, text: str, params: Any) -> float:
    """The model work of one fast-mode brief on garbage output: the brief call and its greedy retry."""
    keywords = keyword_parse(text)
    language = keywords.brief.language
    started = time.perf_counter()
    deadline = time.monotonic() + 60
    generator.generate(
        GenerationRequest(
            brief_prompt(text, "fast", language, keywords.terms),
            MAX_NEW_TOKENS,
            params.temperature,
            params.top_p,
            deadline,
        )
    )
    generator.generate(
        GenerationRequest(
            brief_prompt(text, "fast", language, keywords.terms, retry=True),
            MAX_NEW_TOKENS,
            0.0,
            params.top_p,
            deadline,
        )
    )
    return time.perf_counter() - started


async def overhead(
    client: httpx.AsyncClient, primary: TransformersGenerator, rounds: int, params: Any
) -> dict[str, float]:
    service: list[float] = []
    direct: list[float] = []
    for n in range(rounds):  # interleaved, so drifting machine load hits both sides alike
        text = f"{TEXTS[n % len(TEXTS)]} overhead-{n}"
        direct.append(await asyncio.to_thread(direct_fast, primary, text, params))
        elapsed, status = await timed_post(client, {"text": text, "mode": "fast"})
        assert status == 200
        service.append(elapsed)
    return {
        "service_p50_ms": 1000 * statistics.median(service),
        "direct_p50_ms": 1000 * statistics.median(direct),
        "ratio": statistics.median(service) / statistics.median(direct),
        "target": 1.10,
    }


async def cache_hits(client: httpx.AsyncClient, rounds: int) -> dict[str, float]:
    body = {"text": "cache me: 상큼한 시트러스", "mode": "fast"}
    await timed_post(client, body)
    latencies = []
    for _ in range(rounds):
        elapsed, status = await timed_post(client, body)
        assert status == 200
        latencies.append(elapsed)
    return {
        "p50_ms": 1000 * percentile(latencies, 50),
        "p95_ms": 1000 * percentile(latencies, 95),
        "target_ms": 2.0,
    }


OVERLOAD_ROUNDS = 5
"""Rounds of each overload measurement (alone, 4x, 8x); figures are medians over them."""


async def overload(generators: dict[str, TransformersGenerator], catalog: Any) -> dict[str, Any]:
    """Offer 4x and 8x the admission capacity at once: the admitted p99 must not grow with the offer."""
    max_concurrent, max_waiting = 2, 8
    capacity = max_concurrent + max_waiting
    app = create_app(
        EnsembleSettings(),
        config=config(max_concurrent, max_waiting),
        generators=generators,  # type: ignore[arg-type]
        catalog=catalog,
    )
    result: dict[str, Any] = {"max_concurrent": max_concurrent, "max_waiting": max_waiting}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client:
            # The same admitted load without the excess: `capacity` requests like the burst's, offered
            # at once, so they too run max_concurrent at a time. Backpressure works when the excess
            # (refused at once with 429) leaves the admitted requests' p99 near this one's. With only
            # `capacity` admitted requests a round's p99 is its slowest one, and the tiny models'
            # random generation lengths make that noisy: each figure is the median over rounds.

            async def burst(offered: int, label: str) -> list[tuple[float, int]]:
                return list(
                    await asyncio.gather(
                        *(
                            timed_post(client, {"text": f"burst {label}-{n}", "mode": "fast"})
                            for n in range(offered)
                        )
                    )
                )

            alone: list[float] = []
            for round_ in range(OVERLOAD_ROUNDS):
                answered = await burst(capacity, f"alone{round_}")
                assert all(status == 200 for _, status in answered)
                alone.append(percentile([t for t, _ in answered], 99))
            result["rounds"] = OVERLOAD_ROUNDS
            result["capacity_alone_p99_ms"] = 1000 * statistics.median(alone)
            result["p99_bound_ms"] = 1.25 * result["capacity_alone_p99_ms"]
            for factor in (4, 8):
                offered = factor * capacity
                p99s, refused_p50s, counts = [], [], []
                for round_ in range(OVERLOAD_ROUNDS):
                    results = await burst(offered, f"{factor}x{round_}")
                    admitted = [t for t, status in results if status == 200]
                    refused = [t for t, status in results if status == 429]
                    p99s.append(percentile(admitted, 99))
                    refused_p50s.append(percentile(refused, 50))
                    counts.append((len(admitted), len(refused)))
                result[f"{factor}x"] = {
                    "offered": offered,
                    "admitted_per_round": [a for a, _ in counts],
                    "rejected_429_per_round": [r for _, r in counts],
                    "other_per_round": [offered - a - r for a, r in counts],
                    "admitted_p99_ms": 1000 * statistics.median(p99s),
                    "rejected_p50_ms": 1000 * statistics.median(refused_p50s),
                }
    return result


async def main_async(models: Path, quick: bool) -> dict[str, Any]:
    catalog = load_catalog()
    generators = {
        role: TransformersGenerator(role, name, models / role, TINY_REVISION, device="cpu")
        for role, name in TINY_MODELS.items()
    }
    results: dict[str, Any] = {
        "setup": {
            "models": {r: g.info.parameters for r, g in generators.items()},
            "max_new_tokens": MAX_NEW_TOKENS,
            "torch_threads": torch.get_num_threads(),
            "transport": "httpx.ASGITransport (in-process, no network)",
        }
    }
    app = create_app(EnsembleSettings(), config=config(), generators=generators, catalog=catalog)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client:
            await run_load(client, "fast", 1, 3, "warmup")
            load: dict[str, dict[str, Any]] = {}
            for mode in MODES:
                load[mode] = {}
                for concurrency in (1, 8, 32):
                    total = (8 if quick else 16) if concurrency == 1 else (2 if quick else 3) * concurrency
                    load[mode][str(concurrency)] = await run_load(
                        client, mode, concurrency, total, f"{mode}{concurrency}"
                    )
            results["load"] = load
            params = app.state.runtime.service.config.modes.fast
            results["overhead_c1"] = await overhead(
                client, generators["primary"], 10 if quick else 30, params
            )
            results["cache_hit"] = await cache_hits(client, 100 if quick else 300)
    results["overload"] = await overload(generators, catalog)
    return results


def print_table(results: dict[str, Any]) -> None:
    print(f"{'mode':<10}{'conc':>6}{'reqs':>6}{'p50 ms':>10}{'p95 ms':>10}{'req/s':>9}")
    for mode, rows in results["load"].items():
        for concurrency, row in rows.items():
            print(
                f"{mode:<10}{concurrency:>6}{row['requests']:>6}{row['p50_ms']:>10.1f}"
                f"{row['p95_ms']:>10.1f}{row['throughput_rps']:>9.2f}"
            )
    o = results["overhead_c1"]
    print(
        f"\nservice vs direct backend (fast, c=1): {o['service_p50_ms']:.1f} ms"
        f" vs {o['direct_p50_ms']:.1f} ms"
        f" = {o['ratio']:.3f}x (target ≤ {o['target']:.2f}x)"
    )
    c = results["cache_hit"]
    print(f"cache hit: p50 {c['p50_ms']:.2f} ms, p95 {c['p95_ms']:.2f} ms (target p50 ≤ {c['target_ms']} ms)")
    v = results["overload"]
    for factor in ("4x", "8x"):
        row = v[factor]
        print(
            f"{factor} overload ({v['rounds']} rounds): {row['offered']} offered, admitted"
            f" {span(row['admitted_per_round'])}, 429 {span(row['rejected_429_per_round'])}"
            f" (p50 {row['rejected_p50_ms']:.1f} ms), other {span(row['other_per_round'])};"
            f" admitted p99 {row['admitted_p99_ms']:.0f} ms (bound {v['p99_bound_ms']:.0f} ms ="
            f" 1.25 x {v['capacity_alone_p99_ms']:.0f} ms, the same admitted load alone)"
        )


def span(counts: list[int]) -> str:
    """``10`` when every round gave 10, ``9-10`` otherwise."""
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, help="tiny models directory (built in a temp dir when unset)")
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1 on a shared machine)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models or Path(tmp)
        if args.models is None:
            make_tiny_models(models)
        results = asyncio.run(main_async(models, args.quick))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "ensemble_latency.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
