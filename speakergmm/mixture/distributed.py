"""E-step passes over data split into shards, on Dask: the EM driver's accumulate hook.

A pass of EM over a corpus is a map and a sum: each shard's statistics under the current
model (one small task), added together. The statistics are tiny (``K x (2D + 1)`` floats for
a diagonal mixture) and addable, so only the model goes out and only statistics come back.

Results do not depend on how the work is spread: the shards are fixed by the data (a dask
array's row blocks, a list of chunks), each shard's statistics are computed by the same code
on the same frames wherever it runs, and they are added in a fixed tree (groups of
``split_every`` consecutive shards, level by level). One process, a local cluster of any size
or many machines therefore give the same bits; only a different *sharding* (other block
sizes) changes the result, by rounding (about 1e-15 relative per pass).

``dask`` is imported only when one of these accumulators is built.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

from speakergmm.mixture.model import GMM, check_frames, check_sample_weight
from speakergmm.mixture.stats import SufficientStats

__all__ = ["tree_sum", "sum_on_cluster", "DaskArrayAccumulator", "ChunkListAccumulator", "is_dask_array"]

DEFAULT_SPLIT_EVERY = 8


def is_dask_array(X: Any) -> bool:
    """Whether ``X`` is a ``dask.array.Array`` (without importing dask when it is not)."""
    module = type(X).__module__
    return module.startswith("dask.") and hasattr(X, "to_delayed") and hasattr(X, "chunks")


def _check_split_every(split_every: Any) -> int:
    if isinstance(split_every, bool) or not isinstance(split_every, (int, np.integer)) or split_every < 2:
        raise ValueError(f"split_every must be an integer >= 2, got {split_every!r}")
    return int(split_every)


def tree_sum(items: Sequence[SufficientStats], split_every: int = DEFAULT_SPLIT_EVERY) -> SufficientStats:
    """Sum of statistics in the fixed tree the distributed reduction uses (same bits)."""
    split_every = _check_split_every(split_every)
    level = [dict(s.to_arrays()) for s in items]
    if not level:
        raise ValueError("no statistics to add")
    while len(level) > 1:
        level = [_sum_arrays(*level[i:i + split_every]) for i in range(0, len(level), split_every)]
    return SufficientStats.from_arrays(level[0])


def _sum_arrays(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Statistics (as plain arrays) added left to right (a reduction task)."""
    total = SufficientStats.from_arrays(parts[0]).copy()
    for part in parts[1:]:
        total += SufficientStats.from_arrays(part)
    return total.to_arrays()


def _shard_stats(model: dict[str, np.ndarray], dtype: str, item: Any) -> dict[str, np.ndarray]:
    """Statistics of one shard ``(X, sample_weight)`` under the model (a map task)."""
    gmm = GMM.from_arrays(model, dtype=np.dtype(dtype))
    stats = SufficientStats.zeros(gmm.n_components, gmm.n_features, gmm.covariance_type)
    X, w = _load_chunk(item)
    X = check_frames(X, "shard", gmm.n_features)
    if X.shape[0]:
        gmm.e_step(X, check_sample_weight(w, X.shape[0]), stats)
    return stats.to_arrays()


