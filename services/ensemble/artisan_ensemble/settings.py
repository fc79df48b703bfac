"""Process settings from ``ARTISAN_ENSEMBLE_*`` environment variables (pydantic-settings).

| variable                            | meaning                                                         |
|-------------------------------------|-----------------------------------------------------------------|
| ``ARTISAN_ENSEMBLE_ROLE``           | ``ensemble`` (models) or ``gateway`` (router)                    |
| ``ARTISAN_ENSEMBLE_MODELS_DIR``     | where relative model sources (and ``serve --models``) live       |
| ``ARTISAN_ENSEMBLE_PIN_CONFIG``     | JSON file: the ModelPin's {models, modes, traffic, downshift}    |
| ``ARTISAN_ENSEMBLE_CONFIG_PATH``    | configs/llm_ensemble.yaml                                       |
| ``ARTISAN_ENSEMBLE_PROFILE``        | dev, staging or prod                                            |
| ``ARTISAN_ENSEMBLE_ROUTING_DIR``    | gateway: the mounted ``<modelpin>-routing`` ConfigMap            |
| ``ARTISAN_ENSEMBLE_ADMIN_TOKEN``    | bearer token of /admin/* (admin disabled when unset)             |
| ``ARTISAN_ENSEMBLE_FEEDBACK_DB``    | SQLite file of the feedback store                               |
| ``ARTISAN_ENSEMBLE_GATEWAY_MAX_CONCURRENT`` | gateway: requests forwarded at once (default 64)  |
| ``ARTISAN_ENSEMBLE_GATEWAY_MAX_WAITING`` | gateway: requests allowed to wait; beyond it 429 (256) |
| ``ARTISAN_ENSEMBLE_ALLOW_UNVERIFIED_REVISION`` | load a model directory whose revision cannot be |
|                                     | checked against the pin (default false: refused; see          |
|                                     | ``backends/transformers_backend.py``)                         |
| ``ARTISAN_ENSEMBLE_POLICY_DIR``     | the trainer's checkpoint directory (the ModelPin policy's PVC)   |
| ``ARTISAN_ENSEMBLE_POLICY_CHECKPOINT`` | with POLICY_DIR: ``best``, ``latest`` or ``step-N`` (default  |
|                                     | best); without it: a checkpoint file or directory path          |

Without either the formula comes from the deterministic heuristic; a checkpoint that cannot be used
also falls back to the heuristic, and /readyz and every formula's ``source`` say so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from artisan_ensemble.ensemble.config import PinConfig, Profile, ServiceConfig, resolve_config

REPO_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "llm_ensemble.yaml"


class EnsembleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARTISAN_ENSEMBLE_", extra="ignore")

    role: Literal["ensemble", "gateway"] = "ensemble"
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    models_dir: Path | None = None
    pvc_root: Path = Path("/models/pvc")
    pin_config: Path | None = None
    config_path: Path | None = None
    profile: Profile = "prod"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    allow_unverified_revision: bool = False
    """Serve a model directory with no revision sub-directory, marker or hub snapshot (the pin unchecked)."""
    routing_dir: Path | None = None
    routing_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    upstream_timeout_seconds: float = Field(default=30.0, gt=0)
    gateway_max_concurrent: int = Field(default=64, ge=1, le=100_000)
    """Gateway backpressure: requests forwarded at once."""
    gateway_max_waiting: int = Field(default=256, ge=0, le=1_000_000)
    """Gateway backpressure: requests allowed to wait for a forwarding slot; beyond it 429."""
    gateway_retry_after_seconds: float = Field(default=1.0, gt=0)
    """Retry-After the gateway sends with its 429."""
    admin_token: SecretStr | None = None
    feedback_db: Path | None = None
    catalog_path: Path | None = None
    policy_dir: Path | None = None
    policy_checkpoint: str | None = None

    @property
    def policy_configured(self) -> bool:
        return self.policy_dir is not None or self.policy_checkpoint is not None

    log_level: str = "info"

    def load_pin(self) -> PinConfig | None:
        if self.pin_config is None:
            return None
        try:
            return PinConfig.model_validate(json.loads(self.pin_config.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"ARTISAN_ENSEMBLE_PIN_CONFIG {self.pin_config}: {error}") from error

    def load_document(self) -> dict[str, Any]:
        path = self.config_path or (REPO_CONFIG if REPO_CONFIG.is_file() else None)
        if path is None:
            return {}
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(document, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
        return document

    def service_config(self) -> ServiceConfig:
        return resolve_config(self.load_document(), self.profile, self.load_pin())
