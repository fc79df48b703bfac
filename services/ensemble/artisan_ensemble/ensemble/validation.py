"""Rule-based validation of a brief (the validator model's fallback, and always-on safety rules).

| rule          | issue raised when                                                       |
|---------------|-------------------------------------------------------------------------|
| units         | intensity or complexity outside 0-1 (cannot pass the schema; kept for model output) |
| families      | no family weight ≥ 0.3 (nothing clearly wanted)                          |
| consistency   | the text asks for light/subtle but intensity > 0.75, or strong but < 0.25 |
| consistency   | style not among the wanted families' styles and not backed by the text   |
| complexity    | complexity ≥ 0.8 with a single family, or ≤ 0.2 with five or more         |
| ifra          | the generated formula exceeded an IFRA limit (capped in the served one)   |
| ifra          | the served formula still exceeds a limit: the only formula issue that    |
|               | makes the result invalid                                                 |
| allergen      | an allergen is above the labelling threshold (must be declared)          |

The formula rows come from ``with_formula_check`` once the formula is built (model verdicts get them too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from artisan_common.ifra import IfraReport
from artisan_ensemble.ensemble.brief import Brief
from artisan_ensemble.ensemble.keywords import ENGLISH_KEYWORDS, KOREAN_KEYWORDS, keyword_parse
from artisan_ensemble.ensemble.parsing import extract_json_object, repair_json

ValidationSource = Literal["model", "rules"]

_SOFT_WORDS = ("light", "subtle", "soft", "은은한", "가벼운", "부드러운")
_STRONG_WORDS = ("strong", "intense", "bold", "강한", "진한", "강렬한")
_FAMILY_STYLE_HINT = {kw.style for kw in (*KOREAN_KEYWORDS.values(), *ENGLISH_KEYWORDS.values()) if kw.style}


@dataclass(frozen=True)
class ValidationResult:
    valid: bool
    issues: tuple[str, ...]
    source: ValidationSource


def validate_brief(text: str, brief: Brief, keyword_terms: tuple[str, ...] | None = None) -> ValidationResult:
    """``keyword_terms``: the request's dictionary hits when the caller parsed it already."""
    terms = keyword_parse(text).terms if keyword_terms is None else keyword_terms
    lowered = text.lower()
    issues: list[str] = []
    if not any(w >= 0.3 for w in brief.note_families.values()):
        issues.append("families: no note family has a weight of at least 0.3")
    if any(w in lowered for w in _SOFT_WORDS) and brief.intensity > 0.75:
        issues.append("intensity: the request asks for a light scent but intensity is above 0.75")
    if any(w in lowered for w in _STRONG_WORDS) and brief.intensity < 0.25:
        issues.append("intensity: the request asks for a strong scent but intensity is below 0.25")
    keyword_styles = {
        kw.style
        for term in terms
        if (kw := KOREAN_KEYWORDS.get(term) or ENGLISH_KEYWORDS.get(term)) is not None and kw.style
    }
    family_styles = {f for f in brief.note_families if f in _FAMILY_STYLE_HINT}
    if keyword_styles and brief.style not in keyword_styles | family_styles:
        issues.append(f"style: {brief.style!r} matches neither the request nor the chosen families")
    if brief.complexity >= 0.8 and len(brief.note_families) == 1:
        issues.append("complexity: very complex brief with a single note family")
    if brief.complexity <= 0.2 and len(brief.note_families) >= 5:
        issues.append("complexity: very simple brief with five or more note families")
    return ValidationResult(not issues, tuple(issues), "rules")


def formula_issues(raw: IfraReport, served: IfraReport) -> tuple[str, ...]:
    """Issues from the formula's IFRA/allergen check: ``raw`` as generated, ``served`` after the
    safety projection (see the table)."""
    issues = [
        f"ifra: {v.ingredient} at {v.actual_percent:.3g}% exceeded the IFRA limit of "
        f"{v.limit_percent:.3g}% (capped in the served formula)"
        for v in raw.violations
    ]
    issues += [
        f"ifra: {v.ingredient} at {v.actual_percent:.3g}% exceeds the IFRA limit of {v.limit_percent:.3g}%"
        for v in served.violations
    ]
    issues += [
        f"allergen: {a.allergen} at {a.actual_percent:.3g}% must be declared "
        f"(above {served.labelling_threshold_percent:.3g}%)"
        for a in served.allergens
    ]
    return tuple(issues)


def with_formula_check(result: ValidationResult, raw: IfraReport, served: IfraReport) -> ValidationResult:
    """``result`` plus the formula's issues; only a served formula that still violates IFRA invalidates."""
    extra = formula_issues(raw, served)
    if not extra:
        return result
    issues = tuple(dict.fromkeys((*result.issues, *extra)))
    return ValidationResult(result.valid and served.compliant, issues, result.source)


def parse_validator_output(output: str) -> ValidationResult | None:
    """The validator model's verdict, or None when its output is unusable (then the rules decide)."""
    candidate = extract_json_object(output)
    if candidate is None:
        return None
    try:
        data = json.loads(repair_json(candidate))
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("valid"), bool):
        return None
    raw_issues = data.get("issues", [])
    if not isinstance(raw_issues, list):
        return None
    issues = tuple(str(i)[:200] for i in raw_issues if isinstance(i, str) and i.strip())[:10]
    return ValidationResult(bool(data["valid"]) and not issues, issues, "model")
