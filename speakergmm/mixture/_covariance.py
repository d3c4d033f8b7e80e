"""Covariance-type specific math, in small functions (one place per formula).

Conventions follow scikit-learn so parameters move freely between the two:

- ``full``: covariances (K, D, D); ``tied``: (D, D); ``diag``: (K, D); ``spherical``: (K,).
- ``precisions_cholesky`` is the Cholesky factor ``U`` of the precision with
  ``precision = U @ U.T`` (so ``(x - mu) @ U`` whitens), shaped like the covariances.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
_LOG_2PI = float(np.log(2.0 * np.pi))


class CovarianceError(ValueError):
    """A covariance (or precision) is not symmetric positive definite."""


def check_covariance_type(covariance_type: str) -> str:
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {', '.join(COVARIANCE_TYPES)}; got {covariance_type!r}"
        )
    return covariance_type


def covariance_shape(n_components: int, n_features: int, covariance_type: str) -> tuple[int, ...]:
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[check_covariance_type(covariance_type)]


def _not_pd_message(kind: str, index: int | None, detail: str) -> str:
    where = "the tied covariance" if index is None else f"component {index}'s {kind}"
    return (
        f"{where} is not positive definite ({detail}); the component probably collapsed onto "
        "too few or identical points: increase reg_covar, use fewer components, or floor variances"
    )


def _cholesky_lower(matrix: np.ndarray, kind: str, index: int | None) -> np.ndarray:
    if not np.all(np.isfinite(matrix)):
        raise CovarianceError(_not_pd_message(kind, index, "it has non-finite entries"))
    try:
        return linalg.cholesky(matrix, lower=True, check_finite=False)
    except linalg.LinAlgError:
        min_eig = float(np.linalg.eigvalsh(matrix).min())
        raise CovarianceError(
            _not_pd_message(kind, index, f"smallest eigenvalue {min_eig:.3g}")
        ) from None


def precisions_cholesky_from_covariances(covariances: np.ndarray, covariance_type: str,
                                         resolution: np.ndarray | None = None) -> np.ndarray:
    """Cholesky factors of the precisions; raises :class:`CovarianceError` naming the component.

    Parameters
    ----------
    covariances : array
        Shaped as for ``covariance_type``.
    covariance_type : str
    resolution : array, optional
        The smallest variance that rounding error lets the statistics resolve, per
        component and feature: (K, D) for full and diag, (D,) for tied, (K,) for spherical.
        A variance (full and tied: a Cholesky pivot, the variance of a feature given the
        previous ones) at or below it is rounding noise around zero, not a measurement, and
        is refused like a non-positive one. Without it, only positive definiteness is checked.
    """
    if covariance_type in ("full", "tied"):
        matrices = covariances if covariance_type == "full" else covariances[None]
        # Batched: a per-component scipy loop cost 50x more under 2 BLAS threads.
        try:
            if not np.all(np.isfinite(matrices)):
                raise np.linalg.LinAlgError
            lower = np.linalg.cholesky(matrices)
        except np.linalg.LinAlgError:
            for k in range(matrices.shape[0]):  # find and name the culprit
                _cholesky_lower(matrices[k], "covariance", k if covariance_type == "full" else None)
            raise
        if resolution is not None:
            pivots = np.diagonal(lower, axis1=1, axis2=2) ** 2
            _check_resolved(pivots, np.reshape(resolution, pivots.shape), covariance_type,
                            "conditional variance")
        if covariance_type == "tied":
            return linalg.solve_triangular(lower[0], np.eye(lower.shape[1]), lower=True,
                                           check_finite=False).T
        return np.swapaxes(np.linalg.inv(lower), 1, 2)
    # diag, spherical
    bad = ~(covariances > 0) | ~np.isfinite(covariances)
    if np.any(bad):
        k = int(np.argwhere(bad)[0][0])
        value = covariances[k] if covariances.ndim == 1 else covariances[k][bad[k]][0]
        raise CovarianceError(_not_pd_message("variance", k, f"variance {float(value):.3g}"))
    if resolution is not None:
        _check_resolved(covariances, resolution, covariance_type, "variance")
    return 1.0 / np.sqrt(covariances)


def _check_resolved(variances: np.ndarray, resolution: np.ndarray, covariance_type: str,
                    what: str) -> None:
    """Raise for the first variance at or below the rounding resolution."""
    bad = variances <= resolution
    if not np.any(bad):
        return
    where = tuple(np.argwhere(bad)[0])
    k = None if covariance_type == "tied" else int(where[0])
    along = f" along feature {int(where[1])}" if len(where) > 1 else ""
    detail = (f"its {what}{along}, {float(variances[where]):.3g}, is within rounding error of zero "
              f"at the data's scale there ({float(resolution[where]):.3g})")
    kind = "variance" if covariance_type in ("diag", "spherical") else "covariance"
    raise CovarianceError(_not_pd_message(kind, k, detail))


def precisions_cholesky_from_precisions(precisions: np.ndarray, covariance_type: str) -> np.ndarray:
    if covariance_type == "full":
        return np.stack(
            [_cholesky_lower(p, "precision", k) for k, p in enumerate(precisions)]
        )
    if covariance_type == "tied":
        return _cholesky_lower(precisions, "precision", None)
    bad = ~(precisions > 0) | ~np.isfinite(precisions)
    if np.any(bad):
        k = int(np.argwhere(bad)[0][0])
        raise CovarianceError(_not_pd_message("precision", k, "non-positive precision"))
    return np.sqrt(precisions)


def precisions_from_cholesky(precisions_cholesky: np.ndarray, covariance_type: str) -> np.ndarray:
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", precisions_cholesky, precisions_cholesky)
    if covariance_type == "tied":
        return precisions_cholesky @ precisions_cholesky.T
    return precisions_cholesky**2


def covariances_from_precisions(precisions: np.ndarray, covariance_type: str) -> np.ndarray:
    if covariance_type == "full":
        return np.stack([linalg.pinvh(p) for p in precisions])
    if covariance_type == "tied":
        return linalg.pinvh(precisions)
    return 1.0 / precisions


def log_det_precisions_cholesky(
    precisions_cholesky: np.ndarray, covariance_type: str, n_features: int
) -> np.ndarray | float:
    """log det(U) per component: half the log-determinant of the precision."""
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(precisions_cholesky, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return float(np.sum(np.log(np.diag(precisions_cholesky))))
    if covariance_type == "diag":
        return np.sum(np.log(precisions_cholesky), axis=1)
    return n_features * np.log(precisions_cholesky)


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Number of free parameters (for BIC/AIC)."""
    cov_params = {
        "full": n_components * n_features * (n_features + 1) / 2.0,
        "tied": n_features * (n_features + 1) / 2.0,
        "diag": n_components * n_features,
        "spherical": n_components,
    }[covariance_type]
    return int(cov_params + n_components * n_features + n_components - 1)


def triu_design(X: np.ndarray) -> np.ndarray:
    """``[triu(x x^T), x, 1]`` for every frame: (N, D(D+1)/2 + D + 1), in Fortran order.

    The upper triangle is packed row by row (``np.triu_indices`` order). It is built
    transposed, one contiguous block ``x_i * x[i:]`` per row ``i`` of the triangle, which is
    faster than gathering ``X[:, rows] * X[:, cols]`` (docs/architecture.md, "Computation");
    the matrix products take the transposed layout at no cost.
    """
    N, D = X.shape
    XT = np.ascontiguousarray(X.T)
    n_pairs = D * (D + 1) // 2
    out = np.empty((n_pairs + D + 1, N), dtype=X.dtype)
    offset = 0
    for i in range(D):
        np.multiply(XT[i], XT[i:], out=out[offset:offset + D - i])
        offset += D - i
    out[n_pairs:n_pairs + D] = XT
    out[-1] = 1.0
    return out.T
