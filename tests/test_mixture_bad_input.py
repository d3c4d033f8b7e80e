"""Bad input to the EM core: every mistake gets a clear error, and never a silent NaN model."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from speakergmm.mixture import (
    GMM,
    CovarianceError,
    GaussianMixture,
    NotFittedError,
    SufficientStats,
    map_update,
    ml_update,
    run_em,
)

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data", "split")

pytestmark = [pytest.mark.filterwarnings("ignore::speakergmm.mixture.ConvergenceWarning"),
              pytest.mark.filterwarnings("ignore::speakergmm.mixture.EmptyComponentWarning")]


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """Tiny matrices: multi-threaded BLAS only adds overhead (30x on a loaded 2-core box)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.vstack([rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + 6.0])


@pytest.fixture(scope="module")
def fitted(X) -> GaussianMixture:
    return GaussianMixture(2, covariance_type="diag", random_state=0).fit(X)


def _assert_finite_model(est: GaussianMixture, X: np.ndarray) -> None:
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(est, name))), name
    assert np.all(np.isfinite(est.score_samples(X)))
    assert np.all(np.isfinite(est.predict_proba(X)))
    assert np.isfinite(est.lower_bound_)


# ---------------------------------------------------------------------------- non-finite data
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_naming_row_and_column(X, fitted, bad):
    Y = X.copy()
    Y[17, 2] = bad
    Y[30, 0] = bad
    message = r"X contains NaN or infinity \(first at row 17, column 2\)"
    with pytest.raises(ValueError, match=message):
        GaussianMixture(2).fit(Y)
    for method in ("predict", "predict_proba", "score_samples", "score", "bic", "aic"):
        with pytest.raises(ValueError, match=message):
            getattr(fitted, method)(Y)
    with pytest.raises(ValueError, match=message):
        fitted.gmm_.e_step(Y)
    with pytest.raises(ValueError, match=r"chunk 1 contains NaN or infinity \(first at row 7, column 2\)"):
        GaussianMixture(2).fit_chunks([X[:10], Y[10:]])


def test_non_numeric_and_misshapen_data_are_refused(X, fitted):
    with pytest.raises(ValueError, match=r"X must be a 2-D array \(n_samples, n_features\); got shape \(80,\)"):
        GaussianMixture(2).fit(X[:, 0])
    with pytest.raises(ValueError, match="got shape \\(2, 40, 3\\)"):
        GaussianMixture(2).fit(X.reshape(2, 40, 3))
    with pytest.raises(ValueError, match="X must hold real numbers; got dtype <U"):
        GaussianMixture(2).fit(X.astype(str))
    with pytest.raises(ValueError, match="X must hold real numbers; got dtype complex128"):
        GaussianMixture(2).fit(X + 1j)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score", "bic"])
def test_wrong_number_of_features_at_predict_time(fitted, method):
    with pytest.raises(ValueError, match="X has 4 features, but GaussianMixture is expecting 3 features"):
        getattr(fitted, method)(np.zeros((5, 4)))
    with pytest.raises(ValueError, match="X has 4 features, but the model expects 3 features"):
        fitted.gmm_.log_joint(np.zeros((5, 4)))


def test_fit_chunks_with_inconsistent_feature_counts(X):
    with pytest.raises(ValueError, match="chunks have 2 and 3 features"):
        GaussianMixture(2).fit_chunks([X, X[:, :2]])


def test_bad_sample_weight(X):
    for weights, message in ((np.ones(5), r"sample_weight must have shape \(80,\); got \(5,\)"),
                             (-np.ones(80), "sample_weight must be finite and non-negative"),
                             (np.full(80, np.nan), "sample_weight must be finite and non-negative")):
        with pytest.raises(ValueError, match=message):
            GaussianMixture(2).fit(X, sample_weight=weights)
    one_frame = np.zeros(80)
    one_frame[3] = 1.0
    with pytest.raises(ValueError, match="n_samples >= n_components but got n_components=2, n_samples=1"):
        GaussianMixture(2).fit(X, sample_weight=one_frame)


