"""Updates that turn sufficient statistics into parameters: ML (the EM M-step) and MAP.

The pieces every update shares are public (:func:`covariances_from_moments`,
:func:`add_reg_covar`, :func:`variance_floor_vector`, :data:`OCCUPANCY_EPS`), so that other
updates (the variational one in :mod:`speakergmm.mixture.bayesian`) build on them.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from speakergmm.mixture._covariance import precisions_cholesky_from_covariances
from speakergmm.mixture.model import GMM
from speakergmm.mixture.stats import SufficientStats

# Added to every component's occupancy before dividing, as scikit-learn does, so that an
# empty component gives finite (if meaningless) statistics instead of 0/0.
OCCUPANCY_EPS = 10 * np.finfo(np.float64).eps

# Rounding error allowed for, in units of float64 eps (see _rounding_resolution): measured
# collapsed components leave variances of at most ~9 eps * mean square (30 identical
# frames; ~300 eps for 1000, which the sqrt(n) growth covers up to a few hundred frames)
# and standard deviations of ~1.6 ulp of the mean.
_ROUNDING_FACTOR = 16.0


class EmptyComponentWarning(UserWarning):
    """A component received (almost) no frames and kept its previous parameters."""


def _floor_full(cov: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Floor a symmetric matrix against a diagonal floor matrix ``diag(floor)``.

    In the floor's whitened space eigenvalues below 1 are raised to 1 (Kaldi's
    ``SpMatrix::ApplyFloor``): the result is >= the floor in the Loewner order.
    """
    scale = np.sqrt(floor)
    whitened = cov / np.outer(scale, scale)
    eigval, eigvec = np.linalg.eigh(whitened)
    if eigval.min() >= 1.0:
        return cov
    eigval = np.maximum(eigval, 1.0)
    return (eigvec * eigval) @ eigvec.T * np.outer(scale, scale)


def variance_floor_vector(variance_floor: Any, n_features: int) -> np.ndarray | None:
    """An absolute variance floor (None, a scalar or per-feature values) as a validated
    (n_features,) vector, or None."""
    if variance_floor is None:
        return None
    floor = np.broadcast_to(np.asarray(variance_floor, dtype=np.float64), (n_features,)).copy()
    if not np.all(np.isfinite(floor)) or np.any(floor < 0):
        raise ValueError("variance_floor must be finite and non-negative")
    return floor


def _apply_floor(covariances: np.ndarray, covariance_type: str, floor: np.ndarray | None) -> np.ndarray:
    if floor is None or not np.any(floor > 0):
        return covariances
    if covariance_type == "diag":
        return np.maximum(covariances, floor)
    if covariance_type == "spherical":
        return np.maximum(covariances, floor.mean())
    if covariance_type == "tied":
        return _floor_full(covariances, floor)
    return np.stack([_floor_full(c, floor) for c in covariances])


def covariances_from_moments(stats: SufficientStats, nk: np.ndarray, means: np.ndarray) -> np.ndarray:
    """ML covariances (without regularisation) about ``means``, from the centred statistics.

    ``sum g (x - m)(x - m)^T / nk`` with ``d = m - s`` (``s`` = ``stats.shift``) is
    ``(second_c - first_c d^T - d first_c^T + N d d^T) / nk``: every term is of the size of
    the components' spread around the shift (the mixture's centre), not of their distance
    from the origin, so nothing is lost far from the origin; and since ``d`` is close to
    ``first_c / N``, rounding in ``means`` enters only squared.
    """
    cov_type = stats.covariance_type
    second, first, zeroth = stats.centred_second, stats.centred_first, stats.zeroth
    d = means - stats.shift
    if cov_type == "full":
        cross = first[:, :, None] * d[:, None, :]
        cov = (second - cross - cross.transpose(0, 2, 1)
               + zeroth[:, None, None] * d[:, :, None] * d[:, None, :]) / nk[:, None, None]
        return 0.5 * (cov + cov.transpose(0, 2, 1))
    if cov_type == "tied":
        cross = first.T @ d
        cov = (second - cross - cross.T + (zeroth[:, None] * d).T @ d) / nk.sum()
        return 0.5 * (cov + cov.T)
    var = (second - (2.0 * first - zeroth[:, None] * d) * d) / nk[:, None]
    return var if cov_type == "diag" else var.mean(axis=1)


