"""Sufficient statistics of a Gaussian mixture: what the E-step produces and the updates consume."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speakergmm.mixture._covariance import check_covariance_type


def second_order_shape(n_components: int, n_features: int, covariance_type: str) -> tuple[int, ...]:
    """Shape of the second-order statistics for a covariance type.

    ``full``: per-component scatter (K, D, D); ``tied``: the total scatter (D, D), because
    the tied update needs no more; ``diag`` and ``spherical``: per-component sums of
    squares (K, D), which also serve MAP adaptation of variances.
    """
    check_covariance_type(covariance_type)
    if covariance_type == "full":
        return (n_components, n_features, n_features)
    if covariance_type == "tied":
        return (n_features, n_features)
    return (n_components, n_features)


@dataclass
class SufficientStats:
    """Zeroth, first and second-order statistics of frames under a mixture's posteriors.

    With frame weights ``w_n`` (1 by default; HMM state occupancies in Baum-Welch) and
    responsibilities ``gamma_nk``:

    - ``zeroth[k] = sum_n w_n gamma_nk``
    - ``first[k] = sum_n w_n gamma_nk x_n``
    - ``second``: ``sum_n w_n gamma_nk x_n x_n^T`` (full), ``sum_n w_n x_n x_n^T`` (tied),
      ``sum_n w_n gamma_nk x_n * x_n`` (diag, spherical)
    - ``log_likelihood = sum_n w_n log p(x_n)`` and ``n_frames = sum_n w_n``

    Statistics are always float64 and can be added: statistics of chunks, files, processes
    or machines sum to the statistics of the whole.
    """

    covariance_type: str
    zeroth: np.ndarray
    first: np.ndarray
    second: np.ndarray
    log_likelihood: float = 0.0
    n_frames: float = 0.0

    def __post_init__(self) -> None:
        check_covariance_type(self.covariance_type)
        self.zeroth = np.asarray(self.zeroth, dtype=np.float64)
        self.first = np.asarray(self.first, dtype=np.float64)
        self.second = np.asarray(self.second, dtype=np.float64)
        if self.zeroth.ndim != 1 or self.first.shape != (self.zeroth.shape[0], self.first.shape[-1]):
            raise ValueError(
                f"inconsistent statistics shapes: zeroth {self.zeroth.shape}, first {self.first.shape}"
            )
        expected = second_order_shape(*self.first.shape, self.covariance_type)
        if self.second.shape != expected:
            raise ValueError(
                f"second-order statistics of a {self.covariance_type} mixture must have shape "
                f"{expected}, got {self.second.shape}"
            )
        self.log_likelihood = float(self.log_likelihood)
        self.n_frames = float(self.n_frames)

    @classmethod
    def zeros(cls, n_components: int, n_features: int, covariance_type: str) -> "SufficientStats":
        return cls(
            covariance_type,
            np.zeros(n_components),
            np.zeros((n_components, n_features)),
            np.zeros(second_order_shape(n_components, n_features, covariance_type)),
        )

    @property
    def n_components(self) -> int:
        return self.zeroth.shape[0]

    @property
    def n_features(self) -> int:
        return self.first.shape[1]

    def _check_compatible(self, other: "SufficientStats") -> None:
        if not isinstance(other, SufficientStats):
            raise TypeError(f"cannot add SufficientStats and {type(other).__name__}")
        if other.covariance_type != self.covariance_type or other.first.shape != self.first.shape:
            raise ValueError(
                "cannot add statistics of different mixtures: "
                f"{self.covariance_type} {self.first.shape} vs {other.covariance_type} {other.first.shape}"
            )

    def __iadd__(self, other: "SufficientStats") -> "SufficientStats":
        self._check_compatible(other)
        self.zeroth += other.zeroth
        self.first += other.first
        self.second += other.second
        self.log_likelihood += other.log_likelihood
        self.n_frames += other.n_frames
        return self

    def __add__(self, other: "SufficientStats") -> "SufficientStats":
        result = self.copy()
        result += other
        return result

    def __radd__(self, other: object) -> "SufficientStats":
        if isinstance(other, int) and other == 0:  # so that sum(list_of_stats) works
            return self.copy()
        return NotImplemented  # type: ignore[return-value]

    def copy(self) -> "SufficientStats":
        return SufficientStats(
            self.covariance_type, self.zeroth.copy(), self.first.copy(), self.second.copy(),
            self.log_likelihood, self.n_frames,
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (for shipping between processes or machines, or saving)."""
        return {
            "covariance_type": np.array(self.covariance_type),
            "zeroth": self.zeroth,
            "first": self.first,
            "second": self.second,
            "log_likelihood": np.array(self.log_likelihood),
            "n_frames": np.array(self.n_frames),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "SufficientStats":
        return cls(
            str(arrays["covariance_type"]), arrays["zeroth"], arrays["first"], arrays["second"],
            float(arrays["log_likelihood"]), float(arrays["n_frames"]),
        )


def stats_from_responsibilities(X: np.ndarray, resp: np.ndarray, sample_weight: np.ndarray | None,
                                covariance_type: str) -> SufficientStats:
    """Statistics of frames under given responsibilities (hard or soft), e.g. for initialisation."""
    X = np.asarray(X, dtype=np.float64)
    resp = np.asarray(resp, dtype=np.float64)
    if sample_weight is None:
        weighted, wX, n_frames = resp, X, float(X.shape[0])
    else:
        w = np.asarray(sample_weight, dtype=np.float64)
        weighted, wX, n_frames = resp * w[:, None], X * w[:, None], float(w.sum())
    K = resp.shape[1]
    if covariance_type == "full":
        second = np.stack([(weighted[:, k] * X.T) @ X for k in range(K)])
    elif covariance_type == "tied":
        second = wX.T @ X
    else:
        second = weighted.T @ (X * X)
    return SufficientStats(covariance_type, weighted.sum(axis=0), weighted.T @ X, second,
                           0.0, n_frames)
