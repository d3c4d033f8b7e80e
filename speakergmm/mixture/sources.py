"""Chunk sources: data for EM as one array or as re-iterable chunks.

A *chunk source* lets EM run over data that never fits in memory (a corpus of feature
files): every iteration makes one pass, accumulating :class:`SufficientStats` chunk by chunk,
so the result equals full-batch EM on the concatenated data. A source is one of

- a 2-D array (one chunk),
- a list or tuple whose items are arrays or ``(array, sample_weight)`` pairs,
- a zero-argument callable returning a fresh iterator of such items on every call.

A bare generator is refused: it can be read only once, and EM needs many passes.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Sequence, Union

import numpy as np

from speakergmm.mixture.model import GMM, check_frames, check_sample_weight
from speakergmm.mixture.stats import SufficientStats

__all__ = ["Chunk", "ChunkSource", "accumulate", "iter_chunks"]

Chunk = Union[np.ndarray, tuple]
ChunkSource = Union[np.ndarray, Sequence[Chunk], Callable[[], Iterable[Chunk]]]


def iter_chunks(source: ChunkSource, n_features: int | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Iterate ``(X, sample_weight)`` over a chunk source, validating every chunk."""
    if isinstance(source, np.ndarray):
        items: Iterable[Chunk] = (source,)
    elif callable(source):
        items = source()
    elif isinstance(source, (list, tuple)):
        items = source
    elif isinstance(source, Iterator):
        raise TypeError(
            "a chunk source must be re-iterable (EM makes several passes): pass a list of "
            "arrays or a function that returns a new iterator, not a generator or iterator"
        )
    else:
        raise TypeError(f"unsupported chunk source of type {type(source).__name__}")
    for i, item in enumerate(items):
        X, w = (item if isinstance(item, tuple) else (item, None))
        X = check_frames(X, f"chunk {i}", n_features)
        yield X, check_sample_weight(w, X.shape[0])


def accumulate(gmm: GMM, source: ChunkSource) -> SufficientStats:
    """One pass of the E-step over a chunk source."""
    stats = SufficientStats.zeros(gmm.n_components, gmm.n_features, gmm.covariance_type)
    for X, w in iter_chunks(source, gmm.n_features):
        if X.shape[0]:
            gmm.e_step(X, w, stats)
    return stats
