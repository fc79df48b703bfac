"""ConfigLoader: dotted get/set, mode overrides, environment profiles, validation, tuning history."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from artisan_common import config_loader
from artisan_common.config_loader import (
    CONFIG_FILES,
    ConfigError,
    ConfigLoader,
    ConfigValidationError,
    deep_merge,
    fold_history,
)
from artisan_common.serving import ModesSpec, TrafficMix

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
OWN_FILES = ("recommended_params", "traffic_distribution", "model_pins")


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A copy of the repository's own config files and environment profiles."""
    target = tmp_path / "configs"
    target.mkdir()
    for name in OWN_FILES:
        shutil.copy(REPO_CONFIGS / f"{name}.yaml", target / f"{name}.yaml")
    shutil.copytree(REPO_CONFIGS / "environments", target / "environments")
    return target


def snapshot(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): p.read_text() for p in sorted(directory.rglob("*.yaml"))}


def test_repository_configs_hold_the_seed_values_and_validate() -> None:
    loader = ConfigLoader(REPO_CONFIGS)
    assert loader.modes() == ModesSpec()  # the seeds' per-mode values are the API defaults
    assert loader.traffic() == TrafficMix(fast=60, balanced=30, creative=10)
    pins = loader.model_pins()
    assert (pins.primary.name, pins.primary.revision) == ("qwen", "2.5.1")
    assert pins.validator is not None
    assert (pins.validator.name, pins.validator.revision) == (
        "mistral",
        "0.3.1",
    )
    assert pins.creative is not None
    assert (pins.creative.name, pins.creative.revision) == ("llama", "3.1.1")
    assert loader.validate_all() == {}


def test_every_present_tuning_file_validates_under_every_profile() -> None:
    # Files other helpers add (ppo_schedule, llm_ensemble, ...) are checked as soon as they land.
    loader = ConfigLoader(REPO_CONFIGS)
    assert set(OWN_FILES) <= set(loader.files())
    for name in loader.files():
        assert name in CONFIG_FILES
        loader.typed(name)


