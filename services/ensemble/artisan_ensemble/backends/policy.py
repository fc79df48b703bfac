"""The formula policy from a trainer checkpoint, loaded with ``torch.load(weights_only=True)``.

Expected layout (the trainer's ``checkpoints.py`` format 1; the ensemble never imports the trainer):

- ``path`` is a checkpoint file, or the checkpoint directory (then ``best.pt``, else the newest
  ``ckpt-*.pt``). When the directory's ``manifest.json`` lists the file, its sha256 must match.
- The file holds the trainer's state ``{"format": 1, "step": N, "policy": {"actor": <state_dict>,
  "log_std": ...}, "value": ..., ...}`` (``ppo.py`` ``state_dict``). Also accepted: the actor
  state_dict under ``policy``/``model``/``state_dict``/``actor``, or as the whole file.
- The actor is an ``nn.Sequential`` of ``nn.Linear`` layers (``<i>.weight`` / ``<i>.bias``) with tanh
  between them: input = the env observation (:func:`brief_features`, 40 floats for the 14-family
  catalog), output = the Gaussian mean of one weight per catalog ingredient (catalog order).
  Chains named ``critic``/``value`` are skipped.
- Like the env: weights are clipped to [0, 1], weights ≤ 0.02 count as absent, the rest is
  normalized to sum to 1 (the mean action is served: no sampling at inference).

Anything else is refused with a message naming the mismatch; the service then uses the heuristic.

With a ModelPin ``policy`` the operator mounts the TrainingRun's checkpoint PVC read-only and names the
checkpoint (``best``, ``latest`` or ``step-N``): :func:`load_policy_from_dir` picks the file from the
directory's ``manifest.json`` (``best`` record; newest ``checkpoints`` entry; the entry of step N) and
requires its sha256 to match before loading.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from artisan_common.catalog import IngredientCatalog
from artisan_ensemble.ensemble.formula import feature_size

STATE_KEYS = ("policy", "policy_state_dict", "model", "model_state_dict", "state_dict", "actor")
_SKIP = re.compile(r"(critic|value|v_head|vf)", re.IGNORECASE)
MIN_WEIGHT = 0.02


class PolicyLoadError(RuntimeError):
    pass


def _checkpoint_file(path: Path) -> Path:
    if path.is_file():
        return path
    if (path / "best.pt").is_file():
        return path / "best.pt"
    candidates = sorted(path.glob("ckpt-*.pt"))
    if not candidates:
        raise PolicyLoadError(f"{path}: no checkpoint file (best.pt or ckpt-*.pt)")
    return candidates[-1]


def _verify_sha(file: Path) -> None:
    manifest = file.parent / "manifest.json"
    if not manifest.is_file():
        return
    data = json.loads(manifest.read_text(encoding="utf-8"))
    records = [*data.get("checkpoints", []), *([data["best"]] if data.get("best") else [])]
    expected = {r.get("sha256") for r in records if r.get("file") == file.name}
    if file.name == "best.pt" and data.get("best"):
        expected.add(data["best"].get("sha256"))
    expected.discard(None)
    if expected and hashlib.sha256(file.read_bytes()).hexdigest() not in expected:
        raise PolicyLoadError(f"{file}: sha256 does not match {manifest}; refusing a damaged checkpoint")


def _state_dict(state: Any) -> Mapping[str, torch.Tensor]:
    if isinstance(state, Mapping):
        policy = state.get("policy")
        if isinstance(policy, Mapping) and isinstance(policy.get("actor"), Mapping):
            return {k: v for k, v in policy["actor"].items() if isinstance(v, torch.Tensor)}
        for key in STATE_KEYS:
            value = state.get(key)
            if isinstance(value, Mapping) and any(isinstance(v, torch.Tensor) for v in value.values()):
                return {k: v for k, v in value.items() if isinstance(v, torch.Tensor)}
        if state and all(isinstance(v, torch.Tensor) for v in state.values()):
            return state
    raise PolicyLoadError(f"no policy state_dict found (looked for {', '.join(STATE_KEYS)})")


def _actor_chain(
    weights: Mapping[str, torch.Tensor], n_in: int, n_out: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    layers = [
        (name.removesuffix(".weight"), tensor)
        for name, tensor in weights.items()
        if name.endswith(".weight") and tensor.dim() == 2 and not _SKIP.search(name)
    ]
    chain: list[tuple[torch.Tensor, torch.Tensor]] = []
    size = n_in
    for prefix, weight in layers:
        if weight.shape[1] != size:
            continue
        bias = weights.get(f"{prefix}.bias", torch.zeros(weight.shape[0]))
        chain.append((weight.float(), bias.float()))
        size = weight.shape[0]
        if size == n_out:
            return chain
    shapes = {name: tuple(t.shape) for name, t in weights.items() if t.dim() == 2}
    raise PolicyLoadError(f"no linear chain from {n_in} brief features to {n_out} ingredients in {shapes}")


class TorchFormulaPolicy:
    def __init__(
        self, layers: Sequence[tuple[torch.Tensor, torch.Tensor]], ids: Sequence[str], source: str
    ) -> None:
        self.layers = list(layers)
        self.ids = list(ids)
        self._description = f"policy checkpoint {source}"

    @property
    def description(self) -> str:
        return self._description

    def proportions(self, features: Sequence[float]) -> Mapping[str, float]:
        with torch.inference_mode():
            x = torch.tensor(list(features), dtype=torch.float32)
            for index, (weight, bias) in enumerate(self.layers):
                x = torch.nn.functional.linear(x, weight, bias)
                if index < len(self.layers) - 1:
                    x = torch.tanh(x)
            weights = torch.clamp(x, 0.0, 1.0).tolist()
        kept = {i: w for i, w in zip(self.ids, weights, strict=True) if w > MIN_WEIGHT}
        if not kept:  # an empty formula is useless: keep the strongest ingredient
            best = max(range(len(weights)), key=lambda k: weights[k])
            kept = {self.ids[best]: 1.0}
        total = sum(kept.values())
        return {i: s / total for i, s in kept.items()}


def load_policy_checkpoint(path: Path, catalog: IngredientCatalog) -> TorchFormulaPolicy:
    file = _checkpoint_file(path)
    _verify_sha(file)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise PolicyLoadError(f"{file}: not loadable with weights_only=True: {error}") from error
    chain = _actor_chain(_state_dict(state), feature_size(catalog.families), len(catalog))
    return TorchFormulaPolicy(chain, catalog.ids, str(file))


_SELECTOR = re.compile(r"^(best|latest|step-(?P<step>[0-9]+))$")


def resolve_checkpoint(directory: Path, selector: str) -> tuple[Path, str, int]:
    """The file, manifest sha256 and step that ``best``/``latest``/``step-N`` names in ``directory``."""
    match = _SELECTOR.fullmatch(selector.strip())
    if match is None:
        raise PolicyLoadError(
            f"ARTISAN_ENSEMBLE_POLICY_CHECKPOINT {selector!r}: must be best, latest or step-<N>"
        )
    manifest = directory / "manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        records: list[dict[str, Any]] = sorted(data.get("checkpoints") or [], key=lambda r: int(r["step"]))
        best: dict[str, Any] | None = data.get("best")
    except FileNotFoundError as error:
        raise PolicyLoadError(
            f"{manifest}: no checkpoint manifest (has the TrainingRun saved one?)"
        ) from error
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise PolicyLoadError(f"{manifest}: unreadable checkpoint manifest ({error})") from error
    if match["step"] is not None:
        step = int(match["step"])
        record = next((r for r in records if int(r["step"]) == step), None)
        if record is None:
            available = ", ".join(str(r["step"]) for r in records) or "none"
            raise PolicyLoadError(f"{manifest}: no checkpoint of step {step} (steps kept: {available})")
    elif selector.strip() == "best":
        if not best:
            raise PolicyLoadError(f"{manifest}: no best checkpoint recorded yet")
        record = best
    else:
        if not records:
            raise PolicyLoadError(f"{manifest}: no checkpoints recorded yet")
        record = records[-1]
    try:
        return directory / str(record["file"]), str(record["sha256"]), int(record["step"])
    except (KeyError, TypeError, ValueError) as error:
        raise PolicyLoadError(f"{manifest}: checkpoint record without file/sha256/step ({error})") from error


def load_policy_from_dir(directory: Path, selector: str, catalog: IngredientCatalog) -> TorchFormulaPolicy:
    """The formula policy of checkpoint ``selector`` in the trainer's checkpoint ``directory``."""
    file, expected, step = resolve_checkpoint(directory, selector)
    try:
        data = file.read_bytes()
    except OSError as error:
        raise PolicyLoadError(f"{file}: cannot read ({error.strerror})") from error
    if hashlib.sha256(data).hexdigest() != expected:
        raise PolicyLoadError(f"{file}: sha256 does not match the manifest; refusing a damaged checkpoint")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:
        raise PolicyLoadError(f"{file}: not loadable with weights_only=True: {error}") from error
    chain = _actor_chain(_state_dict(state), feature_size(catalog.families), len(catalog))
    return TorchFormulaPolicy(chain, catalog.ids, f"{selector} (step {step}, {file})")
