"""Anomaly detection with a density model: flag what the model finds unlikely.

A mixture fitted to (mostly) normal data gives every point a log-density
``score_samples(x) = log p(x)``. Points scoring below a threshold are anomalies. The only
decision is the threshold, and there are three honest ways to set it:

- ``contamination=c``: the ``c`` quantile of the *training* scores, i.e. declare that a
  fraction ``c`` of the training data is anomalous (as scikit-learn's outlier detectors
  do). Training points score higher under the model than new normal points do (the model
  was fitted to them), so on new normal data the false-alarm rate comes out somewhat above
  ``c``, the more so the more flexible the model.
- ``false_alarm_rate=r``: the ``r`` quantile of the scores of normal data the density was
  *not* fitted on (``X_calibration`` given to :meth:`DensityAnomalyDetector.fit`, or a
  seeded ``calibration_fraction`` of the training data held out for it). On new normal data
  from the same source, about a fraction ``r`` is flagged.
- ``threshold=t``: a fixed log-density, e.g. from an earlier calibration.

:class:`DensityAnomalyDetector` follows scikit-learn's outlier-detection conventions:
``decision_function`` is ``score_samples - threshold_`` (negative for anomalies) and
``predict`` returns +1 for inliers and -1 for outliers.
:func:`threshold_for_false_alarm_rate` is the quantile rule on its own, for scores
computed some other way (e.g. per-utterance averages of frame scores).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from speakergmm.mixture._base import ParamsMixin, clone, not_fitted_error, validate_X
from speakergmm.mixture.init import check_random_state

__all__ = ["DensityAnomalyDetector", "threshold_for_false_alarm_rate"]


def threshold_for_false_alarm_rate(scores: Any, rate: float) -> float:
    """The threshold that flags (``score < threshold``) a fraction ``rate`` of ``scores``.

    Exactly ``floor(rate * n)`` of the ``n`` scores lie strictly below the returned value
    when the scores are distinct (with ties at the threshold, fewer), so the fraction
    flagged is never above ``rate`` and less than ``1/n`` below it.

    Parameters
    ----------
    scores : array_like, shape (n,)
        Scores of normal data (higher means more normal), e.g. ``score_samples``.
    rate : float in [0, 1)
        The fraction of normal data to flag (the false-alarm rate).

    Returns
    -------
    float
        The ``floor(rate * n)``-th smallest score (0-based).
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D array; got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"scores must be finite; {int(np.sum(~np.isfinite(values)))} of "
                         f"{values.size} are NaN or infinite")
    if (not isinstance(rate, (int, float, np.number)) or isinstance(rate, bool)
            or not 0.0 <= float(rate) < 1.0):
        raise ValueError(f"rate must be a number in [0, 1); got {rate!r}")
    k = int(np.floor(float(rate) * values.size + 1e-9))
    # The k-th order statistic: the k smaller scores fall strictly below it.
    return float(np.partition(values, k)[k])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


