"""IFRA limits and EU allergen labelling for a formula (pure).

A formula gives the proportions of each ingredient in the fragrance *concentrate* (they are
normalized to sum to 1). The finished product holds the concentrate at ``concentration``
(0.2 = 20 %, an eau de parfum). IFRA limits and EU labelling thresholds apply to the finished
product, so an ingredient's actual percent is ``proportion × concentration × 100``.

Worked example (concentration 0.2, oakmoss limit 0.1 %):

| oakmoss proportion | actual % in product | verdict              |
|--------------------|---------------------|----------------------|
| 0.004              | 0.08                | compliant            |
| 0.005              | 0.10                | compliant (at limit) |
| 0.010              | 0.20                | violation, 2× limit  |
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from artisan_common.catalog import IngredientCatalog

ProductType = Literal["leave_on", "rinse_off"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IfraViolation(_Frozen):
    ingredient: str
    """Ingredient id."""
    limit_percent: float
    """IFRA maximum in the finished product, percent."""
    actual_percent: float
    """Concentration in the finished product, percent."""

    @property
    def excess_ratio(self) -> float:
        """How far over the limit: actual / limit (inf for a prohibited material)."""
        return math.inf if self.limit_percent == 0 else self.actual_percent / self.limit_percent


class AllergenPresence(_Frozen):
    allergen: str
    """EU allergen id."""
    actual_percent: float
    """Concentration in the finished product, percent (summed over the ingredients that carry it)."""
    sources: tuple[str, ...]
    """Ingredients it comes from."""


class IfraReport(_Frozen):
    concentration: float
    """Share of concentrate in the finished product (0–1)."""
    violations: tuple[IfraViolation, ...] = ()
    """Restricted ingredients above their limit."""
    allergens: tuple[AllergenPresence, ...] = ()
    """Allergens above the labelling threshold (they must be declared on the label)."""
    labelling_threshold_percent: float = Field(ge=0)
    """Threshold used for ``allergens``."""
    compliant: bool
    """No IFRA violation (allergens above the threshold need a label; they do not break compliance)."""

    @property
    def total_excess(self) -> float:
        """Sum over violations of (actual / limit − 1): 0 when compliant; a smooth penalty signal."""
        return sum(min(v.excess_ratio, 1e6) - 1.0 for v in self.violations)


def normalize_proportions(proportions: Mapping[str, float]) -> dict[str, float]:
    """Proportions scaled to sum to 1; negatives and non-finite values are refused."""
    for ingredient_id, value in proportions.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"proportion of {ingredient_id!r} must be a finite number ≥ 0, got {value}")
    total = sum(proportions.values())
    if total <= 0:
        raise ValueError("a formula needs at least one ingredient with a positive proportion")
    return {ingredient_id: value / total for ingredient_id, value in proportions.items() if value > 0}


def check_formula(
    proportions: Mapping[str, float],
    catalog: IngredientCatalog,
    concentration: float = 0.2,
    product_type: ProductType = "leave_on",
) -> IfraReport:
    """Check a formula against the IFRA limits and the EU allergen labelling threshold.

    ``proportions`` maps ingredient id → share of the concentrate (normalized here); unknown ids
    raise ``KeyError`` naming the id. ``concentration`` is the concentrate's share of the product.
    """
    if not 0 < concentration <= 1:
        raise ValueError(f"concentration must be in (0, 1], got {concentration}")
    shares = normalize_proportions(proportions)
    violations: list[IfraViolation] = []
    allergen_percent: dict[str, float] = {}
    allergen_sources: dict[str, list[str]] = {}
    for ingredient_id, share in shares.items():
        ingredient = catalog.get(ingredient_id)
        actual = share * concentration * 100.0
        limit = ingredient.ifra_max_percent
        # A tiny tolerance so a formula exactly at the limit is not refused for float rounding.
        if limit is not None and actual > limit * (1 + 1e-9):
            violations.append(
                IfraViolation(ingredient=ingredient_id, limit_percent=limit, actual_percent=actual)
            )
        for allergen, fraction in ingredient.allergen_fractions().items():
            allergen_percent[allergen] = allergen_percent.get(allergen, 0.0) + actual * fraction
            allergen_sources.setdefault(allergen, []).append(ingredient_id)
    labelling = catalog.labelling
    threshold = labelling.leave_on_percent if product_type == "leave_on" else labelling.rinse_off_percent
    allergens = tuple(
        AllergenPresence(allergen=name, actual_percent=percent, sources=tuple(allergen_sources[name]))
        for name, percent in sorted(allergen_percent.items())
        if percent > threshold
    )
    return IfraReport(
        concentration=concentration,
        violations=tuple(sorted(violations, key=lambda v: v.ingredient)),
        allergens=allergens,
        labelling_threshold_percent=threshold,
        compliant=not violations,
    )
