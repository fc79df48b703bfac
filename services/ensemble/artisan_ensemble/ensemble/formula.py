"""Brief → formula: the deterministic heuristic, brief features for the policy, IFRA projection.

Heuristic (used when no policy checkpoint is pinned, and the tested default):

| step                  | rule                                                                     |
|-----------------------|--------------------------------------------------------------------------|
| concentration         | 0.08 + 0.17 × intensity (eau de toilette … parfum)                       |
| ingredient count      | 4 + round(8 × complexity) (4 … 12)                                       |
| slots per family      | proportional to the family's weight (largest remainder, ≥ 1 for the top) |
| ingredients in family | spread evenly over the family's volatility range (top, heart, base)      |
| fixative              | a base note (musk, else woody, else amber) when none was chosen          |
| proportions           | family weight shared by its ingredients, normalized                      |
| IFRA                  | restricted ingredients capped at 95 % of their limit, excess shared out  |

Same brief → same formula, byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from artisan_common.catalog import Ingredient, IngredientCatalog
from artisan_ensemble.ensemble.brief import NOTE_FAMILIES, Brief

IFRA_SAFETY = 0.95
FIXATIVE_FAMILIES = ("musk", "woody", "amber")


def concentration_for(brief: Brief) -> float:
    return round(0.08 + 0.17 * brief.intensity, 4)


# The trainer's ``artisan/Fragrance-v0`` observation layout (its env docstring is the contract; the
# ensemble cannot import the trainer): family preferences (summing to 1, catalog order), style
# one-hot, season one-hot, gender one-hot, day/night one-hot, top/middle/base target, intensity,
# complexity, longevity, sillage, avoid-allergens flag, concentration scaled from 0.05-0.30.
POLICY_STYLES = ("fresh", "floral", "oriental", "woody", "gourmand", "chypre", "fougere", "citrus_aromatic")
POLICY_SEASONS = ("spring", "summer", "autumn", "winter")
POLICY_GENDERS = ("feminine", "masculine", "unisex")
POLICY_TIMES = ("day", "night")
STYLE_TO_POLICY = {"citrus": "citrus_aromatic", "aquatic": "fresh", "green": "fresh"}
DEFAULT_PYRAMID = (0.3, 0.4, 0.3)
"""A brief says nothing about season, gender or time of day: spring, unisex, day (the neutral choice)."""


def brief_features(brief: Brief, families: Sequence[str]) -> list[float]:
    """The formula policy's input for this brief, in the trainer env's observation layout."""
    prefs = [max(0.0, float(brief.note_families.get(f, 0.0))) for f in families]  # type: ignore[call-overload]
    total = sum(prefs)
    prefs = [p / total for p in prefs] if total > 0 else [1 / len(families)] * len(families)
    style = STYLE_TO_POLICY.get(brief.style, brief.style)
    concentration = (min(max(concentration_for(brief), 0.05), 0.30) - 0.05) / 0.25
    return [
        *prefs,
        *(1.0 if s == style else 0.0 for s in POLICY_STYLES),
        *(1.0 if s == "spring" else 0.0 for s in POLICY_SEASONS),
        *(1.0 if g == "unisex" else 0.0 for g in POLICY_GENDERS),
        *(1.0 if t == "day" else 0.0 for t in POLICY_TIMES),
        *DEFAULT_PYRAMID,
        brief.intensity,
        brief.complexity,
        brief.intensity,  # longevity follows intensity
        brief.intensity,  # so does sillage
        0.0,
        concentration,
    ]


def feature_size(families: Sequence[str]) -> int:
    return (
        len(families) + len(POLICY_STYLES) + len(POLICY_SEASONS) + len(POLICY_GENDERS) + len(POLICY_TIMES) + 9
    )


def _allocate_slots(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """Largest-remainder apportionment of ``total`` slots by weight (ties by name)."""
    mass = sum(weights.values())
    quotas = {f: total * w / mass for f, w in weights.items()}
    slots = {f: int(q) for f, q in quotas.items()}
    ranked = sorted(quotas, key=lambda f: (-(quotas[f] - slots[f]), -weights[f], f))
    for family in ranked[: total - sum(slots.values())]:
        slots[family] += 1
    top = max(weights, key=lambda f: (weights[f], f))
    if slots[top] == 0:
        slots[top] = 1
    return {f: n for f, n in slots.items() if n > 0}


def _spread(candidates: Sequence[Ingredient], count: int) -> list[Ingredient]:
    ordered = sorted(candidates, key=lambda i: (-i.volatility, i.id))
    if count >= len(ordered):
        return ordered
    if count == 1:
        return [ordered[len(ordered) // 2]]
    step = (len(ordered) - 1) / (count - 1)
    return [ordered[round(k * step)] for k in range(count)]


def heuristic_formula(brief: Brief, catalog: IngredientCatalog) -> dict[str, float]:
    """Ingredient id → proportion of the concentrate (sums to 1), IFRA-capped at the brief's concentration."""
    weights: dict[str, float] = {f: w for f, w in brief.note_families.items() if f in catalog.families}
    if not weights:
        weights = {catalog.families[0]: 1.0}
    # Only relative weights matter; scaled so the top family weighs 1, a tiny weight (e.g. 5e-324)
    # cannot underflow to an all-zero formula.
    top_weight = max(weights.values())
    weights = {f: w / top_weight for f, w in weights.items()}
    count = 4 + round(8 * brief.complexity)
    slots = _allocate_slots(weights, count)
    raw: dict[str, float] = {}
    for family in sorted(slots):
        chosen = _spread(catalog.by_family(family), slots[family])
        for ingredient in chosen:
            raw[ingredient.id] = raw.get(ingredient.id, 0.0) + weights[family] / len(chosen)
    if not any(catalog.get(i).tier == "base" for i in raw):
        for family in FIXATIVE_FAMILIES:
            bases = (
                [i for i in catalog.by_family(family) if i.tier == "base"]
                if family in catalog.families
                else []
            )
            if bases:
                fixative = min(bases, key=lambda i: (i.restricted, i.id))
                raw[fixative.id] = 0.5 * min(raw.values())
                break
    return project_to_ifra(raw, catalog, concentration_for(brief))


