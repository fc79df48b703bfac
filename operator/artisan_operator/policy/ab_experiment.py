"""ABExperiment analysis (pure): per-variant statistics, sample-ratio check, guardrails, winner.

:func:`assess_experiment` turns the per-variant sufficient statistics the gateway exports into the
experiment's status and its routing entry. Each treatment is compared with the control (the first
variant) on the primary metric: rates (success, ifraCompliance) with the two-proportion z-test,
means with Welch's t-test (``method: fixed``), or with the always-valid mixture SPRT
(``method: sequential``, the default; see :mod:`artisan_operator.policy.statistics`).

| situation (in this order)                                  | phase        | route (experiment.json)        |
|------------------------------------------------------------|--------------|--------------------------------|
| concluded before, same generation                          | kept         | promoted winner or cleared     |
| SRM chi-square p < srmAlpha                                | Invalid      | cleared (experiment stopped)   |
| a variant has < minSamplesPerVariant samples               | Running      | variants and weights           |
| best significant, favourable treatment passes guardrails   | Concluded    | promoted=winner if promote     |
| every treatment significantly worse, control passes        | Concluded    | winner = control               |
| fixed method at its horizon, no winner                     | Inconclusive | cleared                        |
| sequential, past maxDurationSeconds, no winner             | Inconclusive | cleared                        |
| otherwise                                                  | Running      | variants and weights           |

"Significant" means the corrected p-value (Holm by default; 1/e-value for the sequential method) is
at most α. A guardrail whose value is unknown counts as not met: a winner must be shown to be safe.

kstatus: Invalid is Stalled; every other phase is Ready. A Running experiment's spec (its traffic
split and analysis) is in force and it waits for data, not for the operator, possibly for days, so
``kubectl wait --for=condition=Ready`` and GitOps health checks do not block on it; its end is the
phase (``--for=jsonpath={.status.phase}=Concluded``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from artisan_common.routing import ExperimentRoute, VariantRoute
from artisan_operator.api.ab_experiment import (
    GUARDRAIL_BREACHED,
    MAX_DURATION_REACHED,
    SRM_DETECTED,
    WINNER_FOUND,
    ABExperimentSpec,
    ABExperimentStatus,
    ExperimentPhase,
    Guardrail,
    VariantResult,
)
from artisan_operator.policy.conditions import KState, set_condition, set_kstatus
from artisan_operator.policy.plan import EventNote
from artisan_operator.policy.statistics import (
    Comparison,
    SufficientStats,
    adjust,
    msprt,
    sample_ratio_p_value,
    two_proportion_z_test,
    welch_t_test,
)

RATE_METRICS = frozenset({"success", "ifraCompliance"})
"""Primary metrics that are 0/1 per sample (tested as proportions)."""
TERMINAL: frozenset[ExperimentPhase] = frozenset({"Concluded", "Inconclusive", "Invalid"})
MIN_EXPECTED_FOR_SRM = 5
SRM_FALLBACK_NOTE = (
    "SRM checked on the primary metric's counts (the gateway exports no artisan_variant_assignments_total)"
)
"""The chi-square approximation needs about 5 expected units per variant; no SRM verdict before."""


@dataclass(frozen=True)
class ExperimentObservation:
    """What the handler observed: per-variant statistics of the primary metric and guardrail values."""

    primary: Mapping[str, SufficientStats]
    """Variant name → n, Σx, Σx² of the primary metric."""
    assignments: Mapping[str, int] | None = None
    """Variant name → units assigned (for the SRM test); the primary metric's n when None."""
    guardrails: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Variant name → guardrail metric name → current value."""
    generation: int | None = None
    previous: ABExperimentStatus | None = None
    """The last status written: only its records (start time, conclusion) are trusted."""


@dataclass(frozen=True)
class ExperimentPlan:
    status: ABExperimentStatus
    route: ExperimentRoute | None
    """experiment.json of the target's routing table; None clears it."""
    events: tuple[EventNote, ...] = ()


GUARDRAIL_SOURCES: dict[str, str] = {
    "latencyMean": "latency",
    "latencyP95": "latency",
    "errorRate": "success",
    "ifraCompliance": "ifraCompliance",
    "rating": "rating",
    "reward": "reward",
}
"""The recorded metric (per-variant sufficient statistics) each guardrail is computed from."""
Z_95 = 1.6448536269514722


def guardrail_value(name: str, stats: SufficientStats | None) -> float | None:
    """A guardrail's value for one variant from the recorded metric's n, Σx, Σx² (pure).

    | guardrail      | from           | value                                        |
    |----------------|----------------|----------------------------------------------|
    | latencyMean    | latency        | mean                                         |
    | latencyP95     | latency        | mean + 1.645 sd (normal approximation)       |
    | errorRate      | success (0/1)  | 1 − mean                                     |
    | ifraCompliance | ifraCompliance | mean                                         |
    | rating, reward | the same       | mean                                         |

    Counters carry no quantiles, so latencyP95 is the normal approximation from mean and variance;
    None when there are no samples (a guardrail with an unknown value is not met).
    """
    if stats is None or stats.n == 0:
        return None
    if name == "latencyP95":
        return stats.mean + Z_95 * math.sqrt(stats.variance) if stats.n >= 2 else None
    if name == "errorRate":
        return 1.0 - stats.mean
    return stats.mean


