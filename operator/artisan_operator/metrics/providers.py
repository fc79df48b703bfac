"""Metric providers: one interface, two implementations.

- :class:`PrometheusProvider` runs PromQL instant queries against the Prometheus HTTP API
  (``GET /api/v1/query``): the production path.
- :class:`ScrapeProvider` reads the targets' ``/metrics`` directly (prometheus_client's text parser)
  and evaluates a small subset: a selector ``name{label="value",...}`` summed over matching series and
  targets, and the builtin metrics. The embedded default when no Prometheus URL is configured.

Both return :class:`~artisan_operator.policy.analysis.MetricValue`: a number, nothing (empty result,
Inconclusive for the analysis) or an error (retried; too many in a row is Error). Neither raises for a
failing backend: a provider error is data for the decision, not an exception in the handler.

Sources of the builtin metrics:

- ``errorRate`` comes from the canary fleet's own pods: ``artisan_http_requests_total{route,status}``
  of the ensemble, counting answers on the serving routes (``/v1/...``; probes and /metrics are left
  out) and, of those, the 5xx ones. That source works with every router (the gateway, a Gateway API
  HTTPRoute or the replica ratio: only the gateway router tags requests with a canary track in the
  gateway's own counters) and it sees a canary that answers 500, where the gateway's
  ``artisan_gateway_upstream_errors_total`` only counts connections that failed. Prometheus adds the
  pods' ``namespace`` and ``track`` labels (ServiceMonitor relabelling); the direct scrape reads the
  canary pods only, so every sample is the canary's.
- latency and IFRA metrics need Prometheus (histograms and rates over time).
- the A/B statistics are the gateway's per-variant sufficient statistics
  ``artisan_variant_{observations,sum,sum_squares}_total{experiment,variant,metric}`` (negative sums
  in ``metric="<m>_neg"``) and its assignment counter ``artisan_variant_assignments_total
  {experiment,variant}`` (one per assigned request, for the sample-ratio-mismatch test).

The direct scrape computes ``errorRate`` as the increase of the counters between two calls, per pod
(a pod new since the last call, or whose counter went down after a restart, counts from zero, as
PromQL's ``increase`` does). Its first call for a metric only takes that baseline and says so
(``MetricValue(baseline=True)``); the analysis then measures one interval later. Baselines are kept
per metric key, so an inline and a background analysis of the same metric do not share one.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from artisan_operator.policy.analysis import MetricValue
from artisan_operator.policy.statistics import SufficientStats

VectorResult = dict[str, float] | str
"""Label value → value, or an error message."""

_CANARY_FLEET = 'namespace="{{namespace}}",modelpin="{{modelpin}}",track="canary"'
"""The target's canary pods, by the labels the chart's PodMonitor copies from them."""

BUILTIN_PROMQL: dict[str, str] = {
    # A healthy canary has no 5xx series at all: "or vector(0)" makes that 0 errors, while no
    # traffic (an empty or zero denominator) stays empty/NaN, i.e. Inconclusive.
    "errorRate": (
        "(sum(increase(artisan_http_requests_total{" + _CANARY_FLEET + ',route=~"/v1/.+",status=~"5.."}'
        "[{{window}}])) or vector(0)) / "
        "sum(increase(artisan_http_requests_total{" + _CANARY_FLEET + ',route=~"/v1/.+"}[{{window}}]))'
    ),
    "latencyP95": (
        "histogram_quantile(0.95, sum by (le) (rate(artisan_http_request_duration_seconds_bucket"
        "{" + _CANARY_FLEET + "}[{{window}}])))"
    ),
    "latencyMean": (
        "sum(rate(artisan_http_request_duration_seconds_sum{" + _CANARY_FLEET + "}[{{window}}])) / "
        "sum(rate(artisan_http_request_duration_seconds_count{" + _CANARY_FLEET + "}[{{window}}]))"
    ),
    "ifraViolationRate": (
        "sum(increase(ifra_violations_total{" + _CANARY_FLEET + "}[{{window}}])) / "
        'sum(increase(artisan_gateway_routed_total{track="canary"}[{{window}}]))'
    ),
    "meanRating": (
        'sum(artisan_variant_sum_total{variant="canary",metric="rating"}) / '
        'sum(artisan_variant_observations_total{variant="canary",metric="rating"})'
    ),
}
"""PromQL of each builtin Canary metric; {{namespace}}, {{modelpin}} (the target) and {{window}} are
substituted. The ensemble series carry ``modelpin`` and ``track`` from the chart's PodMonitor, so two
ModelPins rolling out in one namespace are measured apart."""


def render_query(template: str, substitutions: Mapping[str, str]) -> str:
    """Substitute ``{{name}}`` placeholders (canary, stable, namespace, window)."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: substitutions.get(m.group(1), m.group(0)), template)


