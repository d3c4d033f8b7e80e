"""``--scheduler``: the command-line switch that runs a command's tasks on a Dask cluster.

Without the option nothing changes (local worker processes, ``--jobs``) and dask is not
imported. With it, the handler runs inside :func:`speakergmm.cluster.open_cluster` and finds
the connected client in ``args.client``; a scheduler that cannot be reached is one line on
stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import sys
from typing import Callable

from speakergmm.exit_codes import EXIT_INPUT

logger = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]


def add_scheduler_option(p: argparse.ArgumentParser) -> None:
    """Add ``--scheduler ADDRESS`` to a subcommand's parser."""
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run the work on a Dask cluster: a scheduler address (host:port, "
                        "tcp://host:port) or local:N for a local cluster of N worker processes "
                        "(needs speakergmm[dask]; paths must be visible to the workers; "
                        "results equal a local run; docs/scaling.md)")


def with_cluster(command: str, handler: Handler) -> Handler:
    """``handler`` with ``args.client`` set: None, or a client connected to ``--scheduler``."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        scheduler = getattr(args, "scheduler", None)
        if not scheduler:
            args.client = None
            return handler(args)
        from speakergmm.cluster import ClusterError, open_cluster

        with contextlib.ExitStack() as stack:
            try:
                args.client = stack.enter_context(open_cluster(scheduler))
            except ClusterError as exc:
                print(f"speakergmm {command}: --scheduler: {exc}", file=sys.stderr)
                return EXIT_INPUT
            logger.info(f"{command}: tasks run on the Dask cluster at {scheduler}")
            return handler(args)
        raise AssertionError("unreachable")  # pragma: no cover

    return run
