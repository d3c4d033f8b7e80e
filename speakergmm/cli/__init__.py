"""The ``speakergmm`` command line.

Each subcommand lives in a module of this package that defines ``register(subparsers)``;
``register`` adds one or more subparsers, each with ``set_defaults(func=handler)`` where
``handler(args) -> int`` returns the exit status. Add a module name to ``_MODULES`` to wire it in.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys

_MODULES = ("features", "verification", "ivector", "demo", "hmm")


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


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (so redirections and tests see it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # set by StreamHandler.__init__
        pass


def configure_logging(quiet: bool = False) -> None:
    """Send the ``speakergmm`` loggers' records to stderr, one plain line each.

    INFO and above normally; WARNING and above with ``quiet``. Library users who never call
    this see nothing but warnings (Python's last-resort handler), or route the records as
    they like (``logging.getLogger("speakergmm")``).
    """
    logger = logging.getLogger("speakergmm")
    for handler in list(logger.handlers):
        if isinstance(handler, _StderrHandler):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def _terminate(signum, frame) -> None:
    # SIGTERM unwinds like Ctrl-C: context managers close worker pools and remove
    # temporary files, and the exit status says which signal ended the run.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from speakergmm.exit_codes import EXIT_BROKEN_PIPE, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_USAGE

    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    configure_logging(quiet=bool(getattr(args, "quiet", False)))
    command = getattr(args, "command", None) or "speakergmm"
    previous = None
    if threading_is_main():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe is reported here, not at interpreter exit
        return status
    except KeyboardInterrupt:
        print("speakergmm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``speakergmm evaluate ... | head -3``): not an error of ours.
        # Point stdout at /dev/null so that the interpreter's final flush stays quiet.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback, for the user
        if os.environ.get("SPEAKERGMM_TRACEBACK") == "1":
            raise
        print(f"speakergmm {command}: {_user_message(exc)}", file=sys.stderr)
        return EXIT_INPUT
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _user_message(exc: BaseException) -> str:
    """One line for an error that reached the command line."""
    from speakergmm.io import ModelFileError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (ModelFileError, OSError)) or type(exc).__module__.startswith("speakergmm"):
        return text
    return (f"unexpected {type(exc).__name__}: {text[:300]} (set SPEAKERGMM_TRACEBACK=1 to see "
            "where; please report it)")


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
