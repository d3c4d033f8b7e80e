"""The shared EM core: Gaussian mixtures trained on sufficient statistics.

- :class:`GMM` holds parameters and computes the E-step (log-likelihoods, responsibilities,
  and :class:`SufficientStats`).
- :func:`ml_update` (the M-step) and :func:`map_update` (Reynolds MAP adaptation) turn
  statistics into parameters.
- The EM driver (:mod:`speakergmm.mixture.em`: :func:`iterate`, :func:`fit_best`,
  :func:`split_fit` with :class:`EMHooks`) runs every fit; :func:`run_em` and
  :func:`binary_split_fit` are its front ends over arrays or chunk sources.
- :class:`GaussianMixture` is the scikit-learn style estimator built on them, and
  :class:`BayesianGaussianMixture` its variational Bayesian counterpart on the same
  E-step and statistics.
- :func:`select_mixture` sweeps sizes and covariance types by BIC, AIC or held-out
  likelihood; :class:`DensityAnomalyDetector` flags samples of low density.
- :class:`ParamsMixin` (the estimator protocol: ``get_params``/``set_params``), :func:`clone`
  and :func:`not_fitted_error` are shared by every estimator of the package (the HMMs too).
"""

from speakergmm.mixture._covariance import COVARIANCE_TYPES, CovarianceError, n_parameters
from speakergmm.mixture._base import (ConvergenceWarning, MixtureEstimator, NotFittedError, ParamsMixin, clone,
                                      not_fitted_error)
from speakergmm.mixture.anomaly import DensityAnomalyDetector, threshold_for_false_alarm_rate
from speakergmm.mixture.bayesian import BayesianGaussianMixture
from speakergmm.mixture.em import (
    EMHooks,
    EMResult,
    IterationInfo,
    SplitState,
    accumulate,
    binary_split_fit,
    fit_best,
    iter_chunks,
    iterate,
    run_em,
    split_components,
    split_fit,
    trivial_gmm,
)
from speakergmm.mixture.gaussian_mixture import GaussianMixture
from speakergmm.mixture.model import GMM, check_frames
from speakergmm.mixture.selection import SelectionResult, select_mixture
from speakergmm.mixture.stats import SufficientStats, stats_from_responsibilities
from speakergmm.mixture.update import EmptyComponentWarning, map_update, ml_update

__all__ = [
    "BayesianGaussianMixture", "COVARIANCE_TYPES", "ConvergenceWarning", "CovarianceError",
    "DensityAnomalyDetector", "EMHooks", "EMResult", "IterationInfo", "SplitState", "EmptyComponentWarning", "GMM", "GaussianMixture",
    "MixtureEstimator", "NotFittedError", "ParamsMixin", "SelectionResult", "SufficientStats", "accumulate",
    "binary_split_fit", "check_frames", "clone", "fit_best", "iter_chunks", "iterate", "map_update", "ml_update",
    "n_parameters", "not_fitted_error",
    "run_em", "select_mixture", "split_components", "split_fit", "stats_from_responsibilities",
    "threshold_for_false_alarm_rate", "trivial_gmm",
]
