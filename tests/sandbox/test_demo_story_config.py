"""The full story's own inputs: what it sends and pins must be able to produce the events it waits for."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from artisan_common.curation import FeedbackSample, filter_sample, rating_to_reward
from artisan_common.training import CurationSpec
from artisan_ensemble.ensemble.downshift import MODE_ROLES
from artisan_operator.sandbox.demo import load_documents
from artisan_operator.sandbox.story import MODEL_ROLES, synthetic_feedback

DEMO_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "demo"


def _sample(body: dict[str, Any], number: int, variant: str, spec: CurationSpec) -> FeedbackSample:
    rating = float(body["rating"])
    return FeedbackSample(
        sample_id=f"s-{number}",
        user_id=str(body["userId"]),
        rating=rating,
        reward=rating_to_reward(rating, spec),
        response_seconds=float(body["responseSeconds"]),
        ifra_compliant=bool(body["ifraCompliant"]),
        created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=number),
        variant=variant,
    )


def test_synthetic_ratings_pass_the_default_curation_and_carry_the_planted_effect() -> None:
    # A rejected rating (HTTP 422) never reaches the gateway's variant counters: the A/B step then
    # waits forever at n=0 (the demo once sent responseSeconds 1.0, below minResponseSeconds).
    spec = CurationSpec()
    rng = random.Random(7)
    means: dict[str, float] = {}
    for variant in ("control", "treatment"):
        ratings = []
        for number in range(200):
            body = synthetic_feedback(rng, f"user-{variant}-{number}", variant)
            assert filter_sample(_sample(body, number, variant, spec), spec) is None, body
            ratings.append(float(body["rating"]))
        means[variant] = sum(ratings) / len(ratings)
    assert means["treatment"] - means["control"] > 0.5


def test_the_demo_pin_pins_every_model_creative_mode_calls() -> None:
    # Creative mode calls the validator before the creative model: without a pinned validator the
    # creative model is never called, its fault never opens a breaker and the fleet never downshifts.
    (pin,) = [d for d in load_documents([DEMO_CONFIGS / "modelpin.yaml"]) if d["kind"] == "ModelPin"]
    pinned = set(pin["spec"]["models"])
    assert set(MODE_ROLES["creative"]) <= pinned
    assert set(MODEL_ROLES) == pinned
