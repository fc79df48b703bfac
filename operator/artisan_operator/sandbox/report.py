"""The demo's record: a timeline of events, the series behind the plots, and ``demo-report/``.

``events.json`` holds one object per event: ``time`` (RFC 3339), ``elapsedSeconds``, ``kind`` and
``name`` of the resource, ``type`` (Rollback, Served, Promoted, Aborted, Winner, Downshifted,
Recovered, ...) and a ``message``. ``index.html`` shows the timeline and three plots drawn here as
inline SVG (no network, no script): the training curve with the rollback marked, the canary weight
over time, and the A/B results (each variant's mean, and each treatment's difference to control
with its confidence interval on its own axis, 0 marked).

:func:`assess_story` says which required event types are missing; :func:`story_exit_code` turns
that, a recorded failure and the local runtime's errors into the exit code.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REQUIRED_EVENTS: tuple[tuple[str, str], ...] = (
    ("TrainingRun", "Rollback"),
    ("ModelPin", "Served"),
    ("Canary", "Promoted"),
    ("Canary", "Aborted"),
    ("ABExperiment", "Winner"),
    ("ModelPin", "Downshifted"),
    ("ModelPin", "Recovered"),
)
"""(kind, type) of every step of the story, in order; each must happen at least once."""


@dataclass(frozen=True)
class StoryEvent:
    time: str
    elapsed_seconds: float
    kind: str
    name: str
    type: str
    message: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "elapsedSeconds": round(self.elapsed_seconds, 3),
            "kind": self.kind,
            "name": self.name,
            "type": self.type,
            "message": self.message,
        }


@dataclass
class Series:
    """What the plots show, gathered while the story runs."""

    training: list[tuple[int, float]] = field(default_factory=list)
    """(step, mean episode return) per trainer update."""
    rollbacks: list[tuple[int, int, str]] = field(default_factory=list)
    """(step detected, step restored, reason) per trainer rollback."""
    canary_weights: list[tuple[float, int, str]] = field(default_factory=list)
    """(elapsed seconds, canary weight, rollout label)."""
    ab_intervals: list[tuple[str, float | None, float | None, float | None]] = field(default_factory=list)
    """(variant, mean, CI lower, CI upper) at the experiment's conclusion."""


