"""Tuning configuration in ``configs/*.yaml`` with environment profiles and an audited history.

Layout of a config directory::

    configs/
      recommended_params.yaml      generation parameters: ``defaults`` + ``mode_overrides`` per mode
      traffic_distribution.yaml    mode mix (fast/balanced/creative percent)
      model_pins.yaml              pinned model revisions per role
      ppo_schedule.yaml, reward_normalization.yaml, checkpoint_strategy.yaml, llm_ensemble.yaml
      environments/<env>.yaml      overlay per environment, keyed by file name: {traffic_distribution: {...}}
      tuning_history.jsonl         append-only record of every change made through :meth:`ConfigLoader.set`

A path is dotted and starts with the file name: ``recommended_params.mode_overrides.fast.temperature``.
Reads see the base file with the environment overlay deep-merged on top (mappings merge, everything
else is replaced). A write goes to the environment overlay when the loader has an environment, else to
the base file. Every write is validated first (against the typed models where a file maps to one, for
the base merged with every environment profile it affects), and a write that fails validation
changes nothing.

The history is a write-ahead log, so a crash cannot lose a change: the entry is appended (and
fsynced) with status ``pending`` *before* the YAML is replaced, and a second line ``{"id": ...,
"status": "applied"}`` after it. A crash between the two leaves a pending entry; the next
:meth:`ConfigLoader.set` (or :meth:`ConfigLoader.recover`) settles it from the files: ``applied`` when
its new value is in force, ``aborted`` when the write never happened.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import Field, ValidationError

from artisan_common.ensemble_config import validate_ensemble_document
from artisan_common.mappings import deep_merge
from artisan_common.model import ApiModel
from artisan_common.serving import MODES, DownshiftPolicy, Mode, ModeParams, ModesSpec, TrafficMix
from artisan_common.training import (
    CheckpointSpec,
    PPOSpec,
    RewardNormalizationSpec,
    RollbackSpec,
)

CONFIG_FILES: tuple[str, ...] = (
    "recommended_params",
    "traffic_distribution",
    "model_pins",
    "ppo_schedule",
    "reward_normalization",
    "checkpoint_strategy",
    "llm_ensemble",
)
"""The tuning files the loader manages (without ``.yaml``); absent ones are simply not loaded."""

ENVIRONMENTS_DIR = "environments"
HISTORY_FILE = "tuning_history.jsonl"
LOCK_FILE = ".config.lock"
_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class ConfigError(Exception):
    """A path, file or value the loader cannot use; the message names it."""


class ConfigValidationError(ConfigError):
    """A change or a file that breaks the typed model of its file."""


# --- typed views of the files ---------------------------------------------------------------------


class PinnedModel(ApiModel):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    """Model name."""
    revision: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    """Pinned revision (never downloaded; loaded with local_files_only)."""
    source: str = Field(min_length=1, max_length=1024)
    """Local path or pvc://<claim>/<path>."""
    quantization: str = Field(default="none", pattern=r"^(none|8bit|4bit)$")
    """Weight quantization on GPU."""


class ModelPinsConfig(ApiModel):
    """The same shape as ``ModelPin.spec.models``: primary required, validator and creative optional."""

    primary: PinnedModel
    """Text → structured brief."""
    validator: PinnedModel | None = None
    """Schema, units and IFRA checks."""
    creative: PinnedModel | None = None
    """Evocative hints."""


class RecommendedParamsConfig(ApiModel):
    defaults: ModeParams = Field(default_factory=ModeParams)
    """Parameters every mode starts from."""
    mode_overrides: dict[Mode, dict[str, Any]] = Field(default_factory=dict, alias="mode_overrides")
    """Per-mode changes on top of the defaults."""
    downshift: DownshiftPolicy | None = None
    """Circuit breaker and downshift policy."""

    def modes(self) -> ModesSpec:
        """The defaults with each mode's overrides merged in, validated as :class:`ModesSpec`."""
        base = self.defaults.to_wire()
        merged = {mode: {**base, **self.mode_overrides.get(mode, {})} for mode in MODES}
        return ModesSpec.model_validate(merged)