def test_dotted_get_reads_nested_values(config_dir: Path) -> None:
    loader = ConfigLoader(config_dir)
    assert loader.get("recommended_params.mode_overrides.creative.temperature") == 0.8
    assert loader.get("traffic_distribution.fast") == 60
    assert loader.get("model_pins.primary") == {
        "name": "qwen",
        "source": "pvc://artisan-models/qwen",
        "revision": "2.5.1",
    }


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("recommended_params.nope", "no value at 'recommended_params.nope'"),
        ("unknown_file.x", "unknown config file 'unknown_file'"),
        ("traffic_distribution..fast", "invalid path"),
        ("ppo_schedule.totalSteps", "ppo_schedule.yaml is missing"),
    ],
)
def test_get_names_what_is_wrong(config_dir: Path, path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        ConfigLoader(config_dir).get(path)


def test_mode_overrides_merge_over_defaults(config_dir: Path) -> None:
    loader = ConfigLoader(config_dir)
    balanced = loader.mode_params("balanced")  # balanced has no overrides: the defaults
    assert (balanced.max_new_tokens, balanced.temperature, balanced.top_p, balanced.timeout_seconds) == (
        512,
        0.7,
        0.9,
        12,
    )
    loader.set("recommended_params.defaults.topP", 0.85, changed_by="alice", reason="tighter sampling")
    assert loader.mode_params("balanced").top_p == 0.85
    assert loader.mode_params("fast").top_p == 0.8  # fast overrides topP itself
    with pytest.raises(ConfigError, match="unknown mode 'turbo'"):
        loader.mode_params("turbo")


def test_environment_profiles_overlay_the_base(config_dir: Path) -> None:
    assert ConfigLoader(config_dir, "dev").mode_params("creative").timeout_seconds == 60
    assert ConfigLoader(config_dir, "dev").mode_params("creative").temperature == 0.8
    assert ConfigLoader(config_dir, "staging").traffic() == TrafficMix(fast=34, balanced=33, creative=33)
    assert ConfigLoader(config_dir, "prod").tree() == ConfigLoader(config_dir).tree()
    with pytest.raises(ConfigError, match="unknown environment 'qa': profiles are dev, prod, staging"):
        ConfigLoader(config_dir, "qa")
    with pytest.raises(ConfigError, match="invalid environment name"):
        ConfigLoader(config_dir, "../etc")


def test_set_writes_the_file_and_appends_history(config_dir: Path) -> None:
    loader = ConfigLoader(config_dir)
    entry = loader.set(
        "recommended_params.mode_overrides.creative.temperature",
        0.9,
        changed_by="alice",
        reason="more variety in creative briefs",
    )
    assert entry is not None
    on_disk = yaml.safe_load((config_dir / "recommended_params.yaml").read_text())
    assert on_disk["mode_overrides"]["creative"]["temperature"] == 0.9
    assert (config_dir / "recommended_params.yaml").read_text().startswith("# Recommended generation")
    assert ConfigLoader(config_dir).mode_params("creative").temperature == 0.9
    lines = (config_dir / "tuning_history.jsonl").read_text().splitlines()
    assert len(lines) == 2  # the entry, written before the change, then its outcome
    record = json.loads(lines[0])
    assert record["status"] == "pending"
    assert json.loads(lines[1]) == {"id": record["id"], "status": "applied"}
    assert entry.status == "applied"
    assert [e.status for e in loader.history()] == ["applied"]
    assert record["path"] == "recommended_params.mode_overrides.creative.temperature"
    assert (record["old_value"], record["new_value"]) == (0.8, 0.9)
    assert (record["changed_by"], record["environment"]) == ("alice", None)
    assert record["reason"] == "more variety in creative briefs"
    assert record["timestamp"].endswith("+00:00")
    assert not list(config_dir.glob(".*.tmp"))  # the temp file was renamed into place


def test_set_of_the_value_in_force_records_nothing(config_dir: Path) -> None:
    loader = ConfigLoader(config_dir)
    assert loader.set("traffic_distribution.fast", 60, changed_by="bob", reason="noop") is None
    assert loader.history() == []


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("traffic_distribution.fast", 50, "must sum to 100"),
        ("recommended_params.mode_overrides.fast.topP", 1.5, r"fast\.topP"),
        ("recommended_params.defaults.temprature", 0.5, "temprature"),
        ("model_pins.primary.revision", "2.5.1 beta", r"model_pins\.primary\.revision"),
        ("recommended_params.downshift.failureThreshold", 0, "failureThreshold"),
    ],
)
def test_a_set_that_fails_validation_changes_nothing(
    config_dir: Path, path: str, value: object, message: str
) -> None:
    before = snapshot(config_dir)
    with pytest.raises(ConfigValidationError, match=message):
        ConfigLoader(config_dir).set(path, value, changed_by="mallory", reason="bad")
    assert snapshot(config_dir) == before
    assert not (config_dir / "tuning_history.jsonl").exists()


def test_a_base_change_must_stay_valid_under_every_profile(config_dir: Path) -> None:
    # batchSize 256 is valid in the base (stepsPerUpdate 2048) but not under dev, which runs
    # short rollouts (stepsPerUpdate 128): the change is refused and nothing is written.
    (config_dir / "ppo_schedule.yaml").write_text("batchSize: 64\nstepsPerUpdate: 2048\n")
    (config_dir / "environments" / "dev.yaml").write_text("ppo_schedule:\n  stepsPerUpdate: 128\n")
    before = snapshot(config_dir)
    loader = ConfigLoader(config_dir)
    with pytest.raises(ConfigValidationError, match="batchSize must be less than or equal to stepsPerUpdate"):
        loader.set("ppo_schedule.batchSize", 256, changed_by="a", reason="bigger batches")
    assert snapshot(config_dir) == before
    loader.set("ppo_schedule.batchSize", 128, changed_by="a", reason="fits every profile")
    assert ConfigLoader(config_dir, "dev").get("ppo_schedule.batchSize") == 128


def test_set_in_an_environment_writes_only_its_profile(config_dir: Path) -> None:
    base_before = (config_dir / "traffic_distribution.yaml").read_text()
    loader = ConfigLoader(config_dir, "prod")
    loader.set("recommended_params.defaults.timeoutSeconds", 15, changed_by="carol", reason="p99 budget")
    assert (config_dir / "traffic_distribution.yaml").read_text() == base_before
    assert ConfigLoader(config_dir, "prod").mode_params("balanced").timeout_seconds == 15
    assert ConfigLoader(config_dir).mode_params("balanced").timeout_seconds == 12
    prod = yaml.safe_load((config_dir / "environments" / "prod.yaml").read_text())
    assert prod == {"recommended_params": {"defaults": {"timeoutSeconds": 15}}}
    [entry] = loader.history()
    assert (entry.environment, entry.old_value, entry.new_value) == ("prod", 12, 15)