def _rounding_resolution(stats: SufficientStats, nk: np.ndarray, means: np.ndarray) -> np.ndarray:
    """The smallest variance the statistics can resolve from zero, per component and feature.

    A variance computed from the centred moments carries a rounding error of about
    ``eps * m`` per accumulated term, where ``m`` is the mean square of the component's frames
    about the shift (errors of ``n`` terms grow like ``sqrt(n)`` when independent); and a
    standard deviation of a few units in the last place of the mean is no spread at all,
    since no data can be represented more finely. Below
    ``c eps sqrt(n) m + (c eps |mean|)^2`` (``c`` = ``_ROUNDING_FACTOR``) a variance is
    rounding noise: the component collapsed. The bound is relative (it scales with the
    data), so data of any overall scale fits; only a component more than about
    ``1 / sqrt(c eps sqrt(n))`` (~1e6 for n = 1e4) of its own standard deviations away from
    the mixture's centre is refused without regularisation.

    Shapes: (K, D) for full and diag, (D,) for tied, (K,) for spherical.
    """
    eps = np.finfo(np.float64).eps
    cov_type = stats.covariance_type
    second = stats.centred_second
    if cov_type == "full":
        mean_square = np.diagonal(second, axis1=1, axis2=2) / nk[:, None]
        count, magnitude = nk[:, None], np.abs(means)
    elif cov_type == "tied":
        mean_square = np.diag(second) / nk.sum()
        count, magnitude = nk.sum(), np.abs(means).max(axis=0)
    else:
        mean_square = second / nk[:, None]
        count, magnitude = nk[:, None], np.abs(means)
    resolution = (_ROUNDING_FACTOR * eps * np.sqrt(np.maximum(count, 1.0)) * np.abs(mean_square)
                  + (_ROUNDING_FACTOR * eps * magnitude) ** 2)
    return resolution.mean(axis=1) if cov_type == "spherical" else resolution


def add_reg_covar(cov: np.ndarray, covariance_type: str, reg_covar: float) -> np.ndarray:
    """``reg_covar`` added to the diagonal of every covariance (a new array)."""
    if covariance_type == "full":
        cov = cov.copy()
        idx = np.arange(cov.shape[1])
        cov[:, idx, idx] += reg_covar
        return cov
    if covariance_type == "tied":
        return cov + reg_covar * np.eye(cov.shape[0])
    return cov + reg_covar


def ml_update(stats: SufficientStats, reg_covar: float = 1e-6, variance_floor: Any = None,
              previous: GMM | None = None, min_occupancy: float = 1e-8,
              dtype: type | None = None) -> GMM:
    """Maximum-likelihood parameters from sufficient statistics (the EM M-step).

    Parameters
    ----------
    stats : SufficientStats
    reg_covar : float
        Added to the diagonal of every covariance (as scikit-learn's ``reg_covar``).
    variance_floor : float or array of shape (n_features,), optional
        Floor on variances (HTK/Kaldi style; typically 0.001-0.01 of the data's global
        variance). Full and tied covariances are floored in the floor's whitened space.
    previous : GMM, optional
        The mixture the statistics were computed with. Components whose occupancy is below
        ``min_occupancy`` keep its parameters (with a warning) instead of collapsing.
    dtype : numpy dtype, optional
        E-step precision of the returned GMM (defaults to ``previous``'s, else float64).

    Raises
    ------
    CovarianceError
        If a resulting covariance is not positive definite, or a variance is within rounding
        error of zero at the data's scale (a collapsed component; see
        ``_rounding_resolution``). The message names the component.
    """
    if reg_covar < 0:
        raise ValueError(f"reg_covar must be non-negative; got {reg_covar}")
    if stats.n_frames <= 0 or stats.zeroth.sum() <= 0:
        raise ValueError("cannot update a mixture from empty statistics (no frames, or all weights zero)")
    cov_type = stats.covariance_type
    nk = stats.zeroth + OCCUPANCY_EPS
    weights = nk / nk.sum()
    # The raw first moment over nk, as scikit-learn: an empty component lands at the origin.
    means = (stats.centred_first + stats.zeroth[:, None] * stats.shift) / nk[:, None]
    covariances = add_reg_covar(covariances_from_moments(stats, nk, means), cov_type, reg_covar)
    covariances = _apply_floor(covariances, cov_type, variance_floor_vector(variance_floor, stats.n_features))
    empty = stats.zeroth < min_occupancy
    if previous is not None and np.any(empty):
        warnings.warn(
            f"{int(empty.sum())} component(s) ({', '.join(map(str, np.flatnonzero(empty)[:10]))}"
            f"{', ...' if empty.sum() > 10 else ''}) received no frames and keep their previous "
            "parameters",
            EmptyComponentWarning, stacklevel=2,
        )
        means[empty] = previous.means[empty]
        if cov_type in ("full", "diag", "spherical"):
            covariances[empty] = previous.covariances[empty]
    # Variances within rounding error of zero are a collapse, not a fit (whatever the data's
    # scale): refused, naming the component, like non-positive ones.
    resolution = _rounding_resolution(stats, nk, means)
    if previous is not None and np.any(empty) and cov_type != "tied":
        resolution[empty] = 0.0  # kept from the previous mixture, not estimated
    precisions_cholesky = precisions_cholesky_from_covariances(covariances, cov_type, resolution)
    if dtype is None:
        dtype = previous.dtype if previous is not None else np.float64
    return GMM(weights, means, covariances, cov_type, dtype=dtype,
               precisions_cholesky=precisions_cholesky)


