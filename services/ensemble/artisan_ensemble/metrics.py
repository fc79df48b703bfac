"""Prometheus metrics, one registry per app (tests build many apps in one process).

Names: ``artisan_*`` with base units, plus the seeds' names the users' dashboards already query
(``llm_brief_elapsed_ms``, ``model_health_status``, ``hybrid_switch_total``, ``ifra_violations_total``,
``allergen_hits_total``, ``ifra_compliance_rate``, ``data_curation_*``, ``ab_test_requests_total``).
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from artisan_ensemble.ensemble.admission import AdmissionController
from artisan_ensemble.ensemble.ports import FinishReason, TokenUsage

ChatOutcome = FinishReason | Literal["error"]
"""How a chat completion ended: the model's finish_reason, or ``error`` (no answer, or a cut stream)."""
CHAT_OUTCOMES: tuple[ChatOutcome, ...] = ("stop", "length", "error")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 12, 20, 30, 60)
MS_BUCKETS = tuple(b * 1000 for b in LATENCY_BUCKETS)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "artisan_http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "artisan_http_request_duration_seconds",
            "End-to-end HTTP request time by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class QueueMetrics(HttpMetrics):
    """The admission queue, the same names in both roles: an alert divides size by capacity."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        r = self.registry
        self.queue_size = Gauge("artisan_queue_size", "Requests waiting for a slot.", registry=r)
        self.queue_capacity = Gauge(
            "artisan_queue_capacity",
            "Most requests allowed to wait for a slot (beyond it 429); artisan_queue_size over this is"
            " the queue's fill ratio.",
            registry=r,
        )
        self.running = Gauge("artisan_requests_running", "Requests holding a slot.", registry=r)
        self.rejected = Counter(
            "artisan_requests_rejected_total",
            "Requests refused (429 overload, 503 no model).",
            ["reason"],
            registry=r,
        )

    def watch_queue(self, admission: AdmissionController) -> None:
        self.queue_size.set_function(lambda: admission.waiting)
        self.running.set_function(lambda: admission.running)
        self.queue_capacity.set(admission.max_waiting)


class EnsembleMetrics(QueueMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry or CollectorRegistry())
        r = self.registry
        self.brief_latency = Histogram(
            "artisan_brief_latency_seconds",
            "Model call time within a brief, by mode and model role.",
            ["mode", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.brief_elapsed_ms = Histogram(
            "llm_brief_elapsed_ms",
            "Whole brief time in milliseconds by served mode (seed metric name).",
            ["mode"],
            buckets=MS_BUCKETS,
            registry=r,
        )
        self.end_to_end = Histogram(
            "artisan_request_end_to_end_seconds",
            "Request time from arrival to the whole answer, by endpoint (briefs, chat_completions);"
            " answered requests only.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "artisan_queue_wait_seconds",
            "Time requests (briefs and chat completions: one shared queue) waited for a generation slot.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "artisan_time_to_first_token_seconds",
            "Time from request to the first streamed token, by model role.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # vLLM's prompt/generation token counters; model = the role, as on the other per-model series.
        self.prompt_tokens = Counter(
            "artisan_prompt_tokens_total",
            "Prompt tokens read (the model's tokenizer's count), by model role; backends that cannot"
            " count add nothing.",
            ["model"],
            registry=r,
        )
        self.generation_tokens = Counter(
            "artisan_generation_tokens_total",
            "Tokens generated (prompt excluded, a final EOS included), by model role; backends that"
            " cannot count add nothing.",
            ["model"],
            registry=r,
        )
        self.chat_completions = Counter(
            "artisan_chat_completions_total",
            "Chat completions by how they ended: stop, length, or error (a failed call or stream).",
            ["finish_reason"],
            registry=r,
        )
        for outcome in CHAT_OUTCOMES:  # every series from 0, so rate() and ratios work from the start
            self.chat_completions.labels(finish_reason=outcome)
        self.model_health = Gauge(
            "model_health_status",
            "1 when the pinned model's breaker lets calls through, else 0; one series per pinned role"
            " (model = the pinned name, role = primary|validator|creative: match on role).",
            ["model", "role"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "artisan_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["model"],
            registry=r,
        )
        self.model_calls = Counter(
            "artisan_model_calls_total", "Model calls by role and result.", ["model", "result"], registry=r
        )
        self.hybrid_switch = Counter(
            "hybrid_switch_total",
            "Requests served below the requested mode (to_mode: a mode, cache or rules).",
            ["from_mode", "to_mode"],
            registry=r,
        )
        self.fallbacks = Counter(
            "artisan_fallback_total",
            "Model output replaced by a deterministic fallback, by kind.",
            ["kind"],
            registry=r,
        )
        self.cache_hits = Counter(
            "artisan_cache_hits_total", "Cache hits (fresh or stale-if-error).", ["kind"], registry=r
        )
        self.cache_misses = Counter("artisan_cache_misses_total", "Cache misses.", registry=r)
        self.cache_entries = Gauge("artisan_cache_entries", "Entries in the response cache.", registry=r)
        self.ifra_violations = Counter(
            "ifra_violations_total",
            "IFRA limit violations found in generated formulas (before the safety projection).",
            ["ingredient"],
            registry=r,
        )
        self.allergen_hits = Counter(
            "allergen_hits_total",
            "Formulas containing a labelled allergen above threshold.",
            ["allergen"],
            registry=r,
        )
        self.formulas = Counter(
            "artisan_formulas_total",
            "Formulas served, by IFRA compliance of the served formula.",
            ["compliant"],
            registry=r,
        )
        self.ifra_compliance_rate = Gauge(
            "ifra_compliance_rate",
            "Share of generated formulas compliant before the safety projection.",
            registry=r,
        )
        self.curation = Counter(
            "data_curation_samples_total",
            "Feedback samples by curation outcome (accepted or the rejection reason).",
            ["outcome"],
            registry=r,
        )
        self.curation_acceptance = Gauge(
            "data_curation_acceptance_rate", "Share of feedback samples accepted since start.", registry=r
        )
        self._formulas_seen = 0
        self._formulas_compliant = 0
        self._feedback_seen = 0
        self._feedback_accepted = 0

    def record_usage(self, model: str, usage: TokenUsage | None) -> None:
        """Count one generation's tokens; ``None`` (no tokenizer) counts nothing, never an estimate."""
        if usage is None:
            return
        self.prompt_tokens.labels(model=model).inc(usage.prompt_tokens)
        self.generation_tokens.labels(model=model).inc(usage.completion_tokens)

    def record_chat(self, outcome: ChatOutcome, seconds: float | None = None) -> None:
        """One chat completion's outcome and, for an answered one, its end-to-end time."""
        self.chat_completions.labels(finish_reason=outcome).inc()
        if seconds is not None:
            self.end_to_end.labels(endpoint="chat_completions").observe(seconds)

    def record_formula(self, raw_compliant: bool) -> None:
        self._formulas_seen += 1
        self._formulas_compliant += int(raw_compliant)
        self.ifra_compliance_rate.set(self._formulas_compliant / self._formulas_seen)

    def record_curation(self, outcome: str) -> None:
        self.curation.labels(outcome=outcome).inc()
        self._feedback_seen += 1
        self._feedback_accepted += int(outcome == "accepted")
        self.curation_acceptance.set(self._feedback_accepted / self._feedback_seen)