# ---------------------------------------------------------------------------- too little data
def test_fewer_samples_than_components(X):
    with pytest.raises(ValueError, match="n_samples >= n_components but got n_components=5, n_samples=4"):
        GaussianMixture(5).fit(X[:4])
    with pytest.raises(ValueError, match="n_components=5, n_samples=4"):
        GaussianMixture(5).fit_chunks([X[:2], X[2:4]])
    with pytest.raises(ValueError, match="the chunk source yielded no data"):
        GaussianMixture(1).fit_chunks([])


@pytest.mark.parametrize("init_params", INIT_METHODS)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_constant_data_gives_a_finite_model_thanks_to_reg_covar(covariance_type, init_params):
    X = np.full((50, 3), 4.2)
    est = GaussianMixture(3, covariance_type=covariance_type, init_params=init_params,
                          random_state=0).fit(X)
    _assert_finite_model(est, X)
    # Components that k-means left empty keep weight ~1e-16 (at the origin, as in
    # scikit-learn); every component with weight sits on the data.
    occupied = est.weights_ > 1e-6
    np.testing.assert_allclose(est.means_[occupied], 4.2, rtol=1e-12)
    # Every covariance is reg_covar * I: the data has no spread at all.
    expected = {"full": np.tile(1e-6 * np.eye(3), (3, 1, 1)), "tied": 1e-6 * np.eye(3),
                "diag": np.full((3, 3), 1e-6), "spherical": np.full(3, 1e-6)}[covariance_type]
    np.testing.assert_allclose(est.covariances_, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("init_params", INIT_METHODS)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_constant_data_far_from_the_origin_gives_a_finite_model(covariance_type, init_params):
    """Raw moments would give E[x^2] - mu^2 with a cancellation error eps * x^2 ~ 2e-6 > reg_covar
    (negative variances); centred statistics give reg_covar exactly, as at the origin."""
    X = np.full((60, 2), 98765.4321)
    est = GaussianMixture(2, covariance_type=covariance_type, init_params=init_params,
                          random_state=0).fit(X)
    _assert_finite_model(est, X)
    occupied = est.weights_ > 1e-6
    np.testing.assert_allclose(est.means_[occupied], 98765.4321, rtol=1e-15)
    expected = {"full": np.tile(1e-6 * np.eye(2), (2, 1, 1)), "tied": 1e-6 * np.eye(2),
                "diag": np.full((2, 2), 1e-6), "spherical": np.full(2, 1e-6)}[covariance_type]
    np.testing.assert_allclose(est.covariances_, expected, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("init_params", INIT_METHODS)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_constant_data_without_regularisation_names_the_component(covariance_type, init_params):
    X = np.full((50, 3), 4.2)
    est = GaussianMixture(2, covariance_type=covariance_type, init_params=init_params,
                          reg_covar=0.0, random_state=0)
    expected = ("the tied covariance is not positive definite" if covariance_type == "tied"
                else r"component \d's (covariance|variance) is not positive definite")
    with pytest.raises(CovarianceError, match=expected) as info:
        est.fit(X)
    assert "increase reg_covar" in str(info.value)
    assert not hasattr(est, "weights_")  # no half-fitted model left behind


def test_constant_data_without_regularisation_always_raises():
    """Rounding once left variances of ~eps * x^2 (or ~ulp(x)^2 from centred moments) that
    passed a '> 0' check: a spike of log-density ~50 per frame. The check is relative now."""
    silent = []
    for value in (4.2, 1.0, 7.77, -3.3):
        for n in (50, 37):
            X = np.full((n, 3), value)
            for covariance_type in COVARIANCE_TYPES:
                for init_params in INIT_METHODS:
                    est = GaussianMixture(2, covariance_type=covariance_type, reg_covar=0.0,
                                          init_params=init_params, random_state=0)
                    try:
                        est.fit(X)
                    except CovarianceError:
                        continue
                    silent.append((value, n, covariance_type, init_params,
                                   float(np.min(est.covariances_))))
    assert not silent, silent


@pytest.mark.parametrize("value, n", [(7.77, 37), (4.2, 50), (4.2, 7), (7.77, 1000)])
def test_a_variance_within_rounding_error_of_zero_names_the_component(value, n):
    """n copies of one value: E[x^2] - E[x]^2 rounds to +eps * x^2 here (a '> 0' check let
    these through with variance ~1e-14); relative to the data's scale that is zero."""
    frames = np.full(n, value)
    stats = SufficientStats("diag", zeroth=[2.0, float(n)], first=[[1.0], [frames.sum()]],
                            second=[[1.0], [(frames * frames).sum()]], log_likelihood=-3.0,
                            n_frames=2.0 + n)
    nk = n + 10 * np.finfo(np.float64).eps  # as ml_update divides
    assert stats.second[1, 0] / nk - (stats.first[1, 0] / nk) ** 2 > 0  # the old rounding
    with pytest.raises(CovarianceError, match=r"component 1's variance is not positive definite "
                                              r"\(its variance along feature 0, .* is within "
                                              r"rounding error of zero") as info:
        ml_update(stats, reg_covar=0.0)
    assert "increase reg_covar" in str(info.value)
    assert ml_update(stats, reg_covar=1e-6).covariances[1, 0] == pytest.approx(1e-6, rel=1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_component_collapsed_among_varied_data_is_refused(covariance_type):
    """100 varied frames and 100 copies of one point, two components, no regularisation:
    the component on the copies is refused by name; reg_covar repairs it."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(100, 2)), np.full((100, 2), 7.77)])
    kwargs = dict(n_components=2, covariance_type=covariance_type, random_state=0)
    if covariance_type == "tied":  # a shared covariance does not collapse with one cluster
        est = GaussianMixture(reg_covar=0.0, **kwargs).fit(X)
        _assert_finite_model(est, X)
        return
    with pytest.raises(CovarianceError, match=r"component \d's (covariance|variance) is not positive "
                                              r"definite") as info:
        GaussianMixture(reg_covar=0.0, **kwargs).fit(X)
    assert "increase reg_covar" in str(info.value)
    est = GaussianMixture(reg_covar=1e-6, **kwargs).fit(X)
    _assert_finite_model(est, X)
    collapsed = int(np.argmin(np.linalg.norm(est.means_ - 7.77, axis=1)))
    variances = (np.diagonal(est.covariances_, axis1=1, axis2=2) if covariance_type == "full"
                 else est.covariances_)
    np.testing.assert_allclose(variances[collapsed], 1e-6, rtol=1e-6)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
@pytest.mark.parametrize("offset", [0.0, 3.3, 1e3])
def test_frames_on_a_line_without_regularisation_are_refused(covariance_type, offset):
    """A full or tied covariance of frames on a line is singular: refused, never a spike."""
    t = np.random.default_rng(0).normal(size=200)
    X = np.column_stack([t, 2.0 * t + 0.1]) + offset
    expected = "the tied covariance" if covariance_type == "tied" else "component 0's covariance"
    with pytest.raises(CovarianceError, match=f"{expected} is not positive definite"):
        GaussianMixture(1, covariance_type=covariance_type, reg_covar=0.0).fit(X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("scale, offset", [(1e-6, 0.0), (1e-6, 1e5), (1e-150, 0.0), (1e100, 0.0)],
                         ids=["1e-6", "1e-6-at-1e5", "1e-150", "1e100"])
def test_small_and_large_scale_data_fit_without_regularisation(X, covariance_type, scale, offset):
    """The collapse check is relative: data scaled by any factor (or with a spread of 1e-6 at
    1e5 from the origin, still 7e4 units in the last place) fits with reg_covar=0, and gives
    the scaled fit of the unscaled data."""
    start = dict(weights_init=[0.5, 0.5], means_init=[[0.0, 0.0, 0.0], [6.0, 6.0, 6.0]])
    reference = GaussianMixture(2, covariance_type=covariance_type, reg_covar=0.0, **start).fit(X)
    est = GaussianMixture(2, covariance_type=covariance_type, reg_covar=0.0,
                          weights_init=start["weights_init"],
                          means_init=np.asarray(start["means_init"]) * scale + offset).fit(X * scale + offset)
    _assert_finite_model(est, X * scale + offset)
    rtol = 1e-9 if offset == 0 else 1e-3  # 1e5 + 1e-6 x is itself rounded to 1.5e-5 of x
    np.testing.assert_allclose(est.weights_, reference.weights_, rtol=rtol)
    np.testing.assert_allclose((est.means_ - offset) / scale, reference.means_, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(est.covariances_ / scale**2, reference.covariances_, rtol=rtol)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_constant_feature_gives_a_finite_model(X, covariance_type):
    Y = X.copy()
    Y[:, 1] = -3.25
    est = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(Y)
    _assert_finite_model(est, Y)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_duplicated_points_give_a_finite_model(covariance_type):
    """Five distinct points, each repeated 30 times, five components: each collapses onto
    one point (variance reg_covar) and the likelihood is large but finite."""
    rng = np.random.default_rng(1)
    points = rng.normal(scale=5.0, size=(5, 2))
    X = np.repeat(points, 30, axis=0)
    est = GaussianMixture(5, covariance_type=covariance_type, random_state=0).fit(X)
    _assert_finite_model(est, X)
    if covariance_type != "tied":
        distance = np.linalg.norm(est.means_[:, None] - points[None], axis=2)
        assert np.all(distance.min(axis=0) < 1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_more_components_than_distinct_points_is_finite(covariance_type):
    X = np.repeat(np.array([[0.0, 1.0], [3.0, -2.0]]), 20, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = GaussianMixture(4, covariance_type=covariance_type, random_state=0).fit(X)
    _assert_finite_model(est, X)


@pytest.mark.parametrize("scale", [1e-150, 1e100])
def test_extreme_scales_never_give_a_silent_nan_model(scale):
    """Either a finite model or a clear error; never NaN parameters or scores."""
    X = np.random.default_rng(2).normal(size=(100, 2)) * scale
    for covariance_type in COVARIANCE_TYPES:
        try:
            est = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
        except ValueError as exc:
            assert "not positive definite" in str(exc) or "finite" in str(exc)
            continue
        _assert_finite_model(est, X)


# ---------------------------------------------------------------------------- hyperparameters
@pytest.mark.parametrize("params, message", [
    ({"n_components": 0}, "n_components must be an integer >= 1; got 0"),
    ({"n_components": 2.5}, "n_components must be an integer >= 1; got 2.5"),
    ({"n_components": True}, "n_components must be an integer >= 1; got True"),
    ({"covariance_type": "foo"}, "covariance_type must be one of full, tied, diag, spherical; got 'foo'"),
    ({"tol": -1e-3}, "tol must be a non-negative number; got -0.001"),
    ({"tol": np.nan}, "tol must be a non-negative number; got nan"),
    ({"reg_covar": -1e-6}, "reg_covar must be a non-negative number; got -1e-06"),
    ({"max_iter": -1}, "max_iter must be an integer >= 0; got -1"),
    ({"n_init": 0}, "n_init must be an integer >= 1; got 0"),
    ({"init_params": "kmeans2"}, "init_params must be one of kmeans, k-means\\+\\+, random, "
                                 "random_from_data, split; got 'kmeans2'"),
    ({"dtype": np.float16}, "dtype must be float64 or float32"),
    ({"split_iter": -2}, "split_iter must be an integer >= 0; got -2"),
    ({"iter_per_split": -2}, "iter_per_split must be an integer >= 0; got -2"),
])
def test_invalid_hyperparameters(X, params, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(**{"n_components": 2, **params}).fit(X)
    with pytest.raises(ValueError, match=message):
        GaussianMixture(**{"n_components": 2, **params}).fit_chunks([X])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bad_initial_parameter_shapes(X, covariance_type):
    def fit(**init):
        return GaussianMixture(2, covariance_type=covariance_type, **init).fit(X)

    with pytest.raises(ValueError, match=r"weights_init must have shape \(2,\); got \(3,\)"):
        fit(weights_init=np.ones(3) / 3)
    with pytest.raises(ValueError, match="weights_init must lie in \\[0, 1\\] and sum to 1"):
        fit(weights_init=[0.7, 0.7])
    with pytest.raises(ValueError, match="weights_init must lie in \\[0, 1\\] and sum to 1"):
        fit(weights_init=[1.5, -0.5])
    with pytest.raises(ValueError, match=r"means_init must have shape \(2, 3\); got \(2, 2\)"):
        fit(means_init=np.zeros((2, 2)))
    expected = {"full": (2, 3, 3), "tied": (3, 3), "diag": (2, 3), "spherical": (2,)}[covariance_type]
    wrong = np.ones((4,) + expected)
    with pytest.raises(ValueError, match=f"precisions_init for covariance_type='{covariance_type}' "
                                         f"must have shape {re.escape(str(expected))}"):
        fit(precisions_init=wrong)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_non_positive_definite_precisions_init_names_the_component(X, covariance_type):
    precisions = {"full": np.array([np.eye(3), [[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]),
                  "tied": np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
                  "diag": np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 1.0]]),
                  "spherical": np.array([1.0, 0.0])}[covariance_type]
    expected = ("the tied covariance" if covariance_type == "tied"
                else "component 1's precision is not positive definite")
    with pytest.raises(CovarianceError, match=expected):
        GaussianMixture(2, covariance_type=covariance_type, precisions_init=precisions).fit(X)


def test_means_init_with_nan_is_refused(X):
    with pytest.raises(ValueError, match="component 1's mean is not finite"):
        GaussianMixture(2, covariance_type="diag",
                        means_init=[[0.0, 0.0, 0.0], [np.nan, 0.0, 0.0]]).fit(X)


# ---------------------------------------------------------------------------- chunk sources
def test_a_generator_is_refused_with_an_explanation(X):
    chunks = (X[i:i + 20] for i in range(0, 80, 20))
    with pytest.raises(TypeError, match="must be re-iterable \\(EM makes several passes\\).*"
                                        "not a generator or iterator"):
        GaussianMixture(2).fit_chunks(chunks)
    with pytest.raises(TypeError, match="re-iterable"):
        GaussianMixture(2).fit_chunks(iter([X]))
    # A function returning a fresh generator on each call is the supported streaming form.
    GaussianMixture(2, random_state=0).fit_chunks(lambda: (X[i:i + 20] for i in range(0, 80, 20)))
    with pytest.raises(TypeError, match="unsupported chunk source of type dict"):
        GaussianMixture(2).fit_chunks({"a": X})


def test_a_callable_source_that_yields_nothing(X):
    gmm = GMM([1.0], [[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]], "diag")
    with pytest.raises(ValueError, match="the data source yielded no frames"):
        run_em(gmm, lambda: iter([]))


# ---------------------------------------------------------------------------- not fitted
@pytest.mark.parametrize("use", [
    lambda est, X: est.predict(X),
    lambda est, X: est.predict_proba(X),
    lambda est, X: est.score_samples(X),
    lambda est, X: est.score(X),
    lambda est, X: est.bic(X),
    lambda est, X: est.aic(X),
    lambda est, X: est.sample(3),
    lambda est, X: est.weights_,
    lambda est, X: est.means_,
    lambda est, X: est.covariances_,
    lambda est, X: est.precisions_cholesky_,
    lambda est, X: est.gmm_,
    lambda est, X: est.save("never-written.gm"),
], ids=["predict", "predict_proba", "score_samples", "score", "bic", "aic", "sample", "weights_",
        "means_", "covariances_", "precisions_cholesky_", "gmm_", "save"])
def test_not_fitted_usage(X, use, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    est = GaussianMixture(2)
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        use(est, X)
    assert not (tmp_path / "never-written.gm").exists()
    assert not hasattr(est, "means_")  # NotFittedError is an AttributeError, as in scikit-learn


# ---------------------------------------------------------------------------- core objects
def test_gmm_constructor_validation():
    with pytest.raises(ValueError, match="weights must sum to 1; they sum to 0.9"):
        GMM([0.5, 0.4], [[0.0], [1.0]], [1.0, 1.0], "spherical")
    with pytest.raises(ValueError, match="weights must be finite and non-negative"):
        GMM([1.5, -0.5], [[0.0], [1.0]], [1.0, 1.0], "spherical")
    with pytest.raises(ValueError, match=r"weights must have shape \(2,\); got \(3,\)"):
        GMM([0.5, 0.25, 0.25], [[0.0], [1.0]], [1.0, 1.0], "spherical")
    with pytest.raises(ValueError, match=r"diag covariances must have shape \(2, 1\); got \(2,\)"):
        GMM([0.5, 0.5], [[0.0], [1.0]], [1.0, 1.0], "diag")
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        GMM([1.0], [[0.0]], [1.0], "foo")
    with pytest.raises(ValueError, match="dtype must be float64 or float32"):
        GMM([1.0], [[0.0]], [1.0], "spherical", dtype=np.int32)
    with pytest.raises(CovarianceError, match="component 1's variance is not positive definite"):
        GMM([0.5, 0.5], [[0.0], [1.0]], [[1.0], [0.0]], "diag")
    with pytest.raises(CovarianceError, match="component 0's covariance is not positive definite"):
        GMM([1.0], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]], "full")
    with pytest.raises(CovarianceError, match="non-finite"):
        GMM([1.0], [[0.0, 0.0]], [[[np.nan, 0.0], [0.0, 1.0]]], "full")


def test_log_joint_at_and_e_step_validation():
    gmm = GMM([0.5, 0.5], [[0.0], [1.0]], [1.0, 1.0], "spherical")
    X = np.zeros((4, 1))
    with pytest.raises(ValueError, match=r"indices must have shape \(4, C\); got \(3, 1\)"):
        gmm.log_joint_at(X, np.zeros((3, 1), dtype=int))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 2\)"):
        gmm.log_joint_at(X, np.full((4, 1), 2))
    other = SufficientStats.zeros(3, 1, "spherical")
    with pytest.raises(ValueError, match="stats are for a spherical mixture of shape \\(3, 1\\)"):
        gmm.e_step(X, stats=other)
    with pytest.raises(ValueError, match="cannot add statistics of different mixtures"):
        SufficientStats.zeros(2, 1, "spherical") + SufficientStats.zeros(2, 1, "diag")
    with pytest.raises(TypeError, match="cannot add SufficientStats and int"):
        SufficientStats.zeros(2, 1, "diag") + 3
    with pytest.raises(ValueError, match="second-order statistics of a full mixture must have shape"):
        SufficientStats("full", np.zeros(2), np.zeros((2, 3)), np.zeros((2, 3)))


def test_update_validation():
    gmm = GMM([0.5, 0.5], [[0.0], [1.0]], [[1.0], [1.0]], "diag")
    empty = SufficientStats.zeros(2, 1, "diag")
    with pytest.raises(ValueError, match="cannot update a mixture from empty statistics"):
        ml_update(empty)
    _, stats = gmm.e_step(np.array([[0.1], [0.9], [2.0]]))
    with pytest.raises(ValueError, match="reg_covar must be non-negative; got -1"):
        ml_update(stats, reg_covar=-1)
    with pytest.raises(ValueError, match="variance_floor must be finite and non-negative"):
        ml_update(stats, variance_floor=-0.1)
    with pytest.raises(ValueError, match="relevance_factor must be non-negative; got -1"):
        map_update(stats, gmm, relevance_factor=-1)
    with pytest.raises(ValueError, match="adapt must be a non-empty combination of 'w', 'm', 'v'; got 'x'"):
        map_update(stats, gmm, adapt="x")
    with pytest.raises(ValueError, match="adapt must be a non-empty combination"):
        map_update(stats, gmm, adapt="")
    wrong = GMM([1.0], [[0.0]], [[1.0]], "diag")
    with pytest.raises(ValueError, match="do not match the diag prior"):
        map_update(stats, wrong)


def test_ml_update_without_regularisation_names_the_collapsed_component():
    """Component 1's statistics are those of 1024 copies of one frame: ML variance exactly 0.

    (1024 frames, so that the 10 * eps the update adds to every occupancy vanishes in
    rounding; with a single frame it leaves a ~1e-14 variance instead of an error.)
    """
    n = 1024.0
    stats = SufficientStats("diag", zeroth=[2.0, n], first=[[1.0], [3.0 * n]],
                            second=[[1.0], [9.0 * n]], log_likelihood=-3.0, n_frames=2.0 + n)
    with pytest.raises(CovarianceError, match="component 1's variance is not positive definite"):
        ml_update(stats, reg_covar=0.0)
    repaired = ml_update(stats, reg_covar=1e-6)
    assert repaired.covariances[1, 0] == pytest.approx(1e-6, rel=1e-9)
    full = SufficientStats("full", zeroth=[2.0, n], first=[[1.0, 0.0], [3.0 * n, n]],
                           second=[[[1.0, 0.0], [0.0, 2.0]], [[9.0 * n, 3.0 * n], [3.0 * n, n]]],
                           log_likelihood=-3.0, n_frames=2.0 + n)
    with pytest.raises(CovarianceError, match="component 1's covariance is not positive definite"):
        ml_update(full, reg_covar=0.0)