def test_set_requires_who_and_why(config_dir: Path) -> None:
    loader = ConfigLoader(config_dir)
    with pytest.raises(ConfigError, match="changed_by"):
        loader.set("traffic_distribution.fast", 50, changed_by=" ", reason="r")
    with pytest.raises(ConfigError, match="reason"):
        loader.set("traffic_distribution.fast", 50, changed_by="a", reason="")
    with pytest.raises(ConfigError, match="names a whole file"):
        loader.set("traffic_distribution", {}, changed_by="a", reason="r")


def test_llm_ensemble_is_validated_with_the_service_models_under_each_of_its_profiles(
    config_dir: Path,
) -> None:
    shutil.copy(REPO_CONFIGS / "llm_ensemble.yaml", config_dir / "llm_ensemble.yaml")
    loader = ConfigLoader(config_dir)
    before = snapshot(config_dir)
    with pytest.raises(ConfigValidationError, match=r"llm_ensemble\.cache\.maxTtlSecond"):
        loader.set("llm_ensemble.cache.maxTtlSecond", 10, changed_by="a", reason="typo")
    with pytest.raises(ConfigValidationError, match=r"llm_ensemble\.modes\.fast\.temperature"):
        loader.set("llm_ensemble.modes.fast.temperature", 7, changed_by="a", reason="too hot")
    # A profile is checked as the service resolves it (top level + profile).
    with pytest.raises(
        ConfigValidationError, match=r"llm_ensemble\.profiles\.dev gives queue\.maxConcurrent"
    ):
        loader.set("llm_ensemble.profiles.dev.queue.maxConcurrent", 0, changed_by="a", reason="r")
    with pytest.raises(ConfigValidationError, match=r"llm_ensemble\.profiles\.qa: unknown profile"):
        loader.set("llm_ensemble.profiles.qa", {"queue": {"maxWaiting": 5}}, changed_by="a", reason="r")
    assert snapshot(config_dir) == before  # nothing written by a refused change
    loader.set("llm_ensemble.cache.maxTtlSeconds", 43_200, changed_by="a", reason="fresher cache")
    assert ConfigLoader(config_dir).get("llm_ensemble.cache.maxTtlSeconds") == 43_200


def test_history_returns_the_last_n_and_survives_a_torn_line(config_dir: Path) -> None:
    loader = ConfigLoader(config_dir)
    for temperature in (0.1, 0.2, 0.25):
        loader.set(
            "recommended_params.mode_overrides.fast.temperature", temperature, changed_by="a", reason="sweep"
        )
    with (config_dir / "tuning_history.jsonl").open("a") as handle:
        handle.write('{"timestamp": "2025-')  # a crash mid-append
    entries = loader.history(limit=2)
    assert [(e.old_value, e.new_value) for e in entries] == [(0.1, 0.2), (0.2, 0.25)]
    assert len(loader.history()) == 3
    assert loader.history(path_prefix="traffic_distribution") == []
    assert len(loader.history(path_prefix="recommended_params.mode_overrides")) == 3


def _concurrent_writer(args: tuple[str, int]) -> None:
    directory, index = args
    ConfigLoader(directory).set(
        f"recommended_params.mode_overrides.{('fast', 'balanced', 'creative')[index % 3]}.maxNewTokens",
        100 + index,
        changed_by=f"writer-{index}",
        reason="concurrency test",
    )


def test_concurrent_writers_lose_no_change(config_dir: Path) -> None:
    # Three processes change three different keys of one file at once: the lock serializes the
    # read-modify-write, so all three values end up in the file and in the history.
    context = multiprocessing.get_context("fork")
    with context.Pool(3) as pool:
        pool.map(_concurrent_writer, [(str(config_dir), i) for i in range(3)])
    loader = ConfigLoader(config_dir)
    assert [loader.mode_params(m).max_new_tokens for m in ("fast", "balanced", "creative")] == [100, 101, 102]
    assert sorted(e.changed_by for e in loader.history()) == ["writer-0", "writer-1", "writer-2"]


def test_deep_merge_merges_mappings_and_replaces_the_rest() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}, "e": 2}) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_broken_yaml_is_reported_with_its_file(config_dir: Path) -> None:
    (config_dir / "traffic_distribution.yaml").write_text("fast: [60\n")
    with pytest.raises(ConfigError, match=r"traffic_distribution\.yaml: not valid YAML"):
        ConfigLoader(config_dir).get("traffic_distribution.fast")
    assert "traffic_distribution@base" in ConfigLoader(config_dir).validate_all()