class GatewayMetrics(QueueMetrics):
    """Per-variant sufficient statistics: with count, Σx and Σx² per metric, means, variances and exact
    two-sample tests can be computed from counters alone (PromQL or the operator's analysis)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry or CollectorRegistry())
        r = self.registry
        labels = ["experiment", "variant", "metric"]
        self.count = Counter(
            "artisan_variant_observations_total", "Observations per variant and metric.", labels, registry=r
        )
        self.sum = Counter(
            "artisan_variant_sum_total", "Sum of observed values per variant and metric.", labels, registry=r
        )
        self.sum_squares = Counter(
            "artisan_variant_sum_squares_total",
            "Sum of squared values per variant and metric.",
            labels,
            registry=r,
        )
        self.assignments = Counter(
            "artisan_variant_assignments_total",
            "Brief requests the gateway assigned to each variant of an experiment (once per request;"
            " the sample-ratio-mismatch check compares these counts with the variant weights).",
            ["experiment", "variant"],
            registry=r,
        )
        self.ab_requests = Counter(
            "ab_test_requests_total",
            "Requests per experiment variant (seed metric name).",
            ["variant"],
            registry=r,
        )
        self.routed = Counter(
            "artisan_gateway_routed_total",
            "Requests forwarded, by backend track and mode.",
            ["track", "mode"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "artisan_gateway_upstream_errors_total", "Forwarding failures by track.", ["track"], registry=r
        )
        self.routing_reloads = Counter(
            "artisan_gateway_routing_reloads_total",
            "Routing table reloads by result.",
            ["result"],
            registry=r,
        )
        self.routing_age = Gauge(
            "artisan_gateway_routing_loaded_timestamp_seconds",
            "When the routing table in force was loaded.",
            registry=r,
        )

    def observe(self, experiment: str, variant: str, metric: str, value: float) -> None:
        self.count.labels(experiment, variant, metric).inc()
        # Counters only go up: a negative value (a reward) is stored as its own metric's shifted copy would
        # break Σx, so negative sums are kept in a separate series with the suffix "_neg".
        if value >= 0:
            self.sum.labels(experiment, variant, metric).inc(value)
        else:
            self.sum.labels(experiment, variant, f"{metric}_neg").inc(-value)
        self.sum_squares.labels(experiment, variant, metric).inc(value * value)
