"""Small shared helpers: progress bars and process pools with pinned BLAS threads whose
workers never outlive their parent."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable, Iterator, TypeVar

__all__ = ["progress", "worker_pool", "WorkerPool", "pin_threads", "effective_jobs", "parallel_map",
           "renamed_argument"]

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None,
             enabled: bool | None = None, unit: str = "it") -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm progress bar written to stderr.

    ``enabled=None`` shows the bar only when stderr is a terminal (so logs and CI stay clean);
    set ``SPEAKERGMM_PROGRESS=1`` (or ``0``) to force it on (or off).
    """
    if enabled is None:
        forced = os.environ.get("SPEAKERGMM_PROGRESS")
        enabled = forced == "1" if forced in ("0", "1") else sys.stderr.isatty()
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, file=sys.stderr)


def renamed_argument(value: Any, former_value: Any, *, former: str, name: str, owner: str,
                     category: type[Warning] = DeprecationWarning, stacklevel: int = 3) -> Any:
    """The value of an argument that has been renamed (the glossary in docs/architecture.md).

    ``former_value`` is what the caller gave under the former name ``former`` (None: not
    given); when given it wins, with a warning (``category``) naming ``owner`` and the
    current name, so that old calls keep working while they are updated.
    """
    if former_value is None:
        return value
    warnings.warn(f"{owner}({former}=...) is deprecated: use {name}", category, stacklevel=stacklevel)
    return former_value


def effective_jobs(jobs: int | None) -> int:
    """Resolve a ``--jobs`` value: ``None``/``0`` means all cores, negatives count back from them."""
    n_cpu = os.cpu_count() or 1
    if jobs is None or jobs == 0:
        return n_cpu
    if jobs < 0:
        return max(1, n_cpu + 1 + jobs)
    return int(jobs)


def pin_threads(n_threads: int = 1) -> None:
    """Limit BLAS/OpenMP threads in this process (run in each worker of a pool).

    Each of ``n_jobs`` workers using every core oversubscribes the machine, which on
    2-core machines made multi-process numeric code several times slower.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    # Change only what is above the limit (see worker_pool: a forked worker inherits limits,
    # and setting them again is not free). Keep the limiter alive for the worker's lifetime.
    global _THREAD_LIMITER
    if any(lib.get("num_threads", 0) > n_threads for lib in threadpool_info()):
        _THREAD_LIMITER = threadpool_limits(limits=n_threads)
    numba = sys.modules.get("numba")
    if numba is None:
        return
    try:
        from numba.np.ufunc import parallel

        # Launching numba's threading layer only to pin it would start an OpenMP pool that
        # nothing here uses (no kernel of speakergmm is parallel); pin it only if it runs.
        if getattr(parallel, "_is_initialized", True):
            numba.set_num_threads(max(1, min(n_threads, numba.config.NUMBA_NUM_THREADS)))
    except Exception:  # an unusual numba: nothing to pin
        pass


_THREAD_LIMITER: Any = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker end when its parent does, however the parent ends (even kill -9).

    On Linux the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``);
    elsewhere a daemon thread polls the parent's pid. A parent that died before this ran
    is caught by the check that follows.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="speakergmm-parent-watchdog", daemon=True).start()


def _init_worker(parent_pid: int, threads_per_worker: int) -> None:
    # Ctrl-C reaches the whole process group; the parent decides (it terminates the pool),
    # so a worker does not die half-way through a task with a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker inherits the parent's Python handlers (the command line turns SIGTERM
    # into SystemExit, which a worker would catch as a task's error and carry on):
    # terminate() must end it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent_pid)
    pin_threads(threads_per_worker)


class WorkerPool(ProcessPoolExecutor):
    """A ProcessPoolExecutor whose workers end with it: on an exception (Ctrl-C, SIGTERM
    turned into SystemExit, an error) leaving its ``with`` block, or on :meth:`terminate`,
    running tasks are killed instead of awaited; and the workers die with the parent
    process even when it is killed (see :func:`_die_with_parent`)."""

    def terminate(self) -> None:
        """Kill the workers now and drop pending tasks."""
        processes = list((getattr(self, "_processes", None) or {}).values())
        for process in processes:
            with contextlib.suppress(Exception):
                process.terminate()
        super().shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(Exception):
                process.join(timeout=5)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As ProcessPoolExecutor's, except while an interruption (KeyboardInterrupt, or the
        SystemExit the command line makes of SIGTERM) is propagating, e.g. from a
        ``finally`` block: then the workers are killed rather than awaited."""
        if wait and isinstance(sys.exc_info()[1], (KeyboardInterrupt, SystemExit)):
            self.terminate()
            return
        super().shutdown(wait=wait, cancel_futures=cancel_futures)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.terminate()
            return False
        return super().__exit__(exc_type, exc, tb)


def worker_pool(jobs: int, threads_per_worker: int = 1) -> WorkerPool:
    """A process pool whose workers each use ``threads_per_worker`` BLAS/OpenMP threads.

    The workers are started here, so they initialise while the caller prepares its tasks.
    With the ``fork`` start method they are forked under the limits and inherit them, and
    :func:`pin_threads` finds nothing to change: setting OpenBLAS's thread count in a forked
    child restarts its thread server, which made every BLAS call of a feature-extraction
    worker about twice as expensive in CPU.

    The workers die with this process (SIGTERM, SIGINT or kill -9 of it), and leaving the
    pool's ``with`` block by an exception kills them rather than waiting for their tasks.
    The pool should be created by the thread that owns it: on Linux a worker's parent-death
    signal follows the thread that started it.
    """
    pool = WorkerPool(max_workers=jobs, initializer=_init_worker,
                      initargs=(os.getpid(), threads_per_worker))
    limits = contextlib.nullcontext()
    if multiprocessing.get_start_method(allow_none=False) == "fork":
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(limits=threads_per_worker)
    with limits:
        # Python >= 3.11 forks every worker at the first task; 3.10 one per task while none
        # is idle.
        for _ in range(jobs):
            pool.submit(int)
    return pool


def parallel_map(func: Callable[..., T], items: Iterable[Any], jobs: int = 1,
                 desc: str = "", total: int | None = None, chunksize: int = 1,
                 executor: Any = None) -> Iterator[T]:
    """Map ``func`` over ``items`` in order, in ``jobs`` pinned worker processes (or in-process
    for ``jobs == 1``), with a progress bar.

    ``executor`` (a :class:`concurrent.futures.Executor`, e.g. a Dask cluster's, see
    :mod:`speakergmm.cluster`) runs the tasks instead of a local pool; ``jobs`` is then unused.
    """
    items = list(items)
    total = len(items) if total is None else total
    if executor is not None:
        yield from progress(executor.map(func, items), desc=desc, total=total)
        return
    if jobs <= 1:
        yield from progress((func(item) for item in items), desc=desc, total=total)
        return
    with worker_pool(jobs) as pool:
        yield from progress(pool.map(func, items, chunksize=chunksize), desc=desc, total=total)
