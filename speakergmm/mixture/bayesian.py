"""Variational Bayesian Gaussian mixtures on the EM core's statistics.

The model (Bishop, *Pattern Recognition and Machine Learning*, 10.2; Blei & Jordan, 2006,
for the Dirichlet process) puts a Dirichlet (or stick-breaking Beta) prior on the weights
and a Gaussian-Wishart prior on each component's mean and precision. Mean-field
variational inference alternates two steps that map one-to-one onto the EM core:

- **E-step**: responsibilities are proportional to ``exp(E[log pi_k] + E[log N(x | mu_k,
  Lambda_k)])``, which is an ordinary Gaussian mixture's log-joint with the posterior means,
  the inverse expected precisions as covariances and adjusted log-weights. So the core's
  fused E-step (:meth:`GMM.e_step`, any covariance type, float32 or float64, chunked,
  threaded) computes them and returns the :class:`SufficientStats` -- nothing new is
  evaluated per frame.
- **M-step**: the posterior parameters are closed-form functions of the zeroth, first and
  second-order statistics (:func:`variational_update`), just as :func:`ml_update` and
  :func:`map_update` are.

The evidence lower bound (ELBO) needs the entropy of the responsibilities,
``-sum r log r``. It too follows from the statistics: with the log-joint ``L_nk =
log w_k + log N(x_n | k)`` of the E-step's mixture, ``sum_nk r_nk log r_nk = sum_nk r_nk
L_nk - sum_n log p(x_n)``, and ``sum_n r_nk log N(x_n | k)`` is linear in the statistics.

Conventions (prior defaults, the normalised ``covariances_``, the ELBO up to a constant,
``tol`` on the ELBO's change, the draws of ``random`` and ``random_from_data``
initialisation) are scikit-learn's, so results match
``sklearn.mixture.BayesianGaussianMixture`` iteration by iteration.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import betaln, digamma, gammaln, logsumexp

from speakergmm.io import ModelFileError, load_model_file, save_model_file
from speakergmm.mixture._base import ConvergenceWarning, MixtureEstimator, validate_X  # noqa: F401
from speakergmm.mixture._covariance import (
    _LOG_2PI,
    covariance_shape,
    log_det_precisions_cholesky,
    precisions_cholesky_from_covariances,
)
from speakergmm.mixture.em import EMHooks, fit_best
from speakergmm.mixture.sources import ChunkSource, accumulate, iter_chunks
from speakergmm.mixture.init import INIT_METHODS, check_random_state, initial_responsibilities
from speakergmm.mixture.model import GMM, check_sample_weight
from speakergmm.mixture.stats import SufficientStats, stats_from_responsibilities
from speakergmm.mixture.update import OCCUPANCY_EPS, add_reg_covar, covariances_from_moments

__all__ = [
    "BayesianGaussianMixture", "VariationalPosterior", "VariationalPriors",
    "expected_log_weights", "responsibility_entropy", "variational_elbo", "variational_gmm",
    "variational_update",
]

WEIGHT_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
BAYES_INIT_METHODS = INIT_METHODS
BAYES_FORMAT = "speakergmm.BayesianGaussianMixture"
BAYES_VERSION = 1
_LOG_2 = math.log(2.0)


# ---------------------------------------------------------------------------- the model
@dataclass
class VariationalPriors:
    """Hyperparameters of the priors (scikit-learn's ``*_prior_`` attributes).

    ``covariance`` is the Wishart scale's inverse, shaped (D, D) for full and tied,
    (D,) for diag and a scalar for spherical.
    """

    weight_concentration: float
    mean_precision: float
    mean: np.ndarray
    degrees_of_freedom: float
    covariance: np.ndarray


@dataclass
class VariationalPosterior:
    """Parameters of the variational posterior.

    Attributes
    ----------
    covariance_type, weight_prior_type : str
    weight_concentration : array
        (K,) Dirichlet concentrations, or (2, K) Beta parameters of the stick-breaking
        fractions for the Dirichlet process.
    mean_precision : array (K,)
        The Gaussian-Wishart's ``beta_k``.
    means : array (K, D)
    degrees_of_freedom : array (K,), or a 0-d array for tied
    covariances : array
        Inverse of the expected precision ``(nu_k W_k)^-1``, shaped as the covariance type
        wants (scikit-learn's ``covariances_``).
    precisions_cholesky : array
        Cholesky factors of ``nu_k W_k``.
    """

    covariance_type: str
    weight_prior_type: str
    weight_concentration: np.ndarray
    mean_precision: np.ndarray
    means: np.ndarray
    degrees_of_freedom: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    def weights(self) -> np.ndarray:
        """Posterior mean weights (normalised, as scikit-learn's ``weights_``)."""
        conc = self.weight_concentration
        if self.weight_prior_type == "dirichlet_process":
            total = conc[0] + conc[1]
            stick = np.concatenate([[1.0], np.cumprod(conc[1] / total)[:-1]])
            weights = conc[0] / total * stick
        else:
            weights = conc.copy()
        return weights / weights.sum()


def variational_update(stats: SufficientStats, priors: VariationalPriors, weight_prior_type: str,
                       reg_covar: float = 1e-6) -> VariationalPosterior:
    """Posterior parameters from sufficient statistics (the variational M-step).

    ``reg_covar`` is added to the diagonal of each component's ML covariance before it
    enters the Wishart update (as scikit-learn does).
    """
    cov_type = stats.covariance_type
    K, D = stats.first.shape
    nk = stats.zeroth + OCCUPANCY_EPS
    xk = stats.first / nk[:, None]
    sk = add_reg_covar(covariances_from_moments(stats, nk, xk), cov_type, reg_covar)
    if weight_prior_type == "dirichlet_process":
        # Beta(1 + n_k, alpha + sum_{j>k} n_j) for every stick-breaking fraction.
        tail = np.concatenate([np.cumsum(nk[::-1])[-2::-1], [0.0]])
        concentration = np.stack([1.0 + nk, priors.weight_concentration + tail])
    else:
        concentration = priors.weight_concentration + nk
    beta0, m0 = priors.mean_precision, priors.mean
    beta = beta0 + nk
    means = (beta0 * m0 + nk[:, None] * xk) / beta[:, None]
    diff = xk - m0
    shrink = nk * beta0 / beta  # weight of the prior-to-data mean shift in the scatter
    if cov_type == "full":
        dof = priors.degrees_of_freedom + nk
        cov = (priors.covariance + nk[:, None, None] * sk
               + shrink[:, None, None] * diff[:, :, None] * diff[:, None, :])
        cov /= dof[:, None, None]
    elif cov_type == "tied":
        dof = np.asarray(priors.degrees_of_freedom + nk.sum() / K)
        cov = (priors.covariance + sk * nk.sum() / K + (beta0 / K) * ((nk / beta) * diff.T) @ diff)
        cov /= dof
    elif cov_type == "diag":
        dof = priors.degrees_of_freedom + nk
        cov = priors.covariance + nk[:, None] * (sk + (beta0 / beta)[:, None] * diff**2)
        cov /= dof[:, None]
    else:  # spherical
        dof = priors.degrees_of_freedom + nk
        cov = priors.covariance + nk * (sk + beta0 / beta * np.mean(diff**2, axis=1))
        cov /= dof
    return VariationalPosterior(cov_type, weight_prior_type, concentration, beta, means, dof, cov,
                                precisions_cholesky_from_covariances(cov, cov_type))


def expected_log_weights(posterior: VariationalPosterior) -> np.ndarray:
    """``E[log pi_k]`` under the posterior of the weights."""
    conc = posterior.weight_concentration
    if posterior.weight_prior_type == "dirichlet_process":
        digamma_total = digamma(conc[0] + conc[1])
        log_fraction = digamma(conc[0]) - digamma_total
        log_rest = digamma(conc[1]) - digamma_total
        return log_fraction + np.concatenate([[0.0], np.cumsum(log_rest)[:-1]])
    return digamma(conc) - digamma(conc.sum())


def _expected_log_det_offset(degrees_of_freedom: np.ndarray, n_features: int) -> np.ndarray:
    """``E[log |Lambda|] - log |W|`` of a Wishart: ``D log 2 + sum_i psi((nu - i) / 2)``."""
    nu = np.atleast_1d(degrees_of_freedom)
    return n_features * _LOG_2 + digamma(0.5 * (nu[None, :] - np.arange(n_features)[:, None])).sum(axis=0)


def variational_gmm(posterior: VariationalPosterior, dtype: type = np.float64) -> tuple[GMM, float]:
    """The Gaussian mixture whose E-step gives the variational responsibilities.

    Its log-joint is ``E[log pi_k] + E[log N(x | mu_k, Lambda_k)] - log_norm``: the
    expected log-density is a Gaussian log-density with the posterior mean and the inverse
    expected precision, plus a per-component constant, and all constants are folded into
    weights normalised to sum to 1. Returns the mixture and ``log_norm``, to be added to
    its log-likelihoods.
    """
    D = posterior.n_features
    nu = posterior.degrees_of_freedom
    log_offset = (expected_log_weights(posterior)
                  + 0.5 * (_expected_log_det_offset(nu, D) - D / posterior.mean_precision)
                  - 0.5 * D * np.log(nu))
    log_norm = float(logsumexp(log_offset))
    gmm = GMM(np.exp(log_offset - log_norm), posterior.means, posterior.covariances,
              posterior.covariance_type, dtype=dtype,
              precisions_cholesky=posterior.precisions_cholesky)
    return gmm, log_norm


def expected_log_density(gmm: GMM, stats: SufficientStats) -> float:
    """``sum_nk r_nk log N(x_n | mu_k, Sigma_k)`` from the statistics the E-step of ``gmm`` gave.

    Computed from the moments about the statistics' shift (the E-step's centre), so data
    far from the origin lose no precision.
    """
    cov_type, D = gmm.covariance_type, gmm.n_features
    nk = stats.zeroth
    mu = gmm.means - stats.shift
    first, second = stats.centred_first, stats.centred_second
    precision = gmm.precisions
    if cov_type == "full":
        # sum_n r (x - mu)^T P (x - mu) = tr(P S) - 2 mu^T P F + n mu^T P mu
        P_mu = np.einsum("kij,kj->ki", precision, mu)
        quad = (np.einsum("kij,kij->k", precision, second)
                - 2.0 * np.einsum("ki,ki->k", P_mu, first) + nk * np.einsum("ki,ki->k", P_mu, mu))
    elif cov_type == "tied":  # only the sum over components is available, and needed
        P_mu = mu @ precision
        quad = (np.sum(precision * second) - 2.0 * np.sum(P_mu * first)
                + np.sum(nk * np.einsum("ki,ki->k", P_mu, mu)))
    else:
        P = precision if cov_type == "diag" else precision[:, None]
        quad = np.sum(P * (second - 2.0 * mu * first + nk[:, None] * mu * mu), axis=1)
    log_det = log_det_precisions_cholesky(gmm.precisions_cholesky, cov_type, D)
    return float(np.sum(nk * (log_det - 0.5 * D * _LOG_2PI)) - 0.5 * np.sum(quad))


def responsibility_entropy(gmm: GMM, stats: SufficientStats) -> float:
    """``-sum_nk r_nk log r_nk`` of the responsibilities that gave ``stats`` under ``gmm``."""
    with np.errstate(divide="ignore"):
        log_w = np.log(gmm.weights)
    used = stats.zeroth > 0
    weighted_log_w = float(np.sum(stats.zeroth[used] * log_w[used]))
    return stats.log_likelihood - weighted_log_w - expected_log_density(gmm, stats)


def variational_elbo(posterior: VariationalPosterior, entropy: float) -> float:
    """The ELBO up to a constant (scikit-learn's ``lower_bound_``).

    ``entropy`` is that of the responsibilities the posterior was updated from; the
    remaining terms are the posterior's normalisers (Wishart, weights, means).
    """
    cov_type, D, K = posterior.covariance_type, posterior.n_features, posterior.n_components
    nu = posterior.degrees_of_freedom
    half_log_det_W = (log_det_precisions_cholesky(posterior.precisions_cholesky, cov_type, D)
                      - 0.5 * D * np.log(nu))
    log_wishart_norm = -(nu * half_log_det_W + nu * D * 0.5 * _LOG_2
                         + gammaln(0.5 * (np.atleast_1d(nu)[None, :] - np.arange(D)[:, None])).sum(axis=0))
    log_wishart = K * float(np.sum(log_wishart_norm)) if cov_type == "tied" else float(np.sum(log_wishart_norm))
    conc = posterior.weight_concentration
    if posterior.weight_prior_type == "dirichlet_process":
        log_norm_weight = -float(np.sum(betaln(conc[0], conc[1])))
    else:
        log_norm_weight = float(gammaln(conc.sum()) - np.sum(gammaln(conc)))
    return (entropy - log_wishart - log_norm_weight
            - 0.5 * D * float(np.sum(np.log(posterior.mean_precision))))


def _check_positive_definite(matrix: np.ndarray, name: str) -> None:
    if not np.allclose(matrix, matrix.T):
        raise ValueError(f"{name} must be symmetric")
    if np.linalg.eigvalsh(matrix).min() <= 0:
        raise ValueError(f"{name} must be positive definite")


# ---------------------------------------------------------------------------- the estimator
class BayesianGaussianMixture(MixtureEstimator):
    """Variational Bayesian Gaussian mixture on the speakergmm core.

    A drop-in for ``sklearn.mixture.BayesianGaussianMixture``: same constructor
    parameters, fitted attributes and methods, and for ``init_params="random"`` or
    ``"random_from_data"`` with the same integer ``random_state`` the same start and the
    same result. Beyond it: ``sample_weight`` in :meth:`fit`, :meth:`fit_chunks` for data
    that does not fit in memory, a float32 E-step (``dtype``), and :meth:`save` /
    :meth:`load`.

    With ``weight_concentration_prior_type="dirichlet_process"`` and a small
    ``weight_concentration_prior``, components the data do not need are driven to
    negligible weight: count the effective components as ``(weights_ > 0.01).sum()``
    (see docs/mixtures.md).

    Parameters
    ----------
    n_components : int
        Upper bound on the number of components.
    covariance_type : {"full", "tied", "diag", "spherical"}
    tol : float
        Convergence threshold on the change of the ELBO (``lower_bound_``).
    reg_covar : float
        Added to the diagonal of each component's data covariance in the update.
    max_iter, n_init : int
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}
    weight_concentration_prior : float, optional
        Dirichlet concentration ``gamma_0`` (default ``1 / n_components``).
    mean_precision_prior : float, optional
        ``beta_0`` of the means' prior (default 1).
    mean_prior : array (n_features,), optional
        Prior mean (default: the data mean).
    degrees_of_freedom_prior : float, optional
        Wishart ``nu_0`` (default ``n_features``; must exceed ``n_features - 1``).
    covariance_prior : float or array, optional
        Wishart covariance prior, shaped by ``covariance_type`` (default: the data's
        covariance, its per-feature variances, or their mean).
    random_state : int, RandomState, Generator or None
    warm_start : bool
        Continue from the previous fit's posterior.
    verbose, verbose_interval : int
    dtype : {numpy.float64, numpy.float32}
        Precision of the E-step arithmetic (statistics and parameters stay float64; the
        ELBO then carries float32 rounding, so use a looser ``tol``).
    max_init_samples : int
        Frames sampled from a chunk source for initialisation.
    """

    _INIT_METHODS = BAYES_INIT_METHODS
    _HYPERPARAMETERS = ("n_components", "covariance_type", "tol", "reg_covar", "max_iter", "n_init",
                        "init_params", "weight_concentration_prior_type", "warm_start", "verbose",
                        "verbose_interval", "max_init_samples")

    def __init__(self, *, n_components: int = 1, covariance_type: str = "full", tol: float = 1e-3,
                 reg_covar: float = 1e-6, max_iter: int = 100, n_init: int = 1,
                 init_params: str = "kmeans",
                 weight_concentration_prior_type: str = "dirichlet_process",
                 weight_concentration_prior: float | None = None,
                 mean_precision_prior: float | None = None, mean_prior: Any = None,
                 degrees_of_freedom_prior: float | None = None, covariance_prior: Any = None,
                 random_state: Any = None, warm_start: bool = False, verbose: int = 0,
                 verbose_interval: int = 10, dtype: Any = np.float64,
                 max_init_samples: int = 200_000):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.dtype = dtype
        self.max_init_samples = max_init_samples

    # ------------------------------------------------------------------ validation
    def _check_parameters(self, n_features: int) -> None:
        self._check_common(n_features)
        if self.weight_concentration_prior_type not in WEIGHT_PRIOR_TYPES:
            raise ValueError(
                f"weight_concentration_prior_type must be one of {', '.join(WEIGHT_PRIOR_TYPES)}; "
                f"got {self.weight_concentration_prior_type!r}"
            )
        for name in ("weight_concentration_prior", "mean_precision_prior"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float, np.number))
                                          and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number or None; got {value!r}")
        dof = self.degrees_of_freedom_prior
        if dof is not None and not (isinstance(dof, (int, float, np.number)) and np.isfinite(dof)
                                    and dof > n_features - 1):
            raise ValueError(f"degrees_of_freedom_prior must be greater than n_features - 1 = "
                             f"{n_features - 1}; got {dof!r}")

    def _resolve_priors(self, n_features: int, mean: np.ndarray, covariance: np.ndarray) -> VariationalPriors:
        """Resolve the priors against the data's mean and covariance (scikit-learn's defaults)."""
        K, D, cov_type = self.n_components, n_features, self.covariance_type
        if self.mean_prior is None:
            mean_prior = mean
        else:
            mean_prior = np.asarray(self.mean_prior, dtype=np.float64)
            if mean_prior.shape != (D,):
                raise ValueError(f"mean_prior must have shape ({D},); got {mean_prior.shape}")
            if not np.all(np.isfinite(mean_prior)):
                raise ValueError("mean_prior must be finite")
        if self.covariance_prior is None:
            cov_prior = {"full": covariance, "tied": covariance, "diag": np.diag(covariance).copy(),
                         "spherical": np.asarray(np.diag(covariance).mean())}[cov_type]
        else:
            cov_prior = np.asarray(self.covariance_prior, dtype=np.float64)
            expected = covariance_shape(1, D, cov_type)[1:] if cov_type != "tied" else (D, D)
            if cov_type == "spherical":
                expected = ()
            if cov_prior.shape != expected:
                raise ValueError(f"covariance_prior for covariance_type={cov_type!r} must have "
                                 f"shape {expected}; got {cov_prior.shape}")
            if not np.all(np.isfinite(cov_prior)):
                raise ValueError("covariance_prior must be finite")
            if cov_type in ("full", "tied"):
                _check_positive_definite(cov_prior, "covariance_prior")
            elif np.any(cov_prior <= 0):
                raise ValueError(f"covariance_prior for covariance_type={cov_type!r} must be positive")
        return VariationalPriors(
            weight_concentration=float(1.0 / K if self.weight_concentration_prior is None
                                       else self.weight_concentration_prior),
            mean_precision=float(1.0 if self.mean_precision_prior is None else self.mean_precision_prior),
            mean=np.asarray(mean_prior, dtype=np.float64),
            degrees_of_freedom=float(D if self.degrees_of_freedom_prior is None
                                     else self.degrees_of_freedom_prior),
            covariance=cov_prior,
        )

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> "BayesianGaussianMixture":
        """Variational inference on ``X`` (n_samples, n_features); ``y`` is ignored.

        ``sample_weight`` weights each sample in the statistics (an integer weight equals
        repeating the sample), also in the default priors' data mean and covariance.
        """
        X = validate_X(X, "X")
        w = check_sample_weight(sample_weight, X.shape[0])
        self._check_parameters(X.shape[1])
        if w is not None:
            keep = w > 0
            X, w = X[keep], w[keep]
        self._check_enough_samples(X.shape[0])
        if X.shape[0] < 2:
            raise ValueError("n_samples=1: BayesianGaussianMixture needs at least 2 samples "
                             "(the default covariance prior is the data's covariance)")
        mean, covariance = _data_moments([(X, w)])
        return self._fit([(X, w)] if w is not None else X, X, w, mean, covariance)

    def fit_chunks(self, chunks: ChunkSource) -> "BayesianGaussianMixture":
        """Variational inference over a re-iterable chunk source (see
        :mod:`speakergmm.mixture.em`): every iteration streams the chunks once."""
        sample, weights, n_features, n_total = self._collect_sample(chunks)
        self._check_parameters(n_features)
        self._check_enough_samples(n_total)
        mean, covariance = _data_moments(chunks)
        return self._fit(chunks, sample, weights, mean, covariance)

    def _initial_posterior(self, X: np.ndarray, w: np.ndarray | None, priors: VariationalPriors,
                           random_state: Any) -> VariationalPosterior:
        """scikit-learn's initialisations: responsibilities, then one variational update."""
        resp = initial_responsibilities(X, self.n_components, self.init_params, random_state)
        stats = stats_from_responsibilities(X, resp, w, self.covariance_type)
        return variational_update(stats, priors, self.weight_concentration_prior_type, self.reg_covar)

    def _fit(self, source: ChunkSource, sample: np.ndarray, sample_weight: np.ndarray | None,
             mean: np.ndarray, covariance: np.ndarray) -> "BayesianGaussianMixture":
        n_features = sample.shape[1]
        priors = self._resolve_priors(n_features, mean, covariance)
        dtype = np.dtype(self.dtype)
        do_init = not (self.warm_start and getattr(self, "_posterior", None) is not None)
        random_state = check_random_state(self.random_state, legacy=True)
        e_step_model: list[GMM] = []  # the mixture of the last E-step, for the entropy

        def initialise() -> VariationalPosterior:
            if do_init:
                return self._initial_posterior(sample, sample_weight, priors, random_state)
            return self._posterior

        def e_step(posterior: VariationalPosterior) -> SufficientStats:
            gmm, _ = variational_gmm(posterior, dtype)
            e_step_model[:] = [gmm]
            return accumulate(gmm, source)

        def update(stats: SufficientStats, _posterior: VariationalPosterior) -> VariationalPosterior:
            return variational_update(stats, priors, self.weight_concentration_prior_type,
                                      self.reg_covar)

        def elbo(stats: SufficientStats, _old: VariationalPosterior,
                 new: VariationalPosterior) -> float:
            return variational_elbo(new, responsibility_entropy(e_step_model[0], stats))

        result = fit_best(initialise, EMHooks(e_step, update, lower_bound=elbo),
                          n_init=self.n_init if do_init else 1, max_iter=self.max_iter,
                          tol=self.tol, initial_lower_bound=-np.inf if do_init else self.lower_bound_,
                          verbose=self.verbose, verbose_interval=self.verbose_interval,
                          report_change=True, warn_stacklevel=3)
        self.lower_bound_, self.converged_ = result.lower_bound, result.converged
        self.n_iter_, self.lower_bounds_ = result.n_iter, result.history
        self._set_posterior(result.model, priors)
        return self

    def _set_posterior(self, posterior: VariationalPosterior, priors: VariationalPriors) -> None:
        self._posterior, self._priors_ = posterior, priors
        dtype = np.dtype(self.dtype)
        self._gmm = GMM(posterior.weights(), posterior.means, posterior.covariances,
                        posterior.covariance_type, dtype=dtype,
                        precisions_cholesky=posterior.precisions_cholesky)
        self._scoring = variational_gmm(posterior, dtype)
        self.n_features_in_ = posterior.n_features

    def _inference_model(self) -> tuple[GMM, float]:
        self._check_fitted()
        return self._scoring

    # ------------------------------------------------------------------ fitted attributes
    def _posterior_or_raise(self) -> VariationalPosterior:
        self._check_fitted()
        return self._posterior

    @property
    def weight_concentration_(self) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Dirichlet concentrations (K,), or for the Dirichlet process the pair of Beta
        parameter arrays of the stick-breaking fractions (as scikit-learn)."""
        conc = self._posterior_or_raise().weight_concentration
        return (conc[0], conc[1]) if self.weight_concentration_prior_type == "dirichlet_process" else conc

    mean_precision_ = property(lambda self: self._posterior_or_raise().mean_precision)
    degrees_of_freedom_ = property(
        lambda self: (float(self._posterior_or_raise().degrees_of_freedom)
                      if self._posterior_or_raise().covariance_type == "tied"
                      else self._posterior_or_raise().degrees_of_freedom))
    weight_concentration_prior_ = property(lambda self: self._check_priors().weight_concentration)
    mean_precision_prior_ = property(lambda self: self._check_priors().mean_precision)
    mean_prior_ = property(lambda self: self._check_priors().mean)
    degrees_of_freedom_prior_ = property(lambda self: self._check_priors().degrees_of_freedom)
    covariance_prior_ = property(lambda self: self._check_priors().covariance)

    def _check_priors(self) -> VariationalPriors:
        self._check_fitted()
        return self._priors_

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Save the fitted posterior and priors to a plain, versioned ``.npz`` file (no pickle)."""
        posterior, priors = self._posterior_or_raise(), self._priors_
        meta = {name: getattr(self, name) for name in self._HYPERPARAMETERS}
        meta.update(dtype=np.dtype(self.dtype).name, converged=bool(self.converged_),
                    n_iter=int(self.n_iter_), lower_bound=float(self.lower_bound_),
                    random_state=self.random_state if isinstance(self.random_state, int) else None,
                    weight_concentration_prior=priors.weight_concentration,
                    mean_precision_prior=priors.mean_precision,
                    degrees_of_freedom_prior=priors.degrees_of_freedom)
        arrays = {
            "covariance_type": np.array(posterior.covariance_type),
            "weight_concentration": posterior.weight_concentration,
            "mean_precision": posterior.mean_precision,
            "means": posterior.means,
            "degrees_of_freedom": np.asarray(posterior.degrees_of_freedom),
            "covariances": posterior.covariances,
            "mean_prior": priors.mean,
            "covariance_prior": np.asarray(priors.covariance),
        }
        save_model_file(path, BAYES_FORMAT, BAYES_VERSION, arrays, meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BayesianGaussianMixture":
        """Load a model saved by :meth:`save`; refuses corrupt or foreign files with a clear error."""
        required = ("covariance_type", "weight_concentration", "mean_precision", "means",
                    "degrees_of_freedom", "covariances", "mean_prior", "covariance_prior")
        arrays, meta, _ = load_model_file(path, BAYES_FORMAT, (BAYES_VERSION,), required=required)
        try:
            params = {k: meta[k] for k in cls._HYPERPARAMETERS if k in meta}
            est = cls(**params, dtype=np.dtype(meta.get("dtype", "float64")),
                      random_state=meta.get("random_state"))
            cov_type = str(arrays["covariance_type"])
            if cov_type != est.covariance_type:
                raise ValueError(f"header says {est.covariance_type!r}, arrays hold {cov_type!r}")
            means = np.asarray(arrays["means"], dtype=np.float64)
            K, D = means.shape
            if K != est.n_components:
                raise ValueError(f"header says {est.n_components} components, arrays hold {K}")
            conc = np.asarray(arrays["weight_concentration"], dtype=np.float64)
            expected_conc = (2, K) if est.weight_concentration_prior_type == "dirichlet_process" else (K,)
            if conc.shape != expected_conc:
                raise ValueError(f"weight_concentration must have shape {expected_conc}; got {conc.shape}")
            covariances = np.asarray(arrays["covariances"], dtype=np.float64)
            if covariances.shape != covariance_shape(K, D, cov_type):
                raise ValueError(f"covariances must have shape {covariance_shape(K, D, cov_type)}; "
                                 f"got {covariances.shape}")
            values = [conc, arrays["mean_precision"], means, arrays["degrees_of_freedom"], covariances]
            if not all(np.all(np.isfinite(np.asarray(v, dtype=np.float64))) for v in values):
                raise ValueError("non-finite parameters")
            posterior = VariationalPosterior(
                cov_type, est.weight_concentration_prior_type, conc,
                np.asarray(arrays["mean_precision"], dtype=np.float64), means,
                np.asarray(arrays["degrees_of_freedom"], dtype=np.float64), covariances,
                precisions_cholesky_from_covariances(covariances, cov_type))
            priors = VariationalPriors(
                float(meta["weight_concentration_prior"]), float(meta["mean_precision_prior"]),
                np.asarray(arrays["mean_prior"], dtype=np.float64),
                float(meta["degrees_of_freedom_prior"]),
                np.asarray(arrays["covariance_prior"], dtype=np.float64))
            est._set_posterior(posterior, priors)
            est.converged_ = bool(meta.get("converged", True))
            est.n_iter_ = int(meta.get("n_iter", 0))
            est.lower_bound_ = float(meta.get("lower_bound", np.nan))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ModelFileError(f"{path}: invalid BayesianGaussianMixture file: {exc}") from exc
        est.lower_bounds_ = []
        return est


def _data_moments(source: ChunkSource) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and unbiased covariance (``np.cov``'s ddof=1) of a chunk source.

    Two passes (the mean, then the centred scatter), so data far from the origin lose
    nothing to cancellation.
    """
    total, weighted_sum = 0.0, None
    for X, w in iter_chunks(source):
        total += X.shape[0] if w is None else float(w.sum())
        part = X.sum(axis=0) if w is None else w @ X
        weighted_sum = part if weighted_sum is None else weighted_sum + part
    if weighted_sum is None or total <= 1:
        raise ValueError("the data hold fewer than 2 samples (or a total weight <= 1); the "
                         "default priors need the data's covariance")
    mean = weighted_sum / total
    scatter = 0.0
    for X, w in iter_chunks(source):
        Xc = X - mean
        scatter = scatter + (Xc.T @ Xc if w is None else (Xc * w[:, None]).T @ Xc)
    return mean, np.atleast_2d(scatter / (total - 1.0))

