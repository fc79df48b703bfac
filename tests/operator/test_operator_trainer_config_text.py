"""The trainer's config file: the same YAML as a plain safe_dump, rendered once per distinct config."""

from __future__ import annotations

import yaml

from artisan_operator.api.training_run import TrainingRunSpec
from artisan_operator.manifests.common import Owner
from artisan_operator.manifests.trainer import build_trainer_configmap, config_yaml, training_config

TR = Owner(kind="TrainingRun", name="ppo-a", namespace="ml", uid="uid-tr", generation=1)


def spec(**fields: object) -> TrainingRunSpec:
    return TrainingRunSpec.model_validate(fields)


def test_text_equals_a_plain_safe_dump_of_the_wire_form() -> None:
    for candidate in (
        spec(),
        spec(ppo={"clipRange": 0.125, "gamma": 0.9995, "gaeLambda": 1e-05, "totalSteps": 12345}),
        spec(env={"id": "CartPole-v1"}, seed=3),
    ):
        text = build_trainer_configmap(TR, candidate)["data"]["trainer.yaml"]
        assert text == yaml.safe_dump(training_config(candidate).to_wire(), sort_keys=True)


def test_repeated_passes_reuse_the_rendered_text_and_a_change_renders_anew() -> None:
    first = spec(ppo={"totalSteps": 4242})
    build_trainer_configmap(TR, first)
    before = config_yaml.cache_info()
    again = build_trainer_configmap(TR, spec(ppo={"totalSteps": 4242}))
    after = config_yaml.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    changed = build_trainer_configmap(TR, spec(ppo={"totalSteps": 4343}))
    assert config_yaml.cache_info().misses == before.misses + 1
    assert "4343" in changed["data"]["trainer.yaml"]
    assert "4242" in again["data"]["trainer.yaml"]
