"""Metric providers: one interface, two implementations.

- :class:`PrometheusProvider` runs PromQL instant queries against the Prometheus HTTP API
  (``GET /api/v1/query``): the production path.
- :class:`ScrapeProvider` reads the targets' ``/metrics`` directly (prometheus_client's text parser)
  and evaluates a small subset: a selector ``name{label="value",...}`` summed over matching series and
  targets, and the builtin metrics. The embedded default when no Prometheus URL is configured.

Both return :class:`~artisan_operator.policy.analysis.MetricValue`: a number, nothing (empty result,
Inconclusive for the analysis) or an error (retried; too many in a row is Error). Neither raises for a
failing backend: a provider error is data for the decision, not an exception in the handler.

Builtin metrics are computed from what the gateway exports per track (stable/canary) and variant:
``artisan_gateway_routed_total{track}``, ``artisan_gateway_upstream_errors_total{track}`` and the
per-variant sufficient statistics ``artisan_variant_{observations,sum,sum_squares}_total
{experiment,variant,metric}`` (negative sums in ``metric="<m>_neg"``).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from artisan_operator.policy.analysis import MetricValue
from artisan_operator.policy.statistics import SufficientStats

VectorResult = dict[str, float] | str
"""Label value → value, or an error message."""

BUILTIN_PROMQL: dict[str, str] = {
    "errorRate": (
        'sum(increase(artisan_gateway_upstream_errors_total{track="canary"}[{{window}}])) / '
        '(sum(increase(artisan_gateway_upstream_errors_total{track="canary"}[{{window}}])) + '
        'sum(increase(artisan_gateway_routed_total{track="canary"}[{{window}}])))'
    ),
    "latencyP95": (
        "histogram_quantile(0.95, sum by (le) (rate(artisan_http_request_duration_seconds_bucket"
        '{namespace="{{namespace}}",track="canary"}[{{window}}])))'
    ),
    "latencyMean": (
        'sum(rate(artisan_http_request_duration_seconds_sum{namespace="{{namespace}}",track="canary"}'
        '[{{window}}])) / sum(rate(artisan_http_request_duration_seconds_count{namespace="{{namespace}}",'
        'track="canary"}[{{window}}]))'
    ),
    "ifraViolationRate": (
        'sum(increase(ifra_violations_total{namespace="{{namespace}}",track="canary"}[{{window}}])) / '
        'sum(increase(artisan_gateway_routed_total{track="canary"}[{{window}}]))'
    ),
    "meanRating": (
        'sum(artisan_variant_sum_total{variant="canary",metric="rating"}) / '
        'sum(artisan_variant_observations_total{variant="canary",metric="rating"})'
    ),
}
"""PromQL of each builtin Canary metric; {{namespace}} and {{window}} are substituted."""


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


@dataclass
class ScrapeProvider:
    """Reads the targets' /metrics directly; ``targets`` returns the URLs to scrape now."""

    targets: Callable[[], Sequence[str]]
    timeout: float = 3.0
    fetch: Fetch | None = None
    _previous: dict[str, tuple[float, float]] = field(default_factory=dict)

    async def _fetch(self, url: str) -> str:
        if self.fetch is not None:
            return await self.fetch(url)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            response.raise_for_status()
            return await response.text()

    async def scrape(self) -> list[Sample] | str:
        urls = list(self.targets())
        if not urls:
            return "no targets to scrape"
        replies = await asyncio.gather(*(self._fetch(u) for u in urls), return_exceptions=True)
        samples: list[Sample] = []
        failures = []
        for url, reply in zip(urls, replies, strict=True):
            if isinstance(reply, BaseException):
                failures.append(f"{url}: {type(reply).__name__}")
            else:
                try:
                    samples.extend(parse_exposition(reply))
                except ValueError as error:
                    failures.append(f"{url}: unparsable exposition ({error})")
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

    async def builtin(self, name: str) -> MetricValue:
        """A builtin metric from the gateway's counters: the ratio of increments since the last call."""
        if name != "errorRate":
            return MetricValue(error=f"builtin {name} needs Prometheus (histograms over time)")
        samples = await self.scrape()
        if isinstance(samples, str):
            return MetricValue(error=samples)
        errors = sum(
            s[2] for s in select(samples, "artisan_gateway_upstream_errors_total", {"track": "canary"})
        )
        routed = sum(s[2] for s in select(samples, "artisan_gateway_routed_total", {"track": "canary"}))
        last = self._previous.get(name)
        self._previous[name] = (errors, routed)
        if last is None:
            return MetricValue()  # the first scrape only sets the baseline
        d_errors, d_total = errors - last[0], (errors - last[0]) + (routed - last[1])
        return MetricValue(d_errors / d_total) if d_total > 0 else MetricValue()


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
