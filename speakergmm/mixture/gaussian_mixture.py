"""GaussianMixture: a drop-in for ``sklearn.mixture.GaussianMixture`` on the speakergmm core."""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable

import numpy as np

from speakergmm.io import ModelFileError, load_model_file, save_model_file
from speakergmm.mixture._covariance import covariance_shape, n_parameters, precisions_cholesky_from_precisions
from speakergmm.mixture._base import ConvergenceWarning, MixtureEstimator, NotFittedError, validate_X
from speakergmm.mixture.distributed import ChunkListAccumulator, DaskArrayAccumulator, is_dask_array
from speakergmm.mixture.em import EMHooks, binary_split_fit, fit_best
from speakergmm.mixture.sources import ChunkSource, accumulate
from speakergmm.mixture.init import INIT_METHODS as _KMEANS_STYLE, check_random_state, initial_responsibilities
from speakergmm.mixture.model import GMM, check_sample_weight
from speakergmm.mixture.stats import SufficientStats, stats_from_responsibilities
from speakergmm.mixture.update import ml_update, variance_floor_vector

ESTIMATOR_FORMAT = "speakergmm.GaussianMixture"
ESTIMATOR_VERSION = 1
INIT_METHODS = _KMEANS_STYLE + ("split",)

__all__ = ["ConvergenceWarning", "GaussianMixture", "NotFittedError"]


