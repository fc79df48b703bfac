"""The local runtime honours terminationMessagePath: the file's content (or the log tail under
FallbackToLogsOnError) becomes the terminated container's message, as the kubelet reports it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from artisan_operator.sandbox.emulator import SandboxEmulator
from artisan_operator.sandbox.local_runtime import LocalRuntime, termination_message
from artisan_operator.sandbox.server import EmulatorThread, RunningApi
from artisan_operator.sandbox.testing import wait_for


def test_message_is_the_file_capped_at_4096_bytes_else_the_log_tail_on_error(tmp_path: Path) -> None:
    file, log = tmp_path / "termination-log", tmp_path / "container.log"
    log.write_text("".join(f"line {i}\n" for i in range(200)))
    assert termination_message(file, log, "File", 1) is None  # no file, plain policy: nothing
    tail = termination_message(file, log, "FallbackToLogsOnError", 1)
    assert tail is not None
    assert tail.endswith("line 199")
    assert len(tail.splitlines()) <= 80
    assert len(tail.encode()) <= 2048
    assert termination_message(file, log, "FallbackToLogsOnError", 0) is None  # success: no fallback
    file.write_text("x" * 5000)
    assert termination_message(file, log, "FallbackToLogsOnError", 1) == "x" * 4096


@pytest.fixture
def api() -> Iterator[RunningApi]:
    with EmulatorThread(SandboxEmulator()) as running:
        yield running


def _job(name: str, code: str, policy: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "trainer",
                            "command": ["python", "-c", code],
                            "env": [
                                {"name": "ARTISAN_TRAINER_TERMINATION_LOG", "value": "/dev/termination-log"}
                            ],
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": policy,
                        }
                    ],
                }
            }
        },
    }


WRITES = (
    "import os, sys; open(os.environ['ARTISAN_TRAINER_TERMINATION_LOG'], 'w')"
    '.write(\'{"step": 7, "outcome": "RollbacksExhausted"}\'); sys.exit(3)'
)
CRASHES = "print('about to fail'); raise SystemExit('boom')"


def test_a_job_pods_termination_message_reaches_its_status(api: RunningApi, tmp_path: Path) -> None:
    import kubernetes.client

    with api.api_client() as client:
        core, batch = kubernetes.client.CoreV1Api(client), kubernetes.client.BatchV1Api(client)
        runtime = LocalRuntime(
            client, tmp_path / "work", executables_dir=Path(sys.executable).parent, interval=0.1
        )
        with runtime:
            for name, code in (("writes", WRITES), ("crashes", CRASHES)):
                body: Any = _job(name, code, "FallbackToLogsOnError")
                batch.create_namespaced_job("default", body)

            def terminated(job: str) -> Any:
                for pod in core.list_namespaced_pod("default").items:
                    if pod.metadata.name.startswith(job) and pod.status and pod.status.container_statuses:
                        state = pod.status.container_statuses[0].state
                        if state.terminated is not None:
                            return state.terminated
                return None

            written = wait_for(lambda: terminated("writes"), timeout=20, message="writes terminated")
            assert written.exit_code == 3
            assert written.message == '{"step": 7, "outcome": "RollbacksExhausted"}'
            crashed = wait_for(lambda: terminated("crashes"), timeout=20, message="crashes terminated")
            assert crashed.exit_code == 1
            assert "about to fail" in crashed.message
            assert "boom" in crashed.message
