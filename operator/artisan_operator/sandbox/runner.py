"""Run an operator in-process, in its own thread and event loop, and stop, kill or restart it.

An operator here is any ``main(stop_flag, ready_flag)`` coroutine factory, e.g. Artisan's
``run_operator(settings, stop_flag=..., ready_flag=...)`` (see :func:`artisan_operator_main`)
or a small kopf operator in tests. The thread keeps the caller's thread free for the blocking
``kubernetes`` client, exactly like ``kopf.testing.KopfRunner`` does.

- :meth:`OperatorThread.stop` asks politely (the stop flag; kopf finishes what it is doing);
- :meth:`OperatorThread.kill` cancels the operator's task wherever it is, the in-process
  equivalent of a killed pod: handlers are interrupted between two API calls;
- a fresh :class:`OperatorThread` on the same API is a restarted operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

OperatorMain = Callable[[threading.Event, threading.Event], Coroutine[Any, Any, Any]]


class OperatorCrashedError(RuntimeError):
    """The operator's coroutine ended with an exception (chained as the cause)."""


def artisan_operator_main(
    kubeconfig: Path, namespace: str | None = None, *, metrics: bool = False
) -> OperatorMain:
    """Artisan's own operator against a kubeconfig, without its metrics server (unless asked)."""
    from artisan_operator.main import run_operator
    from artisan_operator.settings import Settings

    settings = Settings(
        kubeconfig=kubeconfig,
        namespace=namespace,
        metrics_enabled=metrics,
        metrics_host="127.0.0.1",
        metrics_port=0,
    )

    def main(stop_flag: threading.Event, ready_flag: threading.Event) -> Coroutine[Any, Any, Any]:
        return run_operator(settings, stop_flag=stop_flag, ready_flag=ready_flag)

    return main


class OperatorThread:
    """One operator instance; usable once (create a new one to restart)."""

    def __init__(self, main: OperatorMain, *, name: str = "artisan-operator") -> None:
        self._main = main
        self._stop_flag = threading.Event()
        self._ready_flag = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def error(self) -> BaseException | None:
        return self._error

    def start(self, timeout: float = 30.0) -> OperatorThread:
        """Start and wait until the operator says it is ready (or dies trying)."""
        self._thread.start()
        waited = 0.0
        while not self._ready_flag.wait(0.05):
            waited += 0.05
            if not self._thread.is_alive():
                raise OperatorCrashedError("the operator exited before it was ready") from self._error
            if waited >= timeout:
                self.kill()
                raise TimeoutError(f"the operator was not ready within {timeout}s")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop; raise OperatorCrashedError if the operator had failed."""
        self._stop_flag.set()
        self._join(timeout)

    def kill(self, timeout: float = 30.0) -> None:
        """Cancel the operator at whatever point it has reached."""
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: it has ended
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._stop_flag.set()
        self._join(timeout)

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _join(self, timeout: float) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the operator did not stop within {timeout}s")
        if self._error is not None:
            raise OperatorCrashedError("the operator failed") from self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._run_main())
        except asyncio.CancelledError:
            # Killed on purpose. What the cancelled tasks left open (kopf's aiohttp session of a
            # request in flight) is garbage now, as in a killed pod's process; collect it here, on
            # purpose, instead of letting it warn "unclosed" whenever a later collection runs.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
        except BaseException as exc:
            self._error = exc

    async def _run_main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        await self._main(self._stop_flag, self._ready_flag)