class CheckpointStrategyConfig(ApiModel):
    checkpoints: CheckpointSpec = Field(default_factory=CheckpointSpec)
    """Checkpoint cadence and retention."""
    rollback: RollbackSpec = Field(default_factory=RollbackSpec)
    """Automatic rollback on instability."""


def _validate_recommended(doc: Mapping[str, Any]) -> object:
    parsed = RecommendedParamsConfig.model_validate(doc)
    return parsed.modes()


def _validate_ppo(doc: Mapping[str, Any]) -> object:
    # Accept the PPOSpec shape either at the top level or under a `ppo:` key.
    return PPOSpec.model_validate(doc.get("ppo", doc))


def _validate_reward_normalization(doc: Mapping[str, Any]) -> object:
    return RewardNormalizationSpec.model_validate(doc.get("rewardNormalization", doc))


def _validate_checkpoint_strategy(doc: Mapping[str, Any]) -> object:
    return CheckpointStrategyConfig.model_validate(doc)


def _validate_model_pins(doc: Mapping[str, Any]) -> object:
    return ModelPinsConfig.model_validate(doc.get("models", doc))


VALIDATORS: dict[str, Callable[[Mapping[str, Any]], object]] = {
    "recommended_params": _validate_recommended,
    "traffic_distribution": TrafficMix.model_validate,
    "model_pins": _validate_model_pins,
    "ppo_schedule": _validate_ppo,
    "reward_normalization": _validate_reward_normalization,
    "checkpoint_strategy": _validate_checkpoint_strategy,
    "llm_ensemble": validate_ensemble_document,
}
"""File → check of its effective content (every file has one)."""


# --- pure helpers ---------------------------------------------------------------------------------


def split_path(path: str) -> tuple[str, list[str]]:
    """``"file.a.b"`` → ``("file", ["a", "b"])``; the file must be one of :data:`CONFIG_FILES`."""
    parts = path.strip().split(".")
    if not path.strip() or any(not _KEY.match(part) for part in parts):
        raise ConfigError(f"invalid path {path!r}: use dotted keys like recommended_params.defaults.topP")
    if parts[0] not in CONFIG_FILES:
        raise ConfigError(
            f"unknown config file {parts[0]!r} in path {path!r}: known are {', '.join(CONFIG_FILES)}"
        )
    return parts[0], parts[1:]


_MISSING = object()


