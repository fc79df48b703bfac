"""`artisan` / `kubectl-artisan`: one entry point, one module per command group.

Each module in COMMAND_MODULES exposes ``register(subparsers)``, adding its sub-commands; each
sub-command sets ``func`` (args -> exit code) with ``parser.set_defaults``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import cast

COMMAND_MODULES: tuple[str, ...] = ("config", "validate", "sandbox", "ops")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="artisan",
        description="Validate, inspect and operate TrainingRuns, ModelPins, Canaries and ABExperiments.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"artisan_operator.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = cast("Callable[[argparse.Namespace], int] | None", getattr(args, "func", None))
    if func is None:
        parser.print_help()
        return 2
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
