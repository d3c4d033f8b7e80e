"""Sufficient statistics of a Gaussian mixture: what the E-step produces and the updates consume.

Why the statistics are kept about a shift
-----------------------------------------
A covariance computed from raw moments, ``E[x x^T] - mu mu^T``, subtracts two numbers of
size ``|x|^2`` to get one of size ``sigma^2``: it loses ``eps * (|x| / sigma)^2`` of relative
precision, everything for data far from the origin (constant-ish features at 1e5 give
negative variances). The E-step already works on frames centred on the mixture's centre
``o``; :class:`SufficientStats` therefore stores the moments *about a shift* ``s`` (the
``o`` of the mixture that produced them), ``sum w gamma (x - s)`` and
``sum w gamma (x - s)(x - s)^T``, and the updates compute covariances from those, losing
only ``eps * (|mu_k - s| / sigma_k)^2``: the spread of the components around the mixture's
centre, not the distance from the origin.

The raw moments ``first`` and ``second`` stay available (computed on access, exact algebra
from the stored ones) so that every user of raw statistics keeps working; the stored,
centred arrays are ``centred_first`` and ``centred_second`` about ``shift``. Raw arrays are
not stored as well because two copies of the same statistics, updated separately, can
drift apart; deriving one from the other cannot.
"""

from __future__ import annotations

from typing import Any

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


