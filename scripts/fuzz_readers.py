"""Fuzz every reader for longer than CI does (tests/test_fuzz_readers.py, more examples).

Usage::

    PYTHONPATH=. python scripts/fuzz_readers.py [--examples 2000] [--memory-gib 4] [-k audio]

Runs the hypothesis targets of ``tests/test_fuzz_readers.py`` with
``SPEAKERGMM_FUZZ_EXAMPLES`` examples each and a fresh random seed, under an address-space
limit so that a reader allocating what a hostile header claims fails with MemoryError
(reported by hypothesis with the falsifying example) instead of being killed by the
kernel. Prints one JSON line: examples per target, seconds, pytest's exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per target (default 2000)")
    parser.add_argument("--memory-gib", type=float, default=4.0,
                        help="address-space limit of the fuzzing process in GiB (default 4)")
    parser.add_argument("-k", dest="select", default=None, help="pytest -k expression (some targets only)")
    args = parser.parse_args()

    def limit_memory() -> None:
        size = int(args.memory_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               str(ROOT / "tests" / "test_fuzz_readers.py")]
    if args.select:
        command += ["-k", args.select]
    env = {**os.environ, "SPEAKERGMM_FUZZ_EXAMPLES": str(args.examples),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    status = subprocess.run(command, env=env, preexec_fn=limit_memory, cwd=ROOT).returncode
    print(json.dumps({"benchmark": "fuzz_readers", "examples_per_target": args.examples,
                      "memory_limit_gib": args.memory_gib, "seconds": round(time.perf_counter() - start, 1),
                      "pytest_exit_status": status, "ok": status == 0}))
    return status


if __name__ == "__main__":
    sys.exit(main())
