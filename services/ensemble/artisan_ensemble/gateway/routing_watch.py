"""Hot reload of the routing table from the mounted ``<modelpin>-routing`` ConfigMap directory.

Kubernetes updates a mounted ConfigMap by swapping a ``..data`` symlink; polling the (resolved)
files' mtime, size and inode catches that as well as a plain rewrite. A table that fails to parse
is not applied: the previous one stays in force and the error is kept for /readyz and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from artisan_common.routing import CANARY_KEY, EXPERIMENT_KEY, PIN_KEY, RoutingTable, compose

log = logging.getLogger(__name__)
KEYS = (PIN_KEY, CANARY_KEY, EXPERIMENT_KEY)

Signature = tuple[tuple[str, int, int, int], ...]


def directory_signature(directory: Path) -> Signature:
    entries = []
    for key in KEYS:
        try:
            st = os.stat(directory / key)
        except FileNotFoundError:
            continue
        entries.append((key, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(entries)


def read_table(directory: Path) -> RoutingTable:
    parts = {
        key: (directory / key).read_text(encoding="utf-8") for key in KEYS if (directory / key).is_file()
    }
    return compose(parts)


class RoutingWatcher:
    def __init__(
        self,
        directory: Path,
        poll_seconds: float = 0.5,
        on_reload: Callable[[bool], None] | None = None,
    ) -> None:
        self.directory = directory
        self.poll_seconds = poll_seconds
        self.on_reload = on_reload
        self.table: RoutingTable | None = None
        self.error: str | None = None
        self.loaded_at: float | None = None
        self._signature: Signature | None = None
        self._task: asyncio.Task[None] | None = None

    def refresh(self) -> bool:
        """Reload when the files changed; returns True when a new table was applied."""
        signature = directory_signature(self.directory)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            table = read_table(self.directory)
        except (OSError, ValueError) as error:
            self.error = f"{self.directory}: {error}"
            log.warning("routing table not applied: %s", self.error)
            if self.on_reload:
                self.on_reload(False)
            return False
        self.table, self.error, self.loaded_at = table, None, time.time()
        if self.on_reload:
            self.on_reload(True)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.refresh)
            await asyncio.sleep(self.poll_seconds)

    def start(self) -> None:
        self.refresh()
        self._task = asyncio.get_running_loop().create_task(self.run(), name="routing-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
