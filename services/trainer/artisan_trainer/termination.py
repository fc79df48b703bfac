"""The termination message: a compact JSON the trainer leaves at exit for the operator to read.

Kubernetes copies the file at the pod's ``terminationMessagePath`` (``/dev/termination-log``) into
the container status when the container ends (at most 4096 bytes), so the operator learns what
happened after its last scrape: final step, reward, checkpoints, rollbacks and the outcome.

The document (keys are a contract with the operator's ``parse_termination_message``)::

    {"step": 8192, "rewardMA": 187.5, "lastCheckpoint": 8192, "bestCheckpoint": 6144,
     "rollbacks": [{"step": 4096, "reason": "kl_divergence", "toStep": 2048}],
     "outcome": "Succeeded", "message": "completed 8192 steps"}

- ``rewardMA``: mean return of the last 100 episodes (null before the first episode ends);
- ``lastCheckpoint`` / ``bestCheckpoint``: steps of the newest / best checkpoint whose file still
  matches the sha256 in the manifest (null when none does);
- ``rollbacks``: the rollbacks this process made (the operator counts them per Job attempt), the
  last :data:`MAX_ROLLBACKS` of them;
- ``outcome``: ``Succeeded`` (completed, or stopped by SIGTERM after a checkpoint),
  ``RollbacksExhausted``, or ``Error`` (no rollback target, an invalid configuration, a crash).

The whole document is kept under :data:`LIMIT` bytes: the message is shortened first, then the
oldest rollbacks are dropped.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from artisan_trainer.checkpoints import atomic_write_bytes

log = logging.getLogger(__name__)

LIMIT = 3500
"""Bytes; the kubelet keeps 4096 of a termination message."""
MAX_ROLLBACKS = 20
DEFAULT_PATH = Path("/dev/termination-log")
ENV_VAR = "ARTISAN_TRAINER_TERMINATION_LOG"

Outcome = Literal["Succeeded", "RollbacksExhausted", "Error"]

STATUS_OUTCOMES: dict[str, Outcome] = {
    "completed": "Succeeded",
    "interrupted": "Succeeded",
    "rollbacks_exhausted": "RollbacksExhausted",
    "no_rollback_target": "Error",
}
"""The run's summary status → the message's outcome."""


@dataclass(frozen=True)
class RollbackEntry:
    step: int
    reason: str
    to_step: int | None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def build_termination_message(
    *,
    step: int,
    reward_ma: float | None,
    last_checkpoint: int | None,
    best_checkpoint: int | None,
    rollbacks: Sequence[RollbackEntry],
    outcome: Outcome,
    message: str,
    limit: int = LIMIT,
) -> bytes:
    """The compact JSON document (module docstring), at most ``limit`` bytes."""
    kept = list(rollbacks)[-MAX_ROLLBACKS:]

    def encode(text: str, entries: Sequence[RollbackEntry]) -> bytes:
        document: dict[str, Any] = {
            "step": int(step),
            "rewardMA": _finite(reward_ma),
            "lastCheckpoint": last_checkpoint,
            "bestCheckpoint": best_checkpoint,
            "rollbacks": [{"step": r.step, "reason": r.reason, "toStep": r.to_step} for r in entries],
            "outcome": outcome,
            "message": text,
        }
        return json.dumps(document, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()

    data = encode(message, kept)
    if len(data) > limit:  # shorten the message to what is left after the rest
        room = max(limit - len(encode("", kept)) - 16, 0)
        shortened = message.encode()[:room].decode(errors="ignore")
        data = encode(shortened + "…" if shortened != message else shortened, kept)
    while len(data) > limit and kept:
        kept = kept[1:]
        data = encode(json.loads(data)["message"], kept)
    return data


def termination_path(flag: Path | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """Where to write: ``--termination-log``, else ``$ARTISAN_TRAINER_TERMINATION_LOG``, else
    ``/dev/termination-log`` when that file exists and is writable (in a pod), else nowhere."""
    if flag is not None:
        return flag
    value = (os.environ if environ is None else environ).get(ENV_VAR)
    if value:
        return Path(value)
    if DEFAULT_PATH.is_file() and os.access(DEFAULT_PATH, os.W_OK):
        return DEFAULT_PATH
    return None


def write_termination_message(path: Path, data: bytes) -> None:
    """Write atomically (temp file + fsync + rename); in place when the file is a mount point.

    In a pod the file is bind-mounted and ``/dev`` is not writable by a non-root user, so a rename
    over it cannot work; the document is then written with one ``write`` and fsynced (the kubelet
    reads it only after the container has exited).
    """
    try:
        atomic_write_bytes(path, data)
        return
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EBUSY, errno.EROFS, errno.EXDEV):
            raise
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data)
        with contextlib.suppress(OSError):  # some pseudo-filesystems cannot fsync
            os.fsync(fd)
    finally:
        os.close(fd)
