"""BayesianGaussianMixture: parity with scikit-learn, ELBO properties, pruning, persistence.

Parity: with ``init_params="random"`` or ``"random_from_data"`` and the same integer
``random_state`` both estimators start from identical responsibilities (speakergmm draws
exactly as scikit-learn does), so after ``max_iter = 1, 2, 3`` iterations with ``tol=0`` the
ELBO history and every fitted attribute must agree, for both weight priors and all four
covariance types, with default and with explicit priors.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.mixture import BayesianGaussianMixture as SklearnBayesianGaussianMixture

from speakergmm.io import ModelFileError, save_model_file
from speakergmm.mixture import BayesianGaussianMixture, ConvergenceWarning, NotFittedError
from speakergmm.mixture.bayesian import (
    responsibility_entropy,
    variational_elbo,
    variational_gmm,
    variational_update,
)
from speakergmm.mixture.stats import stats_from_responsibilities

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
RTOL, ATOL = 1e-7, 1e-9

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
              pytest.mark.filterwarnings("ignore::speakergmm.mixture.ConvergenceWarning")]


def _blobs(seed: int = 0, n_features: int = 3) -> np.ndarray:
    """Three correlated clusters of unequal size (a little overlap)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 0.5, 2.0], [0.5, 5.0, -2.0]])[:, :n_features]
    parts = []
    for centre, size in zip(centres, (150, 90, 60)):
        mixing = np.eye(n_features) + 0.3 * rng.normal(size=(n_features, n_features))
        parts.append(centre + rng.normal(size=(size, n_features)) @ mixing)
    return np.vstack(parts)


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    return _blobs()


def _explicit_priors(X: np.ndarray, covariance_type: str) -> dict:
    D = X.shape[1]
    cov = {"full": 2.0 * np.eye(D) + 0.3, "tied": 2.0 * np.eye(D) + 0.3,
           "diag": np.linspace(0.5, 2.0, D), "spherical": 1.5}[covariance_type]
    return dict(weight_concentration_prior=0.5, mean_precision_prior=0.3,
                mean_prior=np.full(D, 0.7), degrees_of_freedom_prior=D + 1.5, covariance_prior=cov)


def _assert_same(ours: BayesianGaussianMixture, ref: SklearnBayesianGaussianMixture, X: np.ndarray,
                 label: str) -> None:
    def close(a, b, name):
        np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                                   rtol=RTOL, atol=ATOL, err_msg=f"{label}: {name}")

    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_",
                 "mean_precision_", "degrees_of_freedom_", "weight_concentration_prior_",
                 "mean_precision_prior_", "mean_prior_", "degrees_of_freedom_prior_",
                 "covariance_prior_"):
        close(getattr(ours, name), getattr(ref, name), name)
    ours_conc, ref_conc = ours.weight_concentration_, ref.weight_concentration_
    if isinstance(ref_conc, tuple):
        assert isinstance(ours_conc, tuple) and len(ours_conc) == 2
        for a, b in zip(ours_conc, ref_conc):
            close(a, b, "weight_concentration_")
    else:
        close(ours_conc, ref_conc, "weight_concentration_")
    close(ours.lower_bound_, np.ravel(ref.lower_bound_)[0], "lower_bound_")
    close(ours.lower_bounds_, np.ravel(ref.lower_bounds_), "lower_bounds_")
    assert ours.n_iter_ == ref.n_iter_
    close(ours.score_samples(X), ref.score_samples(X), "score_samples")
    close(ours.predict_proba(X), ref.predict_proba(X), "predict_proba")
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X), err_msg=f"{label}: predict")


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", ["random", "random_from_data"])
def test_parity_with_sklearn_after_each_iteration(blobs, prior_type, covariance_type, init_params):
    for max_iter in (1, 2, 3):
        kwargs = dict(n_components=5, covariance_type=covariance_type, tol=0, max_iter=max_iter,
                      weight_concentration_prior_type=prior_type, init_params=init_params,
                      random_state=7)
        ours = BayesianGaussianMixture(**kwargs).fit(blobs)
        ref = SklearnBayesianGaussianMixture(**kwargs).fit(blobs)
        _assert_same(ours, ref, blobs, f"{prior_type}/{covariance_type}/{init_params}/{max_iter}")


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_parity_with_explicit_priors_to_convergence(blobs, prior_type, covariance_type):
    kwargs = dict(n_components=4, covariance_type=covariance_type, tol=1e-6, max_iter=300,
                  weight_concentration_prior_type=prior_type, init_params="random_from_data",
                  random_state=3, n_init=2, **_explicit_priors(blobs, covariance_type))
    ours = BayesianGaussianMixture(**kwargs).fit(blobs)
    ref = SklearnBayesianGaussianMixture(**kwargs).fit(blobs)
    assert ours.converged_ == ref.converged_
    _assert_same(ours, ref, blobs, f"{prior_type}/{covariance_type}")