def _moved(covariance_type: str, zeroth: np.ndarray, first: np.ndarray, second: np.ndarray,
           delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Moments about ``s`` re-expressed about ``s - delta`` (new arrays).

    With ``y = x - s`` and ``x - (s - delta) = y + delta``:
    ``sum g (y + d) = first + N d`` and
    ``sum g (y + d)(y + d)^T = second + first d^T + d first^T + N d d^T``. Tied statistics
    hold one total scatter, moved with the total count and sum.
    """
    new_first = first + zeroth[:, None] * delta
    if covariance_type == "full":
        cross = first[:, :, None] * delta[None, None, :]
        new_second = (second + cross + cross.transpose(0, 2, 1)
                      + zeroth[:, None, None] * np.outer(delta, delta))
    elif covariance_type == "tied":
        cross = np.outer(first.sum(axis=0), delta)
        new_second = second + cross + cross.T + zeroth.sum() * np.outer(delta, delta)
    else:
        new_second = second + (2.0 * first + zeroth[:, None] * delta) * delta
    return new_first, new_second


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


class SufficientStats:
    """Zeroth, first and second-order statistics of frames under a mixture's posteriors.

    With frame weights ``w_n`` (1 by default; HMM state occupancies in Baum-Welch),
    responsibilities ``gamma_nk`` and a reference point ``s`` (:attr:`shift`):

    - ``zeroth[k] = sum_n w_n gamma_nk``
    - ``centred_first[k] = sum_n w_n gamma_nk (x_n - s)``
    - ``centred_second``: ``sum_n w_n gamma_nk (x_n - s)(x_n - s)^T`` (full),
      ``sum_n w_n (x_n - s)(x_n - s)^T`` (tied), ``sum_n w_n gamma_nk (x_n - s)^2`` (diag,
      spherical)
    - ``log_likelihood = sum_n w_n log p(x_n)`` and ``n_frames = sum_n w_n``

    :attr:`first` and :attr:`second` are the same moments about the origin (raw), computed
    on access as read-only arrays; assigning to them stores raw moments (shift 0). The
    updates use the centred form (see the module docstring); :meth:`about` re-expresses
    the statistics about any point and :meth:`scatter` gives the within-component scatter.

    Parameters
    ----------
    covariance_type : {"full", "tied", "diag", "spherical"}
    zeroth, first, second : arrays
        The moments about ``shift``; with ``shift=None`` (the default) they are raw moments.
    log_likelihood, n_frames : float
    shift : array of shape (n_features,), optional
        The reference point ``s``; None means the origin.

    Statistics are always float64 and can be added, whatever their shifts (one operand is
    re-expressed about the other's shift; the algebra is exact): statistics of chunks,
    files, processes or machines sum to the statistics of the whole. (Tied statistics are
    moved with the total count and first moment ``sum_k zeroth_k``, ``sum_k first_k``,
    which are those of the total scatter's frames when each frame's responsibilities sum
    to one, as in the E-step.)
    """

    def __init__(self, covariance_type: str, zeroth: Any, first: Any, second: Any,
                 log_likelihood: float = 0.0, n_frames: float = 0.0, shift: Any = None):
        check_covariance_type(covariance_type)
        self.covariance_type = covariance_type
        self.zeroth = np.array(zeroth, dtype=np.float64)
        first = np.array(first, dtype=np.float64)
        second = np.array(second, dtype=np.float64)
        if self.zeroth.ndim != 1 or first.ndim != 2 or first.shape[0] != self.zeroth.shape[0]:
            raise ValueError(
                f"inconsistent statistics shapes: zeroth {self.zeroth.shape}, first {first.shape}"
            )
        expected = second_order_shape(*first.shape, covariance_type)
        if second.shape != expected:
            raise ValueError(
                f"second-order statistics of a {covariance_type} mixture must have shape "
                f"{expected}, got {second.shape}"
            )
        shift = np.zeros(first.shape[1]) if shift is None else np.array(shift, dtype=np.float64)
        if shift.shape != (first.shape[1],) or not np.all(np.isfinite(shift)):
            raise ValueError(f"shift must be a finite array of shape ({first.shape[1]},); got {shift.shape}")
        self.centred_first = first
        self.centred_second = second
        self.shift = shift
        self.log_likelihood = float(log_likelihood)
        self.n_frames = float(n_frames)

    @classmethod
    def zeros(cls, n_components: int, n_features: int, covariance_type: str) -> "SufficientStats":
        """Empty statistics: an accumulator (it takes the shift of whatever is added first)."""
        return cls(
            covariance_type,
            np.zeros(n_components),
            np.zeros((n_components, n_features)),
            np.zeros(second_order_shape(n_components, n_features, covariance_type)),
        )

    # ------------------------------------------------------------------ shapes
    @property
    def n_components(self) -> int:
        return self.zeroth.shape[0]

    @property
    def n_features(self) -> int:
        return self.centred_first.shape[1]

    # ------------------------------------------------------------------ raw moments
    @property
    def first(self) -> np.ndarray:
        """Raw first-order statistics ``sum w gamma x`` (K, D): a computed, read-only array."""
        return _read_only(self.centred_first + self.zeroth[:, None] * self.shift)

    @first.setter
    def first(self, value: Any) -> None:
        raw_second = self.second
        self._set_raw(value, raw_second)

    @property
    def second(self) -> np.ndarray:
        """Raw second-order statistics (see the class docstring): a computed, read-only array."""
        if not self.shift.any():
            return _read_only(self.centred_second.copy())
        return _read_only(_moved(self.covariance_type, self.zeroth, self.centred_first,
                                 self.centred_second, self.shift)[1])

    @second.setter
    def second(self, value: Any) -> None:
        raw_first = self.first
        self._set_raw(raw_first, value)

    def _set_raw(self, first: Any, second: Any) -> None:
        first = np.array(first, dtype=np.float64)
        second = np.array(second, dtype=np.float64)
        if first.shape != self.centred_first.shape or second.shape != self.centred_second.shape:
            raise ValueError(
                f"raw statistics of shapes {first.shape} and {second.shape} do not fit statistics "
                f"of shapes {self.centred_first.shape} and {self.centred_second.shape}"
            )
        self.centred_first, self.centred_second = first, second
        self.shift = np.zeros_like(self.shift)

    # ------------------------------------------------------------------ other reference points
    def moments_about(self, point: Any) -> tuple[np.ndarray, np.ndarray]:
        """First and second-order moments about ``point`` (new arrays; exact algebra).

        The precision of the result is that of moments about ``point``: choose a point near
        the data (e.g. a component's mean, or :attr:`shift`) for covariance-like quantities.
        """
        point = np.asarray(point, dtype=np.float64)
        if point.shape != self.shift.shape:
            raise ValueError(f"point must have shape {self.shift.shape}; got {point.shape}")
        if np.array_equal(point, self.shift):
            return self.centred_first.copy(), self.centred_second.copy()
        return _moved(self.covariance_type, self.zeroth, self.centred_first, self.centred_second,
                      self.shift - point)

    def about(self, point: Any) -> "SufficientStats":
        """The same statistics stored about ``point``."""
        first, second = self.moments_about(point)
        return SufficientStats(self.covariance_type, self.zeroth.copy(), first, second,
                               self.log_likelihood, self.n_frames, shift=np.array(point, dtype=np.float64))

    def scatter(self) -> np.ndarray:
        """Within-component scatter ``sum w gamma (x - xbar_k)(x - xbar_k)^T`` about each
        component's data mean ``xbar_k = first_k / zeroth_k``, from the centred moments.

        Shaped like the second-order statistics: (K, D, D) full; (K, D) diagonal for diag and
        spherical; (D, D) for tied, summed over the components. Components with zero
        occupancy give 0. Divide by ``zeroth`` for ML covariances.
        """
        nk = self.zeroth
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(nk > 0, 1.0 / np.where(nk > 0, nk, 1.0), 0.0)
        f = self.centred_first
        if self.covariance_type == "full":
            s = self.centred_second - (f * inv[:, None])[:, :, None] * f[:, None, :]
            return 0.5 * (s + s.transpose(0, 2, 1))
        if self.covariance_type == "tied":
            s = self.centred_second - (f * inv[:, None]).T @ f
            return 0.5 * (s + s.T)
        return self.centred_second - f * f * inv[:, None]

    # ------------------------------------------------------------------ arithmetic
    def _is_blank(self) -> bool:
        """No occupancy and no first-order mass: the moments are the same about any point."""
        return not self.zeroth.any() and not self.centred_first.any()

    def _check_compatible(self, other: "SufficientStats") -> None:
        if not isinstance(other, SufficientStats):
            raise TypeError(f"cannot add SufficientStats and {type(other).__name__}")
        if (other.covariance_type != self.covariance_type
                or other.centred_first.shape != self.centred_first.shape):
            raise ValueError(
                "cannot add statistics of different mixtures: "
                f"{self.covariance_type} {self.centred_first.shape} vs "
                f"{other.covariance_type} {other.centred_first.shape}"
            )

    def add_moments(self, zeroth: np.ndarray, first: np.ndarray, second: np.ndarray,
                    shift: np.ndarray, log_likelihood: float = 0.0, n_frames: float = 0.0) -> None:
        """Add statistics given as arrays about ``shift`` (in place; what the E-step uses).

        Blank statistics (e.g. from :meth:`zeros`) take ``shift`` as theirs; otherwise the
        added moments are re-expressed about this object's shift.
        """
        if self._is_blank():
            self.shift = np.array(shift, dtype=np.float64)
        elif not np.array_equal(shift, self.shift):
            first, second = _moved(self.covariance_type, zeroth, first, second,
                                   np.asarray(shift, dtype=np.float64) - self.shift)
        self.zeroth += zeroth
        self.centred_first += first
        self.centred_second += second
        self.log_likelihood += float(log_likelihood)
        self.n_frames += float(n_frames)

    def __iadd__(self, other: "SufficientStats") -> "SufficientStats":
        self._check_compatible(other)
        self.add_moments(other.zeroth, other.centred_first, other.centred_second, other.shift,
                         other.log_likelihood, other.n_frames)
        return self

    def __add__(self, other: "SufficientStats") -> "SufficientStats":
        result = self.copy()
        result += other
        return result

    def __radd__(self, other: object) -> "SufficientStats":
        if isinstance(other, int) and other == 0:  # so that sum(list_of_stats) works
            return self.copy()
        return NotImplemented  # type: ignore[return-value]

    def scaled(self, factor: float) -> "SufficientStats":
        """All statistics (counts, moments, log-likelihood, frames) times ``factor``, same shift.

        E.g. per-frame normalised statistics for online EM, without leaving the centred form.
        """
        factor = float(factor)
        return SufficientStats(self.covariance_type, self.zeroth * factor, self.centred_first * factor,
                               self.centred_second * factor, self.log_likelihood * factor,
                               self.n_frames * factor, shift=self.shift.copy())

    def copy(self) -> "SufficientStats":
        return SufficientStats(
            self.covariance_type, self.zeroth.copy(), self.centred_first.copy(),
            self.centred_second.copy(), self.log_likelihood, self.n_frames, shift=self.shift.copy(),
        )

    # ------------------------------------------------------------------ plain arrays
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (for shipping between processes or machines, or saving).

        ``first`` and ``second`` are the moments about ``shift`` (the stored, centred ones);
        arrays written before ``shift`` existed hold raw moments, which is shift 0.
        """
        return {
            "covariance_type": np.array(self.covariance_type),
            "zeroth": self.zeroth,
            "first": self.centred_first,
            "second": self.centred_second,
            "shift": self.shift,
            "log_likelihood": np.array(self.log_likelihood),
            "n_frames": np.array(self.n_frames),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "SufficientStats":
        """Inverse of :meth:`to_arrays`; arrays without ``shift`` are raw moments."""
        return cls(
            str(arrays["covariance_type"]), arrays["zeroth"], arrays["first"], arrays["second"],
            float(arrays["log_likelihood"]), float(arrays["n_frames"]), shift=arrays.get("shift"),
        )

    def __repr__(self) -> str:
        return (f"SufficientStats({self.covariance_type!r}, n_components={self.n_components}, "
                f"n_features={self.n_features}, n_frames={self.n_frames:.6g})")


def stats_from_responsibilities(X: np.ndarray, resp: np.ndarray, sample_weight: np.ndarray | None,
                                covariance_type: str) -> SufficientStats:
    """Statistics of frames under given responsibilities (hard or soft), e.g. for initialisation.

    The moments are taken about the (weighted) mean of the frames, for the same precision
    as the E-step's. One exception: tied statistics of responsibilities that do not sum to
    one for every frame (scikit-learn's ``random_from_data`` start gives responsibility to
    only one frame per component) pair a total scatter over all frames with component
    moments over others. Re-expressing that pair about another point needs each frame's
    total responsibility, which the statistics do not keep; so they stay raw (shift 0), and
    the tied update reproduces scikit-learn's result from them.
    """
    X = np.asarray(X, dtype=np.float64)
    resp = np.asarray(resp, dtype=np.float64)
    if sample_weight is None:
        weighted, n_frames = resp, float(X.shape[0])
        shift = X.mean(axis=0) if X.shape[0] else np.zeros(X.shape[1])
        counted = slice(None)
    else:
        w = np.asarray(sample_weight, dtype=np.float64)
        weighted, n_frames = resp * w[:, None], float(w.sum())
        shift = (w @ X) / n_frames if n_frames > 0 else np.zeros(X.shape[1])
        counted = w > 0
    if covariance_type == "tied" and not np.allclose(resp[counted].sum(axis=1), 1.0, rtol=0, atol=1e-9):
        shift = np.zeros(X.shape[1])
    Xc = X - shift
    K = resp.shape[1]
    if covariance_type == "full":
        second = np.stack([(weighted[:, k] * Xc.T) @ Xc for k in range(K)])
    elif covariance_type == "tied":
        wX = Xc if sample_weight is None else Xc * w[:, None]
        second = wX.T @ Xc
    else:
        second = weighted.T @ (Xc * Xc)
    return SufficientStats(covariance_type, weighted.sum(axis=0), weighted.T @ Xc, second,
                           0.0, n_frames, shift=shift)
