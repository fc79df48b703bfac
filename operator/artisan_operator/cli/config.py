"""`artisan config`: read and tune configs/*.yaml, with an audited tuning history.

artisan config --get recommended_params.mode_overrides.creative.temperature
artisan config --set traffic_distribution.fast 50 ... (fails: must sum to 100, nothing changes)
artisan config --env prod --set recommended_params.defaults.topP 0.85 --reason "..." --changed-by alice
artisan config --history 20
artisan config --mode creative
artisan config --tree
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from artisan_common.config_loader import ConfigError, ConfigLoader, lookup, split_path

DEFAULT_CONFIG_DIR = "configs"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "config",
        help="read and tune configs/*.yaml with a tuning history",
        description="Read and change the tuning configuration; every change is validated and recorded.",
    )
    parser.add_argument(
        "--config-dir",
        default=os.environ.get("ARTISAN_CONFIG_DIR", DEFAULT_CONFIG_DIR),
        help="directory of the YAML files (default: $ARTISAN_CONFIG_DIR or ./configs)",
    )
    parser.add_argument(
        "--env",
        default=os.environ.get("ARTISAN_ENV") or None,
        help="environment profile overlaid on the base files (environments/<ENV>.yaml); writes go there",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--get", metavar="PATH", help="print the value at a dotted path")
    action.add_argument("--set", nargs=2, metavar=("PATH", "VALUE"), help="change a value (VALUE is YAML)")
    action.add_argument(
        "--history", nargs="?", type=int, const=20, metavar="N", help="the last N changes (default 20)"
    )
    action.add_argument(
        "--mode", choices=("fast", "balanced", "creative"), help="merged parameters of a mode"
    )
    action.add_argument("--tree", action="store_true", help="the whole effective configuration as a tree")
    action.add_argument("--validate", action="store_true", help="check every file under every profile")
    parser.add_argument("--reason", help="why the change is made (required with --set)")
    parser.add_argument("--changed-by", help="who makes the change (required with --set)")
    parser.add_argument("--output", "-o", choices=("text", "json", "yaml"), default="text")
    parser.set_defaults(func=run_config)


def parse_value(raw: str, current: Any) -> Any:
    """VALUE as YAML ("0.5" → 0.5, "true" → True), but kept a string where a string is expected."""
    try:
        parsed = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(current, str) and not isinstance(parsed, str):
        return raw  # e.g. a revision "2.6" must stay the string "2.6"
    return parsed


def _emit(value: Any, output: str, console: Console) -> None:
    if output == "json":
        console.print_json(json.dumps(value, default=str))
    elif output == "yaml" or isinstance(value, dict | list):
        console.print(yaml.safe_dump(value, sort_keys=False, allow_unicode=True).rstrip(), markup=False)
    else:
        console.print(str(value), markup=False)


def _add_branch(tree: Tree, value: Any) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            if isinstance(child, dict) and child:
                _add_branch(tree.add(f"[bold]{key}[/bold]"), child)
            else:
                tree.add(f"[bold]{key}[/bold]: {json.dumps(child, default=str)}")
    else:
        tree.add(json.dumps(value, default=str))


def run_config(args: argparse.Namespace) -> int:
    console = Console(highlight=False, soft_wrap=True)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        loader = ConfigLoader(args.config_dir, environment=args.env)
        if args.get is not None:
            _emit(loader.get(args.get), args.output, console)
        elif args.set is not None:
            return _run_set(loader, args, console, errors)
        elif args.history is not None:
            _print_history(loader, args.history, args.output, console)
        elif args.mode is not None:
            _emit(loader.mode_params(args.mode).to_wire(), args.output, console)
        elif args.tree:
            if args.output != "text":
                _emit(loader.tree(), args.output, console)
            else:
                root = Tree(f"environment [bold]{loader.environment or 'base'}[/bold] in {args.config_dir}")
                _add_branch(root, loader.tree())
                console.print(root)
        elif args.validate:
            problems = loader.validate_all()
            for where, message in problems.items():
                errors.print(f"{where}: {message}", markup=False)
            if problems:
                return 1
            console.print(f"{len(loader.files())} files valid under base and {loader.environments()}")
    except ConfigError as exc:
        errors.print(f"error: {exc}", markup=False)
        return 1
    return 0


def _run_set(loader: ConfigLoader, args: argparse.Namespace, console: Console, errors: Console) -> int:
    if not args.reason or not args.changed_by:
        errors.print("error: --set needs --reason TEXT and --changed-by NAME", markup=False)
        return 2
    path, raw = args.set
    name, keys = split_path(path)
    current = lookup(loader.document(name), keys) if name in loader.files() else None
    entry = loader.set(path, parse_value(raw, current), changed_by=args.changed_by, reason=args.reason)
    if entry is None:
        console.print(f"{path} is already {raw}: nothing changed", markup=False)
    else:
        where = f" (environment {entry.environment})" if entry.environment else ""
        console.print(
            f"{path}: {json.dumps(entry.old_value)} -> {json.dumps(entry.new_value)}{where}", markup=False
        )
    return 0


def _print_history(loader: ConfigLoader, limit: int, output: str, console: Console) -> None:
    entries = loader.history(limit=limit)
    if output != "text":
        _emit([json.loads(e.to_json()) for e in entries], output, console)
        return
    table = Table("time", "path", "old", "new", "by", "env", "reason", "status")
    for e in entries:
        table.add_row(
            e.timestamp,
            e.path,
            json.dumps(e.old_value),
            json.dumps(e.new_value),
            e.changed_by,
            e.environment or "base",
            e.reason,
            e.status,
        )
    console.print(table)


if __name__ == "__main__":  # pragma: no cover - convenience for `python -m`
    from artisan_operator.cli import main

    sys.exit(main(["config", *sys.argv[1:]]))
