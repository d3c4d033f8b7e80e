"""Process pools: workers are pinned to their share of BLAS threads, cheaply."""

from __future__ import annotations

import os

import numpy as np
from threadpoolctl import threadpool_info

from speakergmm.utils import effective_jobs, worker_pool


def _worker_threads(_: int) -> tuple[list[int], int]:
    np.dot(np.ones((64, 64)), np.ones((64, 64)))  # BLAS in use, as in real work
    tasks = "/proc/self/task"  # Linux: one entry per thread of the process
    return ([lib["num_threads"] for lib in threadpool_info()],
            len(os.listdir(tasks)) if os.path.isdir(tasks) else 1)


def test_workers_use_one_blas_thread_and_start_no_thread_pools():
    with worker_pool(2) as pool:
        results = list(pool.map(_worker_threads, range(4)))
    for blas_threads, os_threads in results:
        assert blas_threads and max(blas_threads) == 1
        # No BLAS or OpenMP pool restarted inside the worker just to pin it.
        assert os_threads <= 2  # the main thread (and at most one helper)


def test_worker_pool_leaves_the_parent_limits_alone():
    before = [lib["num_threads"] for lib in threadpool_info()]
    with worker_pool(2) as pool:
        pool.submit(int).result()
    assert [lib["num_threads"] for lib in threadpool_info()] == before


def test_effective_jobs():
    n = os.cpu_count() or 1
    assert effective_jobs(0) == effective_jobs(None) == n
    assert effective_jobs(3) == 3
    assert effective_jobs(-1) == n
