"""Serve the emulated API on a free loopback port, with a kubeconfig and clients pointing at it.

Two ways to run it:

- ``async with serve() as api:`` inside an event loop (the loop must stay free: only async
  clients such as kopf may talk to it from that loop);
- ``with EmulatorThread() as api:`` from synchronous code (tests, the demo): the server gets
  its own thread and loop, so the blocking ``kubernetes`` client can be used freely.

The HTTP server is plain aiohttp on a socket we bind ourselves (no DNS interception): clients
reach it only through the URL, exactly as they would reach a real cluster.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiohttp.web
import kubernetes.client
import kubernetes.config
import yaml

from artisan_operator.sandbox.emulator import SandboxEmulator

T = TypeVar("T")

CONTEXT_NAME = "artisan-sandbox"
SANDBOX_TOKEN = "artisan-sandbox"  # the emulator checks no credentials; clients like to send one


@dataclass(frozen=True)
class RunningApi:
    """A started emulator: its URL, the kubeconfig file for it, and the emulator itself."""

    url: str
    kubeconfig_path: Path
    emulator: SandboxEmulator

    def api_client(self) -> kubernetes.client.ApiClient:
        """A new ``kubernetes`` client configured from the kubeconfig (close it when done)."""
        client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig_path)
        )
        return client


def kubeconfig_document(url: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT_NAME, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT_NAME, "user": {"token": SANDBOX_TOKEN}}],
        "contexts": [
            {
                "name": CONTEXT_NAME,
                "context": {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT_NAME,
    }


def write_kubeconfig(path: Path, url: str) -> Path:
    """Write the kubeconfig atomically (temp file + fsync + rename), readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yaml.safe_dump(kubeconfig_document(url), handle, sort_keys=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    return path


@contextlib.asynccontextmanager
async def serve(
    emulator: SandboxEmulator | None = None, *, kubeconfig_path: Path | None = None
) -> AsyncIterator[RunningApi]:
    """Serve ``emulator`` (a fresh one by default) on 127.0.0.1:<free port> until exit."""
    emulator = emulator if emulator is not None else SandboxEmulator()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as cleanup:
        if kubeconfig_path is None:
            directory = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="artisan-sandbox-"))
            kubeconfig_path = Path(directory) / "kubeconfig"
        write_kubeconfig(kubeconfig_path, url)
        runner = aiohttp.web.ServerRunner(aiohttp.web.Server(emulator), shutdown_timeout=1.0)
        await runner.setup()
        try:
            await aiohttp.web.SockSite(runner, listener).start()
            async with emulator:  # kmock's handler context: reaction streams and error capture
                try:
                    yield RunningApi(url=url, kubeconfig_path=kubeconfig_path, emulator=emulator)
                finally:
                    emulator.close_watches()
        finally:
            await runner.cleanup()
            listener.close()


class EmulatorThread:
    """Run :func:`serve` in a background thread with its own event loop (a sync context manager)."""

    def __init__(
        self,
        emulator: SandboxEmulator | None = None,
        *,
        kubeconfig_path: Path | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self._emulator = emulator
        self._kubeconfig_path = kubeconfig_path
        self._start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._api: RunningApi | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="artisan-sandbox-api", daemon=True)

    @property
    def api(self) -> RunningApi:
        if self._api is None:
            raise RuntimeError("the emulator is not running")
        return self._api

    def __enter__(self) -> RunningApi:
        self._thread.start()
        if not self._started.wait(self._start_timeout):
            raise TimeoutError(f"the emulated API did not start within {self._start_timeout}s")
        if self._error is not None:
            raise RuntimeError("the emulated API failed to start") from self._error
        return self.api

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the emulated API did not stop within {timeout}s")

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` in the server's loop (e.g. to read the store without racing it)."""
        return self.run(_as_coroutine(function))

    def run(self, awaitable: Awaitable[T]) -> T:
        if self._loop is None:
            raise RuntimeError("the emulator is not running")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(_await(awaitable), self._loop)
        return future.result(timeout=30.0)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with serve(self._emulator, kubeconfig_path=self._kubeconfig_path) as api:
            self._api = api
            self._started.set()
            await self._stopping.wait()


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _as_coroutine(function: Callable[[], T]) -> T:
    return function()
