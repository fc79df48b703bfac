"""Checkpoints on disk: atomic, hashed, retained, and refused when damaged.

Layout of the checkpoint directory (the TrainingRun's PVC)::

    ckpt-000000002048.pt   one file per saved step (torch.save of plain tensors and containers)
    best.pt                a copy of the best checkpoint by mean episode return (keepBest)
    manifest.json          {"checkpoints": [{step, file, sha256, meanReturn, createdAt}], "best": {...}}

Every file is written to a temp file in the same directory, fsynced, renamed over the target,
and the directory is fsynced, so a crash leaves either the old or the new file, never half of one.
A checkpoint is used only when its sha256 matches the manifest and it loads with
``torch.load(weights_only=True)`` (no arbitrary code from a tampered file); otherwise it is refused
with a message and the next older valid one is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
APPLIED_ROLLBACKS = "rollbacks-applied.json"
"""Ids of the operator's rollbacks (``--rollback-id``) already applied in this directory."""
BEST = "best.pt"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint or the manifest cannot be used; the message says which and why."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename + directory fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CheckpointRecord:
    step: int
    file: str
    sha256: str
    mean_return: float | None
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "file": self.file,
            "sha256": self.sha256,
            "meanReturn": self.mean_return,
            "createdAt": self.created_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckpointRecord:
        return cls(
            step=int(data["step"]),
            file=str(data["file"]),
            sha256=str(data["sha256"]),
            mean_return=None if data.get("meanReturn") is None else float(data["meanReturn"]),
            created_at=float(data.get("createdAt", 0.0)),
        )


def checkpoint_file_name(step: int) -> str:
    return f"ckpt-{step:012d}.pt"


