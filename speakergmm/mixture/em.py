"""The EM loop, over in-memory arrays or over re-iterable sources of chunks.

A *chunk source* lets EM run over data that never fits in memory (a corpus of feature
files): every iteration makes one pass, accumulating :class:`SufficientStats` chunk by chunk,
so the result equals full-batch EM on the concatenated data. A source is one of

- a 2-D array (one chunk),
- a list or tuple whose items are arrays or ``(array, sample_weight)`` pairs,
- a zero-argument callable returning a fresh iterator of such items on every call.

A bare generator is refused: it can be read only once, and EM needs many passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np

from speakergmm.mixture.model import GMM, check_frames, check_sample_weight
from speakergmm.mixture.stats import SufficientStats
from speakergmm.mixture.update import ml_update

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


@dataclass
class EMResult:
    """Outcome of :func:`run_em`."""

    gmm: GMM
    converged: bool
    n_iter: int
    lower_bound: float  # mean per-frame log-likelihood at the last E-step
    history: list = field(default_factory=list)


def run_em(gmm: GMM, source: ChunkSource, max_iter: int = 100, tol: float = 1e-3,
           reg_covar: float = 1e-6, variance_floor: Any = None,
           callback: Callable[[int, float, GMM], None] | None = None,
           stats_fn: Callable[[GMM], SufficientStats] | None = None,
           initial_lower_bound: float = -np.inf) -> EMResult:
    """Run EM from ``gmm`` until the mean log-likelihood changes by less than ``tol``.

    Iteration ``i`` computes the statistics under the current parameters (whose mean
    log-likelihood is the lower bound reported for iteration ``i``), then updates them;
    this is scikit-learn's convention, so ``n_iter`` and ``lower_bound`` compare directly.

    ``stats_fn`` replaces the E-step pass (e.g. with a parallel accumulation over a corpus).
    ``initial_lower_bound`` is the bound the starting parameters were reached with (a warm
    start continues from it, so an already converged model stops after one iteration).
    """
    lower_bound = initial_lower_bound
    history: list[float] = []
    converged = False
    n_iter = 0
    accumulate_fn = stats_fn or (lambda model: accumulate(model, source))
    for n_iter in range(1, max_iter + 1):
        previous_bound = lower_bound
        stats = accumulate_fn(gmm)
        if stats.n_frames <= 0:
            raise ValueError("the data source yielded no frames")
        lower_bound = stats.log_likelihood / stats.n_frames
        history.append(lower_bound)
        gmm = ml_update(stats, reg_covar=reg_covar, variance_floor=variance_floor, previous=gmm)
        if callback is not None:
            callback(n_iter, lower_bound, gmm)
        if abs(lower_bound - previous_bound) < tol:
            converged = True
            break
    return EMResult(gmm, converged, n_iter, float(lower_bound), history)


def trivial_gmm(n_features: int, covariance_type: str, mean: Any = None) -> GMM:
    """A one-component mixture: its E-step gives every frame responsibility 1, so its
    statistics are the data's global count, sum and scatter (whatever its parameters).

    ``mean`` (default: the origin) is where the statistics are centred: a point near the
    data (e.g. the mean of a first chunk) keeps the global covariance accurate for data far
    from the origin.
    """
    cov = {"full": np.eye(n_features)[None], "tied": np.eye(n_features),
           "diag": np.ones((1, n_features)), "spherical": np.ones(1)}[covariance_type]
    mean = np.zeros((1, n_features)) if mean is None else np.reshape(mean, (1, n_features))
    return GMM(np.ones(1), mean, cov, covariance_type)


def split_components(gmm: GMM, n_components: int, perturbation: float = 0.2) -> GMM:
    """Split the heaviest components until the mixture has ``n_components``.

    Each split replaces a component by two with half its weight and its covariance, the
    means moved by ``+-perturbation`` standard deviations: along the component's principal
    axis for full covariances (where the component is widest, so a cluster pair is
    separated whatever its orientation), and along every dimension otherwise (HTK's HHEd
    ``MU`` mixing-up): diagonal and spherical components know no correlations, and a tied
    covariance's one principal axis would split every component the same way. Called with
    twice the current size, this is one binary split.
    """
    if n_components < gmm.n_components:
        raise ValueError(f"cannot split {gmm.n_components} components into {n_components}")
    weights, means = list(gmm.weights), list(gmm.means)
    covs = list(gmm.covariances) if gmm.covariance_type != "tied" else None
    directions = _split_directions(gmm)
    stds = [directions[k] for k in range(gmm.n_components)]
    while len(weights) < n_components:
        # The heaviest of the components not yet split in this round goes first.
        k = int(np.argmax(weights))
        half = weights[k] / 2.0
        offset = perturbation * stds[k]
        weights[k] = half
        weights.append(half)
        means.append(means[k] + offset)
        means[k] = means[k] - offset
        stds.append(stds[k])
        if covs is not None:
            covs.append(covs[k].copy())
    covariances = np.array(covs) if covs is not None else gmm.covariances
    return GMM(np.array(weights), np.array(means), covariances, gmm.covariance_type, dtype=gmm.dtype)


def _split_directions(gmm: GMM) -> np.ndarray:
    """Per component, the offset of one standard deviation along which it is split (K, D)."""
    D = gmm.n_features
    if gmm.covariance_type == "full":
        eigval, eigvec = np.linalg.eigh(gmm.covariances)
        return eigvec[:, :, -1] * np.sqrt(np.maximum(eigval[:, -1:], 0.0))
    if gmm.covariance_type == "tied":
        # One shared principal axis would split every component the same way: use all dims.
        return np.tile(np.sqrt(np.diag(gmm.covariances)), (gmm.n_components, 1))
    if gmm.covariance_type == "spherical":
        return np.repeat(np.sqrt(gmm.covariances)[:, None], D, axis=1)
    return np.sqrt(gmm.covariances)


def binary_split_fit(source: ChunkSource, n_components: int, covariance_type: str = "diag",
                     n_features: int | None = None, iter_per_split: int = 5,
                     reg_covar: float = 1e-6, variance_floor: Any = None,
                     perturbation: float = 0.2, dtype: type = np.float64,
                     stats_fn: Callable[[GMM], SufficientStats] | None = None,
                     callback: Callable[[int, float, GMM], None] | None = None) -> GMM:
    """Grow a mixture 1 -> 2 -> 4 -> ... -> ``n_components`` by splitting, with EM in between.

    This is how speech toolkits initialise UBMs: deterministic, needs only passes over the
    data (so it works on chunk sources), and never starts a component far from the data.
    The last doubling splits only the heaviest components when ``n_components`` is not a
    power of two. The returned mixture has had ``iter_per_split`` EM iterations at its
    final size; run more with :func:`run_em`.
    """
    first_X = next(iter_chunks(source, n_features), (None,))[0]
    if first_X is None:
        raise ValueError("the data source yielded no frames")
    n_features = first_X.shape[1]
    # Global statistics centred near the data (the first chunk's mean), not the origin.
    trivial = trivial_gmm(n_features, covariance_type,
                          first_X.mean(axis=0) if first_X.shape[0] else None)
    stats = accumulate(trivial, source) if stats_fn is None else stats_fn(trivial)
    gmm = ml_update(stats, reg_covar=reg_covar, variance_floor=variance_floor, dtype=dtype)
    while gmm.n_components < n_components:
        gmm = split_components(gmm, min(2 * gmm.n_components, n_components), perturbation)
        result = run_em(gmm, source, max_iter=iter_per_split, tol=0.0, reg_covar=reg_covar,
                        variance_floor=variance_floor, stats_fn=stats_fn, callback=callback)
        gmm = result.gmm
    return gmm
