"""Metric providers against real HTTP endpoints on loopback: a Prometheus API fake and an exporter."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import aiohttp.web
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from artisan_operator.api.canary import CanarySpec, CanaryStatus
from artisan_operator.handlers.canary import canary_scraper, measure
from artisan_operator.handlers.context import OperatorContext
from artisan_operator.metrics.operator_metrics import OperatorMetrics
from artisan_operator.metrics.providers import (
    BUILTIN_PROMQL,
    PrometheusProvider,
    ScrapeProvider,
    counter_increase,
    parse_selector,
    render_query,
    variant_assignments,
    variant_statistics,
)
from artisan_operator.policy.canary import CanaryObservation, CanaryPlan, decide_canary
from artisan_operator.policy.statistics import SufficientStats
from artisan_operator.settings import Settings

NS = "default"

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
    query = render_query(
        BUILTIN_PROMQL["latencyP95"], {"namespace": "prod", "modelpin": "pin", "window": "1m"}
    )
    assert 'namespace="prod"' in query
    assert 'modelpin="pin"' in query  # two ModelPins rolling out in one namespace are measured apart
    assert "[1m]" in query
    assert "{{" not in render_query(
        BUILTIN_PROMQL["errorRate"], {"namespace": "prod", "modelpin": "pin", "window": "30s"}
    )
    assert parse_selector('up{job="x", pod="p"}') == ("up", {"job": "x", "pod": "p"})


T0 = datetime(2025, 1, 1, tzinfo=UTC)


def requests_counter(registry: CollectorRegistry) -> Counter:
    """The ensemble's own request counter (``HttpMetrics.requests``)."""
    return Counter("artisan_http_requests_total", "r", ["method", "route", "status"], registry=registry)


async def test_scrape_error_rate_is_the_canary_pods_own_5xx_share_since_the_baseline(
    exporter: tuple[str, CollectorRegistry],
) -> None:
    url, registry = exporter
    requests = requests_counter(registry)
    requests.labels("POST", "/v1/briefs", "200").inc(50)
    p = ScrapeProvider(lambda: [url])
    # The first call only takes the baseline: nothing to classify (not an empty, Inconclusive value).
    first = await p.builtin("errorRate", "errors", now=T0)
    assert (first.baseline, first.value, first.error) == (True, None, None)
    assert p.baselines() == {"errors": T0}
    requests.labels("POST", "/v1/briefs", "200").inc(72)
    requests.labels("POST", "/v1/briefs", "500").inc(6)
    requests.labels("POST", "/v1/feedback", "503").inc(2)
    requests.labels("GET", "/readyz", "503").inc(100)  # probes are not user traffic
    requests.labels("POST", "/v1/briefs", "422").inc(20)  # a client error is the client's
    second = await p.builtin("errorRate", "errors", now=T0 + timedelta(seconds=10))
    assert second.value == pytest.approx(8 / 100)
    assert not second.baseline
    # No answers since the last call: no data (Inconclusive), never a silent pass.
    assert (await p.builtin("errorRate", "errors", now=T0 + timedelta(seconds=20))).value is None


async def test_scrape_error_rate_baselines_are_per_metric_key_and_per_analysis(
    exporter: tuple[str, CollectorRegistry],
) -> None:
    url, registry = exporter
    requests = requests_counter(registry)
    requests.labels("POST", "/v1/briefs", "200").inc(10)
    p = ScrapeProvider(lambda: [url])
    assert (await p.builtin("errorRate", "errors", now=T0)).baseline
    requests.labels("POST", "/v1/briefs", "500").inc(10)
    assert (await p.builtin("errorRate", "errors", now=T0 + timedelta(seconds=1))).value == 1.0
    # The background analysis of the same metric has its own baseline (not the inline one's delta).
    assert (await p.builtin("errorRate", "background/errors", now=T0 + timedelta(seconds=1))).baseline
    requests.labels("POST", "/v1/briefs", "200").inc(10)
    assert (await p.builtin("errorRate", "background/errors", now=T0 + timedelta(seconds=2))).value == 0.0
    # An analysis that started after the baseline (a new step, a retry) takes a fresh one.
    later = T0 + timedelta(seconds=3)
    stale = await p.builtin("errorRate", "errors", now=later, since=later)
    assert stale.baseline
    assert p.baselines()["errors"] == later


