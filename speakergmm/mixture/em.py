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


SPLIT_DIRECTIONS = ("widest", "all")

# The centroids of the two halves of a Gaussian cut through its mean lie sqrt(2 / pi) ~ 0.8
# standard deviations either side along the cut: the split that EM would move towards.
WIDEST_AXIS_PERTURBATION = 0.8


def split_components(gmm: GMM, n_components: int, perturbation: float = 0.2,
                     direction: str = "all", axes: np.ndarray | None = None) -> GMM:
    """Split the heaviest components until the mixture has ``n_components``.

    Each split replaces a component by two with half its weight and its covariance, the
    means moved by ``+-perturbation`` standard deviations along a direction. Called with
    twice the current size, this is one binary split.

    Parameters
    ----------
    gmm : GMM
    n_components : int
    perturbation : float
        The offset in standard deviations (see ``direction``).
    direction : {"all", "widest"}
        ``"all"`` (default; HTK HHEd ``MU`` mixing-up, which the GMM-HMM uses): every
        dimension moved by ``perturbation`` of its standard deviation (full covariances:
        along the principal axis). ``"widest"``: along each component's widest axis only, so
        that a pair of clusters it covers is separated whatever their orientation: the
        principal axis of its covariance (full), its largest-variance dimension (diag), the
        tied covariance's principal axis (tied); a spherical component has no widest axis,
        so pass ``axes`` (e.g. :func:`frame_axes`), else it is split along the diagonal
        ``(1, ..., 1) / sqrt(D)``. Use ``perturbation=WIDEST_AXIS_PERTURBATION`` (0.8,
        where the centroids of a Gaussian's two halves lie) with it, as
        :func:`binary_split_fit` does. (A split along one axis leaves the mixture symmetric
        in the others: when a component's frames change after the split, as a GMM-HMM
        state's do while the alignment settles, its halves may never separate; the
        GMM-HMM's known-model test recovered its states with ``"all"`` but not ``"widest"``.
        The FSDD verification UBM, 256 Gaussians, also did better with ``"all"``: train /
        digits EER 0.50 % / 16.0 % against 1.42 % / 18.4 % with 0.8 ``"widest"``.)
    axes : array of shape (n_components_before, n_features), optional
        Per component, the one-standard-deviation offset to split along (overrides
        ``direction``), e.g. the principal axes of its frames from :func:`frame_axes`.
    """
    if n_components < gmm.n_components:
        raise ValueError(f"cannot split {gmm.n_components} components into {n_components}")
    if direction not in SPLIT_DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(SPLIT_DIRECTIONS)}; got {direction!r}")
    if axes is None:
        axes = _split_directions(gmm, direction)
    else:
        axes = np.asarray(axes, dtype=np.float64)
        if axes.shape != gmm.means.shape or not np.all(np.isfinite(axes)):
            raise ValueError(f"axes must be a finite array of shape {gmm.means.shape}; got {axes.shape}")
    weights, means = list(gmm.weights), list(gmm.means)
    covs = list(gmm.covariances) if gmm.covariance_type != "tied" else None
    stds = [axes[k] for k in range(gmm.n_components)]
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


def _principal_axes(covariances: np.ndarray) -> np.ndarray:
    """One standard deviation along the principal axis of each (D, D) matrix: (K, D)."""
    eigval, eigvec = np.linalg.eigh(covariances)
    return eigvec[:, :, -1] * np.sqrt(np.maximum(eigval[:, -1:], 0.0))


def _split_directions(gmm: GMM, direction: str) -> np.ndarray:
    """Per component, the offset of one standard deviation along which it is split (K, D)."""
    K, D = gmm.n_components, gmm.n_features
    cov_type = gmm.covariance_type
    if cov_type == "full":
        return _principal_axes(gmm.covariances)
    if cov_type == "tied":
        if direction == "widest":
            return np.tile(_principal_axes(gmm.covariances[None])[0], (K, 1))
        return np.tile(np.sqrt(np.diag(gmm.covariances)), (K, 1))
    if cov_type == "spherical":
        scale = 1.0 / np.sqrt(D) if direction == "widest" else 1.0  # one sd in length
        return np.repeat(np.sqrt(gmm.covariances)[:, None] * scale, D, axis=1)
    if direction == "widest":
        axes = np.zeros((K, D))
        widest = np.argmax(gmm.covariances, axis=1)
        axes[np.arange(K), widest] = np.sqrt(gmm.covariances[np.arange(K), widest])
        return axes
    return np.sqrt(gmm.covariances)


