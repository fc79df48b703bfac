"""Snapshot and restore the state of gymnasium environments as plain data (for exact resume).

Environments are not saved with pickle (a checkpoint must load with ``weights_only=True``). Instead
each object in an env's wrapper chain contributes its plain-data attributes: numbers, strings,
None, numpy arrays (stored as tensors) and numpy random generators (their bit-generator state as
JSON). That covers gymnasium's classic-control envs, the TimeLimit/OrderEnforcing/checker
wrappers and ``artisan/Fragrance-v0``; an env keeping state in other objects resumes with those
parts as they were after construction (still valid, not bit-exact).
"""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np
import torch

_ARRAY = "__ndarray__"
_GENERATOR = "__generator__"


def _chain(env: gym.Env[Any, Any]) -> list[object]:
    chain: list[object] = [env]
    current: object = env
    while isinstance(current, gym.Wrapper):
        current = current.env
        chain.append(current)
    return chain


def _is_checker(obj: object) -> bool:
    """gymnasium's PassiveEnvChecker: its state is "checked yet?" plus the previous step's data (a
    tuple, so not captured); restoring the first flags without that data breaks its next step."""
    return isinstance(obj, gym.wrappers.PassiveEnvChecker)


def _capture(obj: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if _is_checker(obj):
        return out
    for key, value in vars(obj).items():
        if isinstance(value, np.random.Generator):
            out[key] = {_GENERATOR: json.dumps(value.bit_generator.state)}
        elif isinstance(value, np.ndarray) and value.dtype != object:
            out[key] = {_ARRAY: torch.from_numpy(np.ascontiguousarray(value).copy())}
        elif isinstance(value, np.generic):
            out[key] = value.item()
        elif value is None or isinstance(value, bool | int | float | str):
            out[key] = value
    return out


def _restore_value(value: Any) -> Any:
    if isinstance(value, dict) and _ARRAY in value:
        return value[_ARRAY].numpy().copy()
    if isinstance(value, dict) and _GENERATOR in value:
        state = json.loads(value[_GENERATOR])
        bit_generator = getattr(np.random, state["bit_generator"])()
        bit_generator.state = state
        return np.random.Generator(bit_generator)
    return value


def snapshot_env(env: gym.Env[Any, Any]) -> list[dict[str, Any]]:
    """Plain-data state of each object in the wrapper chain, outermost first."""
    return [_capture(obj) for obj in _chain(env)]


def restore_env(env: gym.Env[Any, Any], snapshot: list[dict[str, Any]]) -> None:
    """Put a snapshot back into an env built the same way (same id and kwargs)."""
    chain = _chain(env)
    if len(chain) != len(snapshot):
        raise ValueError(f"env wrapper chain has {len(chain)} levels, the snapshot {len(snapshot)}")
    for obj, attributes in zip(chain, snapshot, strict=True):
        if _is_checker(obj):
            continue  # older snapshots hold its flags; the live ones are consistent with its data
        for key, value in attributes.items():
            setattr(obj, key, _restore_value(value))