# --- crash safety: the history is a write-ahead log --------------------------------------------------

FAST_TEMPERATURE = "recommended_params.mode_overrides.fast.temperature"


def _crash_in(args: tuple[str, str]) -> None:
    """A process that dies (no cleanup, like kill -9) at one point of ConfigLoader.set."""
    directory, point = args
    real_append = config_loader.append_line_durably

    def die(*_: object) -> None:
        os._exit(9)

    def append_then_die_on_the_outcome(path: Path, line: str) -> None:
        if '"path"' not in line:
            os._exit(9)
        real_append(path, line)

    if point == "before-write":
        config_loader.write_yaml_atomically = die  # type: ignore[assignment]
    else:
        config_loader.append_line_durably = append_then_die_on_the_outcome
    ConfigLoader(directory).set(FAST_TEMPERATURE, 0.05, changed_by="crashy", reason="crash drill")


def crash(config_dir: Path, point: str) -> None:
    process = multiprocessing.get_context("fork").Process(target=_crash_in, args=((str(config_dir), point),))
    process.start()
    process.join(30)
    assert process.exitcode == 9


@pytest.mark.parametrize(
    ("point", "in_force", "outcome"),
    [
        ("before-write", 0.3, "aborted"),  # the entry is there, the file unchanged
        ("after-write", 0.05, "applied"),  # the file changed, the outcome line never written
    ],
)
def test_a_crash_never_loses_the_entry_and_the_next_set_settles_it(
    config_dir: Path, point: str, in_force: float, outcome: str
) -> None:
    before = ConfigLoader(config_dir).get(FAST_TEMPERATURE)
    assert before == 0.3
    crash(config_dir, point)
    loader = ConfigLoader(config_dir)
    assert loader.get(FAST_TEMPERATURE) == in_force
    [pending] = loader.history()
    assert (pending.status, pending.new_value, pending.changed_by) == ("pending", 0.05, "crashy")
    assert loader.set("traffic_distribution.fast", 60, changed_by="b", reason="in force already") is None
    assert [e.status for e in loader.history()] == [outcome]  # even a set that changes nothing settles it
    loader.set("recommended_params.defaults.maxNewTokens", 300, changed_by="b", reason="next change")
    entries = loader.history()
    assert [(e.changed_by, e.status) for e in entries] == [("crashy", outcome), ("b", "applied")]
    assert loader.recover() == []  # nothing left pending


def test_recover_settles_without_a_new_change(config_dir: Path) -> None:
    crash(config_dir, "after-write")
    loader = ConfigLoader(config_dir)
    [settled] = loader.recover()
    assert (settled.status, settled.new_value) == ("applied", 0.05)
    assert [e.status for e in loader.history()] == ["applied"]


def test_a_failed_write_is_recorded_as_aborted(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(config_loader, "write_yaml_atomically", disk_full)
    with pytest.raises(OSError, match="No space"):
        ConfigLoader(config_dir).set(FAST_TEMPERATURE, 0.05, changed_by="a", reason="r")
    monkeypatch.undo()
    loader = ConfigLoader(config_dir)
    assert loader.get(FAST_TEMPERATURE) == 0.3
    assert [(e.new_value, e.status) for e in loader.history()] == [(0.05, "aborted")]


# The rows of fold_history's docstring table.
def test_fold_history() -> None:
    def entry(entry_id: str, status: str = "pending") -> str:
        record = {"timestamp": "t", "path": "p.x", "old_value": 1, "new_value": 2, "changed_by": "a"}
        return json.dumps({**record, "environment": None, "reason": "r", "id": entry_id, "status": status})

    def outcome(entry_id: str, status: str) -> str:
        return json.dumps({"id": entry_id, "status": status})

    assert [e.status for e in fold_history([entry("a"), outcome("a", "applied")])] == ["applied"]
    assert [e.status for e in fold_history([entry("a")])] == ["pending"]
    assert [e.status for e in fold_history([entry("a"), outcome("a", "aborted")])] == ["aborted"]
    old = json.loads(entry(""))
    del old["id"], old["status"]
    assert [e.status for e in fold_history([json.dumps(old)])] == ["applied"]
    assert fold_history([entry("a"), '{"timestamp": "2025-']) == fold_history([entry("a")])