class CheckpointManager:
    """Saves, retains and loads checkpoints in one directory (see the module docstring)."""

    def __init__(self, directory: Path, keep: int, keep_best: bool = True) -> None:
        if keep < 1:
            raise ValueError("keep must be ≥ 1")
        self.directory = directory
        self.keep = keep
        self.keep_best = keep_best
        self.records: list[CheckpointRecord] = []
        self.best: CheckpointRecord | None = None
        self.refused: list[str] = []
        """Messages about checkpoints refused while loading (for logs and the summary)."""
        self._read_manifest()

    # -- manifest -------------------------------------------------------------------------------
    def _read_manifest(self) -> None:
        path = self.directory / MANIFEST
        if not path.exists():
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.records = sorted(
                (CheckpointRecord.from_json(item) for item in data.get("checkpoints", [])),
                key=lambda r: r.step,
            )
            best = data.get("best")
            self.best = CheckpointRecord.from_json(best) if best else None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"{path}: unreadable checkpoint manifest ({exc}); refusing to guess"
            ) from exc

    def _write_manifest(self) -> None:
        data = {
            "formatVersion": FORMAT_VERSION,
            "checkpoints": [r.to_json() for r in self.records],
            "best": self.best.to_json() if self.best else None,
        }
        atomic_write_bytes(self.directory / MANIFEST, (json.dumps(data, indent=2) + "\n").encode())

    @property
    def has_checkpoints(self) -> bool:
        """Whether the manifest lists anything (an earlier run used this directory)."""
        return bool(self.records) or self.best is not None

    def set_aside_manifest(self) -> Path | None:
        """Rename the manifest to ``manifest.json.invalid-<UTC time>`` and forget what it listed.

        For a resume that found nothing loadable: the run starts over, and the old manifest (with
        the files it names, left in place) stays for a person to inspect instead of being reused.
        """
        path = self.directory / MANIFEST
        if not path.exists():
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = path.with_name(f"{MANIFEST}.invalid-{stamp}")
        os.replace(path, aside)
        self.records, self.best = [], None
        return aside

    @property
    def steps(self) -> list[int]:
        return [r.step for r in self.records]

    @property
    def latest(self) -> CheckpointRecord | None:
        return self.records[-1] if self.records else None

    # -- saving ---------------------------------------------------------------------------------
    def save(self, state: dict[str, Any], step: int, mean_return: float | None) -> CheckpointRecord:
        """Write a checkpoint for ``step``, update best and retention, then the manifest."""
        buffer = io.BytesIO()
        torch.save({"format": FORMAT_VERSION, "step": step, **state}, buffer)
        data = buffer.getvalue()
        name = checkpoint_file_name(step)
        atomic_write_bytes(self.directory / name, data)
        record = CheckpointRecord(step, name, sha256_bytes(data), mean_return, time.time())
        self.records = [r for r in self.records if r.step != step] + [record]
        self.records.sort(key=lambda r: r.step)
        improves = (
            self.best is None
            or self.best.mean_return is None
            or (mean_return is not None and mean_return > self.best.mean_return)
        )
        if self.keep_best and mean_return is not None and math.isfinite(mean_return) and improves:
            atomic_write_bytes(self.directory / BEST, data)
            self.best = CheckpointRecord(step, BEST, record.sha256, mean_return, record.created_at)
        removed = self.records[: -self.keep]
        self.records = self.records[-self.keep :]
        # The manifest first: a crash now leaves an unlisted file, never a dangling entry.
        self._write_manifest()
        for old in removed:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / old.file).unlink()
        return record

    def discard_after(self, step: int) -> list[int]:
        """Forget checkpoints newer than ``step`` (the abandoned branch after a rollback)."""
        dropped = [r for r in self.records if r.step > step]
        self.records = [r for r in self.records if r.step <= step]
        self._write_manifest()
        for record in dropped:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / record.file).unlink()
        return [r.step for r in dropped]

    # -- loading --------------------------------------------------------------------------------
    def _load_record(self, record: CheckpointRecord) -> dict[str, Any]:
        path = self.directory / record.file
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from exc
        actual = sha256_bytes(data)
        if actual != record.sha256:
            raise CheckpointError(
                f"{path}: sha256 {actual[:12]}… does not match the manifest's {record.sha256[:12]}…"
                " (corrupted or tampered); refused"
            )
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path}: refused by torch.load(weights_only=True): {exc}") from exc
        if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
            raise CheckpointError(f"{path}: not an artisan checkpoint of format {FORMAT_VERSION}")
        return state

    def load_step(self, step: int) -> dict[str, Any]:
        for record in self.records:
            if record.step == step:
                return self._load_record(record)
        raise CheckpointError(f"no checkpoint for step {step} in {self.directory}")

    def load_latest_valid(self, at_or_before: int | None = None) -> dict[str, Any] | None:
        """The newest checkpoint that passes every check; refused ones are logged and skipped."""
        for record in reversed(self.records):
            if at_or_before is not None and record.step > at_or_before:
                continue
            try:
                return self._load_record(record)
            except CheckpointError as exc:
                message = str(exc)
                log.error("%s; trying the previous checkpoint", message)
                self.refused.append(message)
        return None

    def load_first_valid(self, steps: Sequence[int]) -> tuple[CheckpointRecord, dict[str, Any]] | None:
        """The first of ``steps`` (a kept checkpoint, else the best one) that passes every check."""
        for step in steps:
            record = next((r for r in self.records if r.step == step), None)
            if record is None and self.best is not None and self.best.step == step:
                record = self.best
            if record is None:
                continue
            try:
                return record, self._load_record(record)
            except CheckpointError as exc:
                message = str(exc)
                log.error("%s; trying the next rollback candidate", message)
                self.refused.append(message)
        return None

    def verified(self, record: CheckpointRecord | None) -> bool:
        """Whether ``record``'s file is on disk and still matches its sha256 (no unpickling)."""
        if record is None:
            return False
        try:
            return sha256_file(self.directory / record.file) == record.sha256
        except OSError:
            return False

    def newest_verified(self) -> CheckpointRecord | None:
        """The newest kept checkpoint whose file matches its sha256."""
        return next((r for r in reversed(self.records) if self.verified(r)), None)

    def load_best(self) -> dict[str, Any]:
        if self.best is None:
            raise CheckpointError(f"no best checkpoint in {self.directory}")
        return self._load_record(self.best)


def applied_rollback_ids(directory: Path) -> list[str]:
    """The rollback ids recorded by :func:`record_applied_rollback` (none when unreadable)."""
    try:
        data = json.loads((directory / APPLIED_ROLLBACKS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    ids = data.get("ids") if isinstance(data, dict) else None
    return [str(i) for i in ids] if isinstance(ids, list) else []


def record_applied_rollback(directory: Path, rollback_id: str, keep: int = 100) -> None:
    """Remember (atomically) that ``rollback_id``'s drop of newer checkpoints was applied."""
    ids = [i for i in applied_rollback_ids(directory) if i != rollback_id] + [rollback_id]
    atomic_write_bytes(directory / APPLIED_ROLLBACKS, json.dumps({"ids": ids[-keep:]}).encode())
