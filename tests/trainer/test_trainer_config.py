from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from artisan_common.training import TrainingConfig
from artisan_trainer.config import ConfigError, TrainerConfig, load_config, seed_config_files

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_seed_yaml_files_hold_the_seed_defaults() -> None:
    files = seed_config_files(CONFIGS)
    assert [f.name for f in files] == [
        "ppo_schedule.yaml",
        "checkpoint_strategy.yaml",
        "reward_normalization.yaml",
    ]
    assert load_config(files, environ={}) == TrainerConfig()
    assert load_config(files, environ={}).training_config() == TrainingConfig()


def test_operator_wire_shape_is_accepted(tmp_path: Path) -> None:
    wire = TrainingConfig.model_validate(
        {"env": {"id": "CartPole-v1"}, "ppo": {"clipRange": 0.1, "learningRate": {"schedule": "linear"}}}
    ).to_wire()
    path = tmp_path / "trainer.yaml"
    path.write_text(yaml.safe_dump(wire))
    config = load_config([path], environ={})
    assert config.env.id == "CartPole-v1"
    assert config.ppo.clip_range == 0.1
    assert config.ppo.learning_rate.schedule == "linear"


def test_set_overrides_in_camel_and_snake_case_and_env_vars() -> None:
    config = load_config(
        overrides=[
            "ppo.learningRate.initial=1e-3",
            "ppo.gae_lambda=0.9",
            "rollback.max_rollbacks=5",
            "env.config.someKwarg=3",
            "runtime.hiddenSizes=[32, 32]",
        ],
        environ={"ARTISAN_TRAINER_NUM_ENVS": "4", "ARTISAN_TRAINER_SEED": "7"},
    )
    assert config.ppo.learning_rate.initial == 1e-3
    assert config.ppo.gae_lambda == 0.9
    assert config.rollback.max_rollbacks == 5
    assert config.env.config == {"someKwarg": 3}
    assert config.runtime.hidden_sizes == [32, 32]
    assert (config.runtime.num_envs, config.runtime.seed) == (4, 7)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ppo.learningRat.initial=1", r"^ppo\.learningRat: unknown key"),
        ("ppo.clipRange=1.5", r"^ppo\.clipRange: "),
        ("ppo.gamma.x=1", r"^ppo\.gamma: is a value"),
        ("noequals", "key=value"),
        ("rollback.window=5000", r"window must be less than baselineWindow"),
        ("runtime.numEnvs=3", r"^ppo\.stepsPerUpdate: 2048 is not a multiple"),
        ("ppo.entropy.schedule=exponential", r"^ppo\.entropy\.final"),
    ],
)
def test_invalid_config_names_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(
            overrides=["ppo.entropy.final=0", override] if "exponential" in override else [override],
            environ={},
        )


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config([tmp_path / "missing.yaml"], environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config([bad], environ={})
    bad.write_text("ppo: {epochs: zero}\n")
    with pytest.raises(ConfigError, match=r"^ppo\.epochs: "):
        load_config([bad], environ={})