def guardrail_values(
    spec: ABExperimentSpec, recorded: Mapping[str, Mapping[str, SufficientStats]]
) -> dict[str, dict[str, float]]:
    """Variant → guardrail → value, from ``recorded`` (recorded metric → variant → statistics)."""
    values: dict[str, dict[str, float]] = {}
    for variant in spec.variants:
        for guardrail in spec.metrics.guardrails:
            source = recorded.get(GUARDRAIL_SOURCES[guardrail.name], {})
            value = guardrail_value(guardrail.name, source.get(variant.name))
            if value is not None:
                values.setdefault(variant.name, {})[guardrail.name] = value
    return values


def _guardrail_holds(guardrail: Guardrail, value: float | None) -> bool:
    if value is None or math.isnan(value):
        return False
    if guardrail.max is not None and value > guardrail.max:
        return False
    return not (guardrail.min is not None and value < guardrail.min)


def _route(spec: ABExperimentSpec, name: str, promoted: str | None) -> ExperimentRoute:
    return ExperimentRoute(
        experiment=name,
        key=spec.assignment.key,
        salt=spec.assignment.salt,
        variants=[VariantRoute(name=v.name, weight=v.weight, mode=v.mode) for v in spec.variants],
        promoted=promoted,
    )


def _compare(
    spec: ABExperimentSpec, control: SufficientStats, treatment: SufficientStats, alpha: float
) -> Comparison | None:
    if control.n < 2 or treatment.n < 2:
        return None
    is_rate = spec.metrics.primary.name in RATE_METRICS
    if spec.analysis.method == "sequential":
        return msprt(control, treatment, alpha, is_rate)
    if is_rate:
        return two_proportion_z_test(control, treatment, alpha)
    return welch_t_test(control, treatment, alpha)


