"""Score normalisation: Z-norm, T-norm, ZT-norm and (adaptive) S-norm.

Pure functions on NumPy arrays. Every score array is laid out with **models in rows and
speech segments in columns**, the layout of scoring a list of models against a list of
segments:

============================  =======================  =====================================
argument                      shape                    what it holds
============================  =======================  =====================================
``scores``                    ``(n_models, n_tests)``  enrolled models vs test segments
``z_scores``                  ``(n_models, n_z)``      enrolled models vs Z-norm impostor
                                                       segments
``t_scores``                  ``(n_cohort, n_tests)``  T-norm cohort (impostor) models vs
                                                       test segments
``cohort_z_scores``           ``(n_cohort, n_z)``      cohort models vs the Z impostor
                                                       segments (ZT-norm only)
============================  =======================  =====================================

Trial lists. Pass ``trials=(model_index, test_index)`` (two integer arrays of shape
``(n_trials,)``) to normalise a 1-D array of trial scores instead: ``scores[i]`` is then the
score of model ``model_index[i]`` (a row of ``z_scores``) against test segment
``test_index[i]`` (a column of ``t_scores``). The statistics of a model or a segment do not
depend on the trial, so both layouts give identical numbers.

Statistics are the mean and the population standard deviation (``ddof=0``) over the
cohort. A (near-)zero standard deviation would turn scores into inf/NaN, so by default it
raises a ValueError naming the model or segment; pass ``min_std`` to floor the standard
deviation at that value instead.

Adaptive normalisation (``top_n``): the statistics of each model (segment) use only its
``top_n`` highest cohort scores, i.e. the impostors most similar to it (adaptive S-norm,
AS-norm, Matějka et al. 2017; also available for Z- and T-norm).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "cohort_statistics",
    "znorm",
    "tnorm",
    "ztnorm",
    "snorm",
]

# Relative size below which a standard deviation counts as zero (rounding noise of the mean).
_ZERO_STD_RTOL = 1e-10


def _matrix(values: ArrayLike, name: str, shape_doc: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array {shape_doc}, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); expected {shape_doc}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite scores (NaN or inf)")
    return arr


def cohort_statistics(
    cohort_scores: ArrayLike,
    axis: int = 1,
    top_n: int | None = None,
    min_std: float | None = None,
    name: str = "cohort_scores",
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of cohort scores along ``axis``.

    Parameters
    ----------
    cohort_scores : array_like, 2-D
        Scores against the cohort; ``axis`` runs over the cohort.
    axis : int
        1: one statistic per row (per model, as for Z-norm); 0: one per column (per test
        segment, as for T-norm).
    top_n : int, optional
        Use only the ``top_n`` highest scores of each row (column).
    min_std : float, optional
        Floor for the standard deviation; without it a (near-)zero one raises ValueError.
    name : str
        Argument name used in error messages.

    Returns
    -------
    mean, std : ndarray, shape (n_rows,) or (n_columns,)
    """
    arr = _matrix(cohort_scores, name, "")
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 or 1, got {axis!r}")
    n_cohort = arr.shape[axis]
    if n_cohort < 2:
        raise ValueError(f"{name} needs at least 2 cohort scores per entry, got {n_cohort}")
    if top_n is not None:
        if not (isinstance(top_n, (int, np.integer)) and 2 <= top_n):
            raise ValueError(f"top_n must be an integer >= 2, got {top_n!r}")
        if top_n < n_cohort:
            # The top_n largest along the axis, in no particular order.
            arr = np.partition(arr, n_cohort - top_n, axis=axis)
            arr = arr[:, n_cohort - top_n:] if axis == 1 else arr[n_cohort - top_n:, :]
    mean = arr.mean(axis=axis)
    std = arr.std(axis=axis)
    if min_std is not None:
        if not min_std > 0:
            raise ValueError(f"min_std must be positive, got {min_std!r}")
        return mean, np.maximum(std, min_std)
    degenerate = std <= _ZERO_STD_RTOL * np.maximum(1.0, np.abs(mean))
    if degenerate.any():
        what = "row" if axis == 1 else "column"
        first = int(np.flatnonzero(degenerate)[0])
        raise ValueError(
            f"{name}: {int(degenerate.sum())} {what}(s) of cohort scores have zero standard "
            f"deviation (the first is {what} {first}, all scores {mean[first]:g}); "
            f"normalisation would divide by zero. Use a larger or more varied cohort, or "
            f"pass min_std to floor the standard deviation."
        )
    return mean, std


