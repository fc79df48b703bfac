"""``artisan/Fragrance-v0``: compose a formula for a fragrance brief (a gymnasium env).

Each episode is one brief and one formula (a contextual bandit: ``reset`` draws a brief, one
``step`` scores the formula and ends the episode).

**Observation** (40 floats in [0, 1]): note-family preferences (14, summing to 1), style one-hot
(8), season one-hot (4), gender one-hot (3: feminine, masculine, unisex), day/night one-hot (2),
target top/middle/base pyramid (3, summing to 1), intensity, complexity, longevity, sillage,
avoid-allergens flag, concentration (share of concentrate in the product, scaled from 0.05–0.30).

**Action** (one float in [0, 1] per catalog ingredient, catalog order): ingredient weights; the
formula is ``weights / sum(weights)`` (weights ≤ ``min_weight`` count as absent). An empty formula
scores ``EMPTY_FORMULA_REWARD``.

**Reward** (:func:`designed_reward`; in [−(3·ifra_weight + allergen_weight), 1], so [−3.5, 1]
with the defaults ``ifra_weight`` = 1 and ``allergen_weight`` = 0.5)::

    reward = 0.55·family_match + 0.25·pyramid_match + 0.20·diversity                  ∈ [0, 1]
             − ifra_weight · min(log1p(IFRA excess), 3)                                ∈ [−3·w, 0]
             − allergen_weight · min(labelled allergens / 5, 1)   (if the brief avoids them)

- family_match: cosine between the formula's family profile (proportion per family) and the brief's
  family preferences (both non-negative, so in [0, 1]);
- pyramid_match: 1 − ½·L1 distance between the formula's top/middle/base shares and the target;
- diversity: how close the effective number of ingredients ``exp(entropy)`` is to the brief's
  complexity target ``3 + 12·complexity`` (``exp(−|ln(n_eff/target)|)``, in (0, 1]);
- IFRA excess: Σ max(0, actual/limit − 1) over restricted ingredients in the finished product at the
  brief's concentration (same rule as :func:`artisan_common.ifra.check_formula`); the penalty is
  capped at 3 (reached at an excess of e³ − 1 ≈ 19), so one wild formula cannot dominate a batch;
- allergens: count above the EU leave-on labelling threshold, only when the brief avoids them;
  capped at 5 (penalty at most ``allergen_weight``).

An empty formula (every weight ≤ ``min_weight``) scores ``EMPTY_FORMULA_REWARD`` (−1).

Observed but not rewarded: style (it only shapes the family preferences of random briefs), season,
gender, day/night, intensity, longevity and sillage are in the observation so that a reward model
or a later reward can use them, but the designed reward reads only the family preferences, the
pyramid target, complexity, concentration and the avoid-allergens flag (nor do the reward model's
features, :meth:`Scores.features`, include them).

With a reward model (``reward_model``, fitted on curated feedback), the reward becomes
``(1 − reward_model_weight)·designed + reward_model_weight·model(features)``; the model is linear,
so that blend has no fixed bounds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from artisan_common.catalog import IngredientCatalog, load_catalog
from artisan_common.curation import FeedbackSample
from artisan_common.training import FRAGRANCE_ENV_ID

FloatArray = npt.NDArray[np.float64]

STYLES = ("fresh", "floral", "oriental", "woody", "gourmand", "chypre", "fougere", "citrus_aromatic")
SEASONS = ("spring", "summer", "autumn", "winter")
GENDERS = ("feminine", "masculine", "unisex")
TIMES = ("day", "night")
TIERS = ("top", "middle", "base")
SCALARS = ("intensity", "complexity", "longevity", "sillage", "avoid_allergens", "concentration")
EMPTY_FORMULA_REWARD = -1.0
MATCH_WEIGHTS = (0.55, 0.25, 0.20)

# Families each style leans towards (prior for random briefs).
STYLE_FAMILIES: dict[str, tuple[str, ...]] = {
    "fresh": ("fresh", "aquatic", "citrus", "green"),
    "floral": ("floral", "powdery", "musk"),
    "oriental": ("amber", "spicy", "gourmand"),
    "woody": ("woody", "leather", "amber"),
    "gourmand": ("gourmand", "fruity", "amber"),
    "chypre": ("citrus", "woody", "floral"),
    "fougere": ("herbal", "woody", "fresh"),
    "citrus_aromatic": ("citrus", "herbal", "spicy"),
}


@dataclass(frozen=True)
class Brief:
    """A structured fragrance brief, as the ensemble produces it and the env observes it."""

    families: dict[str, float]
    style: str
    season: str = "spring"
    gender: str = "unisex"
    time: str = "day"
    pyramid: tuple[float, float, float] = (0.3, 0.4, 0.3)
    intensity: float = 0.5
    complexity: float = 0.5
    longevity: float = 0.5
    sillage: float = 0.5
    avoid_allergens: bool = False
    concentration: float = 0.15

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Brief:
        """Build from a brief dict (feedback payload); unknown keys are ignored, bad values refused."""
        families = {str(k): float(v) for k, v in dict(data.get("families", {})).items()}
        style = str(data.get("style", "fresh"))
        if style not in STYLES:
            raise ValueError(f"brief.style: {style!r} is not one of {STYLES}")
        pyramid = tuple(float(x) for x in data.get("pyramid", (0.3, 0.4, 0.3)))
        if len(pyramid) != 3:
            raise ValueError("brief.pyramid: needs three shares (top, middle, base)")
        return cls(
            families=families,
            style=style,
            season=str(data.get("season", "spring")),
            gender=str(data.get("gender", "unisex")),
            time=str(data.get("time", "day")),
            pyramid=(pyramid[0], pyramid[1], pyramid[2]),
            intensity=float(data.get("intensity", 0.5)),
            complexity=float(data.get("complexity", 0.5)),
            longevity=float(data.get("longevity", 0.5)),
            sillage=float(data.get("sillage", 0.5)),
            avoid_allergens=bool(data.get("avoid_allergens", False)),
            concentration=float(data.get("concentration", 0.15)),
        )


def observation_size(catalog: IngredientCatalog) -> int:
    return len(catalog.families) + len(STYLES) + len(SEASONS) + len(GENDERS) + len(TIMES) + 3 + len(SCALARS)


def _one_hot(options: Sequence[str], value: str, field: str) -> list[float]:
    if value not in options:
        raise ValueError(f"brief.{field}: {value!r} is not one of {tuple(options)}")
    return [1.0 if option == value else 0.0 for option in options]


def brief_observation(brief: Brief, catalog: IngredientCatalog) -> npt.NDArray[np.float32]:
    prefs = np.array([max(0.0, brief.families.get(f, 0.0)) for f in catalog.families])
    prefs = prefs / prefs.sum() if prefs.sum() > 0 else np.full(len(prefs), 1 / len(prefs))
    pyramid = np.clip(np.array(brief.pyramid, dtype=np.float64), 0, None)
    pyramid = pyramid / pyramid.sum() if pyramid.sum() > 0 else np.full(3, 1 / 3)
    concentration = (min(max(brief.concentration, 0.05), 0.30) - 0.05) / 0.25
    parts = [
        *prefs.tolist(),
        *_one_hot(STYLES, brief.style, "style"),
        *_one_hot(SEASONS, brief.season, "season"),
        *_one_hot(GENDERS, brief.gender, "gender"),
        *_one_hot(TIMES, brief.time, "time"),
        *pyramid.tolist(),
        brief.intensity,
        brief.complexity,
        brief.longevity,
        brief.sillage,
        1.0 if brief.avoid_allergens else 0.0,
        concentration,
    ]
    return np.clip(np.asarray(parts, dtype=np.float32), 0.0, 1.0)


class CatalogArrays:
    """The catalog as dense arrays, so scoring a formula is a few vector operations."""

    def __init__(self, catalog: IngredientCatalog) -> None:
        self.catalog = catalog
        n, f = len(catalog), len(catalog.families)
        self.family = np.zeros((n, f))
        self.tier = np.zeros((n, 3))
        self.limit = np.full(n, np.inf)
        allergen_names = sorted({a for i in catalog for a in i.allergen_fractions()})
        self.allergen = np.zeros((n, len(allergen_names)))
        for row, ingredient in enumerate(catalog):
            self.family[row, catalog.family_index(ingredient.family)] = 1.0
            self.tier[row, TIERS.index(ingredient.tier)] = 1.0
            if ingredient.ifra_max_percent is not None:
                self.limit[row] = ingredient.ifra_max_percent
            for name, fraction in ingredient.allergen_fractions().items():
                self.allergen[row, allergen_names.index(name)] = fraction
        self.labelling_percent = catalog.labelling.leave_on_percent


@dataclass(frozen=True)
class Scores:
    family_match: float
    pyramid_match: float
    diversity: float
    ifra_excess: float
    labelled_allergens: int

    def features(self, family_profile: FloatArray) -> FloatArray:
        """Inputs of the learned reward model."""
        head = [self.family_match, self.pyramid_match, self.diversity, math.log1p(self.ifra_excess)]
        return np.concatenate([head, [self.labelled_allergens / 5.0], family_profile])


def score_formula(
    proportions: FloatArray, obs: npt.NDArray[np.float32], arrays: CatalogArrays
) -> tuple[Scores, FloatArray]:
    """Component scores of a normalized formula for the brief in ``obs``; also the family profile."""
    f = arrays.family.shape[1]
    prefs = obs[:f].astype(np.float64)
    offset = f + len(STYLES) + len(SEASONS) + len(GENDERS) + len(TIMES)
    target_pyramid = obs[offset : offset + 3].astype(np.float64)
    complexity = float(obs[offset + 4])
    concentration = 0.05 + 0.25 * float(obs[offset + 8])

    profile = proportions @ arrays.family
    denom = math.sqrt(float(profile @ profile) * float(prefs @ prefs))
    family_match = float(profile @ prefs) / denom if denom > 0 else 0.0
    pyramid_match = 1.0 - 0.5 * float(np.abs(proportions @ arrays.tier - target_pyramid).sum())
    present = proportions[proportions > 0]
    effective = math.exp(float(-(present * np.log(present)).sum()))
    target = 3.0 + 12.0 * complexity
    diversity = math.exp(-abs(math.log(effective / target)))
    actual_percent = proportions * concentration * 100.0
    excess = float(np.maximum(actual_percent / arrays.limit - 1.0, 0.0).sum())
    allergens = int(((actual_percent @ arrays.allergen) > arrays.labelling_percent).sum())
    return Scores(family_match, pyramid_match, diversity, excess, allergens), profile


def designed_reward(
    scores: Scores, avoid_allergens: bool, ifra_weight: float, allergen_weight: float
) -> float:
    w_family, w_pyramid, w_diversity = MATCH_WEIGHTS
    reward = (
        w_family * scores.family_match + w_pyramid * scores.pyramid_match + w_diversity * scores.diversity
    )
    reward -= ifra_weight * min(math.log1p(scores.ifra_excess), 3.0)
    if avoid_allergens:
        reward -= allergen_weight * min(scores.labelled_allergens / 5.0, 1.0)
    return reward


@dataclass(frozen=True)
class LinearRewardModel:
    """Ridge regression from :meth:`Scores.features` to the curated reward (numpy, JSON on disk)."""

    weights: tuple[float, ...]
    bias: float

    def predict(self, features: FloatArray) -> float:
        return float(np.dot(self.weights, features) + self.bias)

    def to_json(self) -> str:
        return json.dumps({"weights": list(self.weights), "bias": self.bias})

    @classmethod
    def from_json(cls, text: str) -> LinearRewardModel:
        data = json.loads(text)
        return cls(weights=tuple(float(w) for w in data["weights"]), bias=float(data["bias"]))


def fit_reward_model(
    samples: Sequence[FeedbackSample], catalog: IngredientCatalog, l2: float = 1e-2
) -> LinearRewardModel:
    """Fit on curated samples that carry both the brief and the formula (others are skipped)."""
    arrays = CatalogArrays(catalog)
    rows: list[FloatArray] = []
    targets: list[float] = []
    for sample in samples:
        if sample.brief is None or not sample.formula:
            continue
        obs = brief_observation(Brief.from_mapping(sample.brief), catalog)
        dense = np.asarray(catalog.proportions_from_ids(sample.formula), dtype=np.float64)
        if dense.sum() <= 0:
            continue
        scores, profile = score_formula(dense / dense.sum(), obs, arrays)
        rows.append(scores.features(profile))
        targets.append(sample.reward)
    if len(rows) < 2:
        raise ValueError(f"need at least 2 curated samples with brief and formula, got {len(rows)}")
    x = np.stack(rows)
    y = np.asarray(targets)
    x_mean, y_mean = x.mean(axis=0), float(y.mean())
    xc = x - x_mean
    weights = np.linalg.solve(xc.T @ xc + l2 * np.eye(x.shape[1]), xc.T @ (y - y_mean))
    return LinearRewardModel(tuple(weights.tolist()), float(y_mean - x_mean @ weights))


class FragranceEnv(gym.Env[npt.NDArray[np.float32], npt.NDArray[np.float32]]):
    """See the module docstring for observation, action and reward."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's class attribute)

    def __init__(
        self,
        *,
        catalog_path: str | None = None,
        ifra_weight: float = 1.0,
        allergen_weight: float = 0.5,
        min_weight: float = 0.02,
        reward_model: str | None = None,
        reward_model_weight: float = 0.5,
    ) -> None:
        self.catalog = load_catalog(Path(catalog_path) if catalog_path else None)
        self.arrays = CatalogArrays(self.catalog)
        self.ifra_weight = ifra_weight
        self.allergen_weight = allergen_weight
        self.min_weight = min_weight
        self.model = LinearRewardModel.from_json(Path(reward_model).read_text()) if reward_model else None
        self.model_weight = reward_model_weight
        size = observation_size(self.catalog)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32)
        self.action_space = spaces.Box(0.0, 1.0, shape=(len(self.catalog),), dtype=np.float32)
        self._obs = np.zeros(size, dtype=np.float32)
        self._avoid_allergens = False
        families = self.catalog.families
        self._style_alpha = np.full((len(STYLES), len(families)), 0.3)
        for row, style in enumerate(STYLES):
            for family in STYLE_FAMILIES[style]:
                if family in families:
                    self._style_alpha[row, families.index(family)] = 3.0
        self._pyramid_alpha = np.full(3, 4.0)
        self._one_hot_sizes = (len(SEASONS), len(GENDERS), len(TIMES))

    def random_observation(self) -> tuple[npt.NDArray[np.float32], bool]:
        """A random brief, written straight into the observation layout (the hot path of reset)."""
        rng = self.np_random
        f = len(self.catalog.families)
        obs = np.zeros(self._obs.shape[0], dtype=np.float32)
        style = int(rng.integers(len(STYLES)))
        obs[:f] = rng.dirichlet(self._style_alpha[style])
        offset = f
        for index, size in ((style, len(STYLES)), *((int(rng.integers(n)), n) for n in self._one_hot_sizes)):
            obs[offset + index] = 1.0
            offset += size
        obs[offset : offset + 3] = rng.dirichlet(self._pyramid_alpha)
        scalars = rng.random(6)
        avoid = bool(scalars[4] < 0.3)
        scalars[4] = 1.0 if avoid else 0.0  # avoid-allergens flag
        obs[offset + 3 : offset + 9] = scalars  # concentration is uniform over 0.05–0.30 (scaled 0–1)
        return obs, avoid

    def random_brief(self) -> Brief:
        """A random brief as a :class:`Brief` (for callers that want the fields)."""
        obs, avoid = self.random_observation()
        f = len(self.catalog.families)
        offset = f + len(STYLES) + len(SEASONS) + len(GENDERS) + len(TIMES)
        picks = []
        start = f
        for options in (STYLES, SEASONS, GENDERS, TIMES):
            picks.append(options[int(np.argmax(obs[start : start + len(options)]))])
            start += len(options)
        scalars = [float(x) for x in obs[offset + 3 : offset + 9]]
        return Brief(
            families=dict(zip(self.catalog.families, obs[:f].tolist(), strict=True)),
            style=picks[0],
            season=picks[1],
            gender=picks[2],
            time=picks[3],
            pyramid=(float(obs[offset]), float(obs[offset + 1]), float(obs[offset + 2])),
            intensity=scalars[0],
            complexity=scalars[1],
            longevity=scalars[2],
            sillage=scalars[3],
            avoid_allergens=avoid,
            concentration=0.05 + 0.25 * scalars[5],
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        if options and "brief" in options:
            brief = Brief.from_mapping(options["brief"])
            self._obs = brief_observation(brief, self.catalog)
            self._avoid_allergens = brief.avoid_allergens
        else:
            self._obs, self._avoid_allergens = self.random_observation()
        return self._obs.copy(), {}

    def formula(self, action: npt.NDArray[np.float32]) -> FloatArray:
        weights = np.minimum(np.asarray(action, dtype=np.float64), 1.0)
        weights[weights <= self.min_weight] = 0.0  # also drops negatives
        total = weights.sum()
        return weights / total if total > 0 else weights

    def step(
        self, action: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        proportions = self.formula(action)
        info: dict[str, Any] = {}
        if proportions.sum() <= 0:
            reward = EMPTY_FORMULA_REWARD
            info["empty_formula"] = True
        else:
            scores, profile = score_formula(proportions, self._obs, self.arrays)
            reward = designed_reward(scores, self._avoid_allergens, self.ifra_weight, self.allergen_weight)
            if self.model is not None:
                learned = self.model.predict(scores.features(profile))
                reward = (1 - self.model_weight) * reward + self.model_weight * learned
            info["ifra_compliant"] = scores.ifra_excess == 0
        return self._obs.copy(), float(reward), True, False, info


def register() -> None:
    """Register ``artisan/Fragrance-v0`` with gymnasium (idempotent)."""
    if FRAGRANCE_ENV_ID not in gym.registry:
        gym.register(id=FRAGRANCE_ENV_ID, entry_point="artisan_trainer.env:FragranceEnv", max_episode_steps=1)


register()
