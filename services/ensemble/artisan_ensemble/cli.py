"""``artisan-ensemble``: serve either role, or build tiny random models for tests and the sandbox."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from artisan_ensemble.app import create_app
    from artisan_ensemble.settings import EnsembleSettings

    overrides: dict[str, object] = {"role": args.role}
    if args.models is not None:
        overrides["models_dir"] = args.models
    if args.port is not None:
        overrides["port"] = args.port
    if args.host is not None:
        overrides["host"] = args.host
    if args.profile is not None:
        overrides["profile"] = args.profile
    settings = EnsembleSettings(**overrides)  # type: ignore[arg-type]
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False)
    return 0


def _make_tiny(args: argparse.Namespace) -> int:
    from artisan_ensemble.backends.tiny import make_tiny_models

    paths = make_tiny_models(args.directory, seed=args.seed)
    for role, path in paths.items():
        print(f"{role}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="artisan-ensemble", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the ensemble (models) or gateway (router) role")
    serve.add_argument("--models", type=Path, help="directory with primary/ validator/ creative/ models")
    serve.add_argument(
        "--role", choices=("ensemble", "gateway"), default=os.environ.get("ARTISAN_ENSEMBLE_ROLE", "ensemble")
    )
    serve.add_argument("--port", type=int)
    serve.add_argument("--host")
    serve.add_argument("--profile", choices=("dev", "staging", "prod"))
    serve.set_defaults(handler=_serve)
    tiny = commands.add_parser("make-tiny-models", help="build tiny random models and tokenizers locally")
    tiny.add_argument("directory", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(handler=_make_tiny)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