async def test_scrape_error_rate_errors_when_no_canary_pod_answers() -> None:
    p = ScrapeProvider(lambda: [])
    assert "no targets" in ((await p.builtin("errorRate", "errors", now=T0)).error or "")
    down = ScrapeProvider(lambda: ["http://127.0.0.1:9/metrics"], timeout=1.0)
    assert (await down.builtin("errorRate", "errors", now=T0)).is_error
    assert down.baselines() == {}  # a failed scrape is no baseline
    assert "needs Prometheus" in ((await down.builtin("latencyP95")).error or "")


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({"a": (1, 10)}, {"a": (3, 30)}, (2, 20)),  # seen both times
        ({}, {"a": (1, 5)}, (1, 5)),  # new since the baseline
        ({"a": (4, 40)}, {"a": (1, 6)}, (1, 6)),  # restarted: counts from zero
        ({"a": (4, 40)}, {}, (0, 0)),  # gone since the baseline
        ({"a": (1, 10), "b": (0, 5)}, {"a": (2, 20), "b": (0, 15)}, (1, 20)),  # summed over pods
    ],
)
def test_counter_increase_table(
    before: dict[str, tuple[float, float]],
    after: dict[str, tuple[float, float]],
    expected: tuple[float, float],
) -> None:
    assert counter_increase(before, after) == expected


def test_builtin_error_rate_query_counts_zero_errors_when_no_5xx_series_exists() -> None:
    query = render_query(
        BUILTIN_PROMQL["errorRate"], {"namespace": "prod", "modelpin": "pin", "window": "30s"}
    )
    assert "or vector(0)" in query
    assert 'track="canary"' in query
    assert 'route=~"/v1/.+"' in query


async def test_canary_error_rate_without_prometheus_baselines_then_measures_then_aborts(
    exporter: tuple[str, CollectorRegistry],
) -> None:
    """The embedded default (no Prometheus): the handler's measure() scrapes the canary pods, the
    first pass only takes the baseline (no Inconclusive pause), the next interval measures."""
    url, registry = exporter
    requests = requests_counter(registry)
    requests.labels("POST", "/v1/briefs", "200").inc(30)  # served before the analysis started
    context = OperatorContext(settings=Settings(prometheus_url=None), metrics=OperatorMetrics())
    memo: dict[str, object] = {}
    metric = {
        "name": "errors",
        "interval": "10s",
        "count": 3,
        "successCondition": "result < 0.05",
        "provider": {"builtin": {"name": "errorRate"}},
    }
    spec = CanarySpec.model_validate(
        {"targetRef": {"name": "pin"}, "steps": [{"setWeight": 20}, {"analysis": {"metrics": [metric]}}]}
    )

    async def one_pass(previous: CanaryStatus | None, now: datetime) -> CanaryPlan:
        observation = CanaryObservation(
            "v2",
            "v1",
            replicas=2,
            generation=1,
            previous=previous,
            baselines=canary_scraper(memo).baselines(),
        )
        plan = decide_canary(spec, observation, now)
        if plan.due:
            samples = await measure(context, memo, plan.due, {"namespace": NS}, [url], now=now)
            plan = decide_canary(spec, replace(observation, samples=samples), now)
        return plan

    plan = await one_pass(None, T0)
    assert (plan.status.phase, plan.weight) == ("Progressing", 20)
    assert plan.status.metrics[0].measurements == []  # a baseline, not an Inconclusive measurement
    assert plan.requeue_after == pytest.approx(10)
    assert (await one_pass(plan.status, T0 + timedelta(seconds=5))).status.metrics[0].measurements == []

    requests.labels("POST", "/v1/briefs", "200").inc(99)
    requests.labels("POST", "/v1/briefs", "500").inc(1)
    plan = await one_pass(plan.status, T0 + timedelta(seconds=10))
    result = plan.status.metrics[0]
    assert (result.successful, result.measurements[-1].value) == (1, pytest.approx(0.01))

    requests.labels("POST", "/v1/briefs", "500").inc(50)
    requests.labels("POST", "/v1/briefs", "200").inc(50)
    plan = await one_pass(plan.status, T0 + timedelta(seconds=20))
    assert (plan.status.phase, plan.weight) == ("Degraded", 0)
    assert plan.status.metrics[0].measurements[-1].value == pytest.approx(0.5)


async def test_variant_assignments_from_the_gateway_counter(exporter: tuple[str, CollectorRegistry]) -> None:
    url, registry = exporter
    p = ScrapeProvider(lambda: [url])
    assert await variant_assignments(p, "exp", prometheus=False) == {}  # absent: the caller falls back
    assigned = Counter("artisan_variant_assignments_total", "a", ["experiment", "variant"], registry=registry)
    assigned.labels("exp", "control").inc(120)
    assigned.labels("exp", "treatment").inc(80)
    assigned.labels("other", "control").inc(5)
    assert await variant_assignments(p, "exp", prometheus=False) == {"control": 120, "treatment": 80}
    down = ScrapeProvider(lambda: ["http://127.0.0.1:9/metrics"], timeout=1.0)
    assert isinstance(await variant_assignments(down, "exp", prometheus=False), str)
