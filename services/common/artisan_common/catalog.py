"""The ingredient catalog: data in ``configs/ingredients.yaml``, typed and validated here (pure).

The catalog is the action space of ``artisan/Fragrance-v0`` (one proportion per ingredient, in
catalog order) and the source of the IFRA limits and allergen flags used by :mod:`artisan_common.ifra`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal, Self

import yaml
from pydantic import Field, ValidationError, model_validator

from artisan_common.model import ApiModel

CONFIG_DIR_ENV = "ARTISAN_CONFIG_DIR"
CATALOG_FILE = "ingredients.yaml"

NoteTier = Literal["top", "middle", "base"]

EU_ALLERGENS: frozenset[str] = frozenset(
    {
        "amyl_cinnamal",
        "amylcinnamyl_alcohol",
        "anise_alcohol",
        "benzyl_alcohol",
        "benzyl_benzoate",
        "benzyl_cinnamate",
        "benzyl_salicylate",
        "butylphenyl_methylpropional",
        "cinnamal",
        "cinnamyl_alcohol",
        "citral",
        "citronellol",
        "coumarin",
        "eugenol",
        "farnesol",
        "geraniol",
        "hexyl_cinnamal",
        "hydroxycitronellal",
        "hydroxyisohexyl_3_cyclohexene_carboxaldehyde",
        "isoeugenol",
        "limonene",
        "linalool",
        "methyl_octyne_carbonate",
        "alpha_isomethyl_ionone",
        "oakmoss_extract",
        "treemoss_extract",
    }
)
"""The 26 allergens EU Regulation 1223/2009 (Annex III) requires on the label above a threshold."""


class Ingredient(ApiModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    """Stable identifier (snake_case), used in formulas and feedback."""
    name: str = Field(min_length=1)
    """Display name."""
    family: str = Field(min_length=1)
    """Olfactory family; one of the catalog's ``families``."""
    volatility: float = Field(ge=0, le=1)
    """0 = heaviest base note, 1 = most volatile top note."""
    ifra_max_percent: float | None = Field(default=None, ge=0, le=100)
    """Highest concentration in the finished product (IFRA Category 4), percent; None = unrestricted."""
    allergen: bool = False
    """The material itself is one of the EU 26 allergens (its id must be in :data:`EU_ALLERGENS`)."""
    contains: dict[str, float] = Field(default_factory=dict)
    """EU allergens naturally present in the material, as a fraction of it (0–1)."""

    @property
    def tier(self) -> NoteTier:
        """Top, middle or base note, from the volatility thirds."""
        if self.volatility >= 2 / 3:
            return "top"
        return "middle" if self.volatility >= 1 / 3 else "base"

    @property
    def restricted(self) -> bool:
        return self.ifra_max_percent is not None

    def allergen_fractions(self) -> dict[str, float]:
        """Allergen id → fraction of this material that is that allergen (itself counts as 1.0)."""
        fractions = dict(self.contains)
        if self.allergen:
            fractions[self.id] = 1.0
        return fractions

    @model_validator(mode="after")
    def _allergens_known(self) -> Self:
        if self.allergen and self.id not in EU_ALLERGENS:
            raise ValueError(f"ingredient {self.id!r} is flagged allergen but is not one of the EU 26")
        for name, fraction in self.contains.items():
            if name not in EU_ALLERGENS:
                raise ValueError(f"ingredient {self.id!r}: contains.{name} is not one of the EU 26 allergens")
            if not 0 < fraction <= 1:
                raise ValueError(f"ingredient {self.id!r}: contains.{name} must be in (0, 1]")
        return self


class LabellingThresholds(ApiModel):
    leave_on_percent: float = Field(default=0.001, gt=0)
    """Allergens above this percent of a leave-on product must be labelled (EU: 0.001 %)."""
    rinse_off_percent: float = Field(default=0.01, gt=0)
    """Allergens above this percent of a rinse-off product must be labelled (EU: 0.01 %)."""