def _trial_indices(trials, n_models: int, n_tests: int, n_trials: int):
    try:
        model_index, test_index = trials
    except (TypeError, ValueError):
        raise ValueError("trials must be a pair (model_index, test_index) of integer arrays") from None
    out = []
    for name, idx, bound, what in (("model_index", model_index, n_models, "models"),
                                   ("test_index", test_index, n_tests, "test segments")):
        idx = np.asarray(idx)
        if idx.dtype.kind not in "iu" or idx.shape != (n_trials,):
            raise ValueError(
                f"trials {name} must be an integer array of shape ({n_trials},) matching "
                f"scores, got {idx.dtype} {idx.shape}"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= bound):
            raise ValueError(f"trials {name} out of range: there are {bound} {what}")
        out.append(idx.astype(np.intp))
    return out


def _scores(scores: ArrayLike, trials, n_models: int | None, n_tests: int | None):
    """Validate ``scores`` against the statistics' sizes; return scores and index arrays
    that pick each score's model / test statistic (``None`` for "whole axis")."""
    arr = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("scores has non-finite values (NaN or inf)")
    if trials is None:
        if arr.ndim != 2:
            raise ValueError(
                f"scores must be a 2-D array (n_models, n_tests), got shape {arr.shape}; "
                f"for a 1-D array of trial scores pass trials=(model_index, test_index)"
            )
        if n_models is not None and arr.shape[0] != n_models:
            raise ValueError(
                f"scores has {arr.shape[0]} rows (models) but the model-side cohort scores "
                f"have {n_models}"
            )
        if n_tests is not None and arr.shape[1] != n_tests:
            raise ValueError(
                f"scores has {arr.shape[1]} columns (test segments) but the test-side cohort "
                f"scores have {n_tests}"
            )
        return arr, None, None
    if arr.ndim != 1:
        raise ValueError(f"with trials, scores must be 1-D (n_trials,), got shape {arr.shape}")
    big = np.iinfo(np.intp).max
    model_index, test_index = _trial_indices(
        trials, big if n_models is None else n_models, big if n_tests is None else n_tests,
        arr.size)
    return arr, model_index, test_index


def _per_model(stat: np.ndarray, model_index: np.ndarray | None) -> np.ndarray:
    return stat[:, None] if model_index is None else stat[model_index]


def _per_test(stat: np.ndarray, test_index: np.ndarray | None) -> np.ndarray:
    return stat[None, :] if test_index is None else stat[test_index]


def znorm(
    scores: ArrayLike,
    z_scores: ArrayLike,
    *,
    trials: tuple[ArrayLike, ArrayLike] | None = None,
    top_n: int | None = None,
    min_std: float | None = None,
) -> np.ndarray:
    """Zero normalisation: ``(s - mean_m) / std_m`` with model ``m``'s impostor statistics.

    Parameters
    ----------
    scores : array_like, shape (n_models, n_tests), or (n_trials,) with ``trials``
    z_scores : array_like, shape (n_models, n_z)
        Each model's scores against the Z-norm impostor segments.
    trials : (model_index, test_index), optional
        See the module docstring.
    top_n, min_std
        See :func:`cohort_statistics`.

    Returns
    -------
    ndarray, the shape of ``scores``
    """
    mean, std = cohort_statistics(z_scores, axis=1, top_n=top_n, min_std=min_std, name="z_scores")
    arr, model_index, _ = _scores(scores, trials, mean.size, None)
    return (arr - _per_model(mean, model_index)) / _per_model(std, model_index)


