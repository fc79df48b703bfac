"""Metric providers against real HTTP endpoints on loopback: a Prometheus API fake and an exporter."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp.web
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from artisan_operator.metrics.providers import (
    BUILTIN_PROMQL,
    PrometheusProvider,
    ScrapeProvider,
    parse_selector,
    render_query,
    variant_statistics,
)
from artisan_operator.policy.statistics import SufficientStats

REPLIES: dict[str, object] = {
    "one": {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.02"]}]},
    },
    "empty": {"status": "success", "data": {"resultType": "vector", "result": []}},
    "nan": {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]},
    },
    "scalar": {"status": "success", "data": {"resultType": "scalar", "result": [1, "3.5"]}},
    "two": {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"variant": "a"}, "value": [1, "1"]},
                {"metric": {"variant": "b"}, "value": [1, "2"]},
            ],
        },
    },
    "bad": {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"},
}


@pytest.fixture
async def prometheus_api() -> AsyncIterator[str]:
    async def handle(request: aiohttp.web.Request) -> aiohttp.web.Response:
        reply = REPLIES[request.query["query"]]
        return aiohttp.web.Response(
            text=json.dumps(reply), status=400 if reply.get("status") == "error" else 200
        )  # type: ignore[union-attr]

    app = aiohttp.web.Application()
    app.router.add_get("/api/v1/query", handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_prometheus_provider_results(prometheus_api: str) -> None:
    p = PrometheusProvider(prometheus_api)
    assert (await p.query("one")).value == 0.02
    assert (await p.query("scalar")).value == 3.5
    empty = await p.query("empty")
    assert (empty.value, empty.error) == (None, None)
    nan = await p.query("nan")
    assert nan.value is not None
    assert nan.value != nan.value
    two = await p.query("two")
    assert "2 series" in (two.error or "")
    assert "parse error" in ((await p.query("bad")).error or "")
    assert await p.query_by("two", "variant") == {"a": 1.0, "b": 2.0}


async def test_prometheus_down_is_an_error_not_an_exception() -> None:
    p = PrometheusProvider("http://127.0.0.1:9", timeout=1.0)
    result = await p.query("up")
    assert result.is_error
    assert "unreachable" in (result.error or "")


@pytest.fixture
async def exporter() -> AsyncIterator[tuple[str, CollectorRegistry]]:
    registry = CollectorRegistry()

    async def handle(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=generate_latest(registry), content_type="text/plain")

    app = aiohttp.web.Application()
    app.router.add_get("/metrics", handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/metrics", registry
    await runner.cleanup()


async def test_scrape_provider_selectors_and_errors(exporter: tuple[str, CollectorRegistry]) -> None:
    url, registry = exporter
    routed = Counter("artisan_gateway_routed_total", "r", ["track", "mode"], registry=registry)
    errors = Counter("artisan_gateway_upstream_errors_total", "e", ["track"], registry=registry)
    routed.labels("canary", "fast").inc(90)
    routed.labels("canary", "balanced").inc(10)
    routed.labels("stable", "fast").inc(1000)
    errors.labels("canary").inc(0)
    p = ScrapeProvider(lambda: [url])
    assert (await p.query('artisan_gateway_routed_total{track="canary"}')).value == 100
    assert (await p.query('sum(artisan_gateway_routed_total{track="stable",mode="fast"})')).value == 1000
    assert (await p.query('nothing_here{a="b"}')).value is None
    assert "not 'rate" in ((await p.query("rate(x[1m])")).error or "")
    assert await p.query_by('artisan_gateway_routed_total{track="canary"}', "mode") == {
        "fast": 90.0,
        "balanced": 10.0,
    }
    # errorRate: increments between two measurements.
    assert (await p.builtin("errorRate")).value is None  # baseline
    routed.labels("canary", "fast").inc(80)
    errors.labels("canary").inc(20)
    assert (await p.builtin("errorRate")).value == pytest.approx(0.2)
    down = ScrapeProvider(lambda: ["http://127.0.0.1:9/metrics"], timeout=1.0)
    assert (await down.query("up")).is_error


async def test_variant_statistics_from_gateway_counters(exporter: tuple[str, CollectorRegistry]) -> None:
    url, registry = exporter
    labels = ["experiment", "variant", "metric"]
    count = Counter("artisan_variant_observations_total", "n", labels, registry=registry)
    total = Counter("artisan_variant_sum_total", "s", labels, registry=registry)
    squares = Counter("artisan_variant_sum_squares_total", "q", labels, registry=registry)
    for variant, values in {"control": [1.0, -2.0, 3.0], "treatment": [4.0, 5.0]}.items():
        for v in values:
            count.labels("exp", variant, "reward").inc()
            if v >= 0:
                total.labels("exp", variant, "reward").inc(v)
            else:
                total.labels("exp", variant, "reward_neg").inc(-v)
            squares.labels("exp", variant, "reward").inc(v * v)
    stats = await variant_statistics(ScrapeProvider(lambda: [url]), "exp", "reward", prometheus=False)
    assert stats == {
        "control": SufficientStats.of([1.0, -2.0, 3.0]),
        "treatment": SufficientStats.of([4.0, 5.0]),
    }


def test_builtin_queries_render_and_selectors_parse() -> None:
    query = render_query(BUILTIN_PROMQL["latencyP95"], {"namespace": "prod", "window": "1m"})
    assert 'namespace="prod"' in query
    assert "[1m]" in query
    assert "{{" not in render_query(BUILTIN_PROMQL["errorRate"], {"window": "30s"})
    assert parse_selector('up{job="x", pod="p"}') == ("up", {"job": "x", "pod": "p"})