class CatalogFile(ApiModel):
    version: int = Field(default=1, ge=1)
    """Schema version of the file."""
    families: list[str] = Field(min_length=1)
    """The note families, in a fixed order (observation and feature layout depend on it)."""
    labelling: LabellingThresholds = Field(default_factory=LabellingThresholds)
    """Allergen labelling thresholds."""
    ingredients: list[Ingredient] = Field(min_length=1)
    """The ingredients, in action order."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.families)) != len(self.families):
            raise ValueError("families must be unique")
        seen: set[str] = set()
        for index, ingredient in enumerate(self.ingredients):
            if ingredient.id in seen:
                raise ValueError(f"ingredients[{index}].id: duplicate id {ingredient.id!r}")
            seen.add(ingredient.id)
            if ingredient.family not in self.families:
                raise ValueError(
                    f"ingredients[{index}].family: {ingredient.family!r} is not one of {self.families}"
                )
        return self


class CatalogError(ValueError):
    """The catalog file is missing or invalid; the message names the file and the field."""


class IngredientCatalog:
    """Read-only view over a validated catalog with the lookups the env and the IFRA check need."""

    def __init__(self, data: CatalogFile, source: Path | None = None) -> None:
        self.data = data
        self.source = source
        self._by_id = {ingredient.id: ingredient for ingredient in data.ingredients}
        self._index = {ingredient.id: i for i, ingredient in enumerate(data.ingredients)}

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self.data.families)

    @property
    def ingredients(self) -> tuple[Ingredient, ...]:
        return tuple(self.data.ingredients)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(ingredient.id for ingredient in self.data.ingredients)

    @property
    def labelling(self) -> LabellingThresholds:
        return self.data.labelling

    def __len__(self) -> int:
        return len(self.data.ingredients)

    def __iter__(self) -> Iterator[Ingredient]:
        return iter(self.data.ingredients)

    def __contains__(self, ingredient_id: object) -> bool:
        return ingredient_id in self._by_id

    def get(self, ingredient_id: str) -> Ingredient:
        """The ingredient with this id; KeyError naming the id when unknown."""
        try:
            return self._by_id[ingredient_id]
        except KeyError:
            raise KeyError(f"unknown ingredient {ingredient_id!r}") from None

    def index(self, ingredient_id: str) -> int:
        """Position of the ingredient in action order."""
        self.get(ingredient_id)
        return self._index[ingredient_id]

    def by_family(self, family: str) -> tuple[Ingredient, ...]:
        if family not in self.data.families:
            raise KeyError(f"unknown family {family!r}")
        return tuple(i for i in self.data.ingredients if i.family == family)

    def restricted(self) -> tuple[Ingredient, ...]:
        return tuple(i for i in self.data.ingredients if i.restricted)

    def allergens(self) -> tuple[Ingredient, ...]:
        return tuple(i for i in self.data.ingredients if i.allergen or i.contains)

    def family_index(self, family: str) -> int:
        return self.data.families.index(family)

    def proportions_from_ids(self, proportions: Mapping[str, float]) -> list[float]:
        """A dense vector in action order from a sparse id → proportion mapping."""
        dense = [0.0] * len(self)
        for ingredient_id, value in proportions.items():
            dense[self.index(ingredient_id)] = float(value)
        return dense


def default_catalog_path() -> Path:
    """``$ARTISAN_CONFIG_DIR/ingredients.yaml``, else the repository's ``configs/`` next to the package."""
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override) / CATALOG_FILE
    # services/common/artisan_common/catalog.py → repository root is three levels above the package.
    return Path(__file__).resolve().parents[3] / "configs" / CATALOG_FILE


def parse_catalog(document: object, source: str = "<catalog>") -> IngredientCatalog:
    """Validate a parsed YAML document; errors name the source and the offending field path."""
    try:
        return IngredientCatalog(CatalogFile.model_validate(document))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "<root>"
        raise CatalogError(f"{source}: {where}: {first['msg']}") from exc


@functools.lru_cache(maxsize=8)
def _load_cached(path: Path, mtime_ns: int) -> IngredientCatalog:
    del mtime_ns  # part of the cache key only: an edited file is read again
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the ingredient catalog: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: invalid YAML: {exc}") from exc
    catalog = parse_catalog(document, source=str(path))
    catalog.source = path
    return catalog


def load_catalog(path: Path | None = None) -> IngredientCatalog:
    """Load and validate the catalog (cached per path and modification time)."""
    resolved = (path or default_catalog_path()).resolve()
    try:
        mtime = resolved.stat().st_mtime_ns
    except OSError as exc:
        raise CatalogError(f"{resolved}: cannot read the ingredient catalog: {exc.strerror}") from exc
    return _load_cached(resolved, mtime)
