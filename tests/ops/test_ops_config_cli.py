"""`artisan config`: get, set with reason, history, mode, tree, environments, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from artisan_operator.cli import main

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "configs"
    target.mkdir()
    for name in ("recommended_params", "traffic_distribution", "model_pins"):
        shutil.copy(REPO_CONFIGS / f"{name}.yaml", target / f"{name}.yaml")
    shutil.copytree(REPO_CONFIGS / "environments", target / "environments")
    return target


def run(config_dir: Path, *args: str) -> int:
    return main(["config", "--config-dir", str(config_dir), *args])


def test_get_prints_a_scalar_and_a_mapping(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config_dir, "--get", "traffic_distribution.creative") == 0
    assert capsys.readouterr().out.strip() == "10"
    assert run(config_dir, "--get", "model_pins.validator") == 0
    assert yaml.safe_load(capsys.readouterr().out)["revision"] == "0.3.1"


def test_set_then_history(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        config_dir,
        "--set",
        "recommended_params.mode_overrides.fast.temperature",
        "0.2",
        "--reason",
        "fewer hallucinated notes",
        "--changed-by",
        "alice",
    )
    assert code == 0
    assert "0.3 -> 0.2" in capsys.readouterr().out
    assert run(config_dir, "--history", "5", "-o", "json") == 0
    [record] = json.loads(capsys.readouterr().out)
    assert record["new_value"] == 0.2
    assert record["changed_by"] == "alice"
    assert record["reason"] == "fewer hallucinated notes"
    assert run(config_dir, "--history") == 0
    assert "alice" in capsys.readouterr().out


def test_set_keeps_a_revision_a_string(config_dir: Path) -> None:
    args = ("--reason", "upgrade", "--changed-by", "bob")
    assert run(config_dir, "--set", "model_pins.primary.revision", "2.6", *args) == 0
    assert yaml.safe_load((config_dir / "model_pins.yaml").read_text())["primary"]["revision"] == "2.6"


def test_invalid_set_exits_1_names_the_field_and_changes_nothing(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (config_dir / "traffic_distribution.yaml").read_text()
    code = run(config_dir, "--set", "traffic_distribution.fast", "70", "--reason", "r", "--changed-by", "c")
    assert code == 1
    assert "must sum to 100" in capsys.readouterr().err
    assert (config_dir / "traffic_distribution.yaml").read_text() == before
    assert not (config_dir / "tuning_history.jsonl").exists()


def test_set_without_reason_is_a_usage_error(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config_dir, "--set", "traffic_distribution.fast", "60", "--changed-by", "c") == 2
    assert "--reason" in capsys.readouterr().err


def test_mode_and_env(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config_dir, "--mode", "creative", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "maxNewTokens": 1024,
        "temperature": 0.8,
        "topP": 0.95,
        "timeoutSeconds": 20.0,
    }
    assert run(config_dir, "--env", "dev", "--mode", "creative", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out)["timeoutSeconds"] == 60.0


def test_tree_shows_every_file(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config_dir, "--env", "staging", "--tree") == 0
    out = capsys.readouterr().out
    for text in ("recommended_params", "traffic_distribution", "model_pins", "fast: 34", "staging"):
        assert text in out


def test_validate_and_unknown_things(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config_dir, "--validate") == 0
    assert run(config_dir, "--get", "nope.x") == 1
    assert "unknown config file 'nope'" in capsys.readouterr().err
    assert run(config_dir, "--env", "qa", "--tree") == 1
    assert "unknown environment 'qa'" in capsys.readouterr().err
    (config_dir / "environments" / "dev.yaml").write_text("traffic_distribution: {fast: 99}\n")
    assert run(config_dir, "--validate") == 1
    assert "traffic_distribution@dev" in capsys.readouterr().err