class MetricProvider(Protocol):
    async def query(self, query: str) -> MetricValue:
        """A single number: the one series of the result (empty → no value)."""
        ...

    async def query_by(self, query: str, label: str) -> VectorResult:
        """Values of a vector result keyed by one label (e.g. ``sum by (variant) (...)``)."""
        ...


# --------------------------------------------------------------------------------------- Prometheus


@dataclass
class PrometheusProvider:
    """PromQL instant queries over the Prometheus HTTP API."""

    url: str
    timeout: float = 5.0
    session: aiohttp.ClientSession | None = None

    async def _get(self, query: str) -> tuple[str, list[object]] | str:
        endpoint = self.url.rstrip("/") + "/api/v1/query"
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        own = self.session is None
        session = self.session or aiohttp.ClientSession(timeout=timeout)
        try:
            async with session.get(endpoint, params={"query": query}, timeout=timeout) as response:
                payload = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            return f"prometheus at {self.url} unreachable: {type(error).__name__}: {error}"
        finally:
            if own:
                await session.close()
        if not isinstance(payload, dict) or payload.get("status") != "success":
            message = payload.get("error", "unknown error") if isinstance(payload, dict) else "bad reply"
            return f"prometheus query failed: {message}"
        data = payload.get("data") or {}
        return str(data.get("resultType")), list(data.get("result") or [])

    async def query(self, query: str) -> MetricValue:
        reply = await self._get(query)
        if isinstance(reply, str):
            return MetricValue(error=reply)
        kind, result = reply
        if kind == "scalar":
            return MetricValue(_float(result[1]))
        if kind != "vector":
            return MetricValue(error=f"query returned a {kind}, not an instant vector or scalar")
        if not result:
            return MetricValue()
        if len(result) > 1:
            return MetricValue(error=f"query returned {len(result)} series; aggregate it (e.g. sum(...))")
        sample = result[0]
        assert isinstance(sample, dict)
        return MetricValue(_float(sample["value"][1]))

    async def samples(self, query: str) -> list[Sample] | str:
        """Every series of an instant-vector result as (``__name__``, labels, value), or an error."""
        reply = await self._get(query)
        if isinstance(reply, str):
            return reply
        kind, result = reply
        if kind != "vector":
            return f"query returned a {kind}, not an instant vector"
        found: list[Sample] = []
        for sample in result:
            assert isinstance(sample, dict)
            labels = {str(k): str(v) for k, v in (sample.get("metric") or {}).items()}
            found.append((labels.pop("__name__", ""), labels, _float(sample["value"][1])))
        return found

    async def query_by(self, query: str, label: str) -> VectorResult:
        reply = await self._get(query)
        if isinstance(reply, str):
            return reply
        kind, result = reply
        if kind != "vector":
            return f"query returned a {kind}, not an instant vector"
        values: dict[str, float] = {}
        for sample in result:
            assert isinstance(sample, dict)
            key = sample.get("metric", {}).get(label)
            if key is not None:
                values[key] = values.get(key, 0.0) + _float(sample["value"][1])
        return values


def _float(text: object) -> float:
    try:
        return float(str(text))
    except ValueError:
        return math.nan


# ------------------------------------------------------------------------------------------- scrape

_SELECTOR = re.compile(
    r"^\s*(?:sum\s*\(\s*)?(?P<name>[a-zA-Z_:][\w:]*)\s*(?:\{(?P<labels>[^}]*)\})?\s*\)?\s*$"
)
_MATCHER = re.compile(r'\s*(?P<key>\w+)\s*=\s*"(?P<value>[^"]*)"\s*,?')

Sample = tuple[str, dict[str, str], float]
Fetch = Callable[[str], Awaitable[str]]