def project_to_ifra(
    proportions: Mapping[str, float], catalog: IngredientCatalog, concentration: float
) -> dict[str, float]:
    """Normalize and cap every restricted ingredient at IFRA_SAFETY × its limit; share the excess out.

    When every ingredient ends up capped, the leftover goes to the least volatile unrestricted
    material of the catalog (a neutral carrier note), so the result still sums to 1.
    """
    total = sum(max(0.0, v) for v in proportions.values())
    if total <= 0:
        raise ValueError("a formula needs at least one positive proportion")
    shares = {k: max(0.0, v) / total for k, v in proportions.items() if v > 0}
    caps = {
        k: IFRA_SAFETY * lim / (concentration * 100)
        for k in shares
        if (lim := catalog.get(k).ifra_max_percent) is not None
    }
    capped: set[str] = set()
    for _ in range(len(shares) + 1):
        over = {k for k, v in shares.items() if k in caps and k not in capped and v > caps[k]}
        if not over:
            break
        excess = sum(shares[k] - caps[k] for k in over)
        for k in over:
            shares[k] = caps[k]
        capped |= over
        free = {k: v for k, v in shares.items() if k not in capped}
        free_mass = sum(free.values())
        if free_mass <= 0:
            carrier = min(
                (i for i in catalog.ingredients if not i.restricted), key=lambda i: (i.volatility, i.id)
            )
            shares[carrier.id] = shares.get(carrier.id, 0.0) + excess
            break
        for k, v in free.items():
            shares[k] = v + excess * v / free_mass
    return {k: round(v, 6) for k, v in sorted(shares.items()) if v > 0}


def assert_families_match_catalog(catalog: IngredientCatalog) -> None:
    """The brief's family vocabulary must equal the catalog's (called at start-up)."""
    missing = sorted(set(NOTE_FAMILIES) - set(catalog.families))
    if missing:
        raise ValueError(f"brief families {missing} are not in the ingredient catalog {catalog.source}")