def _improvement(control_mean: float, mean: float) -> float | None:
    if control_mean == 0 or math.isnan(control_mean) or math.isnan(mean):
        return None
    return (mean - control_mean) / abs(control_mean) * 100.0


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def assess_experiment(
    spec: ABExperimentSpec, name: str, observation: ExperimentObservation, now: datetime
) -> ExperimentPlan:
    """The experiment's status, routing entry and Events for this pass (see the module table)."""
    previous = observation.previous
    generation = observation.generation
    if (
        previous is not None
        and previous.phase in TERMINAL
        and (generation is None or previous.observed_generation == generation)
    ):
        promoted = previous.winner if previous.phase == "Concluded" and spec.on_conclusion.promote else None
        route = _route(spec, name, promoted) if promoted is not None else None
        return ExperimentPlan(previous, route)

    restarted = previous is not None and previous.phase in TERMINAL
    start = previous.start_time if previous is not None and previous.start_time and not restarted else now
    conditions = list(previous.conditions) if previous is not None and not restarted else []
    analysis = spec.analysis
    empty = SufficientStats(0, 0.0, 0.0)
    stats = {v.name: observation.primary.get(v.name, empty) for v in spec.variants}
    control = spec.variants[0].name
    treatments = [v.name for v in spec.variants[1:]]

    # Sample-ratio mismatch: the assignment is broken, so no comparison can be trusted.
    units = observation.assignments or {v: s.n for v, s in stats.items()}
    # Without the gateway's assignment counter the primary metric's counts stand in (they miss
    # assigned users who never produced that metric), and the status says so.
    fallback = "" if observation.assignments else f"; {SRM_FALLBACK_NOTE}"
    counts = [int(units.get(v.name, 0)) for v in spec.variants]
    weights = [float(v.weight) for v in spec.variants]
    live = [w for w in weights if w > 0]
    enough_for_srm = sum(counts) * min(live) / sum(live) >= MIN_EXPECTED_FOR_SRM
    srm_p = sample_ratio_p_value(counts, weights) if enough_for_srm else None

    # Per-variant guardrails.
    guardrails_ok = {
        v.name: all(
            _guardrail_holds(g, observation.guardrails.get(v.name, {}).get(g.name))
            for g in spec.metrics.guardrails
        )
        for v in spec.variants
    }

    # Comparisons against the control, corrected across treatments.
    m = len(treatments)
    ci_alpha = analysis.alpha if analysis.correction == "none" else analysis.alpha / m
    comparisons = {t: _compare(spec, stats[control], stats[t], ci_alpha) for t in treatments}
    raw = [c.p_value if c is not None else 1.0 for c in comparisons.values()]
    adjusted = dict(zip(treatments, adjust(raw, analysis.correction), strict=True))

    control_mean = stats[control].mean
    results = [
        VariantResult(
            name=control,
            n=stats[control].n,
            mean=_finite(control_mean),
            guardrails_ok=guardrails_ok[control],
        )
    ]
    for t in treatments:
        c = comparisons[t]
        sequential = analysis.method == "sequential"
        results.append(
            VariantResult(
                name=t,
                n=stats[t].n,
                mean=_finite(stats[t].mean),
                ci_lower=_finite(c.ci_lower) if c else None,
                ci_upper=_finite(c.ci_upper) if c else None,
                p_value=adjusted[t] if c else None,
                e_value=_finite(c.e_value) if c and sequential and c.e_value is not None else None,
                improvement_percent=_improvement(control_mean, stats[t].mean),
                guardrails_ok=guardrails_ok[t],
            )
        )

    def status(
        phase: ExperimentPhase,
        message: str,
        winner: str | None = None,
        improvement: float | None = None,
        promoted: bool = False,
    ) -> ABExperimentStatus:
        return ABExperimentStatus(
            observed_generation=generation,
            phase=phase,
            conditions=conditions,
            variants=results,
            srm_p_value=srm_p,
            winner=winner,
            improvement_percent=improvement,
            start_time=start,
            concluded_at=now if phase in TERMINAL else None,
            promoted=promoted,
            message=message + fallback,
        )

    def ready(phase: ExperimentPhase, reason: str, message: str) -> None:
        # Ready while the experiment runs or once it ended cleanly; Stalled when it is invalid.
        nonlocal conditions
        state: KState = "stalled" if phase == "Invalid" else "ready"
        conditions = set_kstatus(conditions, state, reason, message, now=now, generation=generation)

    if srm_p is not None and srm_p < analysis.srm_alpha:
        message = (
            f"sample ratio mismatch: {'primary-metric' if fallback else 'assignment'} counts "
            f"{dict(zip(units, counts, strict=False))} do not "
            f"match weights {weights} (chi-square p={srm_p:.2e} < srmAlpha {analysis.srm_alpha})"
        )
        conditions = set_condition(
            conditions, SRM_DETECTED, "True", SRM_DETECTED, message, now=now, generation=generation
        )
        ready("Invalid", SRM_DETECTED, message)
        return ExperimentPlan(
            status("Invalid", message),
            None,
            (EventNote(SRM_DETECTED, message, "Warning"),),
        )
    conditions = set_condition(
        conditions, SRM_DETECTED, "False", "SampleRatioOK", "", now=now, generation=generation
    )

    breached = [v for v, ok in guardrails_ok.items() if not ok] if spec.metrics.guardrails else []
    guard_message = f"guardrails not met by: {', '.join(breached)}" if breached else ""
    conditions = set_condition(
        conditions,
        GUARDRAIL_BREACHED,
        "True" if breached else "False",
        GUARDRAIL_BREACHED if breached else "GuardrailsMet",
        guard_message,
        now=now,
        generation=generation,
    )

    def running(message: str) -> ExperimentPlan:
        ready("Running", "Running", message)
        return ExperimentPlan(status("Running", message), _route(spec, name, None))

    def inconclusive(reason: str, message: str) -> ExperimentPlan:
        ready("Inconclusive", reason, message)
        return ExperimentPlan(status("Inconclusive", message), None, (EventNote(reason, message),))

    smallest = min(s.n for s in stats.values())
    if smallest < analysis.min_samples_per_variant:
        message = f"collecting samples: {smallest} of {analysis.min_samples_per_variant} per variant"
        return running(message)

    increase = spec.metrics.primary.direction == "increase"

    def favourable(t: str) -> bool:
        c = comparisons[t]
        return c is not None and (c.difference > 0 if increase else c.difference < 0)

    significant = [t for t in treatments if comparisons[t] is not None and adjusted[t] <= analysis.alpha]
    better = [t for t in significant if favourable(t)]
    worse = [t for t in significant if not favourable(t)]
    winner: str | None = None
    if better:
        best = max(better, key=lambda t: stats[t].mean if increase else -stats[t].mean)
        winner = best if guardrails_ok[best] else None
    elif len(worse) == len(treatments) and guardrails_ok[control]:
        winner = control

    if winner is not None:
        improvement = None if winner == control else _improvement(control_mean, stats[winner].mean)
        message = f"winner {winner}" + (
            f" ({improvement:+.2f}% vs control)" if improvement is not None else ""
        )
        conditions = set_condition(
            conditions, WINNER_FOUND, "True", WINNER_FOUND, message, now=now, generation=generation
        )
        ready("Concluded", WINNER_FOUND, message)
        promote = spec.on_conclusion.promote
        return ExperimentPlan(
            status("Concluded", message, winner, improvement, promote),
            _route(spec, name, winner) if promote else None,
            (EventNote(WINNER_FOUND, message + ("; promoted to 100% of traffic" if promote else "")),),
        )

    if analysis.method == "fixed":
        message = f"no significant winner at the fixed horizon of {analysis.min_samples_per_variant} samples"
        return inconclusive("NoSignificantDifference", message)
    if (now - start).total_seconds() >= analysis.max_duration_seconds:
        message = f"no winner within maxDurationSeconds={analysis.max_duration_seconds}"
        conditions = set_condition(
            conditions,
            MAX_DURATION_REACHED,
            "True",
            MAX_DURATION_REACHED,
            message,
            now=now,
            generation=generation,
        )
        return inconclusive(MAX_DURATION_REACHED, message)
    return running("no significant difference yet")
