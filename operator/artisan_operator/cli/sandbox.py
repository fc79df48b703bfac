"""``artisan sandbox demo``: run the whole control plane on this machine (see sandbox/demo.py)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console


def register(subparsers: Any) -> None:
    sandbox = subparsers.add_parser("sandbox", help="the embedded sandbox: emulated API + operator")
    commands = sandbox.add_subparsers(dest="sandbox_command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo",
        help="apply the samples with the operator running; exit 0 if all reach their expected state",
    )
    demo.add_argument(
        "--samples", type=Path, default=Path("configs/samples"), help="directory of sample YAMLs"
    )
    demo.add_argument("--crds", type=Path, default=Path("crds"), help="directory of CRD YAMLs to register")
    demo.add_argument(
        "--timeout", type=float, default=45.0, help="seconds for every sample to reach its state"
    )
    demo.add_argument(
        "--story",
        choices=("full", "samples"),
        default="samples",
        help="samples: the foundation check (default); full: the end-to-end story with real processes",
    )
    demo.add_argument("--configs", type=Path, default=Path("configs/demo"), help="the full story's resources")
    demo.add_argument("--report", type=Path, default=Path("demo-report"), help="where the report is written")
    demo.add_argument(
        "--cache", type=Path, default=Path(".cache/artisan-demo"), help="tiny models and the run's work dir"
    )
    demo.add_argument(
        "--prometheus",
        choices=("auto", "yes", "no"),
        default="auto",
        help="use /usr/bin/prometheus (auto: when installed; no: the operator scrapes pods directly)",
    )
    demo.add_argument("--verbose", action="store_true", help="show the operator's log")
    demo.set_defaults(func=run_demo_command)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run_demo_command(args: argparse.Namespace) -> int:
    from artisan_operator.sandbox.demo import run_demo

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.timeout <= 0:
        raise SystemExit("--timeout must be positive")
    if args.story == "full":
        from artisan_operator.sandbox.story import StoryOptions, run_story

        options = StoryOptions(
            configs=args.configs,
            crds=args.crds,
            report_dir=args.report,
            cache=args.cache,
            prometheus={"auto": None, "yes": True, "no": False}[args.prometheus],
        )
        # SIGTERM (timeout, CI cancel) unwinds like Ctrl-C: the story's context managers stop the
        # local pods, Prometheus and the operator instead of leaving them orphaned.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return run_story(options, emit=lambda line: print(line, flush=True))
    # A wide table when piped (make demo in CI logs); the terminal's width otherwise.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    return run_demo(args.samples, args.crds, args.timeout, console)
