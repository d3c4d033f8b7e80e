"""The ``speakergmm`` command line.

Each subcommand lives in a module of this package that defines ``register(subparsers)``;
``register`` adds one or more subparsers, each with ``set_defaults(func=handler)`` where
``handler(args) -> int`` returns the exit status. Add a module name to ``_MODULES`` to wire it in.
"""

from __future__ import annotations

import argparse
import importlib
import sys

_MODULES = ("features", "verification", "ivector", "demo")


def build_parser() -> argparse.ArgumentParser:
    from speakergmm import __version__

    parser = argparse.ArgumentParser(
        prog="speakergmm",
        description="Classical speaker recognition and speech modelling on a fast GMM/EM core.",
    )
    parser.add_argument("--version", action="version", version=f"speakergmm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _MODULES:
        try:
            module = importlib.import_module(f"speakergmm.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"speakergmm.cli.{name}":
                continue  # subcommand not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("speakergmm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