class Timeline:
    """Records events (thread-safe) and prints each as it happens."""

    def __init__(
        self, emit: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._emit = emit
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self.events: list[StoryEvent] = []
        self.series = Series()

    def elapsed(self) -> float:
        return self._clock() - self._start

    def record(self, kind: str, name: str, type_: str, message: str) -> StoryEvent:
        event = StoryEvent(
            time=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            elapsed_seconds=self.elapsed(),
            kind=kind,
            name=name,
            type=type_,
            message=message,
        )
        with self._lock:
            self.events.append(event)
        self._emit(f"[{event.elapsed_seconds:7.1f}s] {kind}/{name} {type_}: {message}")
        return event


def assess_story(events: Iterable[StoryEvent]) -> list[str]:
    """The required (kind, type) pairs that no event shows, as ``Kind/Type`` strings (empty: all done)."""
    seen = {(e.kind, e.type) for e in events}
    return [f"{kind}/{type_}" for kind, type_ in REQUIRED_EVENTS if (kind, type_) not in seen]


def story_exit_code(missing: Sequence[str], failure: str | None, runtime_errors: Sequence[str]) -> int:
    """The demo's exit code: 0 only when every step happened and nothing went wrong on the way.

    | missing events | failure recorded        | runtime errors      | exit |
    |----------------|-------------------------|---------------------|------|
    | []             | None                    | []                  | 0    |
    | [Canary/Aborted] | None                  | []                  | 1    |
    | []             | "deadline passed"       | []                  | 1    |
    | []             | None                    | ["pod x: exit 137"] | 1    |
    """
    return 1 if missing or failure or runtime_errors else 0


# ---------------------------------------------------------------------------------------- writing


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_report(
    directory: Path,
    events: Sequence[StoryEvent],
    series: Series,
    *,
    missing: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """``events.json`` and ``index.html`` under ``directory`` (atomically); returns both paths."""
    document = {
        "events": [e.to_wire() for e in events],
        "missing": list(missing),
        "complete": not missing,
        "series": {
            "training": [{"step": s, "meanReturn": r} for s, r in series.training],
            "rollbacks": [{"step": s, "targetStep": t, "reason": r} for s, t, r in series.rollbacks],
            "canaryWeights": [
                {"elapsedSeconds": round(t, 3), "weight": w, "rollout": label}
                for t, w, label in series.canary_weights
            ],
            "abIntervals": [
                {"variant": v, "mean": m, "ciLower": lo, "ciUpper": hi}
                for v, m, lo, hi in series.ab_intervals
            ],
        },
        **dict(extra or {}),
    }
    events_path = directory / "events.json"
    html_path = directory / "index.html"
    _atomic_write(events_path, json.dumps(document, indent=2, sort_keys=False) + "\n")
    _atomic_write(html_path, render_html(events, series, missing=missing))
    return events_path, html_path


# -------------------------------------------------------------------------------------------- SVG

WIDTH, HEIGHT, MARGIN = 640, 240, 44


def _scale(values: Sequence[float], lo_px: float, hi_px: float) -> Callable[[float], float]:
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    return lambda v: lo_px + (v - lo) / (hi - lo) * (hi_px - lo_px)


def _frame(title: str, body: str, x_label: str, y_label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{html.escape(title)}">'
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>'
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">'
        f"{html.escape(title)}</text>"
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - 10}" y2="{HEIGHT - MARGIN}" stroke="#333"/>'
        f'<line x1="{MARGIN}" y1="26" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="#333"/>'
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11">'
        f"{html.escape(x_label)}</text>"
        f'<text x="12" y="{HEIGHT / 2}" font-size="11" transform="rotate(-90 12 {HEIGHT / 2})" '
        f'text-anchor="middle">{html.escape(y_label)}</text>{body}</svg>'
    )


def _ticks(lo: float, hi: float, to_px: Callable[[float], float], *, vertical: bool) -> str:
    parts = []
    for i in range(5):
        value = lo + (hi - lo) * i / 4
        px = to_px(value)
        if vertical:
            parts.append(
                f'<text x="{MARGIN - 4}" y="{px + 4:.1f}" text-anchor="end" font-size="9">{value:.3g}</text>'
            )
        else:
            parts.append(
                f'<text x="{px:.1f}" y="{HEIGHT - MARGIN + 12}" text-anchor="middle" font-size="9">'
                f"{value:.3g}</text>"
            )
    return "".join(parts)


def training_svg(series: Series) -> str:
    points = series.training
    if not points:
        return _frame(
            "Training: mean episode return", '<text x="60" y="120">no data</text>', "step", "return"
        )
    steps = [float(s) for s, _ in points] + [float(s) for s, _, _ in series.rollbacks]
    returns = [r for _, r in points]
    x = _scale(steps, MARGIN, WIDTH - 16)
    y = _scale(returns, HEIGHT - MARGIN, 30)
    path = " ".join(f"{x(float(s)):.1f},{y(r):.1f}" for s, r in points)
    body = [f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{path}"/>']
    for step, target, reason in series.rollbacks:
        px = x(float(step))
        body.append(
            f'<line x1="{px:.1f}" y1="28" x2="{px:.1f}" y2="{HEIGHT - MARGIN}" stroke="#d62728" '
            f'stroke-dasharray="4 3"/><text x="{px + 3:.1f}" y="38" font-size="10" fill="#d62728">'
            f"rollback ({html.escape(reason)}) → step {target}</text>"
        )
    body.append(_ticks(min(steps), max(steps), x, vertical=False))
    body.append(_ticks(min(returns), max(returns), y, vertical=True))
    return _frame("Training: mean episode return (rollback marked)", "".join(body), "step", "mean return")


def canary_svg(series: Series) -> str:
    points = series.canary_weights
    if not points:
        return _frame("Canary weight", '<text x="60" y="120">no data</text>', "seconds", "weight %")
    times = [t for t, _, _ in points]
    x = _scale(times, MARGIN, WIDTH - 16)
    y = _scale([0.0, 100.0], HEIGHT - MARGIN, 30)
    colours = ["#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    body = []
    labels: list[str] = []
    for label in (p[2] for p in points):
        if label not in labels:
            labels.append(label)
    for index, label in enumerate(labels):
        mine = [(t, w) for t, w, lab in points if lab == label]
        steps: list[str] = []
        previous: int | None = None
        for t, w in mine:
            if previous is not None:
                steps.append(f"{x(t):.1f},{y(previous):.1f}")
            steps.append(f"{x(t):.1f},{y(w):.1f}")
            previous = w
        colour = colours[index % len(colours)]
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(steps)}"/>')
        body.append(
            f'<text x="{WIDTH - 150}" y="{40 + 14 * index}" font-size="11" fill="{colour}">'
            f"{html.escape(label)}</text>"
        )
    body.append(_ticks(min(times), max(times), x, vertical=False))
    body.append(_ticks(0.0, 100.0, y, vertical=True))
    return _frame("Canary weight over time", "".join(body), "seconds since the demo started", "weight %")


def ab_differences(
    intervals: Sequence[tuple[str, float | None, float | None, float | None]],
) -> list[tuple[str, float, float | None, float | None]]:
    """Each treatment's difference to control (the first variant) with its interval.

    The status reports each variant's mean, and for treatments the confidence interval of the
    difference to control (``ciLower``/``ciUpper``), so the point is ``mean - control mean``:

    | variants (name, mean, lo, hi)                          | result                        |
    |--------------------------------------------------------|-------------------------------|
    | (control, 4.0, -, -), (a, 4.5, 0.2, 0.8)               | [(a, 0.5, 0.2, 0.8)]          |
    | (control, 4.0, -, -), (a, 3.9, -0.3, 0.1), (b, -, -, -) | [(a, -0.1, -0.3, 0.1)]       |
    | (control, -, -, -), (a, 4.5, 0.2, 0.8)                 | [] (no control mean)          |
    """
    if not intervals or intervals[0][1] is None:
        return []
    control = float(intervals[0][1])
    return [(v, float(m) - control, lo, hi) for v, m, lo, hi in intervals[1:] if m is not None]


def ab_svg(series: Series) -> str:
    """Two plots: each variant's mean rating, and each treatment's difference to control with its
    confidence interval on its own axis, 0 (no difference) marked: an interval clear of 0 is a win
    or a loss. (The interval is of the difference, so it never shares the means' axis.)"""
    rows = [(v, float(m)) for v, m, _, _ in series.ab_intervals if m is not None]
    if not rows:
        return _frame("A/B: mean rating per variant", '<text x="60" y="120">no data</text>', "rating", "")
    x = _scale([m for _, m in rows], MARGIN + 60, WIDTH - 20)
    body = []
    for index, (variant, mean) in enumerate(rows):
        cy = 50 + index * 40
        name = html.escape(variant)
        body.append(
            f'<text x="{MARGIN + 54}" y="{cy + 4}" text-anchor="end" font-size="11">{name}</text>'
            f'<circle class="mean" data-variant="{name}" cx="{x(mean):.1f}" cy="{cy}" r="4" '
            'fill="#ff7f0e"/>'
        )
    means = [m for _, m in rows]
    body.append(_ticks(min(means), max(means), x, vertical=False))
    means_svg = _frame("A/B: mean rating per variant", "".join(body), "mean rating", "")

    differences = ab_differences(series.ab_intervals)
    if not differences:
        return means_svg + _frame(
            "A/B: difference to control", '<text x="60" y="120">no data</text>', "rating − control", ""
        )
    values = [0.0] + [d for _, d, _, _ in differences]
    values += [float(b) for _, _, lo, hi in differences for b in (lo, hi) if b is not None]
    dx = _scale(values, MARGIN + 60, WIDTH - 20)
    zero = dx(0.0)
    body = [
        f'<line class="zero" x1="{zero:.1f}" y1="28" x2="{zero:.1f}" y2="{HEIGHT - MARGIN}" '
        'stroke="#777" stroke-dasharray="4 3"/>'
        f'<text x="{zero + 3:.1f}" y="38" font-size="10" fill="#777">0 = control</text>'
    ]
    for index, (variant, difference, lo, hi) in enumerate(differences):
        cy = 60 + index * 40
        name = html.escape(variant)
        body.append(f'<text x="{MARGIN + 54}" y="{cy + 4}" text-anchor="end" font-size="11">{name}</text>')
        if lo is not None and hi is not None:
            body.append(
                f'<line class="ci" data-variant="{name}" x1="{dx(lo):.1f}" y1="{cy}" x2="{dx(hi):.1f}" '
                f'y2="{cy}" stroke="#1f77b4" stroke-width="3"/>'
            )
        body.append(
            f'<circle class="difference" data-variant="{name}" cx="{dx(difference):.1f}" cy="{cy}" r="4" '
            'fill="#1f77b4"/>'
        )
    body.append(_ticks(min(values), max(values), dx, vertical=False))
    return means_svg + _frame(
        "A/B: difference to control (point) and its confidence interval (bar)",
        "".join(body),
        "mean rating − control's mean rating",
        "",
    )


def render_html(events: Sequence[StoryEvent], series: Series, *, missing: Sequence[str]) -> str:
    rows = "".join(
        f"<tr><td>{e.elapsed_seconds:.1f}s</td><td>{html.escape(e.kind)}/{html.escape(e.name)}</td>"
        f"<td><b>{html.escape(e.type)}</b></td><td>{html.escape(e.message)}</td></tr>"
        for e in events
    )
    verdict = (
        '<p style="color:#2ca02c"><b>Every step of the story happened.</b></p>'
        if not missing
        else f'<p style="color:#d62728"><b>Missing: {html.escape(", ".join(missing))}</b></p>'
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Artisan sandbox demo</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:60em}td{padding:2px 8px;"
        "vertical-align:top;border-bottom:1px solid #eee}svg{display:block;margin:1em 0}</style></head>"
        f"<body><h1>Artisan sandbox demo</h1>{verdict}"
        f"{training_svg(series)}{canary_svg(series)}{ab_svg(series)}"
        f"<h2>Timeline</h2><table><tr><th>t</th><th>object</th><th>event</th><th>detail</th></tr>{rows}</table>"
        "</body></html>\n"
    )
