"""The formula policy from a real trainer checkpoint (format, observation layout, sha256 check)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from artisan_common.catalog import IngredientCatalog
from artisan_common.ifra import check_formula
from artisan_ensemble.app import create_app
from artisan_ensemble.backends.policy import PolicyLoadError, load_policy_checkpoint, load_policy_from_dir
from artisan_ensemble.ensemble.formula import brief_features, concentration_for, feature_size
from artisan_ensemble.ensemble.keywords import keyword_parse
from artisan_ensemble.settings import EnsembleSettings
from artisan_trainer.checkpoints import CheckpointManager
from artisan_trainer.env import Brief as EnvBrief
from artisan_trainer.env import brief_observation, observation_size

from .conftest import fake_generators, fast_config


def test_brief_features_match_the_trainer_env_observation(catalog: IngredientCatalog) -> None:
    brief = keyword_parse("상큼한 레몬과 장미, 강한 향").brief
    assert feature_size(catalog.families) == observation_size(catalog)
    env_brief = EnvBrief(
        families=dict(brief.note_families),
        style="citrus_aromatic",
        intensity=brief.intensity,
        complexity=brief.complexity,
        longevity=brief.intensity,
        sillage=brief.intensity,
        concentration=concentration_for(brief),
    )
    expected = brief_observation(env_brief, catalog).tolist()
    assert brief_features(brief, catalog.families) == pytest.approx(expected, abs=1e-6)


def save_actor(directory: Path, catalog: IngredientCatalog, bias: float = 0.0) -> None:
    torch.manual_seed(0)
    actor = nn.Sequential(
        nn.Linear(feature_size(catalog.families), 16), nn.Tanh(), nn.Linear(16, len(catalog))
    )
    with torch.no_grad():
        actor[2].bias.fill_(bias)
    critic = nn.Sequential(nn.Linear(feature_size(catalog.families), 16), nn.Tanh(), nn.Linear(16, 1))
    state = {
        "policy": {"actor": actor.state_dict(), "log_std": torch.zeros(len(catalog))},
        "value": critic.state_dict(),
    }
    CheckpointManager(directory, keep=2).save(state, step=512, mean_return=0.4)


def test_trainer_checkpoint_drives_the_formula(tmp_path: Path, catalog: IngredientCatalog) -> None:
    save_actor(tmp_path, catalog, bias=0.3)
    policy = load_policy_checkpoint(tmp_path, catalog)
    assert policy.description.endswith("best.pt")
    proportions = policy.proportions(brief_features(keyword_parse("fresh citrus").brief, catalog.families))
    assert sum(proportions.values()) == pytest.approx(1.0)
    assert set(proportions) <= set(catalog.ids)

    app = create_app(
        EnsembleSettings(policy_checkpoint=str(tmp_path)),
        config=fast_config(),
        generators=fake_generators(),  # type: ignore[arg-type]
        catalog=catalog,
        policy=policy,
    )
    with TestClient(app) as client:
        body = client.post("/v1/briefs", json={"text": "fresh citrus", "mode": "fast"}).json()
        assert body["formula"]["source"] == "policy"
        # an untrained policy breaks IFRA limits: reported as raw violations, served projected and compliant
        assert body["formula"]["ifra"]["rawViolations"]
        assert body["formula"]["ifra"]["compliant"] is True
        served = {i["id"]: i["proportion"] for i in body["formula"]["ingredients"]}
        assert check_formula(served, catalog, body["formula"]["concentration"]).compliant
        metrics = client.get("/metrics").text
        assert "ifra_violations_total{" in metrics
        assert "ifra_compliance_rate 0.0" in metrics


def test_damaged_checkpoint_is_refused(tmp_path: Path, catalog: IngredientCatalog) -> None:
    save_actor(tmp_path, catalog)
    best = tmp_path / "best.pt"
    best.write_bytes(best.read_bytes()[:-8] + b"tampered")
    with pytest.raises(PolicyLoadError, match="sha256"):
        load_policy_checkpoint(tmp_path, catalog)


def test_incompatible_checkpoint_falls_back_to_the_heuristic(
    tmp_path: Path, catalog: IngredientCatalog
) -> None:
    torch.save({"format": 1, "policy": {"actor": nn.Linear(3, 2).state_dict()}}, tmp_path / "odd.pt")
    with pytest.raises(PolicyLoadError, match="no linear chain"):
        load_policy_checkpoint(tmp_path / "odd.pt", catalog)
    settings = EnsembleSettings(policy_checkpoint=str(tmp_path / "odd.pt"))
    app = create_app(settings, config=fast_config(), generators=fake_generators(), catalog=catalog)  # type: ignore[arg-type]
    with TestClient(app) as client:
        assert client.get("/v1/models").json()["formulaPolicy"] == "heuristic"
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert "no linear chain" in ready.json()["errors"]["policy"]
        body = client.post("/v1/briefs", json={"text": "fresh citrus", "mode": "fast"}).json()
        assert body["formula"]["source"] == "heuristic"


def save_run(directory: Path, catalog: IngredientCatalog) -> dict[int, nn.Sequential]:
    """A real trainer checkpoint directory: steps 100 (best), 200 and 300 (latest), keep=3."""
    manager = CheckpointManager(directory, keep=3)
    actors = {}
    for step, mean_return, bias in ((100, 0.9, 0.1), (200, 0.2, 0.2), (300, 0.5, 0.3)):
        actor = nn.Sequential(
            nn.Linear(feature_size(catalog.families), 8), nn.Tanh(), nn.Linear(8, len(catalog))
        )
        with torch.no_grad():
            actor[2].bias.fill_(bias)
        manager.save({"policy": {"actor": actor.state_dict()}}, step=step, mean_return=mean_return)
        actors[step] = actor
    return actors


@pytest.mark.parametrize(("selector", "step"), [("best", 100), ("latest", 300), ("step-200", 200)])
def test_policy_dir_honours_the_pinned_checkpoint(
    tmp_path: Path, catalog: IngredientCatalog, selector: str, step: int
) -> None:
    actors = save_run(tmp_path, catalog)
    features = brief_features(keyword_parse("fresh citrus").brief, catalog.families)
    with torch.no_grad():
        raw = torch.clamp(actors[step](torch.tensor(features)), 0, 1).tolist()
    settings = EnsembleSettings(policy_dir=tmp_path, policy_checkpoint=selector)  # as the operator sets it
    app = create_app(settings, config=fast_config(), generators=fake_generators(), catalog=catalog)  # type: ignore[arg-type]
    with TestClient(app) as client:
        ready = client.get("/readyz").json()
        assert ready["formulaPolicy"].startswith(f"policy checkpoint {selector} (step {step}, ")
        assert "policy" not in ready["errors"]
        policy = client.app.state.runtime.service.policy  # type: ignore[attr-defined]
        proportions = policy.proportions(features)
        kept = {i: w for i, w in zip(catalog.ids, raw, strict=True) if w > 0.02}
        assert proportions == pytest.approx({i: w / sum(kept.values()) for i, w in kept.items()})
        body = client.post("/v1/briefs", json={"text": "fresh citrus", "mode": "fast"}).json()
        assert body["formula"]["source"] == "policy"


@pytest.mark.parametrize(
    ("selector", "damage", "message"),
    [
        ("step-150", None, r"no checkpoint of step 150 \(steps kept: 100, 200, 300\)"),
        ("newest", None, "must be best, latest or step-<N>"),
        ("latest", "ckpt-000000000300.pt", "sha256 does not match"),
        ("best", "manifest.json", "unreadable checkpoint manifest"),
    ],
)
def test_unusable_pinned_checkpoint_falls_back_to_the_heuristic_and_says_why(
    tmp_path: Path, catalog: IngredientCatalog, selector: str, damage: str | None, message: str
) -> None:
    save_run(tmp_path, catalog)
    if damage is not None:
        target = tmp_path / damage
        target.write_bytes(target.read_bytes()[:-8] + b"tampered")
    settings = EnsembleSettings(policy_dir=tmp_path, policy_checkpoint=selector)
    app = create_app(settings, config=fast_config(), generators=fake_generators(), catalog=catalog)  # type: ignore[arg-type]
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200  # the heuristic still answers
        assert ready.json()["formulaPolicy"] == "heuristic"
        assert re.search(message, ready.json()["errors"]["policy"])
        body = client.post("/v1/briefs", json={"text": "fresh citrus", "mode": "fast"}).json()
        assert body["formula"]["source"] == "heuristic"


def test_empty_policy_dir_says_no_checkpoint_yet(tmp_path: Path, catalog: IngredientCatalog) -> None:
    with pytest.raises(PolicyLoadError, match="no checkpoint manifest"):
        load_policy_from_dir(tmp_path, "best", catalog)
