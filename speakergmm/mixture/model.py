"""GMM: the parameters of a Gaussian mixture and its E-step.

Everything that evaluates a mixture on frames goes through :class:`GMM`: the estimator,
corpus-scale UBM training, MAP enrolment, verification scoring and the HMM's emissions.

How the E-step is computed, and why
-----------------------------------
Frames are first shifted by the mixture's centre ``o`` (the weighted mean of its means):
the log-densities are unchanged, but the quadratic expansions below then stay accurate,
also in float32. For each chunk of frames a *design matrix* is built once and used twice:

- ``diag``/``spherical``: ``A = [x*x, x]`` (N, 2D). ``log N(x|k)`` is ``A @ W + c`` with
  ``W = [-P/2; mu*P]`` — one matrix product — and the statistics ``[sum g x*x, sum g x]`` are
  ``resp.T @ A`` — a second one.
- ``full``: ``A = [triu(x x^T), x]`` (N, D(D+1)/2 + D): the quadratic form of every component
  is again one product with the packed precisions, and the same ``A`` gives the second-order
  statistics; exploiting symmetry halves the work of both.
- ``tied``: whiten once with the shared factor, then one product with the whitened means.

Log-sum-exp and the normalisation of responsibilities are done in place on the chunk,
which bounds memory whatever the number of frames. Statistics are accumulated in float64
and kept about the centre ``o`` (their ``shift``): the updates then compute covariances
from centred moments (see :mod:`speakergmm.mixture.stats`).
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np

from speakergmm.io import load_model_file, save_model_file
from speakergmm.mixture._covariance import (
    _LOG_2PI,
    check_covariance_type,
    covariance_shape,
    covariances_from_precisions,
    log_det_precisions_cholesky,
    precisions_cholesky_from_covariances,
    precisions_cholesky_from_precisions,
    precisions_from_cholesky,
    triu_design,
)
from speakergmm.mixture.stats import SufficientStats

GMM_FORMAT = "speakergmm.GMM"
GMM_VERSION = 1

# Elements of the (chunk x K) working arrays; bounds E-step memory (8 MiB in float64).
_CHUNK_ELEMENTS = 1 << 20
# Log-responsibilities (relative to a frame's best component) are raised to this floor;
# see _exp_normalize_inplace.
_LOG_RESP_FLOOR = {np.dtype(np.float32): -70.0, np.dtype(np.float64): -500.0}


def check_frames(X: Any, name: str = "X", n_features: int | None = None,
                 dtype: type = np.float64, *, estimator: str | None = None,
                 min_samples: int = 0) -> np.ndarray:
    """The package's frame validator: a C-contiguous 2-D array of finite real numbers.

    Errors name the argument and the problem; where scikit-learn's tools look for their
    own wording (sparse input, complex numbers, 1-D input, zero features or samples, a
    feature count other than the fitted one) they get it. ``estimator`` (e.g.
    ``"GaussianMixture"``) names the model in a feature-count error and makes 1-D input an
    error even for one feature (the estimator API); without it a 1-D array is taken as one
    feature when ``n_features == 1``. ``min_samples`` refuses fewer rows.
    """
    if type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"{name} is a sparse matrix, and sparse input is not supported: pass a "
                        "dense array (X.toarray())")
    X = np.asarray(X)
    if X.dtype == object:
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name} must hold numbers: {exc}") from None
    if np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers; got dtype {X.dtype} "
                         "(Complex data not supported)")
    if X.ndim == 1 and n_features == 1 and estimator is None:
        X = X[:, None]
    if X.ndim == 1:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features); got shape "
                         f"{X.shape}. Reshape your data with X.reshape(-1, 1) if it has a "
                         "single feature, or X.reshape(1, -1) if it is a single sample")
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features); got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"{name} must hold real numbers; got dtype {X.dtype}")
    if X.shape[1] == 0:
        raise ValueError(f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is "
                         "required.")
    if X.shape[0] < min_samples:
        raise ValueError(f"{name} has {X.shape[0]} sample(s) (shape={X.shape}) while a minimum "
                         f"of {min_samples} is required.")
    if n_features is not None and X.shape[1] != n_features:
        if estimator is not None:
            raise ValueError(f"{name} has {X.shape[1]} features, but {estimator} is expecting "
                             f"{n_features} features as input")
        raise ValueError(f"{name} has {X.shape[1]} features, but the model expects {n_features} features")
    X = np.ascontiguousarray(X, dtype=dtype)
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(
            f"{name} contains NaN or infinity (first at row {bad[0]}, column {bad[1]})"
        )
    return X


def check_sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},); got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    return w


def _exp_normalize_inplace(log_joint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace log-joint rows by ``exp(row - row_max)`` in place.

    Returns the per-row log-sum-exp and the row sums of the exponentials; dividing a row by
    its sum gives the responsibilities (callers fold that division into later products).
    """
    row_max = log_joint.max(axis=1)
    # A row of all -inf (zero-weight components only) must not produce NaN.
    row_max[~np.isfinite(row_max)] = 0.0
    log_joint -= row_max[:, None]
    # exp() below about -708 (float64) or -87 (float32) gives subnormal numbers, on which
    # the following matrix products ran 10x slower, so responsibilities are raised to a
    # floor with room to spare for the products: e^-70 (4e-31) in float32, e^-500 (7e-218)
    # in float64. The floor's mass is negligible next to a component's occupancy unless
    # the component is all but empty; e^-70 in float64 once made the statistics of a
    # component with occupancy 1e-19 differ from the exact ones by 7e-10 relative.
    np.maximum(log_joint, _LOG_RESP_FLOOR.get(log_joint.dtype, -70.0), out=log_joint)
    np.exp(log_joint, out=log_joint)
    row_sum = log_joint.sum(axis=1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_norm = np.log(row_sum) + row_max
    return log_norm, row_sum


def _log_normalize_inplace(log_joint: np.ndarray) -> np.ndarray:
    """Turn log-joint rows into responsibilities in place; return per-row log-sum-exp."""
    log_norm, row_sum = _exp_normalize_inplace(log_joint)
    row_sum[row_sum == 0] = 1.0
    log_joint *= (1.0 / row_sum).astype(log_joint.dtype)[:, None]
    return log_norm


_THREAD_POOL: tuple[int, Any] | None = None  # (creator pid, executor)
_BLAS_CONTROLLER: Any = None


def _blas_controller() -> Any:
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER = ThreadpoolController().select(user_api="blas")
    return _BLAS_CONTROLLER


def estep_threads() -> int:
    """Threads the E-step may use: as many as BLAS may use right now.

    Large E-steps run chunks in parallel Python threads (numpy releases the GIL), each with
    single-threaded BLAS: on small matrix products that beat multi-threaded BLAS, whose
    synchronisation stalled when the cores were busy (8x slower here). A caller that pins
    BLAS to one thread (threadpoolctl; speakergmm's process-pool workers do) thereby also
    keeps the E-step on one thread.
    """
    try:
        counts = [lib.get_num_threads() for lib in _blas_controller().lib_controllers]
    except Exception:  # no introspectable BLAS: stay serial
        return 1
    return max(1, min(counts)) if counts else 1


def _executor(n_threads: int) -> Any:
    global _THREAD_POOL
    from concurrent.futures import ThreadPoolExecutor

    # A forked child inherits the executor object but not its threads: make a new one.
    if _THREAD_POOL is None or _THREAD_POOL[0] != os.getpid() or _THREAD_POOL[1]._max_workers != n_threads:
        _THREAD_POOL = (os.getpid(), ThreadPoolExecutor(n_threads, thread_name_prefix="speakergmm-estep"))
    return _THREAD_POOL[1]


def _map_chunks(func: Any, chunks: Iterator[tuple[slice, np.ndarray]], w: np.ndarray | None,
                log_prob: np.ndarray, n_rows: int, chunk_rows: int) -> Iterator[tuple]:
    """Apply ``func(slice, Xc, w, log_prob)`` to every chunk, in threads when worthwhile."""
    n_threads = estep_threads() if n_rows >= 2 * chunk_rows else 1
    if n_threads <= 1:
        for sl, Xc in chunks:
            yield func(sl, Xc, w, log_prob)
        return
    pool = _executor(n_threads)
    with _blas_controller().limit(limits=1):
        pending: list = []
        for sl, Xc in chunks:
            pending.append(pool.submit(func, sl, Xc, w, log_prob))
            if len(pending) >= 2 * n_threads:  # bound memory: a few chunks in flight
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


class GMM:
    """Parameters of a Gaussian mixture, with the E-step.

    Parameters
    ----------
    weights : array of shape (n_components,)
        Mixture weights, non-negative, summing to 1.
    means : array of shape (n_components, n_features)
    covariances : array
        (K, D, D) for ``full``, (D, D) for ``tied``, (K, D) for ``diag``, (K,) for ``spherical``.
    covariance_type : {"full", "tied", "diag", "spherical"}
    dtype : {numpy.float64, numpy.float32}
        Precision of the E-step's arithmetic (parameters and statistics stay float64).
    precisions_cholesky : array, optional
        Cholesky factors of the precisions (scikit-learn's ``precisions_cholesky_``) when the
        caller already computed them from ``covariances`` (an update, a variational
        posterior): they are used as given instead of being factorised again.

    Raises
    ------
    CovarianceError
        If a covariance is not positive definite; the message names the component.
    """

    def __init__(self, weights: Any, means: Any, covariances: Any, covariance_type: str = "diag",
                 *, dtype: type = np.float64, precisions_cholesky: np.ndarray | None = None,
                 _precisions_cholesky: np.ndarray | None = None):
        check_covariance_type(covariance_type)
        self.covariance_type = covariance_type
        self.weights = np.array(weights, dtype=np.float64)
        self.means = np.array(means, dtype=np.float64)
        self.covariances = np.array(covariances, dtype=np.float64)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float64, np.float32):
            raise ValueError(f"dtype must be float64 or float32; got {self.dtype}")
        self._validate()
        if precisions_cholesky is None:  # _precisions_cholesky: its former, private name
            precisions_cholesky = _precisions_cholesky
        if precisions_cholesky is None:
            precisions_cholesky = precisions_cholesky_from_covariances(self.covariances, covariance_type)
        self.precisions_cholesky = precisions_cholesky
        self._prepare()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_precisions(cls, weights: Any, means: Any, precisions: Any, covariance_type: str = "diag",
                        *, dtype: type = np.float64) -> "GMM":
        precisions = np.asarray(precisions, dtype=np.float64)
        check_covariance_type(covariance_type)
        prec_chol = precisions_cholesky_from_precisions(precisions, covariance_type)
        return cls(weights, means, covariances_from_precisions(precisions, covariance_type),
                   covariance_type, dtype=dtype, precisions_cholesky=prec_chol)

    def _validate(self) -> None:
        if self.means.ndim != 2:
            raise ValueError(f"means must have shape (n_components, n_features); got {self.means.shape}")
        n_components, n_features = self.means.shape
        if self.weights.shape != (n_components,):
            raise ValueError(f"weights must have shape ({n_components},); got {self.weights.shape}")
        if not np.all(np.isfinite(self.weights)) or np.any(self.weights < 0):
            raise ValueError("weights must be finite and non-negative")
        if not np.isclose(self.weights.sum(), 1.0, rtol=0, atol=1e-6):
            raise ValueError(f"weights must sum to 1; they sum to {self.weights.sum():.8g}")
        if not np.all(np.isfinite(self.means)):
            k = int(np.argwhere(~np.isfinite(self.means))[0][0])
            raise ValueError(f"component {k}'s mean is not finite")
        expected = covariance_shape(n_components, n_features, self.covariance_type)
        if self.covariances.shape != expected:
            raise ValueError(
                f"{self.covariance_type} covariances must have shape {expected}; "
                f"got {self.covariances.shape}"
            )

    def _prepare(self) -> None:
        """Precompute the E-step's matrices (see the module docstring)."""
        K, D = self.means.shape
        cov_type = self.covariance_type
        U = self.precisions_cholesky
        self.centre = self.weights @ self.means
        mc = self.means - self.centre
        log_det = log_det_precisions_cholesky(U, cov_type, D)
        with np.errstate(divide="ignore"):
            const = np.log(self.weights) + log_det - 0.5 * D * _LOG_2PI
        if cov_type in ("diag", "spherical"):
            P = U**2 if cov_type == "diag" else np.repeat((U**2)[:, None], D, axis=1)
            self._proj = np.concatenate([-0.5 * P, mc * P], axis=1).T
            const = const - 0.5 * np.sum(mc * mc * P, axis=1)
        elif cov_type == "tied":
            M = mc @ U  # whitened means
            self._proj = M.T
            const = const - 0.5 * np.sum(M * M, axis=1)
        else:  # full
            self._rows, self._cols = np.triu_indices(D)
            Lam = precisions_from_cholesky(U, cov_type)
            off_diagonal = np.where(self._rows == self._cols, 1.0, 2.0)
            quad = -0.5 * Lam[:, self._rows, self._cols] * off_diagonal
            lin = np.einsum("kij,kj->ki", Lam, mc)
            self._proj = np.concatenate([quad, lin], axis=1).T
            const = const - 0.5 * np.einsum("ki,ki->k", lin, mc)
        # The design matrix ends with a column of ones (tied: ones, then |y|^2), so the
        # constants ride along in the same matrix product instead of costing a pass.
        extra = [const[None]] if cov_type != "tied" else [const[None], np.full((1, K), -0.5)]
        self._proj = np.ascontiguousarray(np.concatenate([self._proj] + extra), dtype=self.dtype)
        self._proj_t = np.ascontiguousarray(self._proj.T)
        self._const = const.astype(self.dtype)
        self._centre_d = self.centre.astype(self.dtype)
        if cov_type == "tied":
            self._whiten = np.ascontiguousarray(U, dtype=self.dtype)

    # ------------------------------------------------------------------ properties
    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @property
    def precisions(self) -> np.ndarray:
        return precisions_from_cholesky(self.precisions_cholesky, self.covariance_type)

    def astype(self, dtype: type) -> "GMM":
        """The same mixture, computing its E-step in ``dtype``."""
        return GMM(self.weights, self.means, self.covariances, self.covariance_type, dtype=dtype,
                   precisions_cholesky=self.precisions_cholesky)

    def copy(self) -> "GMM":
        return self.astype(self.dtype)

    # ------------------------------------------------------------------ E-step
    def _chunk_rows(self) -> int:
        width = max(self.n_components, self._proj.shape[0])
        return max(64, _CHUNK_ELEMENTS // width)

    def _design(self, Xc: np.ndarray) -> np.ndarray:
        """Per-chunk design matrix: the log-joint is ``design @ proj``.

        ``[x*x, x, 1]`` (diag, spherical), ``[triu(x x^T), x, 1]`` (full), ``[y, 1, |y|^2]``
        with whitened ``y`` (tied). Except for tied, the same matrix, weighted by the
        responsibilities, gives the statistics.
        """
        ones = np.ones((Xc.shape[0], 1), dtype=Xc.dtype)
        if self.covariance_type in ("diag", "spherical"):
            return np.concatenate([Xc * Xc, Xc, ones], axis=1)
        if self.covariance_type == "full":
            return triu_design(Xc)
        Y = Xc @ self._whiten
        return np.concatenate([Y, ones, np.einsum("ij,ij->i", Y, Y)[:, None]], axis=1)

    def _log_joint_chunk(self, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        design = self._design(Xc)
        if design.flags.f_contiguous and not design.flags.c_contiguous:
            # A design built transposed (full covariances): the product in that layout is
            # faster than with the Fortran-ordered operand, and the copy back to rows costs
            # little (docs/architecture.md, "Computation").
            return np.ascontiguousarray((self._proj_t @ design.T).T), design
        return design @ self._proj, design

    def _chunks(self, X: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
        rows = self._chunk_rows()
        for start in range(0, X.shape[0], rows):
            sl = slice(start, min(start + rows, X.shape[0]))
            yield sl, np.subtract(X[sl], self._centre_d, dtype=self.dtype)

    def _check_X(self, X: Any, name: str = "X") -> np.ndarray:
        return check_frames(X, name, self.n_features, dtype=self.dtype)

    def log_joint(self, X: Any) -> np.ndarray:
        """``log w_k + log N(x_n | mu_k, Sigma_k)`` for every frame and component, (N, K)."""
        X = self._check_X(X)
        out = np.empty((X.shape[0], self.n_components), dtype=self.dtype)
        for sl, Xc in self._chunks(X):
            out[sl] = self._log_joint_chunk(Xc)[0]
        return out

    def score_samples(self, X: Any) -> np.ndarray:
        """Per-frame log-likelihood ``log p(x_n)``, (N,), float64."""
        X = self._check_X(X)
        out = np.empty(X.shape[0], dtype=np.float64)
        for sl, Xc in self._chunks(X):
            out[sl] = _exp_normalize_inplace(self._log_joint_chunk(Xc)[0])[0]
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        """Responsibilities ``p(k | x_n)``, (N, K)."""
        X = self._check_X(X)
        out = np.empty((X.shape[0], self.n_components), dtype=self.dtype)
        for sl, Xc in self._chunks(X):
            log_joint = self._log_joint_chunk(Xc)[0]
            _log_normalize_inplace(log_joint)
            out[sl] = log_joint
        return out

    def _e_step_chunk(self, sl: slice, Xc: np.ndarray, w: np.ndarray | None, log_prob: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """E-step of one chunk of centred frames: writes ``log_prob[sl]`` and returns the
        chunk's centred (zeroth, first, second) statistics (full: second's upper triangle)."""
        D = self.n_features
        resp, design = self._log_joint_chunk(Xc)
        log_prob[sl], row_sum = _exp_normalize_inplace(resp)
        with np.errstate(divide="ignore"):
            scale = np.where(row_sum > 0, 1.0 / row_sum, 0.0)
        w_chunk = None if w is None else w[sl]
        if w_chunk is not None:
            scale *= w_chunk
        if self.covariance_type == "tied":
            design = np.concatenate([Xc, np.ones((Xc.shape[0], 1), dtype=Xc.dtype)], axis=1)
            wX = Xc if w_chunk is None else Xc * w_chunk[:, None].astype(Xc.dtype)
            second = wX.T @ Xc
        # Responsibilities are resp / row_sum (times the frame weights): the scaling goes
        # to whichever of design and resp is narrower (design for diag with many
        # components, resp for full covariances). (design.T @ resp).T, not
        # resp.T @ design: OpenBLAS ran the latter shape 4x slower (13 vs 53 GFLOP/s for
        # 4096x256 by 4096x79 on this machine).
        if design.shape[1] > resp.shape[1]:
            resp *= scale.astype(resp.dtype)[:, None]
            moments = (design.T @ resp).T
        else:
            moments = ((design * scale.astype(design.dtype)[:, None]).T @ resp).T
        zeroth = moments[:, -1]
        if self.covariance_type == "tied":
            return zeroth, moments[:, :D], second
        split = moments.shape[1] - D - 1
        return zeroth, moments[:, split:-1], moments[:, :split]

    def e_step(self, X: Any, sample_weight: Any = None, stats: SufficientStats | None = None
               ) -> tuple[np.ndarray, SufficientStats]:
        """Per-frame log-likelihoods, and sufficient statistics accumulated into ``stats``.

        Parameters
        ----------
        X : array of shape (n_frames, n_features)
        sample_weight : array of shape (n_frames,), optional
            Weight of each frame in the statistics (e.g. HMM state occupancies).
        stats : SufficientStats, optional
            Accumulator to add to (created when None).

        Returns
        -------
        log_prob : array of shape (n_frames,)
            ``log p(x_n)`` under this mixture (unweighted).
        stats : SufficientStats
        """
        X = self._check_X(X)
        w = check_sample_weight(sample_weight, X.shape[0])
        K, D = self.n_components, self.n_features
        if stats is None:
            stats = SufficientStats.zeros(K, D, self.covariance_type)
        elif stats.centred_first.shape != (K, D) or stats.covariance_type != self.covariance_type:
            raise ValueError(
                f"stats are for a {stats.covariance_type} mixture of shape {stats.centred_first.shape}, "
                f"not this {self.covariance_type} mixture of shape {(K, D)}"
            )
        log_prob = np.empty(X.shape[0], dtype=np.float64)
        # Statistics of the frames centred on the mixture's centre; they stay centred (the
        # statistics' shift), so that the updates compute covariances from centred moments.
        zeroth = np.zeros(K)
        first_c = np.zeros((K, D))
        second_c = np.zeros(stats.centred_second.shape)
        for part in _map_chunks(self._e_step_chunk, self._chunks(X), w, log_prob, X.shape[0],
                                self._chunk_rows()):
            zeroth += part[0]
            first_c += part[1]
            if self.covariance_type == "full":
                second_c[:, self._rows, self._cols] += part[2]
            else:
                second_c += part[2]
        if self.covariance_type == "full":
            second_c[:, self._cols, self._rows] = second_c[:, self._rows, self._cols]
        if w is None:
            log_likelihood, n_frames = float(log_prob.sum()), float(X.shape[0])
        else:
            log_likelihood = float(np.dot(w, np.where(w > 0, log_prob, 0.0)))
            n_frames = float(w.sum())
        # The frames were centred on the centre in the E-step's dtype: that is the shift.
        stats.add_moments(zeroth, first_c, second_c, self._centre_d.astype(np.float64),
                          log_likelihood, n_frames)
        return log_prob, stats

    def accumulate(self, X: Any, sample_weight: Any = None,
                   stats: SufficientStats | None = None) -> SufficientStats:
        """Sufficient statistics of ``X`` (added to ``stats`` when given)."""
        return self.e_step(X, sample_weight, stats)[1]

    def log_joint_at(self, X: Any, indices: Any) -> np.ndarray:
        """``log w_k + log N(x_n | k)`` only for ``k = indices[n, c]``: (N, C).

        The workhorse of top-C scoring: a speaker model is evaluated only on the C
        components that score best under the UBM for each frame.
        """
        X = self._check_X(X)
        idx = np.asarray(indices)
        if idx.ndim != 2 or idx.shape[0] != X.shape[0]:
            raise ValueError(f"indices must have shape ({X.shape[0]}, C); got {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_components):
            raise ValueError(f"indices must lie in [0, {self.n_components})")
        if self.covariance_type not in ("diag", "spherical"):
            return np.take_along_axis(self.log_joint(X), idx, axis=1)
        D = self.n_features
        out = np.empty(idx.shape, dtype=self.dtype)
        quad_w = self._proj[:D].T  # (K, D): -P/2
        lin_w = self._proj[D:2 * D].T  # (K, D): mu*P (centred)
        rows = max(16, self._chunk_rows() // max(1, idx.shape[1]))
        for start in range(0, X.shape[0], rows):
            sl = slice(start, min(start + rows, X.shape[0]))
            Xc = np.subtract(X[sl], self._centre_d, dtype=self.dtype)
            k = idx[sl]
            out[sl] = (
                np.einsum("ncd,nd->nc", quad_w[k], Xc * Xc)
                + np.einsum("ncd,nd->nc", lin_w[k], Xc)
                + self._const[k]
            )
        return out

    # ------------------------------------------------------------------ sampling
    def sample(self, n_samples: int = 1, random_state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_samples`` frames; returns ``(X, component_labels)`` grouped by component."""
        if int(n_samples) < 1:
            raise ValueError(f"n_samples must be >= 1; got {n_samples}")
        rng = as_generator(random_state)
        counts = rng.multinomial(int(n_samples), self.weights)
        K, D = self.n_components, self.n_features
        parts = []
        for k in range(K):
            if counts[k] == 0:
                continue
            if self.covariance_type == "full":
                cov = self.covariances[k]
            elif self.covariance_type == "tied":
                cov = self.covariances
            else:
                std = np.sqrt(self.covariances[k]) * np.ones(D)
                parts.append(self.means[k] + rng.standard_normal((counts[k], D)) * std)
                continue
            parts.append(rng.multivariate_normal(self.means[k], cov, size=counts[k],
                                                 method="cholesky"))
        labels = np.repeat(np.arange(K), counts)
        return np.vstack(parts), labels

    # ------------------------------------------------------------------ persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "covariance_type": np.array(self.covariance_type),
            "weights": self.weights,
            "means": self.means,
            "covariances": self.covariances,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], dtype: type = np.float64) -> "GMM":
        return cls(arrays["weights"], arrays["means"], arrays["covariances"],
                   str(arrays["covariance_type"]), dtype=dtype)

    def save(self, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
        """Save as a plain, versioned model file (see :mod:`speakergmm.io`)."""
        save_model_file(path, GMM_FORMAT, GMM_VERSION, self.to_arrays(), meta)

    @classmethod
    def load(cls, path: str | os.PathLike, dtype: type = np.float64) -> "GMM":
        arrays, _, _ = load_model_file(
            path, GMM_FORMAT, (GMM_VERSION,),
            required=("covariance_type", "weights", "means", "covariances"),
        )
        try:
            return cls.from_arrays(arrays, dtype=dtype)
        except ValueError as exc:
            raise type(exc)(f"{path}: invalid GMM: {exc}") from exc

    def fingerprint(self) -> str:
        """A short hash of the parameters: identifies e.g. the UBM a speaker model came from."""
        import hashlib

        digest = hashlib.sha256(self.covariance_type.encode())
        for arr in (self.weights, self.means, self.covariances):
            digest.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"GMM(n_components={self.n_components}, n_features={self.n_features}, "
                f"covariance_type={self.covariance_type!r}, dtype={self.dtype.name})")


def as_generator(random_state: Any) -> np.random.Generator:
    """A numpy Generator from None, an int, a Generator or a legacy RandomState
    (:func:`speakergmm.mixture.init.check_random_state`)."""
    from speakergmm.mixture.init import check_random_state

    return check_random_state(random_state)
