"""Work beyond one machine: a ``dask.distributed`` cluster as the executor of batch stages.

Every batch stage of speakergmm (feature extraction, UBM passes, enrolment, scoring) is a
map of independent tasks over a fixed, data-determined list of shards, followed by an
in-order reduction. On one machine the tasks run in a pinned process pool
(:func:`speakergmm.utils.worker_pool`); with a scheduler they run on a Dask cluster through
``Client.get_executor()``, a standard :class:`concurrent.futures.Executor`, so the stages
themselves do not change and neither do their results.

Only paths, model parameters and statistics travel: workers read audio and features from
paths they can see (shared storage). Dask reschedules the tasks of a worker that dies;
``retries`` re-runs a task that raised (e.g. a transient read error).

``dask.distributed`` is an optional dependency (``pip install "speakergmm[dask]"``) and is
imported only when a scheduler is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import Executor
from typing import Any, Iterator

__all__ = ["ClusterError", "open_cluster", "as_executor", "parse_scheduler", "executor_workers"]

logger = logging.getLogger(__name__)

#: Seconds to wait for a scheduler before giving up with :class:`ClusterError`
#: (``$SPEAKERGMM_SCHEDULER_TIMEOUT`` overrides it).
CONNECT_TIMEOUT = 20.0


def _connect_timeout() -> float:
    value = os.environ.get("SPEAKERGMM_SCHEDULER_TIMEOUT")
    try:
        return float(value) if value else CONNECT_TIMEOUT
    except ValueError:
        raise ClusterError(f"SPEAKERGMM_SCHEDULER_TIMEOUT={value!r}: expected a number of seconds") from None


#: glibc malloc settings for worker processes started here (see :func:`open_cluster`);
#: docs/scaling.md recommends the same for ``dask worker`` processes started by hand.
WORKER_MALLOC_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": str(128 * 2**20), "MALLOC_MMAP_THRESHOLD_": str(64 * 2**20)}


def dask_config() -> Any:
    import dask

    return dask.config


class ClusterError(RuntimeError):
    """A scale-out problem: dask missing, scheduler unreachable, a bad scheduler address."""


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ClusterError(
            "a Dask scheduler was requested but dask.distributed is not installed; "
            'install it with: pip install "speakergmm[dask]"') from exc
    return distributed


def parse_scheduler(scheduler: str) -> tuple[str, int | str]:
    """``"local:N"`` -> ``("local", N)``; anything else -> ``("address", scheduler)``.

    Raises
    ------
    ClusterError
        For an empty address or a ``local:`` form without a positive worker count.
    """
    text = str(scheduler).strip()
    if not text:
        raise ClusterError("scheduler: empty address (give host:port, tcp://host:port or local:N)")
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2] or str(os.cpu_count() or 1)
        try:
            n_workers = int(count)
        except ValueError:
            n_workers = 0
        if n_workers < 1:
            raise ClusterError(f"scheduler {text!r}: local:N needs a positive number of worker processes")
        return "local", n_workers
    return "address", text


def _pin_threads_plugin(distributed: Any) -> Any:
    """Worker plugin: one BLAS/OpenMP thread per worker thread (no oversubscription)."""

    class PinThreads(distributed.WorkerPlugin):
        name = "speakergmm-pin-threads"
        idempotent = True

        def setup(self, worker: Any) -> None:
            from speakergmm.utils import pin_threads

            pin_threads(1)

    return PinThreads()


@contextlib.contextmanager
def open_cluster(scheduler: Any, *, timeout: float | None = None) -> Iterator[Any]:
    """A connected ``distributed.Client`` for ``scheduler`` (closed on exit).

    Parameters
    ----------
    scheduler : str or distributed.Client
        ``"local:N"`` starts a ``LocalCluster`` of ``N`` single-threaded worker processes
        (stopped on exit); ``"host:port"`` or ``"tcp://host:port"`` connects to a running
        scheduler (started with ``dask scheduler`` / ``dask worker``, or any Dask
        deployment); a ``Client`` is used as it is and left open.
    timeout : float, optional
        Seconds to wait for the scheduler (default :data:`CONNECT_TIMEOUT`, or
        ``$SPEAKERGMM_SCHEDULER_TIMEOUT``).

    Raises
    ------
    ClusterError
        If dask.distributed is missing or the scheduler cannot be reached.
    """
    distributed = _import_distributed()
    timeout = _connect_timeout() if timeout is None else float(timeout)
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    kind, value = parse_scheduler(scheduler)
    cluster = None
    try:
        if kind == "local":
            # Worker processes with one thread each: the stages' tasks are numeric and
            # hold the GIL for parts of their work, and BLAS is pinned to one thread.
            # Dask starts workers with MALLOC_TRIM_THRESHOLD_=64 KiB, which also fixes glibc's
            # mmap threshold at 128 KiB: every E-step temporary (MBs) is then mapped and
            # unmapped, page-faulting anew each time (a UBM pass ran 1.4x slower in one
            # process, and no faster on 2 workers than on one). Keep such buffers in the heap.
            # The workers' statistical profiler (a GIL-taking thread) cost about 6 % of a pass.
            environ = dict(dask_config().get("distributed.nanny.pre-spawn-environ", {}) or {})
            environ.update(WORKER_MALLOC_ENVIRON)
            with dask_config().set({"distributed.nanny.pre-spawn-environ": environ,
                                    "distributed.worker.profile.enabled": False}):
                cluster = distributed.LocalCluster(n_workers=int(value), threads_per_worker=1,
                                                   processes=True, dashboard_address=":0",
                                                   # a failed task reaches the caller as its
                                                   # exception; the workers' own report of it
                                                   # (a traceback on stderr) is noise there
                                                   silence_logs=logging.CRITICAL)
            client = distributed.Client(cluster, timeout=timeout)
            logger.info("dask: started a local cluster of %d worker processes", value)
        else:
            client = distributed.Client(value, timeout=timeout)
            logger.info("dask: connected to the scheduler at %s", value)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise ClusterError(f"cannot reach the Dask scheduler at {value!r} within {timeout:g} s "
                           f"({type(exc).__name__}: {exc}); is `dask scheduler` running there, "
                           "and is the address host:port?") from exc
    try:
        client.register_plugin(_pin_threads_plugin(distributed))
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def as_executor(client: Any, retries: int = 2) -> Executor | None:
    """A :class:`concurrent.futures.Executor` from a Dask client, an executor or None.

    A Dask client's executor submits impure tasks (every call runs) with ``retries``: a
    task that raised is run again up to that many times; tasks lost with a dead worker are
    rescheduled by Dask itself.
    """
    if client is None or isinstance(client, Executor):
        return client
    if hasattr(client, "get_executor"):
        return client.get_executor(pure=False, retries=int(retries))
    raise TypeError(f"client must be a dask.distributed.Client or a concurrent.futures.Executor, "
                    f"not {type(client).__name__}")


def executor_workers(executor: Executor | None, default: int = 1) -> int:
    """How many tasks the executor runs at once (for planning chunk sizes)."""
    client = getattr(executor, "_client", None)
    if client is not None:
        try:
            threads = client.nthreads()
            return max(1, int(sum(threads.values())))
        except Exception:  # pragma: no cover - scheduler gone: planning falls back
            return default
    workers = getattr(executor, "_max_workers", None)
    return int(workers) if workers else default
