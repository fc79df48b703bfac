"""The ensemble service: admission → route plan → model calls in worker threads → fallbacks → formula.

This module wires the pure pieces of ``ensemble/`` to the model backends. It holds no torch code:
backends arrive as :class:`TextGenerator` objects, so tests inject fakes that fail on command.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from artisan_common.catalog import IngredientCatalog
from artisan_common.ifra import IfraReport, IfraViolation, check_formula
from artisan_common.serving import MODES, Mode, ModeParams
from artisan_ensemble.api.models import (
    AllergenOut,
    BriefResponse,
    FormulaIngredient,
    FormulaOut,
    HintsOut,
    IfraOut,
    IfraViolationOut,
    ModeDecision,
    ValidationOut,
)
from artisan_ensemble.ensemble.admission import AdmissionController, Ticket
from artisan_ensemble.ensemble.breaker import BREAKER_STATE_VALUE, BreakerState, CircuitBreaker
from artisan_ensemble.ensemble.brief import Brief, BriefSource, Language
from artisan_ensemble.ensemble.cache import ResponseCache, adaptive_ttl, cache_key
from artisan_ensemble.ensemble.config import ServiceConfig
from artisan_ensemble.ensemble.downshift import ROLES, Role, RoutePlan, plan_route
from artisan_ensemble.ensemble.faults import FaultInjector, InjectedFaultError
from artisan_ensemble.ensemble.formula import (
    brief_features,
    concentration_for,
    heuristic_formula,
    project_to_ifra,
)
from artisan_ensemble.ensemble.hints import MAX_HINTS, MIN_HINTS, template_hints
from artisan_ensemble.ensemble.keywords import KeywordMatch, detect_language, keyword_parse
from artisan_ensemble.ensemble.parsing import ParseFailure, parse_brief, parse_string_list
from artisan_ensemble.ensemble.ports import (
    CountingGenerator,
    FormulaPolicy,
    Generation,
    GenerationRequest,
    TextGenerator,
)
from artisan_ensemble.ensemble.prompts import brief_prompt, creative_prompt, validator_prompt
from artisan_ensemble.ensemble.validation import (
    ValidationResult,
    parse_validator_output,
    validate_brief,
    with_formula_check,
)
from artisan_ensemble.metrics import EnsembleMetrics

log = logging.getLogger("artisan_ensemble")

PROBE_PROMPT = "ping"
PROBE_TOKENS = 1
"""The background probe: the smallest generation that proves the model answers."""


class ModelCallError(Exception):
    def __init__(self, role: Role, reason: str) -> None:
        super().__init__(f"{role} model call failed: {reason}")
        self.role = role
        self.reason = reason


class NoModelAvailableError(Exception):
    def __init__(self, reason: str, retry_after_seconds: float) -> None:
        super().__init__(reason)
        self.retry_after_seconds = retry_after_seconds


@dataclass
class _Trace:
    """What happened while answering one request (becomes the response's mode/fallback fields)."""

    served: Mode
    reasons: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    validator_output: str | None = None
    creative_output: str | None = None


class EnsembleService:
    def __init__(
        self,
        config: ServiceConfig,
        generators: Mapping[Role, TextGenerator],
        catalog: IngredientCatalog,
        metrics: EnsembleMetrics,
        *,
        policy: FormulaPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.generators = dict(generators)
        self.catalog = catalog
        self.metrics = metrics
        self.policy = policy
        self.clock = clock
        self.faults = FaultInjector(clock)
        self.cache: ResponseCache[BriefResponse] = ResponseCache(config.cache.max_entries, clock)
        self.admission = AdmissionController(
            config.queue.max_concurrent,
            config.queue.max_waiting,
            config.queue.retry_after_seconds,
            on_reject=metrics.rejected.labels(reason="overload").inc,
        )
        self.executor = ThreadPoolExecutor(
            max_workers=config.queue.max_concurrent, thread_name_prefix="artisan-generate"
        )
        # A request can be the half-open probe; it may legitimately run for its mode's whole timeout,
        # so the breaker must not give up on it sooner (a slow success would re-open the breaker).
        probe_bound = max(
            config.breaker.probe_timeout_seconds,
            *(config.modes.params(m).timeout_seconds for m in MODES),
        )
        self.breakers = {
            role: CircuitBreaker(
                role,
                failure_threshold=config.downshift.failure_threshold,
                hold_seconds=config.downshift.hold_seconds,
                window=config.breaker.window,
                failure_rate=config.breaker.failure_rate,
                min_calls=config.breaker.min_calls,
                probe_timeout_seconds=probe_bound,
                clock=clock,
                on_change=self._on_breaker_change,
            )
            for role in ROLES
        }
        for role in ROLES:
            self._on_breaker_change(role, BreakerState.CLOSED)
        metrics.watch_queue(self.admission)
        metrics.cache_entries.set_function(lambda: len(self.cache))

    # ---- state ------------------------------------------------------------------------------------

    @property
    def pins(self) -> dict[str, str]:
        return {role: f"{g.info.name}@{g.info.revision}" for role, g in self.generators.items()}

    def pinned(self) -> dict[Role, bool]:
        return {role: role in self.generators for role in ROLES}

    def available(self) -> dict[Role, bool]:
        return {role: role in self.generators and self.breakers[role].available() for role in ROLES}

    def _on_breaker_change(self, role: str, state: BreakerState) -> None:
        self.metrics.breaker_state.labels(model=role).set(BREAKER_STATE_VALUE[state])
        # Only pinned roles get a health series: an unpinned role is not "down" (the operator's fleet
        # health would downshift for it). Consumers match on ``role``; ``model`` is the pinned name.
        generator = self.generators.get(role)  # type: ignore[call-overload]
        if generator is not None:
            self.metrics.model_health.labels(model=generator.info.name, role=role).set(
                0 if state is BreakerState.OPEN else 1
            )

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    # ---- model calls ------------------------------------------------------------------------------

    async def call_model(
        self, role: Role, prompt: str, mode: Mode, params: ModeParams, deadline: float
    ) -> str:
        """One generation's text (the brief pipeline needs no token accounting)."""
        request = GenerationRequest(prompt, params.max_new_tokens, params.temperature, params.top_p, deadline)
        return (await self.complete(role, request, mode)).text

    async def complete(self, role: Role, request: GenerationRequest, mode: Mode) -> Generation:
        """One generation through the role's breaker and fault injector, in a worker thread, within
        ``request.deadline``; with token usage where the backend counts (``CountingGenerator``)."""
        generator = self.generators.get(role)
        if generator is None:
            raise ModelCallError(role, "not pinned")
        breaker = self.breakers[role]
        started = self.clock()
        remaining = request.deadline - started
        if remaining <= 0:
            # The request's own budget ran out before this call (spent queued or on earlier calls):
            # the model did nothing wrong, so this is no breaker failure (and claims no probe).
            self.metrics.model_calls.labels(model=role, result="deadline").inc()
            raise ModelCallError(role, "no time left before the mode's deadline")
        if not breaker.try_acquire():
            raise ModelCallError(role, "circuit open")
        try:
            fault = self.faults.active(role)
            if fault is not None and fault.kind == "error":
                raise InjectedFaultError(f"injected error fault on {role}")
            if fault is not None and fault.kind == "timeout":
                await asyncio.sleep(remaining)
                raise TimeoutError(f"injected timeout fault on {role}")
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(remaining):  # cheaper than wait_for: no wrapper future
                output = await loop.run_in_executor(self.executor, _generate, generator, request)
        except Exception as error:
            breaker.record_failure()
            self.metrics.model_calls.labels(model=role, result="error").inc()
            reason = "timeout" if isinstance(error, TimeoutError) else str(error) or type(error).__name__
            raise ModelCallError(role, reason) from error
        breaker.record_success()
        self.metrics.model_calls.labels(model=role, result="ok").inc()
        self.metrics.brief_latency.labels(mode=mode, model=role).observe(self.clock() - started)
        # Every served generation is counted here, the brief pipeline's calls included.
        self.metrics.record_usage(role, output.usage)
        return output

    # ---- active probes -----------------------------------------------------------------------------

    async def probe_open_breakers(self) -> dict[Role, bool]:
        """Probe each pinned model whose breaker is open and past its hold: one tiny bounded generation
        in a worker thread, within ``probe_timeout_seconds``. Success closes the breaker, failure
        re-opens it (hold restarts), and ``model_health_status`` follows. Without this a model the
        fleet no longer routes to (downshifted) would never get its half-open probe and never recover.
        Returns role → probe succeeded, for the roles probed."""
        results: dict[Role, bool] = {}
        for role, generator in self.generators.items():
            breaker = self.breakers[role]
            if breaker.state is not BreakerState.OPEN or breaker.retry_after() > 0:
                continue
            if not breaker.try_acquire():  # a request holds the half-open probe already
                continue
            results[role] = await self._probe(role, generator)
        return results

    async def _probe(self, role: Role, generator: TextGenerator) -> bool:
        breaker = self.breakers[role]
        timeout = self.config.breaker.probe_timeout_seconds
        request = GenerationRequest(PROBE_PROMPT, PROBE_TOKENS, 0.0, 1.0, self.clock() + timeout)
        try:
            if self.faults.active(role) is not None:
                raise InjectedFaultError(f"injected fault on {role}")
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(
                loop.run_in_executor(self.executor, generator.generate, request), timeout=timeout
            )
        except Exception as error:
            breaker.record_failure()
            self.metrics.model_calls.labels(model=role, result="probe_error").inc()
            log.info("background probe of the %s model failed: %s", role, error or type(error).__name__)
            return False
        breaker.record_success()
        self.metrics.model_calls.labels(model=role, result="probe_ok").inc()
        log.info("background probe of the %s model succeeded: breaker closed", role)
        return True

    async def run_prober(self, interval_seconds: float) -> None:
        """Probe due breakers every ``interval_seconds`` until cancelled (the app's lifespan owns it)."""
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self.probe_open_breakers()
            except Exception:  # the prober must outlive one bad pass
                log.exception("background probe pass failed")

    # ---- the brief pipeline -------------------------------------------------------------------------

    def _stale(self, text: str, requested: Mode, language: Language) -> BriefResponse | None:
        for mode in (requested, *reversed(MODES)):
            hit = self.cache.get(cache_key(text, mode, self.pins, language=language), allow_stale=True)
            if hit is not None:
                return hit.value
        return None

    async def brief(self, text: str, requested: Mode, language: Language | None = None) -> BriefResponse:
        started = self.clock()
        language = language or detect_language(text)
        key = cache_key(text, requested, self.pins, language=language)
        hit = self.cache.get(key)
        if hit is not None:
            self.metrics.cache_hits.labels(kind="fresh").inc()
            cached = hit.value
            mode = ModeDecision.model_construct(  # from validated parts: no second validation
                requested=cached.mode.requested,
                served=cached.mode.served,
                route="cache",
                downshifted=cached.mode.downshifted,
                reason="cache hit",
            )
            return cached.model_copy(
                update={"id": uuid.uuid4().hex, "mode": mode, "elapsed_ms": (self.clock() - started) * 1000}
            )
        self.metrics.cache_misses.inc()
        async with self.admit() as ticket:
            self.metrics.queue_wait.observe(ticket.queued_seconds)
            # The mode's generation budget starts at admission: time spent queued is overload, not
            # model slowness, and must not turn into timeouts that open healthy models' breakers.
            response = await self._answer(
                text, requested, keyword_parse(text, language), key, started, admitted=self.clock()
            )
        self.metrics.end_to_end.labels(endpoint="briefs").observe(self.clock() - started)
        self.metrics.brief_elapsed_ms.labels(mode=response.mode.served).observe(response.elapsed_ms)
        return response

    def admit(self) -> AbstractAsyncContextManager[Ticket]:
        """A generation slot, or OverloadedError (429, counted) when the bounded queue is full."""
        return self.admission.admit()

    async def _answer(
        self,
        text: str,
        requested: Mode,
        keywords: KeywordMatch,
        key: str,
        started: float,
        *,
        admitted: float,
    ) -> BriefResponse:
        """``keywords``: the request's dictionary pre-parse, done once (prompt hints, the rule-based
        brief, validation), in the resolved language."""
        language = keywords.brief.language
        stale = self._stale(text, requested, language) if not self.available()["primary"] else None
        plan = plan_route(requested, self.available(), self.pinned(), stale is not None)
        if plan.route == "reject":
            self.metrics.rejected.labels(reason="no_model").inc()
            retry = min((self.breakers[r].retry_after() for r in self.generators), default=1.0)
            raise NoModelAvailableError(plan.reason, max(1.0, retry))
        if plan.route == "stale-cache" and stale is not None:
            return self._serve_stale(stale, plan, started)
        trace = _Trace(served=plan.served, reasons=[plan.reason] if plan.downshifted else [])
        if plan.route == "keywords":
            brief, source = keywords.brief, "keywords"
            trace.fallbacks.append(f"brief from the keyword dictionary: {plan.reason}")
            self.metrics.fallbacks.labels(kind="brief_keywords").inc()
        else:
            params = self.config.modes.params(plan.served)
            deadline = admitted + params.timeout_seconds
            try:
                brief, source = await self._primary_brief(
                    text, plan.served, keywords, params=params, deadline=deadline, trace=trace
                )
            except ModelCallError as error:
                # The call failed mid-request: the same rung as "primary down" for this request.
                stale = self._stale(text, requested, language)
                if stale is not None:
                    failed_plan = RoutePlan(requested, requested, "stale-cache", str(error))
                    return self._serve_stale(stale, failed_plan, started)
                brief, source = keywords.brief, "keywords"
                trace.served = "fast"
                trace.reasons.append(str(error))
                trace.fallbacks.append(f"brief from the keyword dictionary: {error}")
                self.metrics.fallbacks.labels(kind="brief_keywords").inc()
            else:
                await self._enrich(text, brief, params, deadline, trace)
        formula, raw_report, served_report = self._formula(brief)
        validation = self._validation(
            text, brief, keywords.terms, trace, raw_report=raw_report, served_report=served_report
        )
        hints = await self._hints(brief, trace)
        route = "models" if source != "keywords" else "keywords"
        # Downshifted = a model could not be used. Unusable output from a model that answered is a
        # fallback (listed in ``fallbacks``), not a downshift: the requested models all ran.
        primary_down = route == "keywords" and bool(trace.reasons)
        downshifted = trace.served != requested or primary_down
        default_reason = (
            "primary output unusable: brief from the keyword dictionary" if route == "keywords" else ""
        )
        decision = ModeDecision(
            requested=requested,
            served=trace.served,
            route=route,
            downshifted=downshifted,
            reason="; ".join(dict.fromkeys(trace.reasons)) or default_reason or "as requested",
        )
        if downshifted:
            self._record_switch(
                RoutePlan(requested, trace.served, "models", decision.reason),
                "rules" if primary_down else trace.served,
            )
        response = BriefResponse(
            id=uuid.uuid4().hex,
            brief=brief,
            brief_source=source,
            mode=decision,
            validation=validation,
            hints=hints,
            formula=formula,
            fallbacks=trace.fallbacks,
            models=trace.models,
            elapsed_ms=(self.clock() - started) * 1000,
        )
        base_ttl = (
            self.config.downshift.downshift_ttl_seconds
            if downshifted
            else self.config.downshift.normal_ttl_seconds
        )
        c = self.config.cache
        ttl = adaptive_ttl(
            base_ttl,
            self.admission.load,
            high_load=c.high_load,
            low_load=c.low_load,
            max_seconds=c.max_ttl_seconds,
            min_seconds=c.min_ttl_seconds,
        )
        self.cache.put(key, response, ttl)
        return response

    def _serve_stale(self, stale: BriefResponse, plan: RoutePlan, started: float) -> BriefResponse:
        """The stale-if-error answer; counts the switch to the cache (callers must not count it too)."""
        self.metrics.cache_hits.labels(kind="stale").inc()
        self._record_switch(plan, "cache")
        return stale.model_copy(
            update={
                "id": uuid.uuid4().hex,
                "brief_source": "cache",
                "mode": ModeDecision(
                    requested=plan.requested,
                    served=stale.mode.served,
                    route="stale-cache",
                    downshifted=True,
                    reason=f"stale cache (stale-if-error): {plan.reason}",
                ),
                "elapsed_ms": (self.clock() - started) * 1000,
            }
        )

    def _record_switch(self, plan: RoutePlan, to_mode: str) -> None:
        if to_mode != plan.requested:
            self.metrics.hybrid_switch.labels(from_mode=plan.requested, to_mode=to_mode).inc()

    async def _primary_brief(
        self,
        text: str,
        mode: Mode,
        keywords: KeywordMatch,
        *,
        params: ModeParams,
        deadline: float,
        trace: _Trace,
    ) -> tuple[Brief, BriefSource]:
        language = keywords.brief.language
        output = await self.call_model(
            "primary", brief_prompt(text, mode, language, keywords.terms), mode, params, deadline
        )
        trace.models["primary"] = self.pins["primary"]
        parsed = parse_brief(output, language)
        if isinstance(parsed, Brief):
            return parsed, "model"
        first_failure = parsed.reason
        if deadline - self.clock() > 0:
            # Retry once, greedy and with a stricter instruction; a failed retry call is not fatal.
            strict = params.model_copy(update={"temperature": 0.0})
            try:
                output = await self.call_model(
                    "primary",
                    brief_prompt(text, mode, language, keywords.terms, retry=True),
                    mode,
                    strict,
                    deadline,
                )
            except ModelCallError as error:
                parsed = ParseFailure(f"retry failed: {error.reason}")
            else:
                parsed = parse_brief(output, language)
                if isinstance(parsed, Brief):
                    return parsed, "model-retry"
        trace.fallbacks.append(
            "brief from the keyword dictionary: primary output unusable "
            f"({first_failure}; retry: {parsed.reason})"
        )
        self.metrics.fallbacks.labels(kind="brief_keywords").inc()
        return keywords.brief, "keywords"

    async def _enrich(
        self, text: str, brief: Brief, params: ModeParams, deadline: float, trace: _Trace
    ) -> None:
        """Validator and creative calls for the richer modes; a failed call lowers the served mode."""
        if trace.served in ("balanced", "creative"):
            try:
                trace.validator_output = await self.call_model(
                    "validator",
                    validator_prompt(text, brief, trace.served, brief.language),
                    trace.served,
                    params,
                    deadline,
                )
                trace.models["validator"] = self.pins["validator"]
            except ModelCallError as error:
                trace.reasons.append(str(error))
                trace.served = "fast"
        if trace.served == "creative":
            try:
                trace.creative_output = await self.call_model(
                    "creative",
                    creative_prompt(text, brief, brief.language, trace.served),
                    trace.served,
                    params,
                    deadline,
                )
                trace.models["creative"] = self.pins["creative"]
            except ModelCallError as error:
                trace.reasons.append(str(error))
                trace.served = "balanced"

    def _validation(
        self,
        text: str,
        brief: Brief,
        keyword_terms: tuple[str, ...],
        trace: _Trace,
        *,
        raw_report: IfraReport,
        served_report: IfraReport,
    ) -> ValidationOut:
        rules = validate_brief(text, brief, keyword_terms)
        output = trace.validator_output
        result: ValidationResult = rules
        if output is not None:
            verdict = parse_validator_output(output)
            if verdict is None:
                trace.fallbacks.append("validation by rules: validator output unusable")
                self.metrics.fallbacks.labels(kind="validation_rules").inc()
            else:
                issues = tuple(dict.fromkeys((*rules.issues, *verdict.issues)))
                result = ValidationResult(verdict.valid and rules.valid, issues, "model")
        result = with_formula_check(result, raw_report, served_report)
        return ValidationOut(valid=result.valid, issues=list(result.issues), source=result.source)

    async def _hints(self, brief: Brief, trace: _Trace) -> HintsOut:
        output = trace.creative_output
        if output is not None:
            items = parse_string_list(output, MIN_HINTS, MAX_HINTS)
            if items is not None:
                return HintsOut(items=items, source="model")
            trace.fallbacks.append("hints from templates: creative output unusable")
            self.metrics.fallbacks.labels(kind="hints_template").inc()
        return HintsOut(items=template_hints(brief), source="template")

    # ---- formula ----------------------------------------------------------------------------------

    def formula(self, brief: Brief) -> FormulaOut:
        return self._formula(brief)[0]

    def _formula(self, brief: Brief) -> tuple[FormulaOut, IfraReport, IfraReport]:
        """The formula, and its IFRA reports as generated (raw) and as served (after the projection)."""
        concentration = concentration_for(brief)
        if self.policy is not None:
            raw = dict(self.policy.proportions(brief_features(brief, self.catalog.families)))
            source = "policy"
        else:
            raw = heuristic_formula(brief, self.catalog)
            source = "heuristic"
        raw_report = check_formula(raw, self.catalog, concentration)
        served = project_to_ifra(raw, self.catalog, concentration) if not raw_report.compliant else raw
        report = raw_report if served is raw else check_formula(served, self.catalog, concentration)
        self._record_ifra(raw_report, report)
        out = FormulaOut(
            source=source,
            concentration=concentration,
            ingredients=[
                FormulaIngredient(
                    id=i,
                    name=(ing := self.catalog.get(i)).name,
                    family=ing.family,
                    tier=ing.tier,
                    proportion=p,
                )
                for i, p in sorted(served.items(), key=lambda kv: (-kv[1], kv[0]))
                if p > 0
            ],
            ifra=IfraOut(
                compliant=report.compliant,
                violations=[_violation(v) for v in report.violations],
                raw_violations=[_violation(v) for v in raw_report.violations],
                allergens=[
                    AllergenOut(allergen=a.allergen, actual_percent=a.actual_percent)
                    for a in report.allergens
                ],
            ),
        )
        return out, raw_report, report

    def _record_ifra(self, raw: IfraReport, served: IfraReport) -> None:
        for violation in raw.violations:
            self.metrics.ifra_violations.labels(ingredient=violation.ingredient).inc()
        for allergen in served.allergens:
            self.metrics.allergen_hits.labels(allergen=allergen.allergen).inc()
        self.metrics.record_formula(raw.compliant)
        self.metrics.formulas.labels(compliant=str(served.compliant).lower()).inc()

    # ---- chat completions ---------------------------------------------------------------------------

    def check_chat_stream(self) -> None:
        """Refuse a stream before any byte is sent (so the client gets 503 + Retry-After, not a 200
        that carries an SSE error): the primary's breaker is open, or a drill fault is injected. A
        fault counts as a failed call, as it does for briefs, so drills still trip the breaker."""
        breaker = self.breakers["primary"]
        if not breaker.available():
            raise ModelCallError("primary", "circuit open")
        fault = self.faults.active("primary")
        if fault is not None:
            if breaker.try_acquire():
                breaker.record_failure()
            self.metrics.model_calls.labels(model="primary", result="error").inc()
            raise ModelCallError("primary", f"injected {fault.kind} fault on primary")

    def retry_after(self, role: Role) -> float:
        """Retry-After for a 503 about ``role``: until its breaker lets a probe through, at least 1 s."""
        return max(1.0, self.breakers[role].retry_after())

    async def chat_stream(self, request: GenerationRequest) -> AsyncIterator[str | Generation]:
        """Stream the primary model's text pieces, then one :class:`Generation` (finish reason, usage
        where the backend counts); breaker and admission apply as for briefs."""
        generator = self.generators["primary"]
        breaker = self.breakers["primary"]
        if not breaker.try_acquire():
            raise ModelCallError("primary", "circuit open")
        started = self.clock()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, str | Generation | BaseException | None]] = asyncio.Queue()

        def pump() -> None:
            try:
                fault = self.faults.active("primary")
                if fault is not None:
                    raise InjectedFaultError(f"injected {fault.kind} fault on primary")
                for item in _stream(generator, request):
                    loop.call_soon_threadsafe(queue.put_nowait, ("item", item))
                loop.call_soon_threadsafe(queue.put_nowait, ("done", None))
            except BaseException as error:  # forwarded to the event loop, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, ("error", error))

        # The pump stops by itself: the backend checks the deadline between tokens.
        loop.run_in_executor(self.executor, pump)
        first = True
        try:
            while True:
                remaining = request.deadline - self.clock()
                kind, value = await asyncio.wait_for(queue.get(), timeout=max(0.001, remaining))
                if kind == "error":
                    raise value if isinstance(value, BaseException) else RuntimeError("stream failed")
                if kind == "done":
                    break
                if first and isinstance(value, str):
                    self.metrics.time_to_first_token.labels(model="primary").observe(self.clock() - started)
                    first = False
                if isinstance(value, Generation):  # generated already: counted even if the client leaves
                    self.metrics.record_usage("primary", value.usage)
                assert isinstance(value, str | Generation)
                yield value
        except Exception as error:
            breaker.record_failure()
            self.metrics.model_calls.labels(model="primary", result="error").inc()
            reason = "timeout" if isinstance(error, TimeoutError) else str(error)
            raise ModelCallError("primary", reason) from error
        breaker.record_success()
        self.metrics.model_calls.labels(model="primary", result="ok").inc()


def _generate(generator: TextGenerator, request: GenerationRequest) -> Generation:
    if isinstance(generator, CountingGenerator):
        return generator.generate_counted(request)
    return Generation(generator.generate(request))  # no tokenizer to count with: no usage


def _stream(generator: TextGenerator, request: GenerationRequest) -> Iterator[str | Generation]:
    """Pieces, then exactly one Generation, from any backend."""
    if isinstance(generator, CountingGenerator):
        yield from generator.stream_counted(request)
        return
    pieces: list[str] = []
    for piece in generator.stream(request):
        pieces.append(piece)
        yield piece
    yield Generation("".join(pieces))


def _violation(v: IfraViolation) -> IfraViolationOut:
    return IfraViolationOut(
        ingredient=v.ingredient, limit_percent=v.limit_percent, actual_percent=v.actual_percent
    )