def test_parity_on_fsdd_mfcc_frames(fsdd):
    """Real frames (60-dim MFCC + deltas of one speaker): same start, same result."""
    from speakergmm.features import FeatureConfig, extract_features

    files = sorted(fsdd.glob("*_jackson_4*.wav"))[:12]
    X = np.vstack([extract_features(f, FeatureConfig()) for f in files]).astype(np.float64)
    assert X.shape[0] > 300 and X.shape[1] == 60
    kwargs = dict(n_components=8, covariance_type="diag", tol=0, max_iter=4,
                  init_params="random_from_data", random_state=0)
    ours = BayesianGaussianMixture(**kwargs).fit(X)
    ref = SklearnBayesianGaussianMixture(**kwargs).fit(X)
    _assert_same(ours, ref, X, "fsdd")


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_far_from_the_origin_nothing_changes(blobs, covariance_type):
    """The ELBO and the fit are translation invariant (default priors follow the data), and
    the statistics' centred moments keep them exact to rounding at an offset of 1e5.

    (Not ``random_from_data``: its start gives responsibilities to K samples only, and for
    ``tied`` the statistics then stay raw to reproduce scikit-learn's update exactly.)"""
    kwargs = dict(n_components=3, covariance_type=covariance_type, tol=0, max_iter=8,
                  init_params="random", random_state=0)
    near = BayesianGaussianMixture(**kwargs).fit(blobs)
    far = BayesianGaussianMixture(**kwargs).fit(blobs + 1e5)
    np.testing.assert_allclose(far.lower_bounds_, near.lower_bounds_, rtol=1e-9)
    np.testing.assert_allclose(far.means_ - 1e5, near.means_, atol=1e-8)
    np.testing.assert_allclose(far.covariances_, near.covariances_, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_entropy_from_statistics_equals_the_direct_sum(blobs, covariance_type):
    """-sum r log r computed from the statistics equals the sum over responsibilities,
    also with sample weights."""
    est = BayesianGaussianMixture(n_components=4, covariance_type=covariance_type, max_iter=3,
                                  random_state=0, init_params="random").fit(blobs)
    gmm, _ = variational_gmm(est._posterior)
    w = np.random.default_rng(1).uniform(0.2, 3.0, size=blobs.shape[0])
    for weights in (None, w):
        _, stats = gmm.e_step(blobs, weights)
        resp = gmm.predict_proba(blobs)
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(resp > 0, resp * np.log(resp), 0.0).sum(axis=1)
        direct = -float(plogp.sum() if weights is None else weights @ plogp)
        assert responsibility_entropy(gmm, stats) == pytest.approx(direct, rel=1e-9, abs=1e-8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_components=st.integers(1, 6),
       covariance_type=st.sampled_from(COVARIANCE_TYPES), prior_type=st.sampled_from(PRIOR_TYPES),
       init_params=st.sampled_from(["random", "random_from_data", "kmeans"]))
def test_elbo_never_decreases(seed, n_components, covariance_type, prior_type, init_params):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 200))
    X = rng.normal(size=(n, 2)) * rng.uniform(0.5, 3.0, size=2) + rng.integers(0, 3, size=(n, 1)) * 4.0
    est = BayesianGaussianMixture(n_components=n_components, covariance_type=covariance_type,
                                  weight_concentration_prior_type=prior_type, tol=0, max_iter=25,
                                  init_params=init_params, random_state=seed).fit(X)
    history = np.asarray(est.lower_bounds_)
    assert np.all(np.isfinite(history))
    # Monotone up to rounding of an O(n) sum.
    assert np.all(np.diff(history) >= -1e-9 * (1.0 + np.abs(history[1:])))
    assert est.weights_.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_dirichlet_process_prunes_a_too_large_model(covariance_type):
    """3 well-separated clusters, 10 components allowed: 3 keep more than 1 % of the weight."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    X = np.vstack([c + rng.normal(size=(200, 2)) for c in centres])
    est = BayesianGaussianMixture(n_components=10, covariance_type=covariance_type,
                                  weight_concentration_prior_type="dirichlet_process",
                                  weight_concentration_prior=0.01, max_iter=500, tol=1e-4,
                                  random_state=0).fit(X)
    assert est.converged_
    big = est.weights_ > 0.01
    assert big.sum() == 3
    found = est.means_[big]
    assert np.all(np.min(np.linalg.norm(found[:, None] - centres[None], axis=2), axis=0) < 0.5)
    labels = est.predict(X)
    assert len(np.unique(labels)) == 3


def test_fitted_attributes_and_shapes(blobs):
    K, D = 4, blobs.shape[1]
    shapes = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}
    for cov, shape in shapes.items():
        dp = BayesianGaussianMixture(n_components=K, covariance_type=cov, random_state=0).fit(blobs)
        assert dp.covariances_.shape == shape and dp.precisions_.shape == shape
        assert isinstance(dp.weight_concentration_, tuple)
        assert dp.weight_concentration_[0].shape == (K,)
        assert dp.mean_precision_.shape == (K,) and dp.means_.shape == (K, D)
        if cov == "tied":
            assert isinstance(dp.degrees_of_freedom_, float)
        else:
            assert dp.degrees_of_freedom_.shape == (K,)
        dd = BayesianGaussianMixture(n_components=K, covariance_type=cov, random_state=0,
                                     weight_concentration_prior_type="dirichlet_distribution").fit(blobs)
        assert dd.weight_concentration_.shape == (K,)
        assert dd.n_features_in_ == D
        np.testing.assert_allclose(dd.predict_proba(blobs).sum(axis=1), 1.0)
        X_new, labels = dd.sample(50)
        assert X_new.shape == (50, D) and labels.shape == (50,)


def test_fit_chunks_equals_fit(blobs):
    kwargs = dict(n_components=4, covariance_type="full", tol=0, max_iter=6,
                  init_params="random_from_data", random_state=5)
    whole = BayesianGaussianMixture(**kwargs).fit(blobs)
    chunked = BayesianGaussianMixture(**kwargs).fit_chunks(np.array_split(blobs, 5))
    np.testing.assert_allclose(chunked.lower_bounds_, whole.lower_bounds_, rtol=1e-10)
    np.testing.assert_allclose(chunked.means_, whole.means_, rtol=1e-9, atol=1e-10)


def test_integer_sample_weights_equal_repeated_samples(blobs):
    """Weights enter the statistics and the default priors as counts."""
    from speakergmm.mixture.bayesian import _data_moments

    rng = np.random.default_rng(0)
    w = rng.integers(1, 4, size=blobs.shape[0]).astype(float)
    repeated = np.repeat(blobs, w.astype(int), axis=0)
    mean_w, cov_w = _data_moments([(blobs, w)])
    np.testing.assert_allclose(mean_w, repeated.mean(axis=0))
    np.testing.assert_allclose(cov_w, np.cov(repeated.T))
    est = BayesianGaussianMixture(n_components=3, covariance_type="diag", random_state=0, max_iter=2,
                                  tol=0).fit(blobs)
    gmm, _ = variational_gmm(est._posterior)
    stats_w = gmm.accumulate(blobs, w)
    stats_r = gmm.accumulate(repeated)
    priors = est._priors_
    a = variational_update(stats_w, priors, "dirichlet_process")
    b = variational_update(stats_r, priors, "dirichlet_process")
    np.testing.assert_allclose(a.covariances, b.covariances, rtol=1e-9)
    assert variational_elbo(a, responsibility_entropy(gmm, stats_w)) == pytest.approx(
        variational_elbo(b, responsibility_entropy(gmm, stats_r)), rel=1e-10)
    weighted = BayesianGaussianMixture(n_components=3, random_state=0).fit(blobs, sample_weight=w)
    assert weighted.converged_


def test_float32_estep_tracks_float64(blobs):
    kwargs = dict(n_components=4, covariance_type="diag", tol=0, max_iter=10,
                  init_params="random_from_data", random_state=1)
    f64 = BayesianGaussianMixture(**kwargs).fit(blobs)
    f32 = BayesianGaussianMixture(**kwargs, dtype=np.float32).fit(blobs)
    np.testing.assert_allclose(f32.lower_bounds_, f64.lower_bounds_, rtol=1e-5)
    np.testing.assert_allclose(f32.means_, f64.means_, atol=1e-4)


def test_warm_start_continues(blobs):
    est = BayesianGaussianMixture(n_components=3, max_iter=3, tol=0, random_state=0,
                                  init_params="random")
    est.fit(blobs)
    first = est.lower_bound_
    est.set_params(warm_start=True, max_iter=5, tol=1e-3)
    est.fit(blobs)
    assert est.lower_bound_ >= first - 1e-9
    ref = BayesianGaussianMixture(n_components=3, max_iter=8, tol=0, random_state=0,
                                  init_params="random").fit(blobs)
    assert est.lower_bound_ == pytest.approx(ref.lower_bounds_[est.n_iter_ + 2], rel=1e-10)


def test_max_iter_zero_keeps_the_initial_posterior(blobs):
    ours = BayesianGaussianMixture(n_components=3, max_iter=0, init_params="random_from_data",
                                   random_state=2).fit(blobs)
    ref = SklearnBayesianGaussianMixture(n_components=3, max_iter=0, init_params="random_from_data",
                                         random_state=2).fit(blobs)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=RTOL)
    assert ours.n_iter_ == 0 and ours.lower_bound_ == -np.inf


def test_convergence_warning(blobs):
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        BayesianGaussianMixture(n_components=3, max_iter=2, tol=0, random_state=0).fit(blobs)


def test_save_and_load_round_trip(tmp_path, blobs):
    for prior in PRIOR_TYPES:
        for cov in COVARIANCE_TYPES:
            est = BayesianGaussianMixture(n_components=3, covariance_type=cov, random_state=0,
                                          weight_concentration_prior_type=prior).fit(blobs)
            path = tmp_path / f"{prior}-{cov}.bgm"
            est.save(path)
            loaded = BayesianGaussianMixture.load(path)
            np.testing.assert_allclose(loaded.score_samples(blobs), est.score_samples(blobs), rtol=1e-12)
            np.testing.assert_allclose(loaded.weights_, est.weights_)
            np.testing.assert_allclose(loaded.covariance_prior_, est.covariance_prior_)
            assert loaded.get_params()["weight_concentration_prior_type"] == prior
            assert loaded.lower_bound_ == est.lower_bound_ and loaded.converged_ == est.converged_


def test_load_refuses_bad_files(tmp_path, blobs):
    est = BayesianGaussianMixture(n_components=3, covariance_type="diag", random_state=0).fit(blobs)
    good = tmp_path / "good.bgm"
    est.save(good)
    with pytest.raises(ModelFileError):
        BayesianGaussianMixture.load(tmp_path / "missing.bgm")
    (tmp_path / "junk.bgm").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="corrupt or unreadable"):
        BayesianGaussianMixture.load(tmp_path / "junk.bgm")
    from speakergmm.mixture import GaussianMixture

    GaussianMixture(2).fit(blobs).save(tmp_path / "gm.gm")
    with pytest.raises(ModelFileError, match="speakergmm.GaussianMixture"):
        BayesianGaussianMixture.load(tmp_path / "gm.gm")
    from speakergmm.io import load_model_file

    arrays, meta, _ = load_model_file(good, "speakergmm.BayesianGaussianMixture", (1,))
    bad = dict(arrays, covariances=-arrays["covariances"])
    save_model_file(tmp_path / "neg.bgm", "speakergmm.BayesianGaussianMixture", 1, bad, meta)
    with pytest.raises(ValueError, match=r"neg\.bgm: invalid BayesianGaussianMixture file"):
        BayesianGaussianMixture.load(tmp_path / "neg.bgm")
    short = dict(arrays, weight_concentration=arrays["weight_concentration"][:, :2])
    save_model_file(tmp_path / "short.bgm", "speakergmm.BayesianGaussianMixture", 1, short, meta)
    with pytest.raises(ValueError, match="weight_concentration must have shape"):
        BayesianGaussianMixture.load(tmp_path / "short.bgm")


@pytest.mark.parametrize("params, message", [
    ({"weight_concentration_prior_type": "pitman_yor"}, "weight_concentration_prior_type must be one of"),
    ({"weight_concentration_prior": 0.0}, "weight_concentration_prior must be a positive number"),
    ({"mean_precision_prior": -1.0}, "mean_precision_prior must be a positive number"),
    ({"degrees_of_freedom_prior": 1.5}, r"degrees_of_freedom_prior must be greater than n_features - 1 = 2"),
    ({"mean_prior": [0.0, 1.0]}, r"mean_prior must have shape \(3,\)"),
    ({"covariance_prior": np.eye(2)}, r"covariance_prior for covariance_type='full' must have shape \(3, 3\)"),
    ({"covariance_prior": -np.eye(3)}, "covariance_prior must be positive definite"),
    ({"covariance_prior": [[1, 2, 0], [0, 1, 0], [0, 0, 1]]}, "covariance_prior must be symmetric"),
    ({"covariance_type": "diag", "covariance_prior": [1.0, -1.0, 1.0]}, "must be positive"),
    ({"init_params": "split"}, "init_params must be one of kmeans, k-means\\+\\+, random, random_from_data"),
    ({"n_components": 0}, "n_components must be an integer >= 1"),
    ({"tol": -1.0}, "tol must be a non-negative number"),
    ({"random_state": "seven"}, "random_state must be None, an int"),
])
def test_bad_parameters_are_named(blobs, params, message):
    with pytest.raises(ValueError, match=message):
        BayesianGaussianMixture(n_components=params.pop("n_components", 2), **params).fit(blobs)


def test_bad_input(blobs):
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        BayesianGaussianMixture(n_components=5).fit(blobs[:3])
    with pytest.raises(ValueError, match="contains NaN or infinity"):
        BayesianGaussianMixture(n_components=2).fit(np.where(np.arange(9).reshape(3, 3) == 4, np.nan, 1.0))
    with pytest.raises(NotFittedError, match="BayesianGaussianMixture instance is not fitted"):
        BayesianGaussianMixture().predict(blobs)
    est = BayesianGaussianMixture(n_components=2, random_state=0).fit(blobs)
    with pytest.raises(ValueError, match="X has 2 features, but BayesianGaussianMixture is expecting 3 features as input"):
        est.score_samples(blobs[:, :2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the protocol methods must not warn
        assert "n_components=2" in repr(est)
