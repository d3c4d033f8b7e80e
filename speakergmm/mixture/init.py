"""Initialisation of the mixture estimators: one meaning per ``init_params`` method.

Both :class:`~speakergmm.mixture.GaussianMixture` and
:class:`~speakergmm.mixture.BayesianGaussianMixture` start from responsibilities made
here, then one update (ML, or variational) turns them into parameters, as scikit-learn's
``BaseMixture._initialize_parameters`` does; the methods mean what they mean in
scikit-learn:

``"kmeans"``
    Hard labels of k-means: greedy k-means++ seeding, then 20 Lloyd iterations
    (``scipy.cluster.vq.kmeans2``), as scikit-learn's ``KMeans(n_init=1)`` does (its own
    implementation, so the draws differ).
``"k-means++"``
    One seed point per component chosen by k-means++ seeding (greedy, as scikit-learn's
    ``kmeans_plusplus``): each component starts from a single frame.
``"random"``
    Uniform random responsibilities, normalised per frame.
``"random_from_data"``
    ``n_components`` distinct frames drawn at random, one per component.
``"split"`` (GaussianMixture only)
    Binary splitting (:func:`speakergmm.mixture.em.binary_split_fit`).

With an integer ``random_state`` the draws of ``"random"`` and ``"random_from_data"``
come from ``numpy.random.RandomState(random_state)`` exactly as scikit-learn's do
(:func:`check_random_state`), so both libraries start from the same responsibilities.

:func:`check_random_state` is the package's one random-state convention: None, an int,
a numpy ``Generator`` or a legacy ``RandomState`` are accepted everywhere.
"""

from __future__ import annotations

import warnings
from typing import Any, Union

import numpy as np
from scipy.cluster.vq import kmeans2

__all__ = [
    "INIT_METHODS", "RandomState", "check_random_state", "draw_seed", "initial_responsibilities",
    "kmeans_plusplus_indices", "nearest_centre",
]

#: The k-means style methods both estimators accept (GaussianMixture adds "split").
INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")

RandomState = Union[None, int, np.integer, np.random.Generator, np.random.RandomState]


def check_random_state(random_state: Any, *, legacy: bool = False) -> Any:
    """The one way the package turns ``random_state`` into a source of random numbers.

    Accepts None, an int, a numpy ``Generator`` or a ``RandomState``. With ``legacy=False``
    the result is a ``Generator`` (a RandomState seeds a new Generator from one draw);
    with ``legacy=True`` it is what scikit-learn's ``check_random_state`` gives (an int
    seeds a ``RandomState``, None is numpy's global one; a Generator or RandomState is
    used as is), for draws that must match scikit-learn's.
    """
    if isinstance(random_state, bool) or not (
            random_state is None
            or isinstance(random_state, (int, np.integer, np.random.Generator, np.random.RandomState))):
        raise ValueError(f"random_state must be None, an int, a numpy Generator or a "
                         f"RandomState; got {random_state!r}")
    if legacy:
        if random_state is None:
            return np.random.mtrand._rand
        if isinstance(random_state, (int, np.integer)):
            return np.random.RandomState(int(random_state))
        return random_state
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    return np.random.default_rng(random_state)


def draw_seed(rng: Any) -> int:
    """An integer seed in [0, 2**31 - 1) drawn from a Generator or a RandomState."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**31 - 1))
    return int(rng.randint(2**31 - 1))


def nearest_centre(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for every row (squared distances via one product)."""
    d2 = (centres**2).sum(axis=1) - 2.0 * X @ centres.T
    return np.argmin(d2, axis=1)


def kmeans_plusplus_indices(X: np.ndarray, n_clusters: int, rng: Any) -> np.ndarray:
    """Rows of ``X`` chosen by k-means++ seeding (Arthur & Vassilvitskii, 2007), with greedy
    local trials; ``rng`` is a numpy Generator or RandomState."""
    n = X.shape[0]
    draw_index = rng.integers if isinstance(rng, np.random.Generator) else rng.randint
    n_trials = 2 + int(np.log(n_clusters))
    chosen = np.empty(n_clusters, dtype=np.intp)
    chosen[0] = draw_index(n)
    closest = ((X - X[chosen[0]]) ** 2).sum(axis=1)
    x_sq = (X**2).sum(axis=1)
    for c in range(1, n_clusters):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than clusters: pick any
            chosen[c] = draw_index(n)
            continue
        candidates = np.searchsorted(np.cumsum(closest), rng.random(n_trials) * total)
        candidates = np.minimum(candidates, n - 1)
        dist = np.maximum(x_sq[:, None] - 2 * X @ X[candidates].T + x_sq[candidates], 0)
        new_closest = np.minimum(closest[:, None], dist)
        best = int(np.argmin(new_closest.sum(axis=0)))
        chosen[c] = candidates[best]
        closest = new_closest[:, best]
    return chosen


def initial_responsibilities(X: np.ndarray, n_components: int, method: str, rng: Any) -> np.ndarray:
    """Initial responsibilities (n_samples, n_components) of a k-means style ``method``
    (see the module docstring); ``rng`` comes from :func:`check_random_state`."""
    n, K = X.shape[0], n_components
    if method == "random":
        resp = np.asarray(rng.uniform(size=(n, K)))
        return resp / resp.sum(axis=1)[:, None]
    resp = np.zeros((n, K))
    if method == "kmeans":
        # Greedy k-means++ seeding, then Lloyd iterations: scikit-learn's KMeans (n_init=1).
        centres = X[kmeans_plusplus_indices(X, K, rng)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns about empty clusters; the update copes
            _, labels = kmeans2(X, centres, iter=20, minit="matrix")
        resp[np.arange(n), labels] = 1.0
    elif method == "random_from_data":
        resp[rng.choice(n, size=K, replace=False), np.arange(K)] = 1.0
    elif method == "k-means++":
        resp[kmeans_plusplus_indices(X, K, rng), np.arange(K)] = 1.0
    else:
        raise ValueError(f"init_params must be one of {', '.join(INIT_METHODS)}; got {method!r}")
    return resp
