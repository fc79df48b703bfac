"""The trainer's configuration: the TrainingRun algorithm fields plus runtime knobs (torch-free).

Sources, later ones win:

1. the model defaults (the seeds' values, the same as ``configs/ppo_schedule.yaml``,
   ``configs/checkpoint_strategy.yaml`` and ``configs/reward_normalization.yaml``);
2. each ``--config FILE`` in order: a YAML mapping in the ``TrainingConfig.to_wire()`` shape (the
   operator mounts exactly that as ``/etc/artisan/trainer.yaml``), whole or partial, optionally with
   a ``runtime`` section;
3. ``ARTISAN_TRAINER_<RUNTIME_FIELD>`` environment variables (e.g. ``ARTISAN_TRAINER_NUM_ENVS=4``);
4. ``--set key=value``: a dotted path in camelCase or snake_case, the value parsed as YAML.

An invalid result raises :class:`ConfigError` whose message starts with the offending key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from artisan_common.mappings import deep_merge
from artisan_common.model import ApiModel
from artisan_common.training import TrainingConfig

ENV_PREFIX = "ARTISAN_TRAINER_"
SEED_CONFIG_FILES = ("ppo_schedule.yaml", "checkpoint_strategy.yaml", "reward_normalization.yaml")


class RuntimeSpec(ApiModel):
    """How this process runs the algorithm; not part of the TrainingRun API (all optional)."""

    num_envs: int = Field(default=1, ge=1, le=1024)
    """Parallel environments in the gymnasium vector env (stepsPerUpdate must divide evenly)."""
    seed: int = Field(default=1, ge=0)
    """Seeds torch, the environments and the minibatch shuffling."""
    vf_coef: float = Field(default=0.5, ge=0)
    """Weight of the value loss."""
    max_grad_norm: float = Field(default=0.5, gt=0)
    """Global gradient-norm clip."""
    normalize_advantages: bool = True
    """Standardize advantages per minibatch."""
    clip_value_loss: bool = True
    """Clip the value update to ±clipRange around the old value (as in the PPO paper's code)."""
    hidden_sizes: list[int] = Field(default_factory=lambda: [64, 64], min_length=1)
    """Hidden layer widths of the actor and critic MLPs."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Torch device; auto picks CUDA when available."""
    torch_threads: int = Field(default=1, ge=0)
    """torch.set_num_threads; 1 is fastest for small MLPs, 0 keeps torch's default."""
    kl_consecutive_updates: int = Field(default=2, ge=1)
    """Updates in a row with KL above klThreshold before a rollback."""
    loss_spike_consecutive_updates: int = Field(default=2, ge=1)
    """Updates in a row with a value-loss spike before a rollback."""
    value_loss_floor: float = Field(default=0.05, gt=0)
    """Floor under the relative value-loss baseline: with the default factor 2, a spike needs an RMS
    value error above ~45 % of the targets' RMS, so a well-fitted critic's small wobbles never fire."""
    rollback_lr_factor: float = Field(default=0.5, gt=0, lt=1)
    """The learning rate is multiplied by this after each rollback (cumulative)."""
    log_every_updates: int = Field(default=1, ge=1)
    """Emit a JSON log line every this many updates."""


class TrainerConfig(TrainingConfig):
    """TrainingConfig (the TrainingRun's algorithm fields) plus the :class:`RuntimeSpec`."""

    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    """Process-level knobs."""

    @model_validator(mode="after")
    def _runtime_consistent(self) -> Self:
        if self.ppo.steps_per_update % self.runtime.num_envs:
            raise ValueError(
                f"ppo.stepsPerUpdate: {self.ppo.steps_per_update} is not a multiple of "
                f"runtime.numEnvs={self.runtime.num_envs}"
            )
        if self.ppo.entropy.schedule == "exponential" and self.ppo.entropy.final <= 0:
            raise ValueError("ppo.entropy.final: must be > 0 for the exponential schedule")
        return self

    @property
    def steps_per_env(self) -> int:
        return self.ppo.steps_per_update // self.runtime.num_envs

    def training_config(self) -> TrainingConfig:
        """The API part alone (what the operator embeds)."""
        return TrainingConfig.model_validate(self.model_dump(exclude={"runtime"}))


class ConfigError(ValueError):
    """Invalid trainer configuration; the message starts with the offending key."""


def _wire_key(model: type[BaseModel], segment: str, path: str) -> tuple[str, type[BaseModel] | None]:
    """The camelCase key of ``segment`` in ``model`` and the nested model type (None for a leaf)."""
    for name, info in model.model_fields.items():
        if segment in (name, info.alias):
            annotation = info.annotation
            nested = (
                annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
            )
            return info.alias or name, nested
    raise ConfigError(f"{path}: unknown key {segment!r} (known: {', '.join(_known(model))})")


def _known(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` → (wire path, YAML-parsed value); keys may be camelCase or snake_case."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{text}: an override must look like key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: value {raw!r} is not valid YAML: {exc}") from exc
    path: list[str] = []
    model: type[BaseModel] | None = TrainerConfig
    segments = key.split(".")
    for index, segment in enumerate(segments):
        so_far = ".".join(segments[: index + 1])
        if model is None:
            # Inside a free-form mapping (env.config): keys are passed through unchanged.
            path.append(segment)
            continue
        wire, nested = _wire_key(model, segment, so_far)
        path.append(wire)
        if nested is None and index < len(segments) - 1 and wire != "config":
            raise ConfigError(f"{so_far}: is a value, not a section")
        model = nested
    return path, value


def apply_override(document: dict[str, Any], text: str) -> dict[str, Any]:
    path, value = parse_override(text)
    update: dict[str, Any] = {path[-1]: value}
    for part in reversed(path[:-1]):
        update = {part: update}
    return deep_merge(document, update)


def _env_overrides(environ: Mapping[str, str]) -> list[str]:
    """``ARTISAN_TRAINER_NUM_ENVS=4`` → ``runtime.numEnvs=4`` for every runtime field."""
    out = []
    for name in RuntimeSpec.model_fields:
        value = environ.get(ENV_PREFIX + name.upper())
        if value is not None:
            out.append(f"runtime.{name}={value}")
    return out


def _format_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "<root>"
        message = error["msg"]
        # A model-level rule reports the root; the rule's message names the key itself.
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
            if ":" in message.split(" ", 1)[0]:
                lines.append(message)
                continue
        lines.append(f"{key}: {message}")
    return "; ".join(lines)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(document).__name__}")
    return document


def load_config(
    files: Sequence[Path] = (),
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> TrainerConfig:
    """Merge the sources (module docstring order) and validate once."""
    document: dict[str, Any] = {}
    for path in files:
        try:
            document = deep_merge(document, read_yaml(path))
        except ConfigError:
            raise
    for text in [*_env_overrides(os.environ if environ is None else environ), *overrides]:
        document = apply_override(document, text)
    try:
        return TrainerConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from exc


def seed_config_files(config_dir: Path) -> list[Path]:
    """The seeds' three YAML files in ``config_dir`` (those that exist)."""
    return [config_dir / name for name in SEED_CONFIG_FILES if (config_dir / name).exists()]
