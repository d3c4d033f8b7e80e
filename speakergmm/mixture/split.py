"""Binary splitting: how a mixture grows 1 -> 2 -> 4 -> ... components.

Speech toolkits initialise UBMs this way: deterministic, it needs only passes over the
data (so it works on corpora), and never starts a component far from the data. This
module holds the geometry of a split (:func:`split_components`, :func:`frame_axes`) and
the schedule of passes (:func:`split_schedule`); :func:`speakergmm.mixture.em.split_fit`
runs the schedule with the EM driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from speakergmm.mixture.model import GMM
from speakergmm.mixture.sources import ChunkSource, accumulate
from speakergmm.mixture.stats import SufficientStats

__all__ = [
    "SPLIT_DIRECTION", "SPLIT_DIRECTIONS", "SPLIT_PERTURBATION", "SplitPass",
    "UBM_SPLIT_DIRECTION", "UBM_SPLIT_PERTURBATION",
    "WIDEST_AXIS_PERTURBATION", "frame_axes", "full_covariance_view", "split_components",
    "split_schedule", "split_sizes", "trivial_gmm",
]


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

# One split schedule (split_schedule, run by em.split_fit) and one split function for the
# whole package; where the halves go is a parameter with a default per use.
# GaussianMixture's init_params="split": 0.8 sd along each component's widest axis, the split
# that separates clustered data whatever the clusters' orientation (HTK's 0.2 sd along every
# dimension missed a fifth to a third of simple cluster layouts).
SPLIT_PERTURBATION = WIDEST_AXIS_PERTURBATION
SPLIT_DIRECTION = "widest"
# Corpus UBMs (speech frames, no cluster structure to recover) keep HTK's 0.2 sd along every
# dimension: on FSDD it gave the better verification at K = 256 (train-protocol EER 0.47 %
# vs 1.33 %, about 1.7 standard errors; the digits protocol the same). The GMM-HMM's
# mixing-up uses it too. Measurements: docs/mixtures.md, "Initialisation".
UBM_SPLIT_PERTURBATION = 0.2
UBM_SPLIT_DIRECTION = "all"


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
        :func:`~speakergmm.mixture.em.binary_split_fit` does. (A split along one axis
        leaves the mixture symmetric in the others: when a component's frames change after
        the split, as a GMM-HMM state's do while the alignment settles, its halves may never
        separate; the GMM-HMM's known-model test recovered its states with ``"all"`` but not
        ``"widest"``. Comparisons: docs/mixtures.md.)
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


def frame_axes(gmm: GMM, source: ChunkSource | None = None,
               stats_fn: Callable[[GMM], SufficientStats] | None = None) -> np.ndarray:
    """Per component, one standard deviation along the principal axis of its frames' scatter
    (weighted by its responsibilities): (K, D), for :func:`split_components`'s ``axes``.

    Costs one pass of full-covariance statistics over the source (``stats_fn``, the
    accumulate hook of :mod:`speakergmm.mixture.em`, replaces it when given). A component
    with no frames gets its model's axis.
    """
    if source is None and stats_fn is None:
        raise TypeError("frame_axes needs a chunk source or a stats_fn")
    view = full_covariance_view(gmm)
    stats = accumulate(view, source) if stats_fn is None else stats_fn(view)
    visited = stats.zeroth > 0
    scatter = stats.scatter() / np.where(visited, stats.zeroth, 1.0)[:, None, None]
    return np.where(visited[:, None], _principal_axes(scatter), _principal_axes(view.covariances))


@dataclass(frozen=True)
class SplitPass:
    """One pass over the data in a split schedule (see :func:`split_schedule`).

    ``index`` 0 estimates the one-component (global) model; every later pass is one EM
    iteration at ``n_components``, the ``iteration``-th of ``n_iter`` at that size.
    """

    index: int
    n_components: int
    iteration: int
    n_iter: int


def split_sizes(n_components: int) -> list[int]:
    """Sizes the mixture takes while it grows: 1, 2, 4, ..., ``n_components``."""
    sizes = [1]
    while sizes[-1] < n_components:
        sizes.append(min(2 * sizes[-1], n_components))
    return sizes


def split_schedule(n_components: int, iter_per_split: int, final_iter: int | None = None
                   ) -> list[SplitPass]:
    """The passes of binary-split training: the global model, then ``iter_per_split`` EM
    iterations after each intermediate split and ``final_iter`` (default ``iter_per_split``)
    at the final size (also when that size is 1)."""
    final_iter = iter_per_split if final_iter is None else final_iter
    passes = [SplitPass(0, 1, 1, 1)]
    for size in split_sizes(n_components)[1:] if n_components > 1 else [1]:
        n_iter = final_iter if size == n_components else iter_per_split
        start = len(passes)
        passes.extend(SplitPass(start + i, size, i + 1, n_iter) for i in range(n_iter))
    return passes