class DensityAnomalyDetector(ParamsMixin):
    """Flag samples whose log-density under a mixture falls below a threshold.

    Parameters
    ----------
    estimator : density estimator, optional
        Anything with ``fit(X)`` and ``score_samples(X)`` returning log-densities:
        :class:`~speakergmm.mixture.GaussianMixture`,
        :class:`~speakergmm.mixture.BayesianGaussianMixture`, scikit-learn's mixtures or
        ``KernelDensity``. Default: ``GaussianMixture(n_components=1)`` (a single full
        Gaussian: the Mahalanobis-distance detector). :meth:`fit` fits a copy (the
        ``estimator_`` attribute), unless ``prefit``.
    contamination : float in (0, 0.5], optional
        Fraction of the training data taken as anomalous: ``threshold_`` is that quantile
        of the training scores. Used when neither ``false_alarm_rate`` nor ``threshold`` is
        given, and then defaults to 0.01.
    false_alarm_rate : float in (0, 0.5], optional
        Target fraction of normal data flagged: ``threshold_`` is that quantile of the
        scores of normal data the density was not fitted on (``X_calibration`` in
        :meth:`fit`, or a ``calibration_fraction`` of ``X``).
    threshold : float, optional
        A fixed log-density threshold.
    calibration_fraction : float in (0, 1)
        With ``false_alarm_rate``, no ``X_calibration`` and not ``prefit``: the fraction of
        ``X`` held out (a random split seeded by ``random_state``) to set the threshold; the
        density is fitted on the rest.
    prefit : bool
        ``estimator`` is already fitted: :meth:`fit` only sets the threshold, from the
        scores of ``X`` (or of ``X_calibration``). Since the density was not fitted on that
        data, ``contamination`` and ``false_alarm_rate`` then mean the same thing.
    random_state : int, Generator, RandomState or None
        Seeds the calibration split (through ``mixture.init.check_random_state``).

    Attributes
    ----------
    estimator_ : the fitted density (``estimator`` itself when ``prefit``)
    threshold_ : float
        Samples with ``score_samples(x) < threshold_`` are anomalies.
    offset_ : float
        Same as ``threshold_`` (scikit-learn's name: ``decision_function = score_samples -
        offset_``).
    threshold_source_ : str
        ``"contamination"``, ``"false_alarm_rate"`` or ``"threshold"``: how it was set.
    calibration_scores_ : ndarray
        The scores the threshold was taken from (empty for a fixed ``threshold``).
    n_features_in_ : int

    Examples
    --------
    >>> from speakergmm.mixture import GaussianMixture
    >>> detector = DensityAnomalyDetector(GaussianMixture(3, random_state=0),
    ...                                   false_alarm_rate=0.01, random_state=0)
    >>> detector.fit(X_normal)
    >>> flags = detector.predict(X_new) == -1
    """

    def __init__(self, estimator: Any = None, contamination: float | None = None,
                 false_alarm_rate: float | None = None, threshold: float | None = None,
                 calibration_fraction: float = 0.2, prefit: bool = False,
                 random_state: Any = None):
        self.estimator = estimator
        self.contamination = contamination
        self.false_alarm_rate = false_alarm_rate
        self.threshold = threshold
        self.calibration_fraction = calibration_fraction
        self.prefit = prefit
        self.random_state = random_state

    _ESTIMATOR_TYPE = "outlier_detector"

    # ------------------------------------------------------------------ estimator protocol
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "threshold_")

    # ------------------------------------------------------------------ checks
    def _threshold_source(self) -> str:
        given = [name for name in ("contamination", "false_alarm_rate", "threshold")
                 if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of contamination, false_alarm_rate and threshold; "
                             f"got {', '.join(f'{n}={getattr(self, n)!r}' for n in given)}")
        source = given[0] if given else "contamination"
        if source in ("contamination", "false_alarm_rate") and given:
            value = getattr(self, source)
            if not _is_number(value) or not 0.0 < float(value) <= 0.5:
                raise ValueError(f"{source} must be a number in (0, 0.5]; got {value!r}")
        if source == "threshold" and (not _is_number(self.threshold)
                                      or not np.isfinite(self.threshold)):
            raise ValueError(f"threshold must be a finite number (a log-density); "
                             f"got {self.threshold!r}")
        if (not _is_number(self.calibration_fraction)
                or not 0.0 < float(self.calibration_fraction) < 1.0):
            raise ValueError(f"calibration_fraction must be a number in (0, 1); "
                             f"got {self.calibration_fraction!r}")
        if not isinstance(self.prefit, (bool, np.bool_)):
            raise ValueError(f"prefit must be True or False; got {self.prefit!r}")
        return source

    def _rate(self, source: str) -> float:
        value = getattr(self, source)
        return 0.01 if value is None else float(value)

    def _check_estimator(self) -> Any:
        estimator = self.estimator
        if estimator is None:
            if self.prefit:
                raise ValueError("prefit=True needs a fitted estimator; estimator is None")
            from speakergmm.mixture.gaussian_mixture import GaussianMixture

            return GaussianMixture(n_components=1)
        if not hasattr(estimator, "score_samples"):
            raise ValueError(f"estimator must have a score_samples method (a density "
                             f"estimator); got {type(estimator).__name__}")
        if self.prefit:
            is_fitted = getattr(estimator, "__sklearn_is_fitted__", None)
            if is_fitted is not None and not is_fitted():
                raise ValueError(f"prefit=True but the {type(estimator).__name__} is not fitted; "
                                 "fit it first or use prefit=False")
            return estimator
        if not hasattr(estimator, "fit"):
            raise ValueError(f"estimator must have a fit method (or pass prefit=True); got "
                             f"{type(estimator).__name__}")
        return clone(estimator)

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise not_fitted_error(f"This {type(self).__name__} instance is not fitted yet; call fit first")

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None, X_calibration: Any = None) -> "DensityAnomalyDetector":
        """Fit the density on ``X`` (unless ``prefit``) and set ``threshold_``.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            Normal (or mostly normal) data.
        y : ignored
        X_calibration : array_like, optional
            Normal data not used for fitting, to set the threshold from (with
            ``false_alarm_rate``; also accepted with ``contamination`` when ``prefit``).
        """
        source = self._threshold_source()
        X = validate_X(X, "X")
        estimator = self._check_estimator()
        X_cal = None if X_calibration is None else validate_X(X_calibration, "X_calibration",
                                                              X.shape[1])
        if X_cal is not None and source == "contamination" and not self.prefit:
            raise ValueError("X_calibration is used with false_alarm_rate (or prefit=True); with "
                             "contamination the threshold comes from the training scores")
        X_fit = X
        if source == "false_alarm_rate" and X_cal is None and not self.prefit:
            n_cal = int(round(float(self.calibration_fraction) * X.shape[0]))
            if n_cal < 1 or n_cal >= X.shape[0]:
                raise ValueError(f"calibration_fraction={self.calibration_fraction} of "
                                 f"{X.shape[0]} samples leaves {n_cal} for calibration and "
                                 f"{X.shape[0] - n_cal} for fitting; both need at least one")
            order = check_random_state(self.random_state).permutation(X.shape[0])
            X_cal, X_fit = X[order[:n_cal]], X[order[n_cal:]]
        if not self.prefit:
            estimator.fit(X_fit)
        self.estimator_ = estimator
        self.n_features_in_ = X.shape[1]
        if source == "threshold":
            self.calibration_scores_ = np.empty(0)
            self.threshold_ = float(self.threshold)
        else:
            reference = X_cal if X_cal is not None else X_fit
            scores = self._scores(reference)
            self.calibration_scores_ = scores
            self.threshold_ = threshold_for_false_alarm_rate(scores, self._rate(source))
        self.offset_ = self.threshold_
        self.threshold_source_ = source
        return self

    # ------------------------------------------------------------------ inference
    def _scores(self, X: np.ndarray) -> np.ndarray:
        scores = np.asarray(self.estimator_.score_samples(X), dtype=np.float64)
        if scores.shape != (X.shape[0],):
            raise ValueError(f"{type(self.estimator_).__name__}.score_samples returned shape "
                             f"{scores.shape} for {X.shape[0]} samples")
        return scores

    def score_samples(self, X: Any) -> np.ndarray:
        """Log-density of each sample under the fitted model (lower is more anomalous)."""
        self._check_fitted()
        X = validate_X(X, "X")
        if X.shape[1] != self.n_features_in_:
            # scikit-learn's wording, which its tools look for.
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        return self._scores(X)

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - threshold_``: negative for anomalies, positive for inliers."""
        return self.score_samples(X) - self.threshold_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers, -1 for anomalies (``score_samples(x) < threshold_``)."""
        return np.where(self.decision_function(X) < 0.0, -1, 1)

    def fit_predict(self, X: Any, y: Any = None, X_calibration: Any = None) -> np.ndarray:
        """Fit, then label ``X``: +1 inlier, -1 anomaly."""
        return self.fit(X, X_calibration=X_calibration).predict(X)