class GaussianMixture(MixtureEstimator):
    """Gaussian mixture model fitted by EM on sufficient statistics.

    Same constructor parameters, fitted attributes and methods as
    ``sklearn.mixture.GaussianMixture``; beyond it: ``sample_weight`` in :meth:`fit`,
    :meth:`fit_chunks` (exact EM over data that never fits in memory), :meth:`partial_fit`
    (stepwise online EM), binary-splitting initialisation (``init_params="split"``), a
    float32 E-step (``dtype``), variance flooring, and :meth:`save` / :meth:`load` to a
    plain versioned file.

    Parameters
    ----------
    n_components : int
    covariance_type : {"full", "tied", "diag", "spherical"}
    tol : float
        Convergence threshold on the change of the mean per-sample log-likelihood.
    reg_covar : float
        Added to the diagonal of every covariance.
    max_iter : int
        EM iterations per initialisation.
    n_init : int
        Initialisations; the best lower bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data", "split"}
    weights_init, means_init, precisions_init : array-like, optional
        User initial parameters (override those of ``init_params``).
    random_state : int, Generator, RandomState or None
    warm_start : bool
        Start each ``fit`` from the previous solution.
    verbose : int
        0 silent, 1 per-initialisation messages, 2 also per-iteration log-likelihoods.
    verbose_interval : int
        Iterations between messages at ``verbose=2``.
    dtype : {numpy.float64, numpy.float32}
        Precision of the E-step arithmetic; parameters and statistics stay float64.
    variance_floor : float or array, optional
        Absolute floor on variances applied at every update.
    iter_per_split : int
        EM iterations after each doubling when ``init_params="split"``.
    split_iter : int, optional
        Deprecated name of ``iter_per_split`` (DeprecationWarning; it wins when given).
    max_init_samples : int
        Frames sampled from a chunk source for k-means style initialisation.
    """

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full", tol: float = 1e-3,
                 reg_covar: float = 1e-6, max_iter: int = 100, n_init: int = 1,
                 init_params: str = "kmeans", weights_init: Any = None, means_init: Any = None,
                 precisions_init: Any = None, random_state: Any = None, warm_start: bool = False,
                 verbose: int = 0, verbose_interval: int = 10, dtype: Any = np.float64,
                 variance_floor: Any = None, iter_per_split: int = 5,
                 max_init_samples: int = 200_000, split_iter: int | None = None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.dtype = dtype
        self.variance_floor = variance_floor
        self.iter_per_split = iter_per_split
        self.split_iter = split_iter
        self.max_init_samples = max_init_samples

    # ------------------------------------------------------------------ validation
    _INIT_METHODS = INIT_METHODS

    def _check_parameters(self, n_features: int) -> None:
        self._check_common(n_features)
        name, value = self._iter_per_split()
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
        K = self.n_components
        if self.weights_init is not None:
            w = np.asarray(self.weights_init, dtype=np.float64)
            if w.shape != (K,):
                raise ValueError(f"weights_init must have shape ({K},); got {w.shape}")
            if np.any(w < 0) or np.any(w > 1) or not np.isclose(w.sum(), 1.0, atol=1e-6):
                raise ValueError("weights_init must lie in [0, 1] and sum to 1")
        if self.means_init is not None:
            m = np.asarray(self.means_init, dtype=np.float64)
            if m.shape != (K, n_features):
                raise ValueError(f"means_init must have shape ({K}, {n_features}); got {m.shape}")
        if self.precisions_init is not None:
            p = np.asarray(self.precisions_init, dtype=np.float64)
            expected = covariance_shape(K, n_features, self.covariance_type)
            if p.shape != expected:
                raise ValueError(f"precisions_init for covariance_type={self.covariance_type!r} "
                                 f"must have shape {expected}; got {p.shape}")
            precisions_cholesky_from_precisions(p, self.covariance_type)  # raises if not PD

    def _iter_per_split(self) -> tuple[str, Any]:
        """The iterations per split and the name they were given under (warns for the old one)."""
        if self.split_iter is None:
            return "iter_per_split", self.iter_per_split
        warnings.warn("GaussianMixture(split_iter=...) is deprecated: use iter_per_split",
                      DeprecationWarning, stacklevel=4)
        return "split_iter", self.split_iter

    # ------------------------------------------------------------------ initialisation
    def _initial_gmm(self, source: ChunkSource, sample: np.ndarray, sample_weight: np.ndarray | None,
                     rng: Any,
                     accumulate_fn: Callable[[GMM], SufficientStats] | None = None) -> GMM:
        K, D = self.n_components, sample.shape[1]
        dtype = np.dtype(self.dtype)
        all_given = (self.weights_init is not None and self.means_init is not None
                     and self.precisions_init is not None)
        if all_given:
            return GMM.from_precisions(self.weights_init, self.means_init, self.precisions_init,
                                       self.covariance_type, dtype=dtype)
        if self.init_params == "split":
            gmm = binary_split_fit(source, K, self.covariance_type, D,
                                   self.iter_per_split if self.split_iter is None else self.split_iter,
                                   self.reg_covar, self.variance_floor, dtype=dtype,
                                   stats_fn=accumulate_fn)
        else:
            resp = initial_responsibilities(sample, K, self.init_params, rng)
            # Statistics of the frames the components start from: with one frame per
            # component (k-means++, random_from_data) every covariance, the tied one included,
            # starts at reg_covar. (scikit-learn's tied start pools the scatter of all frames
            # about the origin instead, which BayesianGaussianMixture keeps for parity; on
            # data far from the origin it is within rounding error of singular.)
            in_start = resp.sum(axis=1)
            weights = in_start if sample_weight is None else sample_weight * in_start
            stats = stats_from_responsibilities(sample, resp, weights, self.covariance_type)
            gmm = ml_update(stats, self.reg_covar, self.variance_floor, dtype=dtype)
        if self.weights_init is None and self.means_init is None and self.precisions_init is None:
            return gmm
        weights = gmm.weights if self.weights_init is None else self.weights_init
        means = gmm.means if self.means_init is None else self.means_init
        if self.precisions_init is not None:
            return GMM.from_precisions(weights, means, self.precisions_init, self.covariance_type,
                                       dtype=dtype)
        return GMM(weights, means, gmm.covariances, self.covariance_type, dtype=dtype)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> "GaussianMixture":
        """Estimate the parameters with EM on ``X`` (n_samples, n_features).

        ``sample_weight`` (n_samples,) weights each sample's contribution to the statistics
        (an integer weight equals repeating the sample). ``y`` is ignored.

        ``X`` may be a ``dask.array`` (e.g. frames on disk, larger than memory): every E-step
        is then one task per row block, the blocks' statistics added in a fixed tree (fan-in
        ``dask.config.get("split_every")``, 8 by default) on dask's current scheduler (a
        ``distributed.Client`` made default runs it on that cluster). Initialisation draws at
        most ``max_init_samples`` rows; with fewer rows than that the fit equals the
        in-memory one up to rounding.
        """
        if is_dask_array(X):
            import dask

            accumulator = DaskArrayAccumulator(X, sample_weight,
                                               split_every=dask.config.get("split_every", None) or 8)
            return self._fit_on(accumulator)
        X = validate_X(X, "X")
        w = check_sample_weight(sample_weight, X.shape[0])
        self._check_parameters(X.shape[1])
        n_effective = X.shape[0] if w is None else int(np.count_nonzero(w))
        self._check_enough_samples(n_effective)
        source = [(X, w)] if w is not None else X
        return self._fit(source, X if w is None else X[w > 0], None if w is None else w[w > 0],
                         X.shape[1])

    def fit_chunks(self, chunks: ChunkSource, client: Any = None,
                   split_every: int = 8) -> "GaussianMixture":
        """Exact EM over a re-iterable source of chunks (see :mod:`speakergmm.mixture.em`).

        Every iteration streams the chunks once, so memory stays that of one chunk; the
        result equals :meth:`fit` on the concatenated data (up to rounding). Chunks are
        arrays or ``(array, sample_weight)`` pairs.

        With a ``distributed.Client``, ``chunks`` is a list whose items are arrays (sent to
        the cluster once), ``(array, sample_weight)`` pairs, paths to ``.npy`` files or
        zero-argument loaders (read by the workers): each item is one E-step task per
        iteration, the statistics added on the workers in a fixed tree of fan-in
        ``split_every``, so the model does not depend on the cluster's size.
        """
        if client is not None:
            return self._fit_on(ChunkListAccumulator(chunks, client=client, split_every=split_every))
        sample, weights, n_features, n_total = self._collect_sample(chunks)
        self._check_parameters(n_features)
        self._check_enough_samples(n_total)
        return self._fit(chunks, sample, weights, n_features)

    def _fit_on(self, accumulator: Any) -> "GaussianMixture":
        """Fit with a distributed accumulate hook (dask array or chunk list)."""
        sample, weights = accumulator.sample_rows(self.max_init_samples,
                                                  check_random_state(self.random_state))
        n_features = sample.shape[1]
        self._check_parameters(n_features)
        self._check_enough_samples(accumulator.n_total)
        return self._fit(sample if weights is None else [(sample, weights)], sample, weights,
                         n_features, accumulate_fn=accumulator)

    def _fit(self, source: ChunkSource, sample: np.ndarray, sample_weight: np.ndarray | None,
             n_features: int, accumulate_fn: Callable[[GMM], SufficientStats] | None = None
             ) -> "GaussianMixture":
        do_init = not (self.warm_start and getattr(self, "_gmm", None) is not None)
        rng = check_random_state(self.random_state, legacy=True)
        dtype = np.dtype(self.dtype)

        if accumulate_fn is None:
            def accumulate_fn(gmm: GMM) -> SufficientStats:
                return accumulate(gmm, source)

        def initialise() -> GMM:
            if do_init:
                return self._initial_gmm(source, sample, sample_weight, rng, accumulate_fn)
            return self._gmm.astype(dtype)

        def update(stats: SufficientStats, gmm: GMM) -> GMM:
            return ml_update(stats, self.reg_covar, self.variance_floor, previous=gmm)

        def evaluate(gmm: GMM) -> float:
            stats = accumulate_fn(gmm)
            return stats.log_likelihood / stats.n_frames

        result = fit_best(initialise, EMHooks(accumulate_fn, update),
                          n_init=self.n_init if do_init else 1, max_iter=self.max_iter,
                          tol=self.tol, evaluate=evaluate,
                          initial_lower_bound=-np.inf if do_init else self.lower_bound_,
                          verbose=self.verbose, verbose_interval=self.verbose_interval,
                          warn_stacklevel=3)
        self._gmm, self.lower_bound_ = result.model, result.lower_bound
        self.converged_, self.n_iter_, self.lower_bounds_ = result.converged, result.n_iter, result.history
        self.n_features_in_ = n_features
        return self

    def partial_fit(self, X: Any, y: Any = None, sample_weight: Any = None, decay: float = 0.6
                    ) -> "GaussianMixture":
        """Stepwise online EM on one mini-batch (for streams that cannot be read twice).

        The running statistics are ``s <- (1 - eta) s + eta * s(X)`` (per-frame normalised)
        with ``eta = (t + 2) ** -decay`` at the ``t``-th call (Cappe & Moulines, 2009), then
        the parameters are re-estimated from them. The first call initialises from ``X``.
        For exact full-batch results on data that is too large for memory, use
        :meth:`fit_chunks` instead.
        """
        X = validate_X(X, "X", getattr(self, "n_features_in_", None), type(self).__name__)
        w = check_sample_weight(sample_weight, X.shape[0])
        if not 0.5 < decay <= 1.0:
            raise ValueError(f"decay must lie in (0.5, 1]; got {decay}")
        if getattr(self, "_gmm", None) is None:
            self._check_parameters(X.shape[1])
            if X.shape[0] < self.n_components:
                raise ValueError(
                    f"the first partial_fit batch needs n_samples >= n_components="
                    f"{self.n_components}; got {X.shape[0]}"
                )
            self._gmm = self._initial_gmm(X, X, w, check_random_state(self.random_state, legacy=True))
            self.n_features_in_ = X.shape[1]
            self._online_stats, self._online_steps = None, 0
            self.converged_, self.lower_bounds_ = False, []
        gmm = self._check_fitted()
        _, batch = gmm.e_step(X, w)
        # After fit() (or load) the running statistics start from this batch. Per-frame
        # normalised statistics are mixed in their centred form (SufficientStats.scaled).
        normalised = batch.scaled(1.0 / batch.n_frames)
        previous = getattr(self, "_online_stats", None)
        steps = getattr(self, "_online_steps", 0)
        if previous is None:
            self._online_stats = normalised
        else:
            eta = (steps + 2.0) ** -decay
            self._online_stats = previous.scaled(1.0 - eta) + normalised.scaled(eta)
        self._online_steps = steps + 1
        if not hasattr(self, "lower_bounds_"):
            self.lower_bounds_ = []
        self._gmm = ml_update(self._online_stats, self.reg_covar, self.variance_floor, previous=gmm)
        self.lower_bound_ = normalised.log_likelihood
        self.lower_bounds_.append(self.lower_bound_)
        self.n_iter_ = self._online_steps
        return self

    # ------------------------------------------------------------------ model selection
    def _n_parameters(self) -> int:
        gmm = self._check_fitted()
        return n_parameters(gmm.n_components, gmm.n_features, gmm.covariance_type)

    def bic(self, X: Any) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        X = self._X(X)
        return float(-2 * self.score(X) * X.shape[0] + self._n_parameters() * np.log(X.shape[0]))

    def aic(self, X: Any) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        X = self._X(X)
        return float(-2 * self.score(X) * X.shape[0] + 2 * self._n_parameters())

    # ------------------------------------------------------------------ persistence
    _HYPERPARAMETERS = ("n_components", "covariance_type", "tol", "reg_covar", "max_iter", "n_init",
                        "init_params", "warm_start", "verbose", "verbose_interval", "iter_per_split",
                        "max_init_samples")

    def save(self, path: str | os.PathLike) -> None:
        """Save the fitted model to a plain, versioned ``.npz`` file (no pickle)."""
        gmm = self._check_fitted()
        meta = {name: getattr(self, name) for name in self._HYPERPARAMETERS}
        meta.update(dtype=np.dtype(self.dtype).name, converged=bool(self.converged_),
                    n_iter=int(self.n_iter_), lower_bound=float(self.lower_bound_),
                    random_state=self.random_state if isinstance(self.random_state, int) else None,
                    variance_floor=_floor_to_json(self.variance_floor))
        save_model_file(path, ESTIMATOR_FORMAT, ESTIMATOR_VERSION, gmm.to_arrays(), meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GaussianMixture":
        """Load a model saved by :meth:`save`; refuses corrupt or foreign files with a clear error."""
        arrays, meta, _ = load_model_file(path, ESTIMATOR_FORMAT, (ESTIMATOR_VERSION,),
                                          required=("covariance_type", "weights", "means", "covariances"))
        try:
            params = {k: meta[k] for k in cls._HYPERPARAMETERS if k in meta}
            if "split_iter" in meta and "iter_per_split" not in meta:  # files saved before the rename
                params["iter_per_split"] = meta["split_iter"]
            est = cls(**params, dtype=np.dtype(meta.get("dtype", "float64")),
                      random_state=meta.get("random_state"),
                      variance_floor=meta.get("variance_floor"))  # absent before it was saved
            est._gmm = GMM.from_arrays(arrays, dtype=np.dtype(est.dtype))
            variance_floor_vector(est.variance_floor, est._gmm.n_features)  # validates
            if est._gmm.n_components != est.n_components:
                raise ValueError(f"header says {est.n_components} components, arrays hold "
                                 f"{est._gmm.n_components}")
            est.converged_ = bool(meta.get("converged", True))
            est.n_iter_ = int(meta.get("n_iter", 0))
            est.lower_bound_ = float(meta.get("lower_bound", np.nan))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ModelFileError(f"{path}: invalid GaussianMixture file: {exc}") from exc
        est.lower_bounds_ = []
        est.n_features_in_ = est._gmm.n_features
        return est


def _floor_to_json(variance_floor: Any) -> float | list[float] | None:
    """``variance_floor`` as plain JSON (a number, a per-feature list, or None)."""
    if variance_floor is None:
        return None
    floor = np.asarray(variance_floor, dtype=np.float64)
    return float(floor) if floor.ndim == 0 else floor.tolist()