def _load_chunk(item: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A chunk list item as ``(X, sample_weight)``; paths and loaders run on the worker."""
    if isinstance(item, tuple) and len(item) == 2:
        X, w = item
    else:
        X, w = item, None
    if isinstance(X, (str, os.PathLike)):
        try:
            X = np.load(X, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise OSError(f"{X}: cannot read features on this worker ({exc})") from exc
    elif callable(X):
        X = X()
    return np.asarray(X), (None if w is None else np.asarray(w))


def sum_on_cluster(task: Callable[..., dict[str, np.ndarray]], shared: Sequence[Any], items: Sequence[Any],
                   *, client: Any = None, split_every: int = DEFAULT_SPLIT_EVERY, retries: int = 2
                   ) -> SufficientStats:
    """``task(*shared, item)`` for every item as Dask tasks, summed in the fixed tree.

    Each object of ``shared`` (the model, a feature source) is sent to each worker once
    (scattered, replicated), not once per task. The reduction runs on the workers, so the caller
    receives one set of statistics, whatever the number of shards. The result has the same
    bits as :func:`tree_sum` over the tasks' results computed anywhere else.
    """
    import dask

    split_every = _check_split_every(split_every)
    if not items:
        raise ValueError("no shards to accumulate")
    if client is not None:
        # Replicated on every worker up front: as single graph keys they would sit on one
        # worker, and the scheduler, following the data, would run every task there.
        # Objects already on the cluster (futures, e.g. a source scattered once) are kept.
        from distributed import Future

        to_send = [i for i, obj in enumerate(shared) if not isinstance(obj, Future)]
        sent = client.scatter([shared[i] for i in to_send], broadcast=True, hash=False) if to_send else []
        keys = list(shared)
        for i, future in zip(to_send, sent):
            keys[i] = future
    else:
        keys = [dask.delayed(obj, pure=True, traverse=False) for obj in shared]
    run = dask.delayed(task, pure=True)
    level = [run(*keys, item) for item in items]
    add = dask.delayed(_sum_arrays, pure=True)
    while len(level) > 1:
        level = [add(*level[i:i + split_every]) for i in range(0, len(level), split_every)]
    if client is not None:
        arrays = client.compute(level[0], retries=int(retries)).result()
    else:
        (arrays,) = dask.compute(level[0])
    return SufficientStats.from_arrays(arrays)


class _TreeAccumulator:
    """Common part: one map task per shard, a fixed reduction tree, one compute per pass."""

    def __init__(self, client: Any = None, split_every: int = DEFAULT_SPLIT_EVERY, retries: int = 2):
        import dask  # noqa: F401  (fail early and clearly when dask is missing)

        self.client = client
        self.split_every = _check_split_every(split_every)
        self.retries = int(retries)
        self.items: list = []

    def __call__(self, gmm: GMM) -> SufficientStats:
        return sum_on_cluster(_shard_stats, (gmm.to_arrays(), np.dtype(gmm.dtype).name), self.items,
                              client=self.client, split_every=self.split_every, retries=self.retries)


def _n_rows(item: Any) -> int:
    return int(_load_chunk(item)[0].shape[0])


def _take_rows(item: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    X, w = _load_chunk(item)
    return np.asarray(X[rows], dtype=np.float64), (None if w is None else np.asarray(w[rows], dtype=np.float64))


def _compute(client: Any, *values: Any) -> tuple:
    import dask

    if client is not None:
        return tuple(client.gather(client.compute(list(values))))
    return dask.compute(*values)


class DaskArrayAccumulator(_TreeAccumulator):
    """Statistics of a dask array under a model: one E-step task per row block.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Rechunked to a single block along the features if needed.
    sample_weight : array-like or dask array of shape (n_samples,), optional
    client : distributed.Client, optional
        Where to compute (default: dask's current scheduler, e.g. a client made default).
    split_every : int
        Fan-in of the reduction tree.
    retries : int
        Times a failing task is retried on the cluster.
    """

    def __init__(self, X: Any, sample_weight: Any = None, client: Any = None,
                 split_every: int = DEFAULT_SPLIT_EVERY, retries: int = 2):
        super().__init__(client, split_every, retries)
        import dask.array as da

        if X.ndim != 2:
            raise ValueError(f"X: expected a 2-D dask array, got {X.ndim} dimensions")
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        self.X = X
        self.sample_weight = None
        self.n_samples, self.n_features = int(X.shape[0]), int(X.shape[1])
        blocks = list(X.to_delayed()[:, 0])
        weights: list = [None] * len(blocks)
        if sample_weight is not None:
            if not is_dask_array(sample_weight):
                sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if tuple(sample_weight.shape) != (self.n_samples,):
                raise ValueError(f"sample_weight: expected shape ({self.n_samples},), "
                                 f"got {tuple(sample_weight.shape)}")
            if not is_dask_array(sample_weight):
                sample_weight = da.from_array(sample_weight, chunks=(X.chunks[0],))
            elif sample_weight.chunks[0] != X.chunks[0]:
                sample_weight = sample_weight.rechunk((X.chunks[0],))
            weights = list(sample_weight.to_delayed())
            self.sample_weight = sample_weight
        self.items = list(zip(blocks, weights))

    def sample_rows(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """Up to ``n`` rows drawn without replacement, in their order (all rows when there
        are at most ``n``), and their weights: the initialisation sample, as numpy."""
        self.n_total = self.n_samples
        if n >= self.n_samples:
            rows = slice(None)
        else:
            rows = np.sort(rng.choice(self.n_samples, size=int(n), replace=False))
        X = self.X[rows]
        if self.sample_weight is None:
            (X,) = _compute(self.client, X)
            return np.asarray(X, dtype=np.float64), None
        X, w = _compute(self.client, X, self.sample_weight[rows])
        return np.asarray(X, dtype=np.float64), np.asarray(w, dtype=np.float64)


class ChunkListAccumulator(_TreeAccumulator):
    """Statistics of a list of chunks under a model: one E-step task per chunk.

    Items are arrays, ``(array, sample_weight)`` pairs, paths to ``.npy`` files (read by the
    worker, so features stay where they are) or zero-argument picklable loaders. In-memory
    arrays are scattered to the cluster once, not once per pass.
    """

    def __init__(self, chunks: Sequence[Any], client: Any = None,
                 split_every: int = DEFAULT_SPLIT_EVERY, retries: int = 2):
        super().__init__(client, split_every, retries)
        if callable(chunks) or not isinstance(chunks, (list, tuple)):
            raise TypeError(
                "with a client, the chunks must be a list (arrays, (array, sample_weight) pairs, "
                ".npy paths or zero-argument loaders) so that each becomes one task; a function "
                "returning an iterator can only be read in this process")
        if not chunks:
            raise ValueError("no chunks to fit")
        items: list = list(chunks)
        if client is not None:
            in_memory = [i for i, item in enumerate(items) if _holds_arrays(item)]
            if in_memory:
                futures = client.scatter([items[i] for i in in_memory])
                for i, future in zip(in_memory, futures):
                    items[i] = future
        self.items = items

    def sample_rows(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """Up to ``n`` rows drawn uniformly without replacement over all chunks (all rows
        when there are at most ``n``), read by the workers: the initialisation sample.
        Also sets ``n_total`` and ``n_features``."""
        import dask

        counts = np.array(_compute(self.client, *[dask.delayed(_n_rows)(item) for item in self.items]),
                          dtype=np.int64)
        self.n_total = int(counts.sum())
        if self.n_total == 0:
            raise ValueError("the chunks hold no frames")
        chosen = (np.arange(self.n_total) if n >= self.n_total
                  else np.sort(rng.choice(self.n_total, size=int(n), replace=False)))
        bounds = np.concatenate([[0], np.cumsum(counts)])
        take = dask.delayed(_take_rows)
        parts = []
        for i, item in enumerate(self.items):
            lo, hi = np.searchsorted(chosen, [bounds[i], bounds[i + 1]])
            if hi > lo:
                parts.append(take(item, chosen[lo:hi] - bounds[i]))
        got = _compute(self.client, *parts)
        widths = {X.shape[1] for X, _ in got}
        if len(widths) != 1:
            raise ValueError(f"chunks have different numbers of features: {sorted(widths)}")
        self.n_features = widths.pop()
        X = np.concatenate([X for X, _ in got])
        weighted = [w is not None for _, w in got]
        if not any(weighted):
            return X, None
        w = np.concatenate([np.ones(x.shape[0]) if w is None else w for x, w in got])
        keep = w > 0
        return X[keep], w[keep]


def _holds_arrays(item: Any) -> bool:
    if isinstance(item, tuple) and len(item) == 2:
        item = item[0]
    return isinstance(item, np.ndarray) or (hasattr(item, "__array__") and not callable(item))
