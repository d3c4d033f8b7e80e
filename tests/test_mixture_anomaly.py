"""DensityAnomalyDetector and threshold_for_false_alarm_rate."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speakergmm.mixture import BayesianGaussianMixture, GaussianMixture, NotFittedError
from speakergmm.mixture.anomaly import DensityAnomalyDetector, threshold_for_false_alarm_rate

MEANS = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])


def normal_data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return MEANS[rng.integers(3, size=n)] + rng.normal(size=(n, 2)) @ np.array([[1.0, 0.3], [0.0, 0.7]])


@pytest.fixture(scope="module")
def fitted_mixture() -> GaussianMixture:
    return GaussianMixture(3, random_state=0).fit(normal_data(3000, 0))


# ---------------------------------------------------------------------------- the quantile rule
@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300),
       st.floats(0.0, 0.999))
def test_threshold_flags_at_most_rate_and_exactly_floor_when_distinct(scores, rate):
    scores = np.array(scores)
    threshold = threshold_for_false_alarm_rate(scores, rate)
    n_flagged = int(np.sum(scores < threshold))
    expected = math.floor(rate * scores.size + 1e-9)
    assert n_flagged <= expected
    if np.unique(scores).size == scores.size:
        assert n_flagged == expected
    assert threshold in scores


def test_threshold_examples():
    scores = np.arange(100.0)
    assert threshold_for_false_alarm_rate(scores, 0.05) == 5.0     # 0..4 flagged
    assert threshold_for_false_alarm_rate(scores, 0.0) == 0.0      # nothing flagged
    assert threshold_for_false_alarm_rate(scores[::-1], 0.999) == 99.0
    assert threshold_for_false_alarm_rate([3.0], 0.5) == 3.0


@pytest.mark.parametrize("scores, rate, message", [
    ([], 0.1, "non-empty 1-D"),
    ([[1.0, 2.0]], 0.1, "non-empty 1-D"),
    ([1.0, np.nan], 0.1, "finite; 1 of 2"),
    ([1.0, np.inf], 0.1, "finite"),
    ([1.0, 2.0], 1.0, r"rate must be a number in \[0, 1\)"),
    ([1.0, 2.0], -0.1, r"rate must be a number in \[0, 1\)"),
    ([1.0, 2.0], True, r"rate must be a number in \[0, 1\)"),
    ([1.0, 2.0], "0.1", r"rate must be a number in \[0, 1\)"),
])
def test_threshold_bad_arguments(scores, rate, message):
    with pytest.raises(ValueError, match=message):
        threshold_for_false_alarm_rate(scores, rate)


# ---------------------------------------------------------------------------- thresholds
@settings(max_examples=25, deadline=None)
@given(st.floats(0.001, 0.5), st.integers(0, 2**16))
def test_contamination_flags_that_fraction_of_the_training_data(fitted_mixture, contamination, seed):
    X = normal_data(400, seed)
    detector = DensityAnomalyDetector(fitted_mixture, contamination=contamination, prefit=True)
    labels = detector.fit_predict(X)
    assert set(np.unique(labels)) <= {-1, 1}
    assert np.sum(labels == -1) == math.floor(contamination * 400 + 1e-9)
    assert detector.threshold_source_ == "contamination"


def test_contamination_when_fitting_the_density():
    X = normal_data(1000, 1)
    detector = DensityAnomalyDetector(GaussianMixture(3, random_state=0), contamination=0.05).fit(X)
    assert np.sum(detector.predict(X) == -1) == 50
    assert detector.calibration_scores_.size == 1000
    # The default: contamination 0.01, a single full Gaussian.
    default = DensityAnomalyDetector().fit(X)
    assert np.sum(default.predict(X) == -1) == 10
    assert default.estimator_.n_components == 1 and default.estimator_.covariance_type == "full"


def test_false_alarm_rate_holds_on_new_normal_data():
    X_train, X_cal, X_new = normal_data(2000, 2), normal_data(3000, 3), normal_data(40000, 4)
    detector = DensityAnomalyDetector(GaussianMixture(3, random_state=0), false_alarm_rate=0.05)
    detector.fit(X_train, X_calibration=X_cal)
    assert np.mean(detector.predict(X_cal) == -1) == pytest.approx(0.05, abs=1 / 3000)
    # About 5% of new normal points (binomial sd of the calibration quantile ~0.4%).
    assert np.mean(detector.predict(X_new) == -1) == pytest.approx(0.05, abs=0.012)
    np.testing.assert_array_equal(detector.calibration_scores_, detector.score_samples(X_cal))


def test_false_alarm_rate_with_a_calibration_split():
    X = normal_data(1000, 5)
    detector = DensityAnomalyDetector(GaussianMixture(3, random_state=0), false_alarm_rate=0.1,
                                      calibration_fraction=0.3, random_state=0).fit(X)
    assert detector.calibration_scores_.size == 300
    assert detector.threshold_source_ == "false_alarm_rate"
    # The density was fitted on the other 700 points: same seed, same split, same model.
    again = DensityAnomalyDetector(GaussianMixture(3, random_state=0), false_alarm_rate=0.1,
                                   calibration_fraction=0.3, random_state=0).fit(X)
    assert again.threshold_ == detector.threshold_
    order = np.random.default_rng(0).permutation(1000)
    direct = GaussianMixture(3, random_state=0).fit(X[order[300:]])
    np.testing.assert_allclose(detector.estimator_.means_, direct.means_)
    assert np.sum(detector.score_samples(X[order[:300]]) < detector.threshold_) == 30


def test_training_quantile_is_optimistic_for_a_flexible_model():
    """Documented behaviour: a model fits its own training data better than new data, so the
    training quantile (contamination) flags more than that fraction of new normal data."""
    X_train, X_new = normal_data(300, 6), normal_data(20000, 7)
    flexible = GaussianMixture(12, covariance_type="full", random_state=0)
    by_training = DensityAnomalyDetector(flexible, contamination=0.02).fit(X_train)
    assert np.mean(by_training.predict(X_new) == -1) > 0.03


def test_fixed_threshold(fitted_mixture):
    X = normal_data(500, 8)
    detector = DensityAnomalyDetector(fitted_mixture, threshold=-6.0, prefit=True).fit(X)
    assert detector.threshold_ == detector.offset_ == -6.0
    assert detector.calibration_scores_.size == 0
    scores = fitted_mixture.score_samples(X)
    np.testing.assert_array_equal(detector.predict(X), np.where(scores < -6.0, -1, 1))
    np.testing.assert_allclose(detector.decision_function(X), scores + 6.0)
    np.testing.assert_array_equal(detector.score_samples(X), scores)


def test_detects_injected_outliers():
    X_train, X_normal = normal_data(3000, 9), normal_data(2000, 10)
    rng = np.random.default_rng(11)
    outliers = rng.uniform(-8, 13, size=(400, 2))
    far = np.min(np.linalg.norm(outliers[:, None] - MEANS[None], axis=2), axis=1) > 5
    outliers = outliers[far]  # well outside every cluster
    detector = DensityAnomalyDetector(GaussianMixture(3, random_state=0), false_alarm_rate=0.01,
                                      random_state=0).fit(X_train)
    assert np.all(detector.predict(outliers) == -1)
    assert np.mean(detector.predict(X_normal) == -1) < 0.025


def test_bayesian_mixture_as_the_density():
    X = normal_data(1500, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detector = DensityAnomalyDetector(BayesianGaussianMixture(n_components=6, random_state=0),
                                          contamination=0.02).fit(X)
    assert isinstance(detector.estimator_, BayesianGaussianMixture)
    assert np.sum(detector.predict(X) == -1) == 30
    assert detector.predict(np.array([[30.0, 30.0]]))[0] == -1


def test_prefit_uses_the_estimator_and_fit_copies_it(fitted_mixture):
    X = normal_data(200, 13)
    prefit = DensityAnomalyDetector(fitted_mixture, prefit=True).fit(X)
    assert prefit.estimator_ is fitted_mixture
    template = GaussianMixture(2, random_state=0)
    detector = DensityAnomalyDetector(template).fit(X)
    assert detector.estimator_ is not template and not template.__sklearn_is_fitted__()
    assert detector.estimator_.n_components == 2


def test_any_density_with_score_samples():
    sklearn_neighbors = pytest.importorskip("sklearn.neighbors")
    X = normal_data(500, 14)
    detector = DensityAnomalyDetector(sklearn_neighbors.KernelDensity(bandwidth=0.5),
                                      contamination=0.1).fit(X)
    assert np.sum(detector.predict(X) == -1) == 50


# ---------------------------------------------------------------------------- estimator protocol
def test_nested_params(fitted_mixture):
    detector = DensityAnomalyDetector(GaussianMixture(3), contamination=0.05)
    params = detector.get_params()
    assert params["estimator__n_components"] == 3 and params["contamination"] == 0.05
    assert "estimator__n_components" not in detector.get_params(deep=False)
    assert detector.set_params(estimator__n_components=5, contamination=0.1) is detector
    assert detector.estimator.n_components == 5 and detector.contamination == 0.1
    with pytest.raises(ValueError, match="invalid parameter 'contamnation'"):
        detector.set_params(contamnation=0.1)
    with pytest.raises(ValueError, match="estimator is None, which has no parameters"):
        DensityAnomalyDetector().set_params(estimator__n_components=2)
    assert repr(detector) == ("DensityAnomalyDetector(contamination=0.1, "
                              "estimator=GaussianMixture(n_components=5))")


def test_sklearn_clone_pipeline_and_checks():
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils.estimator_checks import check_estimator

    detector = DensityAnomalyDetector(GaussianMixture(2, random_state=0), contamination=0.05)
    copy = clone(detector)
    assert copy.estimator is not detector.estimator
    assert copy.get_params()["estimator__n_components"] == 2
    X = normal_data(600, 15) * [1.0, 100.0]
    labels = make_pipeline(StandardScaler(), detector).fit_predict(X)
    assert np.sum(labels == -1) == 30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(DensityAnomalyDetector(random_state=0), on_fail=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert failed == [], failed


def test_not_fitted_errors():
    detector = DensityAnomalyDetector(GaussianMixture(2))
    for method in (detector.predict, detector.score_samples, detector.decision_function):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            method(np.zeros((3, 2)))


# ---------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("kwargs, message", [
    (dict(contamination=0.1, false_alarm_rate=0.1), "only one of contamination, false_alarm_rate"),
    (dict(contamination=0.1, threshold=-3.0), "only one of"),
    (dict(contamination=0.0), r"contamination must be a number in \(0, 0.5\]"),
    (dict(contamination=0.6), r"contamination must be a number in \(0, 0.5\]"),
    (dict(contamination="auto"), r"contamination must be a number"),
    (dict(false_alarm_rate=1.0), r"false_alarm_rate must be a number in \(0, 0.5\]"),
    (dict(threshold=float("nan")), "threshold must be a finite number"),
    (dict(threshold="low"), "threshold must be a finite number"),
    (dict(false_alarm_rate=0.1, calibration_fraction=0.0), r"calibration_fraction must be a number in \(0, 1\)"),
    (dict(false_alarm_rate=0.1, calibration_fraction=0.001), "leaves 0 for calibration"),
    (dict(prefit="no"), "prefit must be True or False"),
    (dict(prefit=True), "prefit=True needs a fitted estimator; estimator is None"),
    (dict(estimator=GaussianMixture(2), prefit=True), "prefit=True but the GaussianMixture is not fitted"),
    (dict(estimator="gmm"), "must have a score_samples method"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DensityAnomalyDetector(**kwargs).fit(normal_data(100, 16))


def test_bad_data(fitted_mixture):
    detector = DensityAnomalyDetector(GaussianMixture(2, random_state=0), false_alarm_rate=0.1)
    with pytest.raises(ValueError, match="X_calibration"):
        detector.fit(normal_data(100, 17), X_calibration=np.zeros((10, 3)))
    with pytest.raises(ValueError, match="X_calibration is used with false_alarm_rate"):
        DensityAnomalyDetector(GaussianMixture(2), contamination=0.1).fit(
            normal_data(100, 17), X_calibration=normal_data(50, 18))
    with pytest.raises(ValueError, match="2-D array"):
        detector.fit(np.zeros(10))
    detector.fit(normal_data(100, 17))
    with pytest.raises(ValueError, match="X has 3 features, but DensityAnomalyDetector is expecting 2"):
        detector.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN|finite"):
        detector.predict(np.array([[np.nan, 0.0]]))


# ---------------------------------------------------------------------------- real data
@pytest.mark.fsdd
def test_fsdd_other_speakers_are_anomalous(fsdd):
    """One speaker's MFCC frames are normal: another speaker's recordings score lower on average."""
    from speakergmm.features.extract import extract_features

    def feats(speaker: str, indices) -> list[np.ndarray]:
        return [extract_features(fsdd / f"{d}_{speaker}_{i}.wav") for d in range(10) for i in indices]

    train, calibration = feats("george", range(5, 20)), feats("george", range(20, 30))
    normal_test, other_test = feats("george", range(0, 3)), feats("jackson", range(0, 3))
    detector = DensityAnomalyDetector(GaussianMixture(8, covariance_type="diag", random_state=0),
                                      false_alarm_rate=0.1).fit(np.concatenate(train),
                                                                X_calibration=np.concatenate(calibration))
    frames_normal = detector.predict(np.concatenate(normal_test)) == -1
    frames_other = detector.predict(np.concatenate(other_test)) == -1
    # Single frames of two speakers overlap a lot: flagged more often, but far from always.
    assert frames_normal.mean() == pytest.approx(0.1, abs=0.05)
    assert frames_other.mean() > 1.4 * frames_normal.mean()
    utterance = lambda utts: np.array([detector.score_samples(x).mean() for x in utts])  # noqa: E731
    threshold = threshold_for_false_alarm_rate(utterance(calibration), 0.1)
    assert np.mean(utterance(other_test) < threshold) > 0.8
    assert np.mean(utterance(normal_test) < threshold) < 0.25