def full_covariance_view(gmm: GMM) -> GMM:
    """The same mixture with full covariance matrices (same densities and responsibilities);
    its statistics hold each component's full scatter."""
    K, D = gmm.n_components, gmm.n_features
    covariances = {
        "full": lambda c: c,
        "tied": lambda c: np.broadcast_to(c, (K, D, D)),
        "diag": lambda c: c[:, :, None] * np.eye(D),
        "spherical": lambda c: c[:, None, None] * np.eye(D),
    }[gmm.covariance_type](gmm.covariances)
    return GMM(gmm.weights, gmm.means, covariances, "full", dtype=gmm.dtype)


def frame_axes(gmm: GMM, source: ChunkSource,
               stats_fn: Callable[[GMM], SufficientStats] | None = None) -> np.ndarray:
    """Per component, one standard deviation along the principal axis of its frames' scatter
    (weighted by its responsibilities): (K, D), for :func:`split_components`'s ``axes``.

    Costs one pass of full-covariance statistics over the source (``stats_fn``, when given,
    replaces it as in :func:`run_em`). A component with no frames gets its model's axis.
    """
    view = full_covariance_view(gmm)
    stats = accumulate(view, source) if stats_fn is None else stats_fn(view)
    visited = stats.zeroth > 0
    scatter = stats.scatter() / np.where(visited, stats.zeroth, 1.0)[:, None, None]
    return np.where(visited[:, None], _principal_axes(scatter), _principal_axes(view.covariances))


def binary_split_fit(source: ChunkSource, n_components: int, covariance_type: str = "diag",
                     n_features: int | None = None, iter_per_split: int = 5,
                     reg_covar: float = 1e-6, variance_floor: Any = None,
                     perturbation: float = WIDEST_AXIS_PERTURBATION, dtype: type = np.float64,
                     stats_fn: Callable[[GMM], SufficientStats] | None = None,
                     callback: Callable[[int, float, GMM], None] | None = None,
                     direction: str = "widest") -> GMM:
    """Grow a mixture 1 -> 2 -> 4 -> ... -> ``n_components`` by splitting, with EM in between.

    This is how speech toolkits initialise UBMs: deterministic, needs only passes over the
    data (so it works on chunk sources), and never starts a component far from the data.
    The last doubling splits only the heaviest components when ``n_components`` is not a
    power of two. The returned mixture has had ``iter_per_split`` EM iterations at its
    final size; run more with :func:`run_em`.

    Splits follow :func:`split_components` (``perturbation``, ``direction``), by default
    0.8 standard deviations along each component's widest axis. Spherical components have
    no widest axis of their own: with ``direction="widest"`` they are split along the
    principal axis of their frames (:func:`frame_axes`, one extra pass of full-covariance
    statistics per split). ``perturbation=0.2, direction="all"`` is the former split.

    On 100 random layouts of 3-8 well separated clusters in 2-5 dimensions, splits of 0.8 sd
    along the widest axis recovered 96-98 % of the layouts (per covariance type), the former
    0.2 sd along every dimension 59-85 %, and k-means (one start) 80 %.
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
        axes = (frame_axes(gmm, source, stats_fn)
                if covariance_type == "spherical" and direction == "widest" else None)
        gmm = split_components(gmm, min(2 * gmm.n_components, n_components), perturbation,
                               direction, axes)
        result = run_em(gmm, source, max_iter=iter_per_split, tol=0.0, reg_covar=reg_covar,
                        variance_floor=variance_floor, stats_fn=stats_fn, callback=callback)
        gmm = result.gmm
    return gmm