def lookup(doc: Any, keys: list[str]) -> Any:
    """The value at ``keys`` inside nested mappings, or the ``_MISSING`` sentinel."""
    node = doc
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def with_value(doc: Mapping[str, Any], keys: list[str], value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with ``value`` at ``keys``, creating intermediate mappings."""
    result = copy.deepcopy(dict(doc))
    node = result
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(
                f"cannot set below {'.'.join(keys[: depth + 1])!r}: it is a {type(child).__name__}"
            )
        node = child
    node[keys[-1]] = copy.deepcopy(value)
    return result


def validate_document(name: str, doc: Any) -> object:
    """The typed view of one file's effective content; raises :class:`ConfigValidationError`."""
    if not isinstance(doc, Mapping):
        raise ConfigValidationError(f"{name}.yaml must be a mapping, not {type(doc).__name__}")
    try:
        return VALIDATORS[name](doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{name}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            if err["loc"]
            else f"{name}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigValidationError(problems) from None
    except ValueError as exc:  # a check's own message, starting with the field's path in the file
        raise ConfigValidationError(f"{name}.{exc}") from None


# --- history --------------------------------------------------------------------------------------


HistoryStatus = Literal["pending", "applied", "aborted"]


@dataclass(frozen=True)
class HistoryEntry:
    timestamp: str
    path: str
    old_value: Any
    new_value: Any
    changed_by: str
    environment: str | None
    reason: str
    id: str = ""
    """Links the entry to its outcome line (empty in entries written before the write-ahead log)."""
    status: HistoryStatus = "applied"
    """pending: written before the YAML, outcome not yet known; applied; aborted: never in force."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "timestamp": self.timestamp,
                "path": self.path,
                "old_value": self.old_value,
                "new_value": self.new_value,
                "changed_by": self.changed_by,
                "environment": self.environment,
                "reason": self.reason,
                "id": self.id,
                "status": self.status,
            },
            sort_keys=True,
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, line: str) -> Self:
        return cls.from_record(json.loads(line))

    @classmethod
    def from_record(cls, raw: Mapping[str, Any]) -> Self:
        status = raw.get("status", "applied")
        if status not in ("pending", "applied", "aborted"):
            raise ValueError(f"unknown history status {status!r}")
        return cls(
            timestamp=str(raw["timestamp"]),
            path=str(raw["path"]),
            old_value=raw.get("old_value"),
            new_value=raw.get("new_value"),
            changed_by=str(raw["changed_by"]),
            environment=raw.get("environment"),
            reason=str(raw["reason"]),
            id=str(raw.get("id") or ""),
            status=status,
        )


def outcome_line(entry_id: str, status: HistoryStatus) -> str:
    """The line that settles a pending entry."""
    return json.dumps({"id": entry_id, "status": status}, sort_keys=True)


def fold_history(lines: Iterable[str]) -> list[HistoryEntry]:
    """History lines → entries (oldest first) with their outcome lines applied.

    | lines                                              | entries                    |
    |----------------------------------------------------|----------------------------|
    | entry a (pending), outcome a applied               | [a applied]                |
    | entry a (pending)                                  | [a pending] (crash)        |
    | entry a (pending), outcome a aborted               | [a aborted]                |
    | an old entry without id/status                     | [it, applied]              |
    | a torn last line                                   | skipped                    |
    """
    entries: list[HistoryEntry] = []
    index: dict[str, int] = {}
    for line in lines:
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                continue
            if "path" not in raw:  # an outcome line
                at = index.get(str(raw.get("id")))
                if at is not None and raw.get("status") in ("applied", "aborted"):
                    entries[at] = replace(entries[at], status=raw["status"])
                continue
            entry = HistoryEntry.from_record(raw)
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line after a crash; the complete entries stay readable
        if entry.id:
            index[entry.id] = len(entries)
        entries.append(entry)
    return entries


def settle(entry: HistoryEntry, value_in_force: Any) -> HistoryStatus:
    """What a pending entry turned out to be, from the value in force now (after a crash).

    The lock serializes writers, so nothing changed the path after the pending entry: its new value
    is in force exactly when the YAML write happened.
    """
    return "applied" if value_in_force == entry.new_value else "aborted"


# --- file I/O -------------------------------------------------------------------------------------


def _header_comments(text: str) -> str:
    """The leading comment block of a YAML file, kept when the file is rewritten."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("#") or (not line.strip() and lines):
            lines.append(line)
        else:
            break
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_yaml_atomically(path: Path, doc: Mapping[str, Any]) -> None:
    """Replace ``path`` with ``doc`` (header comments kept): temp file, fsync, rename, fsync dir."""
    header = _header_comments(path.read_text(encoding="utf-8")) if path.exists() else ""
    body = yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, default_flow_style=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(header + body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def append_line_durably(path: Path, line: str) -> None:
    """Append one line with O_APPEND and fsync it (the history is append-only)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: must be a mapping at the top level, not {type(doc).__name__}")
    return doc


# --- the loader -----------------------------------------------------------------------------------


class ConfigLoader:
    """Reads and changes the tuning configuration of one directory, for one environment (or the base)."""

    def __init__(self, config_dir: str | os.PathLike[str], environment: str | None = None) -> None:
        self.config_dir = Path(config_dir)
        if not self.config_dir.is_dir():
            raise ConfigError(f"config directory {self.config_dir} does not exist")
        if environment is not None:
            if not _ENV_NAME.match(environment):
                raise ConfigError(f"invalid environment name {environment!r}: lowercase letters, digits, '-'")
            if not self._environment_path(environment).exists():
                known = ", ".join(self.environments()) or "none"
                raise ConfigError(f"unknown environment {environment!r}: profiles are {known}")
        self.environment = environment

    # paths
    def file_path(self, name: str) -> Path:
        return self.config_dir / f"{name}.yaml"

    def _environment_path(self, environment: str) -> Path:
        return self.config_dir / ENVIRONMENTS_DIR / f"{environment}.yaml"

    @property
    def history_path(self) -> Path:
        return self.config_dir / HISTORY_FILE

    def environments(self) -> list[str]:
        """Environment profiles present in ``environments/``."""
        directory = self.config_dir / ENVIRONMENTS_DIR
        if not directory.is_dir():
            return []
        return sorted(p.stem for p in directory.glob("*.yaml") if _ENV_NAME.match(p.stem))

    def files(self) -> list[str]:
        """The managed files present in the directory."""
        return [name for name in CONFIG_FILES if self.file_path(name).exists()]

    # reading
    def _base(self, name: str) -> dict[str, Any]:
        path = self.file_path(name)
        if not path.exists():
            raise ConfigError(f"config file {name}.yaml is missing from {self.config_dir}")
        return _read_yaml(path)

    def _overlay(self, environment: str | None, name: str) -> dict[str, Any]:
        if environment is None:
            return {}
        path = self._environment_path(environment)
        if not path.exists():
            return {}
        section = _read_yaml(path).get(name, {})
        if section is None:
            return {}
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: section {name!r} must be a mapping")
        return section

    def document(self, name: str) -> dict[str, Any]:
        """The effective content of one file: base with the environment overlay merged in."""
        if name not in CONFIG_FILES:
            raise ConfigError(f"unknown config file {name!r}: known are {', '.join(CONFIG_FILES)}")
        return deep_merge(self._base(name), self._overlay(self.environment, name))

    def tree(self) -> dict[str, Any]:
        """Every present file's effective content, keyed by file name."""
        return {name: self.document(name) for name in self.files()}

    def get(self, path: str) -> Any:
        """The effective value at a dotted path; :class:`ConfigError` names the missing key."""
        name, keys = split_path(path)
        value = lookup(self.document(name), keys)
        if value is _MISSING:
            raise ConfigError(f"no value at {path!r} (environment: {self.environment or 'base'})")
        return value

    def typed(self, name: str) -> object:
        """The validated typed view of a file (ModesSpec, TrafficMix, PPOSpec, ...)."""
        return validate_document(name, self.document(name))

    def modes(self) -> ModesSpec:
        """Generation parameters per mode: defaults with ``mode_overrides`` merged in."""
        result = self.typed("recommended_params")
        assert isinstance(result, ModesSpec)
        return result

    def mode_params(self, mode: str) -> ModeParams:
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}: modes are {', '.join(MODES)}")
        return self.modes().params(mode)

    def traffic(self) -> TrafficMix:
        result = self.typed("traffic_distribution")
        assert isinstance(result, TrafficMix)
        return result

    def model_pins(self) -> ModelPinsConfig:
        result = self.typed("model_pins")
        assert isinstance(result, ModelPinsConfig)
        return result

    def validate_all(self) -> dict[str, str]:
        """Problems of every present file, for the base and every environment profile ({} when clean)."""
        problems: dict[str, str] = {}
        for name in self.files():
            for environment in [None, *self.environments()]:
                try:
                    base = self._base(name)
                    validate_document(name, deep_merge(base, self._overlay(environment, name)))
                except ConfigError as exc:
                    problems[f"{name}@{environment or 'base'}"] = str(exc)
        return problems

    # writing
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive fcntl lock over the directory, so concurrent writers serialize."""
        fd = os.open(self.config_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _history_lines(self) -> list[str]:
        if not self.history_path.exists():
            return []
        return self.history_path.read_text(encoding="utf-8").splitlines()

    def _value_in_force(self, entry: HistoryEntry) -> Any:
        try:
            name, keys = split_path(entry.path)
            return lookup(deep_merge(self._base(name), self._overlay(entry.environment, name)), keys)
        except ConfigError:
            return _MISSING  # the file or profile is gone: the entry's value is not in force

    def _settle_pending(self) -> list[HistoryEntry]:
        """Append the outcome of every pending entry (a crash between its line and its write)."""
        settled = []
        for entry in fold_history(self._history_lines()):
            if entry.status == "pending" and entry.id:
                status = settle(entry, self._value_in_force(entry))
                append_line_durably(self.history_path, outcome_line(entry.id, status))
                settled.append(replace(entry, status=status))
        return settled

    def recover(self) -> list[HistoryEntry]:
        """Settle entries left pending by a crash; returns them with their outcome."""
        with self._locked():
            return self._settle_pending()

    def set(self, path: str, value: Any, *, changed_by: str, reason: str) -> HistoryEntry | None:
        """Change one value: validate, append the history entry (pending), write atomically, then
        append its outcome. A crash in between leaves the entry pending, settled by the next call.

        Returns the entry, or None when the value was already in force (nothing written).
        """
        if not changed_by.strip():
            raise ConfigError("changed_by must name who made the change")
        if not reason.strip():
            raise ConfigError("reason must say why the change is made")
        name, keys = split_path(path)
        if not keys:
            raise ConfigError(f"path {path!r} names a whole file: set one key inside it")
        with self._locked():
            self._settle_pending()
            base = self._base(name)
            effective = deep_merge(base, self._overlay(self.environment, name))
            old_value = lookup(effective, keys)
            parent = lookup(effective, keys[:-1])
            if not isinstance(parent, Mapping):
                raise ConfigError(f"cannot set {path!r}: {'.'.join([name, *keys[:-1]])} is not a mapping")
            if old_value == value:
                return None
            target: Path
            document: dict[str, Any]
            if self.environment is None:
                document = with_value(base, keys, value)
                for environment in [None, *self.environments()]:
                    validate_document(name, deep_merge(document, self._overlay(environment, name)))
                target = self.file_path(name)
            else:
                target = self._environment_path(self.environment)
                env_doc = _read_yaml(target) if target.exists() else {}
                section = env_doc.get(name) or {}
                document = {**env_doc, name: with_value(section, keys, value)}
                validate_document(name, deep_merge(base, document[name]))
            entry = HistoryEntry(
                timestamp=datetime.now(UTC).isoformat(timespec="milliseconds"),
                path=path,
                old_value=None if old_value is _MISSING else old_value,
                new_value=value,
                changed_by=changed_by.strip(),
                environment=self.environment,
                reason=reason.strip(),
                id=uuid.uuid4().hex,
                status="pending",
            )
            # Write-ahead: the entry is on disk before the change, so no change goes unrecorded.
            append_line_durably(self.history_path, entry.to_json())
            try:
                write_yaml_atomically(target, document)
            except Exception:
                append_line_durably(self.history_path, outcome_line(entry.id, "aborted"))
                raise
            append_line_durably(self.history_path, outcome_line(entry.id, "applied"))
            return replace(entry, status="applied")

    def history(self, limit: int | None = None, path_prefix: str | None = None) -> list[HistoryEntry]:
        """The last ``limit`` changes (oldest first), optionally only under ``path_prefix``."""
        entries = [
            entry
            for entry in fold_history(self._history_lines())
            if path_prefix is None or entry.path == path_prefix or entry.path.startswith(path_prefix + ".")
        ]
        if limit is not None:
            entries = entries[-limit:] if limit > 0 else []
        return entries