def tnorm(
    scores: ArrayLike,
    t_scores: ArrayLike,
    *,
    trials: tuple[ArrayLike, ArrayLike] | None = None,
    top_n: int | None = None,
    min_std: float | None = None,
) -> np.ndarray:
    """Test normalisation: ``(s - mean_t) / std_t`` with the cohort models' scores on segment ``t``.

    Parameters
    ----------
    scores : array_like, shape (n_models, n_tests), or (n_trials,) with ``trials``
    t_scores : array_like, shape (n_cohort, n_tests)
        The cohort (impostor) models' scores against each test segment.
    trials, top_n, min_std
        See the module docstring and :func:`cohort_statistics`.
    """
    mean, std = cohort_statistics(t_scores, axis=0, top_n=top_n, min_std=min_std, name="t_scores")
    arr, _, test_index = _scores(scores, trials, None, mean.size)
    return (arr - _per_test(mean, test_index)) / _per_test(std, test_index)


def ztnorm(
    scores: ArrayLike,
    z_scores: ArrayLike,
    t_scores: ArrayLike,
    cohort_z_scores: ArrayLike,
    *,
    trials: tuple[ArrayLike, ArrayLike] | None = None,
    min_std: float | None = None,
) -> np.ndarray:
    """Z-norm followed by T-norm with a Z-normalised cohort.

    The trial score is Z-normalised with the model's impostor statistics; each cohort
    model's score on the test segment is Z-normalised with that cohort model's own
    impostor statistics (``cohort_z_scores``); the result is T-normalised with those.

    Parameters
    ----------
    scores : array_like, shape (n_models, n_tests), or (n_trials,) with ``trials``
    z_scores : array_like, shape (n_models, n_z)
    t_scores : array_like, shape (n_cohort, n_tests)
    cohort_z_scores : array_like, shape (n_cohort, n_z)
        The cohort models' scores against the same Z impostor segments.
    """
    t_z = _matrix(t_scores, "t_scores", "(n_cohort, n_tests)")
    c_z = _matrix(cohort_z_scores, "cohort_z_scores", "(n_cohort, n_z)")
    if c_z.shape[0] != t_z.shape[0]:
        raise ValueError(
            f"cohort_z_scores has {c_z.shape[0]} rows but t_scores has {t_z.shape[0]} cohort models"
        )
    z_normed = znorm(scores, z_scores, trials=trials, min_std=min_std)
    mean, std = cohort_statistics(c_z, axis=1, min_std=min_std, name="cohort_z_scores")
    cohort_normed = (t_z - mean[:, None]) / std[:, None]
    return tnorm(z_normed, cohort_normed, trials=trials, min_std=min_std)


def snorm(
    scores: ArrayLike,
    z_scores: ArrayLike,
    t_scores: ArrayLike,
    *,
    trials: tuple[ArrayLike, ArrayLike] | None = None,
    top_n: int | None = None,
    min_std: float | None = None,
) -> np.ndarray:
    """Symmetric normalisation: the mean of the Z-normed and the T-normed score.

    ``0.5 * ((s - mean_m) / std_m + (s - mean_t) / std_t)``, with the model-side statistics
    from ``z_scores`` (model vs cohort segments) and the test-side ones from ``t_scores``
    (cohort models vs test segment). With ``top_n`` it is adaptive S-norm (AS-norm1): each
    side uses only its ``top_n`` highest cohort scores.

    Parameters
    ----------
    scores : array_like, shape (n_models, n_tests), or (n_trials,) with ``trials``
    z_scores : array_like, shape (n_models, n_cohort_segments)
    t_scores : array_like, shape (n_cohort_models, n_tests)
    trials, top_n, min_std
        See the module docstring and :func:`cohort_statistics`.
    """
    z_mean, z_std = cohort_statistics(z_scores, axis=1, top_n=top_n, min_std=min_std,
                                      name="z_scores")
    t_mean, t_std = cohort_statistics(t_scores, axis=0, top_n=top_n, min_std=min_std,
                                      name="t_scores")
    arr, model_index, test_index = _scores(scores, trials, z_mean.size, t_mean.size)
    z_side = (arr - _per_model(z_mean, model_index)) / _per_model(z_std, model_index)
    t_side = (arr - _per_test(t_mean, test_index)) / _per_test(t_std, test_index)
    return 0.5 * (z_side + t_side)