def parse_exposition(text: str) -> list[Sample]:
    """(name, labels, value) of every sample in a Prometheus text exposition."""
    return [
        (s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def parse_selector(query: str) -> tuple[str, dict[str, str]]:
    """``name{a="x"}`` (optionally wrapped in sum(...)) → (name, matchers); ValueError otherwise."""
    match = _SELECTOR.fullmatch(query)
    if match is None:
        raise ValueError(
            f'the scrape provider evaluates only selectors like name{{label="value"}}, not {query!r}; '
            "configure a Prometheus URL for PromQL"
        )
    labels = match["labels"] or ""
    matchers = {m["key"]: m["value"] for m in _MATCHER.finditer(labels)}
    return match["name"], matchers


def select(samples: Sequence[Sample], name: str, matchers: Mapping[str, str]) -> list[Sample]:
    return [s for s in samples if s[0] == name and all(s[1].get(k) == v for k, v in matchers.items())]


REQUESTS_METRIC = "artisan_http_requests_total"
SERVING_ROUTE_PREFIX = "/v1/"

Counters = tuple[float, float]
"""(failed answers, all answers) of the serving routes."""


def request_counters(samples: Sequence[Sample]) -> Counters:
    """5xx answers and all answers on the serving routes (``/v1/...``) in one pod's exposition."""
    failed = total = 0.0
    for name, labels, value in samples:
        if name != REQUESTS_METRIC or not labels.get("route", "").startswith(SERVING_ROUTE_PREFIX):
            continue
        total += value
        if labels.get("status", "").startswith("5"):
            failed += value
    return failed, total


def counter_increase(before: Mapping[str, Counters], after: Mapping[str, Counters]) -> Counters:
    """Σ over pods of the counters' increase since ``before``, like PromQL's ``increase``.

    | pod                              | before   | after    | counts   |
    |----------------------------------|----------|----------|----------|
    | seen both times                  | (1, 10)  | (3, 30)  | (2, 20)  |
    | new since the baseline           | –        | (1, 5)   | (1, 5)   |
    | restarted (the total went down)  | (4, 40)  | (1, 6)   | (1, 6)   |
    | gone since the baseline          | (4, 40)  | –        | (0, 0)   |
    """
    failed = total = 0.0
    for target, (now_failed, now_total) in after.items():
        then_failed, then_total = before.get(target, (0.0, 0.0))
        if now_total < then_total or now_failed < then_failed:
            then_failed, then_total = 0.0, 0.0  # a reset: the pod restarted
        failed += now_failed - then_failed
        total += now_total - then_total
    return failed, total


@dataclass(frozen=True)
class Baseline:
    """The counters of each scraped pod at one moment (the start of the next delta)."""

    taken_at: datetime
    counters: dict[str, Counters]


@dataclass
class ScrapeProvider:
    """Reads the targets' /metrics directly; ``targets`` returns the URLs to scrape now."""

    targets: Callable[[], Sequence[str]]
    timeout: float = 3.0
    fetch: Fetch | None = None
    _baselines: dict[str, Baseline] = field(default_factory=dict)

    async def _fetch(self, url: str) -> str:
        if self.fetch is not None:
            return await self.fetch(url)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            response.raise_for_status()
            return await response.text()

    async def scrape_targets(self) -> dict[str, list[Sample] | str] | str:
        """Each target's samples, or why that target failed; an error when there is no target."""
        urls = list(self.targets())
        if not urls:
            return "no targets to scrape"
        replies = await asyncio.gather(*(self._fetch(u) for u in urls), return_exceptions=True)
        found: dict[str, list[Sample] | str] = {}
        for url, reply in zip(urls, replies, strict=True):
            if isinstance(reply, BaseException):
                found[url] = f"{url}: {type(reply).__name__}"
            else:
                try:
                    found[url] = parse_exposition(reply)
                except ValueError as error:
                    found[url] = f"{url}: unparsable exposition ({error})"
        return found

    async def scrape(self) -> list[Sample] | str:
        replies = await self.scrape_targets()
        if isinstance(replies, str):
            return replies
        samples = [s for reply in replies.values() if not isinstance(reply, str) for s in reply]
        failures = [reply for reply in replies.values() if isinstance(reply, str)]
        if failures and not samples:
            return "scrape failed: " + "; ".join(failures)
        return samples

    async def query(self, query: str) -> MetricValue:
        try:
            name, matchers = parse_selector(query)
        except ValueError as error:
            return MetricValue(error=str(error))
        samples = await self.scrape()
        if isinstance(samples, str):
            return MetricValue(error=samples)
        chosen = select(samples, name, matchers)
        return MetricValue(sum(s[2] for s in chosen)) if chosen else MetricValue()

    async def query_by(self, query: str, label: str) -> VectorResult:
        try:
            name, matchers = parse_selector(query)
        except ValueError as error:
            return str(error)
        samples = await self.scrape()
        if isinstance(samples, str):
            return samples
        values: dict[str, float] = {}
        for _, labels, value in select(samples, name, matchers):
            if label in labels:
                values[labels[label]] = values.get(labels[label], 0.0) + value
        return values

    def baselines(self) -> dict[str, datetime]:
        """Metric key → when its baseline was taken (for ``CanaryObservation.baselines``)."""
        return {key: baseline.taken_at for key, baseline in self._baselines.items()}

    async def builtin(
        self,
        name: str,
        key: str | None = None,
        *,
        now: datetime | None = None,
        since: datetime | None = None,
    ) -> MetricValue:
        """A builtin metric from the targets' request counters: the error ratio of the answers given
        since the last call for ``key`` (default: ``name``). The first call, or one whose baseline is
        older than ``since`` (a new analysis), only takes the baseline."""
        if name != "errorRate":
            return MetricValue(error=f"builtin {name} needs Prometheus (histograms over time)")
        key = key or name
        now = now or datetime.now(tz=UTC)
        replies = await self.scrape_targets()
        if isinstance(replies, str):
            return MetricValue(error=replies)
        failures = [reply for reply in replies.values() if isinstance(reply, str)]
        counters = {url: request_counters(r) for url, r in replies.items() if not isinstance(r, str)}
        if not counters:
            return MetricValue(error="scrape failed: " + "; ".join(failures))
        last = self._baselines.get(key)
        stale = last is None or (since is not None and last.taken_at < since)
        # A pod that failed this scrape keeps its old counters: its next delta covers both intervals.
        kept = {} if last is None or stale else {u: c for u, c in last.counters.items() if u not in counters}
        self._baselines[key] = Baseline(now, {**kept, **counters})
        if stale:
            return MetricValue(baseline=True)
        assert last is not None
        failed, total = counter_increase(last.counters, counters)
        return MetricValue(failed / total) if total > 0 else MetricValue()


# ----------------------------------------------------------------------------- sufficient statistics


def _selector(metric: str, experiment: str, suffix: str) -> str:
    return f'sum by (variant) (artisan_variant_{suffix}_total{{experiment="{experiment}",metric="{metric}"}})'


async def variant_statistics(
    provider: MetricProvider, experiment: str, metric: str, prometheus: bool = True
) -> dict[str, SufficientStats] | str:
    """n, Σx and Σx² per variant of one metric, from the gateway's counters (or an error message)."""

    def query(suffix: str, name: str) -> str:
        if prometheus:
            return _selector(name, experiment, suffix)
        return f'artisan_variant_{suffix}_total{{experiment="{experiment}",metric="{name}"}}'

    parts = await asyncio.gather(
        provider.query_by(query("observations", metric), "variant"),
        provider.query_by(query("sum", metric), "variant"),
        provider.query_by(query("sum", f"{metric}_neg"), "variant"),
        provider.query_by(query("sum_squares", metric), "variant"),
    )
    for part in parts:
        if isinstance(part, str):
            return part
    counts, sums, negative, squares = (p for p in parts if not isinstance(p, str))
    return {
        variant: SufficientStats(
            int(n), sums.get(variant, 0.0) - negative.get(variant, 0.0), squares.get(variant, 0.0)
        )
        for variant, n in counts.items()
    }


async def variant_assignments(
    provider: MetricProvider, experiment: str, prometheus: bool = True
) -> dict[str, int] | str:
    """Requests assigned per variant (``artisan_variant_assignments_total``), for the SRM test; an
    empty dict when the gateway does not export the counter (or an error message)."""
    selector = f'artisan_variant_assignments_total{{experiment="{experiment}"}}'
    query = f"sum by (variant) ({selector})" if prometheus else selector
    counts = await provider.query_by(query, "variant")
    if isinstance(counts, str):
        return counts
    return {variant: int(n) for variant, n in counts.items()}
