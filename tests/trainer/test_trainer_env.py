from __future__ import annotations

import math
from datetime import UTC, datetime

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from artisan_common.catalog import load_catalog
from artisan_common.curation import FeedbackSample
from artisan_common.ifra import check_formula
from artisan_trainer.env import (
    EMPTY_FORMULA_REWARD,
    Brief,
    CatalogArrays,
    FragranceEnv,
    Scores,
    brief_observation,
    designed_reward,
    fit_reward_model,
    score_formula,
)


def test_registered_env_passes_the_gymnasium_checker() -> None:
    env = gym.make("artisan/Fragrance-v0")
    check_env(env.unwrapped)
    assert env.observation_space.shape == (40,)
    assert env.action_space.shape == (len(load_catalog()),)


def test_same_seed_same_brief_and_one_step_episodes() -> None:
    env = FragranceEnv()
    a, _ = env.reset(seed=3)
    b, _ = env.reset(seed=3)
    assert np.array_equal(a, b)
    _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert terminated
    assert not truncated
    assert -5 < reward <= 1


def test_reward_prefers_a_matching_formula_and_penalizes_ifra() -> None:
    env = FragranceEnv()
    catalog = env.catalog
    brief = {"families": {"citrus": 1.0}, "style": "fresh", "pyramid": [1, 0, 0], "complexity": 0.0}
    env.reset(seed=0, options={"brief": brief})
    citrus = np.zeros(len(catalog), dtype=np.float32)
    for name in ("sweet_orange_oil", "mandarin_oil", "grapefruit_oil"):
        citrus[catalog.index(name)] = 1.0
    woody = np.zeros(len(catalog), dtype=np.float32)
    for name in ("sandalwood_oil", "vetiver_oil", "cedarwood_oil"):
        woody[catalog.index(name)] = 1.0
    good = env.step(citrus)[1]
    env.reset(seed=0, options={"brief": brief})
    bad = env.step(woody)[1]
    assert good > bad + 0.5
    env.reset(seed=0, options={"brief": brief})
    risky = citrus.copy()
    risky[catalog.index("bergamot_oil")] = 1.0  # 25 % of a 15 % concentrate is far above 0.4 %
    _, penalized, _, _, info = env.step(risky)
    assert info["ifra_compliant"] is False
    assert penalized < good - 0.5
    env.reset(seed=0)
    assert env.step(np.zeros(len(catalog), dtype=np.float32))[1] == EMPTY_FORMULA_REWARD


def test_vectorized_ifra_agrees_with_check_formula() -> None:
    catalog = load_catalog()
    arrays = CatalogArrays(catalog)
    rng = np.random.default_rng(0)
    obs = brief_observation(Brief(families={"woody": 1.0}, style="woody", concentration=0.2), catalog)
    for _ in range(20):
        p = rng.dirichlet(np.full(len(catalog), 0.1))
        scores, _ = score_formula(p, obs, arrays)
        report = check_formula(dict(zip(catalog.ids, p.tolist(), strict=True)), catalog, concentration=0.2)
        assert scores.ifra_excess == pytest.approx(report.total_excess)
        assert (scores.ifra_excess == 0) == report.compliant
        assert scores.labelled_allergens == len(report.allergens)


def test_reward_model_fitted_on_curated_feedback_changes_the_reward(tmp_path: object) -> None:
    catalog = load_catalog()
    rng = np.random.default_rng(1)
    samples = []
    for i in range(60):
        p = rng.dirichlet(np.full(len(catalog), 0.2))
        brief = {"families": {"floral": 1.0}, "style": "floral"}
        floral = float(sum(p[catalog.index(x.id)] for x in catalog.by_family("floral")))
        samples.append(
            FeedbackSample(
                sample_id=str(i),
                user_id="u",
                rating=1 + 4 * floral,
                reward=2 * floral - 1,
                response_seconds=10,
                ifra_compliant=True,
                created_at=datetime(2025, 1, 1, tzinfo=UTC),
                brief=brief,
                formula=dict(zip(catalog.ids, p.tolist(), strict=True)),
            )
        )
    model = fit_reward_model(samples, catalog)
    path = tmp_path / "rm.json"  # type: ignore[operator]
    path.write_text(model.to_json())
    env = FragranceEnv(reward_model=str(path), reward_model_weight=1.0)
    env.reset(seed=0, options={"brief": {"families": {"floral": 1.0}, "style": "floral"}})
    rose = np.zeros(len(catalog), dtype=np.float32)
    rose[catalog.index("rose_absolute")] = 1.0
    musk = np.zeros(len(catalog), dtype=np.float32)
    musk[catalog.index("galaxolide")] = 1.0
    high = env.step(rose)[1]
    env.reset(seed=0, options={"brief": {"families": {"floral": 1.0}, "style": "floral"}})
    assert high > env.step(musk)[1] + 0.5
    with pytest.raises(ValueError, match="at least 2"):
        fit_reward_model(samples[:1], catalog)


def test_bad_brief_is_refused() -> None:
    with pytest.raises(ValueError, match=r"brief\.style"):
        Brief.from_mapping({"style": "punk"})


@pytest.mark.parametrize(
    ("scores", "avoid", "expected"),
    [
        ((1.0, 1.0, 1.0, 0.0, 0), True, 1.0),  # the documented maximum
        ((0.0, 0.0, 0.0, 1e9, 100), True, -3.5),  # both penalties at their caps: the minimum
        ((0.0, 0.0, 0.0, 1e9, 100), False, -3.0),  # allergens count only when the brief avoids them
        ((0.0, 0.0, 0.0, math.e - 1, 5), True, -1.5),  # log1p(e − 1) = 1, 5 allergens = the cap
    ],
)
def test_designed_reward_range_and_caps_match_the_docstring(
    scores: tuple[float, float, float, float, int], avoid: bool, expected: float
) -> None:
    assert designed_reward(Scores(*scores), avoid, ifra_weight=1.0, allergen_weight=0.5) == pytest.approx(
        expected
    )


def test_unrewarded_observation_features_do_not_change_the_reward() -> None:
    env = FragranceEnv()
    env.reset(seed=3)
    base = Brief.from_mapping({"families": {"woody": 1.0}, "style": "woody", "complexity": 0.4})
    changed = Brief.from_mapping(
        {"families": {"woody": 1.0}, "style": "fresh", "season": "winter", "gender": "masculine",
         "time": "night", "complexity": 0.4, "intensity": 0.9, "longevity": 0.1, "sillage": 0.8}
    )  # fmt: skip
    action = np.random.default_rng(0).random(len(env.catalog)).astype(np.float32)
    rewards = []
    for brief in (base, changed):
        obs = brief_observation(brief, env.catalog)
        scores, _ = score_formula(env.formula(action), obs, env.arrays)
        rewards.append(designed_reward(scores, brief.avoid_allergens, 1.0, 0.5))
    assert rewards[0] == rewards[1]
