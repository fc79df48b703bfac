"""The ``make runbook-*`` aliases: each expands to a ``kubectl artisan`` command line that the plugin's
own parser accepts with the intended sub-command and arguments (the seeds' names included)."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from artisan_operator.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def expand(target: str, *variables: str) -> list[str]:
    """The artisan command line ``make -n`` prints for a target (the CLI's argv)."""
    make = shutil.which("make")
    assert make is not None
    result = subprocess.run(
        [make, "-n", "--no-print-directory", target, *variables],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=True,
    )
    text = result.stdout.replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if re.search(r"/artisan\s", line)]
    argv = shlex.split(line)
    assert argv[0].endswith("/bin/artisan")
    return argv[1:]


def parsed(target: str, *variables: str) -> argparse.Namespace:
    return build_parser().parse_args(expand(target, *variables))


@pytest.mark.parametrize(
    ("target", "variables", "expected"),
    [
        # the seeds' names
        (
            "runbook-canary-promote",
            ["NAME=cny", "FULL=1"],
            {"command": "promote", "name": "cny", "full": True},
        ),
        (
            "runbook-pin-update",
            ["NAME=pin", "ROLE=creative", "REVISION=3.1.1", "MODEL_NAME=llama", "SOURCE=pvc://m/llama"],
            {
                "command": "pin",
                "name": "pin",
                "role": "creative",
                "revision": "3.1.1",
                "model_name": "llama",
                "source": "pvc://m/llama",
            },
        ),
        (
            "runbook-restart-workers",
            ["NAME=pin", "NS=prod"],
            {"command": "restart", "ref": "pin", "namespace": "prod"},
        ),
        ("runbook-clear-cache", ["NAME=pin"], {"command": "cache", "cache_command": "clear", "name": "pin"}),
        (
            "runbook-metrics-check",
            ["PIN=pin", "OPERATOR_URL=http://127.0.0.1:8080"],
            {"command": "metrics-check", "model_pin": "pin", "operator_url": "http://127.0.0.1:8080"},
        ),
        # the plugin's other runbooks
        ("runbook-retry", ["NAME=cny"], {"command": "retry", "name": "cny"}),
        (
            "runbook-undo",
            ["NAME=pin", "TO=abc", "PRINT=1"],
            {"command": "undo", "to_revision": "abc", "print_only": True},
        ),
        ("runbook-get", ["KIND=tr", "NAME=ppo"], {"command": "get", "kind": "tr", "name": "ppo"}),
        ("runbook-get", [], {"command": "get", "kind": None, "name": None}),
        ("runbook-validate", [], {"command": "validate", "filenames": ["configs/samples/"]}),
        (
            "runbook-rollback",
            ["NAME=ppo", "STEP=500"],
            {"command": "rollback", "name": "ppo", "to_checkpoint": 500},
        ),
        ("runbook-promote", ["NAME=cny"], {"command": "promote", "name": "cny", "full": False}),
    ],
)
def test_alias_runs_the_plugin_command(
    target: str, variables: list[str], expected: dict[str, object]
) -> None:
    args = parsed(target, *variables)
    assert {k: getattr(args, k) for k in expected} == expected


def test_every_runbook_target_is_documented_and_phony() -> None:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = re.findall(r"^(runbook-[a-z-]+):.*## \S", text, flags=re.MULTILINE)
    assert {
        "runbook-canary-promote",
        "runbook-pin-update",
        "runbook-restart-workers",
        "runbook-clear-cache",
        "runbook-metrics-check",
        "runbook-retry",
        "runbook-undo",
        "runbook-get",
        "runbook-validate",
        "runbook-rollback",
    } <= set(targets)
    phony = re.search(r"^\.PHONY:(.*?)(?<!\\)$", text, flags=re.MULTILINE | re.DOTALL)
    assert phony is not None
    assert set(targets) <= set(phony.group(1).replace("\\", " ").split())
    assert re.search(r"^runbook-rollback:.*## .*runbook-undo", text, flags=re.MULTILINE)
