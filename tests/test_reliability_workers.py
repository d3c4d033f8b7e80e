"""Worker processes never outlive their parent (SIGTERM, SIGINT, kill -9), with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_PARENT = """
import os, sys, time
from speakergmm.utils import worker_pool

with worker_pool(2) as pool:
    pids = set()
    while len(pids) < 2:
        pids |= {f.result() for f in [pool.submit(os.getpid) for _ in range(8)]}
    print(" ".join(map(str, sorted(pids))), flush=True)
    for _ in range(2):
        pool.submit(time.sleep, 120)   # busy workers: a plain shutdown would wait for them
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_workers_die_with_their_parent(sig):
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        line = parent.stdout.readline()
        workers = [int(p) for p in line.split()]
        assert len(workers) == 2, parent.stderr.read()
        time.sleep(0.3)
        parent.send_signal(sig)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers), f"workers {workers} outlived their parent ({sig!r})"
    finally:
        parent.kill()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


_CLI_LIKE_PARENT = """
import os, signal, sys, time
from speakergmm.cli import _terminate
from speakergmm.utils import worker_pool

signal.signal(signal.SIGTERM, _terminate)      # what the command line installs
try:
    pool = worker_pool(2)
    try:   # the try/finally shape of a long-lived pool (e.g. UBM training's accumulator)
        pids = set()
        while len(pids) < 2:
            pids |= {f.result() for f in [pool.submit(os.getpid) for _ in range(8)]}
        print(" ".join(map(str, sorted(pids))), flush=True)
        for _ in range(2):
            pool.submit(time.sleep, 120)
        time.sleep(120)
    finally:
        pool.shutdown(cancel_futures=True)
except SystemExit as exc:
    print("exit", exc.code, flush=True)
    raise
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_to_a_command_stops_its_busy_workers_promptly():
    parent = subprocess.Popen([sys.executable, "-c", _CLI_LIKE_PARENT],
                              env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = [int(p) for p in parent.stdout.readline().split()]
    try:
        assert len(workers) == 2
        time.sleep(0.3)
        started = time.monotonic()
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 143
        assert time.monotonic() - started < 4            # killed, not awaited (5 s join, 120 s tasks)
        assert parent.stdout.read().strip() == "exit 143"
        assert not any(_alive(p) for p in workers)
    finally:
        parent.kill()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