def map_update(stats: SufficientStats, prior: GMM, relevance_factor: float = 16.0,
               adapt: str = "m", dtype: type | None = None) -> GMM:
    """Maximum-a-posteriori adaptation of ``prior`` (e.g. a UBM) to the statistics.

    Reynolds, Quatieri & Dunn (2000): with ``n_k`` the occupancy of component ``k`` and
    ``alpha_k = n_k / (n_k + r)``,

    - means: ``alpha_k E_k[x] + (1 - alpha_k) mu_k``
    - weights: ``alpha_k n_k / T + (1 - alpha_k) w_k``, renormalised
    - variances: ``alpha_k E_k[x x^T] + (1 - alpha_k)(Sigma_k + mu_k mu_k^T) - mu'_k mu'_k^T``
      (tied: ``a S_ML + (1 - a) Sigma`` with ``a = T / (T + r)`` over all ``T`` frames and
      ``S_ML`` the within-component scatter around the components' data means)

    Components the data never visits keep the prior's parameters exactly.

    Parameters
    ----------
    stats : SufficientStats
        Statistics of the adaptation data computed with ``prior``.
    prior : GMM
    relevance_factor : float
        ``r`` above; larger values trust the prior more.
    adapt : str
        Which parameters to adapt: any combination of ``"w"``, ``"m"``, ``"v"``.
    """
    if relevance_factor < 0:
        raise ValueError(f"relevance_factor must be non-negative; got {relevance_factor}")
    if not adapt or set(adapt) - set("wmv"):
        raise ValueError(f"adapt must be a non-empty combination of 'w', 'm', 'v'; got {adapt!r}")
    if stats.centred_first.shape != prior.means.shape or stats.covariance_type != prior.covariance_type:
        raise ValueError(
            f"statistics of a {stats.covariance_type} mixture {stats.centred_first.shape} do not match the "
            f"{prior.covariance_type} prior {prior.means.shape}"
        )
    cov_type = prior.covariance_type
    nk = stats.zeroth
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(nk > 0, nk / (nk + relevance_factor), 0.0)
        safe_nk = np.where(nk > 0, nk, 1.0)
    # Everything relative to the statistics' shift s: the data means are s + mc, and
    # d = E[x] - mu0 = mc - (mu0 - s) is a difference of numbers near the data's spread.
    mc = stats.centred_first / safe_nk[:, None]
    mu0 = prior.means
    d = mc - (mu0 - stats.shift)
    means = mu0
    if "m" in adapt:
        means = mu0 + alpha[:, None] * d
    weights = prior.weights
    if "w" in adapt:
        total = nk.sum()
        if total > 0:
            weights = alpha * nk / total + (1.0 - alpha) * prior.weights
            weights = weights / weights.sum()
    covariances = prior.covariances
    if "v" in adapt:
        # alpha E[xx'] + (1 - alpha)(S + m0 m0') - m m', rewritten as
        # (1 - alpha) S + alpha Var[x] + alpha d d' - e e' with e = m - m0: equal in exact
        # arithmetic, but an unvisited component (alpha = 0) keeps its prior covariance
        # exactly, and Var[x] comes from centred moments (no large squares subtracted).
        e = alpha[:, None] * d if "m" in adapt else np.zeros_like(d)  # means - mu0, unrounded
        if cov_type in ("diag", "spherical"):
            var_x = stats.centred_second / safe_nk[:, None] - mc * mc
            new = alpha[:, None] * (var_x + d * d) - e * e
            if cov_type == "spherical":
                new = new.mean(axis=1)
                covariances = (1 - alpha) * prior.covariances + new
            else:
                covariances = (1 - alpha[:, None]) * prior.covariances + new
        elif cov_type == "full":
            var_x = stats.centred_second / safe_nk[:, None, None] - mc[:, :, None] * mc[:, None, :]
            a = alpha[:, None, None]
            covariances = ((1 - a) * prior.covariances + a * (var_x + d[:, :, None] * d[:, None, :])
                           - e[:, :, None] * e[:, None, :])
            covariances = 0.5 * (covariances + covariances.transpose(0, 2, 1))
        else:
            # tied: one shared covariance, interpolated between the prior and the ML
            # within-component scatter (around each component's data mean) with the total
            # occupancy's alpha.
            total = nk.sum()
            a = total / (total + relevance_factor)
            ml = stats.scatter() / max(total, 1e-300)
            covariances = a * ml + (1 - a) * prior.covariances
    return GMM(weights, means, covariances, cov_type,
               dtype=prior.dtype if dtype is None else dtype)
