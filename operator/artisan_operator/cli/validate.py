"""`artisan validate -f FILE...`: check custom resources offline, as the API server would.

Like ``kubectl argo rollouts lint``: the generated CRD schemas (types, bounds, required fields,
defaults), the CEL rules, and unknown fields (refused, as with ``kubectl --validate=strict``).
Exit code 0 when every object is valid, 1 otherwise; one line per problem.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from artisan_operator.validation import Problem, validate_text

_SUFFIXES = (".yaml", ".yml", ".json")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="validate Artisan custom resources offline (schema, CEL rules, unknown fields)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-f",
        "--filename",
        dest="filenames",
        action="extend",
        nargs="+",
        required=True,
        metavar="FILE",
        help="YAML/JSON file (multi-document), directory (searched recursively) or - for stdin",
    )
    parser.add_argument(
        "--ignore-other-kinds",
        action="store_true",
        help="skip objects outside the artisan.dev group instead of reporting them",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print problems only, no summary")
    parser.set_defaults(func=run)


def _expand(name: str) -> Iterator[Path | None]:
    """The files behind one -f argument (None for stdin); a directory yields its manifests, sorted."""
    if name == "-":
        yield None
        return
    path = Path(name)
    if path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _SUFFIXES)
    else:
        yield path


def run(args: argparse.Namespace) -> int:
    checked = 0
    problems: list[Problem] = []
    for name in args.filenames:
        for path in _expand(name):
            source = "<stdin>" if path is None else str(path)
            try:
                text = sys.stdin.read() if path is None else path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                problems.append(Problem(source, "(file)", "", f"cannot read: {error}"))
                continue
            count, found = validate_text(text, source=source, only_artisan=args.ignore_other_kinds)
            checked += count
            problems.extend(found)
    for problem in problems:
        print(problem)
    if not args.quiet:
        invalid = len({(p.source, p.obj) for p in problems})
        print(
            f"{checked} object(s) checked, {len(problems)} problem(s) in {invalid} object(s)", file=sys.stderr
        )
    return 1 if problems else 0
