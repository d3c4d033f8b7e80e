"""The shared EM core: Gaussian mixtures trained on sufficient statistics.

- :class:`GMM` holds parameters and computes the E-step (log-likelihoods, responsibilities,
  and :class:`SufficientStats`).
- :func:`ml_update` (the M-step) and :func:`map_update` (Reynolds MAP adaptation) turn
  statistics into parameters.
- :func:`run_em`, :func:`binary_split_fit` and chunk sources run EM over arrays or corpora.
- :class:`GaussianMixture` is the scikit-learn style estimator built on them, and
  :class:`BayesianGaussianMixture` its variational Bayesian counterpart on the same
  E-step and statistics.
"""

from speakergmm.mixture._covariance import COVARIANCE_TYPES, CovarianceError, n_parameters
from speakergmm.mixture._base import ConvergenceWarning, MixtureEstimator, NotFittedError
from speakergmm.mixture.bayesian import BayesianGaussianMixture
from speakergmm.mixture.em import (
    EMResult,
    accumulate,
    binary_split_fit,
    iter_chunks,
    run_em,
    split_components,
    trivial_gmm,
)
from speakergmm.mixture.gaussian_mixture import GaussianMixture
from speakergmm.mixture.model import GMM, check_frames
from speakergmm.mixture.stats import SufficientStats, stats_from_responsibilities
from speakergmm.mixture.update import EmptyComponentWarning, map_update, ml_update

__all__ = [
    "BayesianGaussianMixture", "COVARIANCE_TYPES", "ConvergenceWarning", "CovarianceError",
    "EMResult", "EmptyComponentWarning", "GMM", "GaussianMixture", "MixtureEstimator",
    "NotFittedError", "SufficientStats", "accumulate", "binary_split_fit", "check_frames",
    "iter_chunks", "map_update", "ml_update", "n_parameters", "run_em", "split_components",
    "stats_from_responsibilities", "trivial_gmm",
]
