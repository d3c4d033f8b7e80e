"""Parity of the EM core with scikit-learn's GaussianMixture, iteration by iteration.

Both estimators start from identical parameters (``weights_init``, ``means_init``,
``precisions_init``) and run ``max_iter = 1, 2, 3, 4`` EM iterations with ``tol=0``; after
each, the parameters, per-sample log-likelihoods, responsibilities, ``lower_bound_``,
``lower_bounds_`` and ``n_iter_`` must agree to ``rtol=1e-7, atol=1e-9``, for the four
covariance types and on data far from the origin too. The float32 E-step is compared with
float64 at a stated tolerance.

Data far from the origin is also compared with an *exact* reference: EM is translation
equivariant, so scikit-learn fitted on the centred data (where its arithmetic is exact to
rounding) and shifted back gives the parameters the offset fit should produce.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from threadpoolctl import threadpool_limits

from speakergmm.mixture import GMM, ConvergenceWarning, GaussianMixture, n_parameters, run_em
from speakergmm.mixture.gaussian_mixture import ConvergenceWarning as CoreConvergenceWarning

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
PARAMETERS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")
RTOL, ATOL = 1e-7, 1e-9
N_COMPONENTS, N_FEATURES = 3, 3

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _blobs(seed: int = 0) -> np.ndarray:
    """Three correlated, partly overlapping clusters of unequal size around the origin."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 0.5, 2.0], [0.5, 4.0, -2.0]])
    sizes = (150, 90, 60)
    parts = []
    for centre, size in zip(centres, sizes):
        mixing = np.eye(N_FEATURES) + 0.3 * rng.normal(size=(N_FEATURES, N_FEATURES))
        parts.append(centre + rng.normal(size=(size, N_FEATURES)) @ mixing)
    return np.vstack(parts)


def _initial_parameters(X: np.ndarray, covariance_type: str):
    """Deliberately rough starting point (so that EM moves a lot in the first iterations)."""
    weights = np.array([0.5, 0.3, 0.2])
    means = X.mean(axis=0) + np.array([[-1.0, -1.0, 0.0], [2.0, 0.0, 1.0], [0.0, 2.0, -1.0]])
    variances = X.var(axis=0)
    K = N_COMPONENTS
    precisions = {
        "full": np.stack([np.diag(1.0 / variances) for _ in range(K)]),
        "tied": np.diag(1.0 / variances),
        "diag": np.tile(1.0 / variances, (K, 1)) * np.array([[1.0], [1.5], [2.0]]),
        "spherical": np.array([1.0, 1.5, 2.0]) / variances.mean(),
    }[covariance_type]
    return weights, means, precisions


def _fit_pair(X, covariance_type, max_iter, tol=0.0, means_shift=0.0, ours_only=None, **extra):
    """The same EM run in scikit-learn and in speakergmm, from identical parameters.

    ``extra`` goes to both estimators, ``ours_only`` (e.g. ``dtype``) to speakergmm's.
    """
    weights, means, precisions = _initial_parameters(X - means_shift, covariance_type)
    kwargs = dict(n_components=N_COMPONENTS, covariance_type=covariance_type, tol=tol,
                  max_iter=max_iter, weights_init=weights, means_init=means + means_shift,
                  precisions_init=precisions, random_state=0, **extra)
    # With all three *_init given the initialisation method is irrelevant; scikit-learn
    # still runs it, and its k-means would dominate the runtime of these tests.
    kwargs.setdefault("init_params", "random_from_data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = SklearnGaussianMixture(**kwargs).fit(X)
        ours = GaussianMixture(**kwargs, **(ours_only or {})).fit(X)
    return reference, ours


def _assert_same_model(ours, reference, X, shift=0.0, rtol=RTOL, atol=ATOL, X_reference=None):
    """Parameters, log-likelihoods and responsibilities agree (means compared after ``shift``)."""
    X_reference = X if X_reference is None else X_reference
    for name in PARAMETERS:
        expected = getattr(reference, name) + (shift if name == "means_" else 0.0)
        np.testing.assert_allclose(getattr(ours, name), expected, rtol=rtol, atol=atol,
                                   err_msg=name)
    np.testing.assert_allclose(ours.score_samples(X), reference.score_samples(X_reference),
                               rtol=rtol, atol=atol, err_msg="score_samples")
    np.testing.assert_allclose(ours.predict_proba(X), reference.predict_proba(X_reference),
                               rtol=rtol, atol=atol, err_msg="predict_proba")


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """Tiny matrices: multi-threaded BLAS only adds overhead (30x on a loaded 2-core box)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    return _blobs()


# ---------------------------------------------------------------------------- EM iterations
@pytest.mark.parametrize("offset", [0.0, 1e3], ids=["origin", "offset1e3"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_every_em_iteration_matches_sklearn(blobs, covariance_type, offset):
    X = blobs + offset
    previous_score = None
    for max_iter in (1, 2, 3, 4):
        reference, ours = _fit_pair(X, covariance_type, max_iter, means_shift=offset)
        _assert_same_model(ours, reference, X)
        assert ours.n_iter_ == reference.n_iter_ == max_iter
        assert ours.converged_ is reference.converged_ is False
        np.testing.assert_allclose(ours.lower_bound_, reference.lower_bound_, rtol=1e-10)
        np.testing.assert_allclose(ours.lower_bounds_, reference.lower_bounds_, rtol=1e-10)
        # lower_bound_ is the mean log-likelihood of the parameters *before* the last
        # M-step: that is, of the model after max_iter - 1 iterations.
        if previous_score is not None:
            np.testing.assert_allclose(ours.lower_bound_, previous_score, rtol=1e-10)
        previous_score = ours.score(X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_offset_data_matches_exact_translated_reference(blobs, covariance_type):
    """1e3 away from the origin (1e3 cluster widths) the fit is still exact to 1e-7."""
    offset = 1e3
    X = blobs + offset
    for max_iter in (1, 3):
        _, ours = _fit_pair(X, covariance_type, max_iter, means_shift=offset)
        centred, _ = _fit_pair(blobs, covariance_type, max_iter)
        _assert_same_model(ours, centred, X, shift=offset, X_reference=blobs)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_far_offset_is_no_less_accurate_than_sklearn(blobs, covariance_type):
    """1e5 cluster widths from the origin: our error vs the exact reference is at most
    10x scikit-learn's (plus rtol 1e-7).

    scikit-learn's own tied/diag/spherical updates use the moment form and lose precision
    here too; ours use moments centred on the mixture (see the next test).
    """
    offset = 1e5
    X = blobs + offset
    reference, ours = _fit_pair(X, covariance_type, 3, means_shift=offset)
    exact, _ = _fit_pair(blobs, covariance_type, 3)
    for name in ("covariances_", "precisions_cholesky_"):
        truth = getattr(exact, name)
        scale = ATOL + RTOL * np.abs(truth)
        our_error = np.max(np.abs(getattr(ours, name) - truth) / scale)
        sklearn_error = np.max(np.abs(getattr(reference, name) - truth) / scale)
        assert our_error <= 10 * sklearn_error + 1.0, (name, our_error, sklearn_error)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_far_offset_fit_is_as_accurate_as_at_the_origin(blobs, covariance_type):
    """1e7 cluster widths from the origin, where raw moments lose eps * 1e14 ~ 2 % of a
    variance: centred statistics give the translated exact fit to 1e-6."""
    offset = 1e7
    _, ours = _fit_pair(blobs + offset, covariance_type, 3, means_shift=offset)
    _, exact = _fit_pair(blobs, covariance_type, 3)
    np.testing.assert_allclose(ours.means_ - offset, exact.means_, rtol=0, atol=1e-6)
    for name in ("weights_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(exact, name), rtol=1e-6, atol=1e-9,
                                   err_msg=name)


# ---------------------------------------------------------------------------- convergence
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_convergence_semantics_match_sklearn(blobs, covariance_type):
    """With tol > 0: same n_iter_, converged_, lower_bound_ and lower_bounds_ history."""
    reference, ours = _fit_pair(blobs, covariance_type, max_iter=200, tol=1e-4)
    assert reference.converged_ and ours.converged_
    assert ours.n_iter_ == reference.n_iter_ > 2
    assert len(ours.lower_bounds_) == ours.n_iter_
    np.testing.assert_allclose(ours.lower_bounds_, reference.lower_bounds_, rtol=1e-9)
    np.testing.assert_allclose(ours.lower_bound_, reference.lower_bound_, rtol=1e-10)
    _assert_same_model(ours, reference, blobs, rtol=1e-6, atol=1e-8)


def test_not_converging_warns_and_reports_max_iter(blobs):
    weights, means, precisions = _initial_parameters(blobs, "diag")
    est = GaussianMixture(3, covariance_type="diag", tol=1e-12, max_iter=2, weights_init=weights,
                          means_init=means, precisions_init=precisions)
    with pytest.warns(CoreConvergenceWarning, match="max_iter=2"):
        est.fit(blobs)
    assert est.n_iter_ == 2 and est.converged_ is False
    assert ConvergenceWarning is CoreConvergenceWarning


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_warm_start_convergence_matches_sklearn(blobs, covariance_type):
    """A warm start compares its first bound with the previous lower_bound_ (not -inf), so
    refitting a converged model stops after one iteration, as in scikit-learn."""
    reference, ours = _fit_pair(blobs, covariance_type, max_iter=200, tol=1e-3,
                                warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.fit(blobs)
        ours.fit(blobs)
    assert reference.n_iter_ == 1 and reference.converged_
    assert ours.n_iter_ == reference.n_iter_ and ours.converged_
    np.testing.assert_allclose(ours.lower_bound_, reference.lower_bound_, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_warm_start_continues_like_sklearn(blobs, covariance_type):
    """Three warm-started fits of one iteration each == one fit of three iterations."""
    reference, ours = _fit_pair(blobs, covariance_type, max_iter=1, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):
            reference.fit(blobs)
            ours.fit(blobs)
    _assert_same_model(ours, reference, blobs)
    _, three = _fit_pair(blobs, covariance_type, max_iter=3)
    _assert_same_model(ours, three, blobs)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_likelihood_never_decreases(blobs, covariance_type):
    """Estimator history, run_em history and the scores of successive models all increase."""
    _, ours = _fit_pair(blobs, covariance_type, max_iter=30)
    history = np.asarray(ours.lower_bounds_)
    assert history.shape == (30,)
    assert np.all(np.diff(history) >= -1e-10 * np.abs(history[1:]))
    assert history[-1] > history[0] + 0.1  # the rough start is well below the optimum

    weights, means, precisions = _initial_parameters(blobs, covariance_type)
    start = GMM.from_precisions(weights, means, precisions, covariance_type)
    scores = []
    result = run_em(start, blobs, max_iter=30, tol=0.0,
                    callback=lambda i, bound, gmm: scores.append(gmm.score_samples(blobs).mean()))
    np.testing.assert_allclose(result.history, history, rtol=1e-10)
    assert result.n_iter == 30 and not result.converged
    # The bound of iteration i+1 is the score of the model produced by iteration i.
    np.testing.assert_allclose(scores[:-1], result.history[1:], rtol=1e-10)
    assert np.all(np.diff(scores) >= -1e-10 * np.abs(scores[1:]))


# ---------------------------------------------------------------------------- criteria
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bic_aic_and_parameter_count_match_sklearn(blobs, covariance_type):
    reference, ours = _fit_pair(blobs, covariance_type, max_iter=5)
    assert n_parameters(N_COMPONENTS, N_FEATURES, covariance_type) == reference._n_parameters()
    held_out = _blobs(seed=1)
    for X in (blobs, held_out):
        np.testing.assert_allclose(ours.bic(X), reference.bic(X), rtol=1e-9)
        np.testing.assert_allclose(ours.aic(X), reference.aic(X), rtol=1e-9)
        np.testing.assert_allclose(ours.score(X), reference.score(X), rtol=1e-9)
    assert ours.bic(blobs) - ours.aic(blobs) == pytest.approx(
        reference._n_parameters() * (np.log(blobs.shape[0]) - 2), rel=1e-9)


# ---------------------------------------------------------------------------- float32
# Stated tolerance of the float32 E-step against float64, after 5 EM iterations on data
# 0 and 100 cluster widths from the origin: parameters within 2e-4 of the largest entry,
# per-sample log-likelihoods and responsibilities within 1e-3 (absolute), lower bound
# within 1e-5 (absolute). Measured: at most 1.5e-5, 1.1e-4, 2.3e-5 and 7.7e-7.
F32_PARAMETER_RTOL, F32_SAMPLE_ATOL, F32_BOUND_ATOL = 2e-4, 1e-3, 1e-5


@pytest.mark.parametrize("offset", [0.0, 100.0], ids=["origin", "offset100"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_estep_is_close_to_float64(blobs, covariance_type, offset):
    X = blobs + offset
    _, double = _fit_pair(X, covariance_type, max_iter=5, means_shift=offset)
    _, single = _fit_pair(X, covariance_type, max_iter=5, means_shift=offset,
                         ours_only={"dtype": np.float32})
    assert single.gmm_.dtype == np.float32 and double.gmm_.dtype == np.float64
    for name in PARAMETERS:
        ours, expected = getattr(single, name), getattr(double, name)
        assert ours.dtype == np.float64, name  # parameters stay float64
        np.testing.assert_allclose(ours, expected, rtol=0,
                                   atol=F32_PARAMETER_RTOL * np.max(np.abs(expected)), err_msg=name)
    np.testing.assert_allclose(single.score_samples(X), double.score_samples(X), rtol=0,
                               atol=F32_SAMPLE_ATOL)
    np.testing.assert_allclose(single.predict_proba(X), double.predict_proba(X), rtol=0,
                               atol=F32_SAMPLE_ATOL)
    np.testing.assert_allclose(single.lower_bound_, double.lower_bound_, rtol=0,
                               atol=F32_BOUND_ATOL)


@pytest.mark.parametrize("init_params", ["random", "random_from_data"])
@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_random_initialisations_draw_like_sklearn(blobs, init_params, covariance_type):
    """The same integer random_state gives scikit-learn's start (speakergmm.mixture.init),
    and EM from it ends at scikit-learn's result."""
    kwargs = dict(n_components=3, covariance_type=covariance_type, init_params=init_params,
                  random_state=11, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for max_iter in (0, 5):
            ours = GaussianMixture(max_iter=max_iter, **kwargs).fit(blobs)
            ref = SklearnGaussianMixture(max_iter=max_iter, **kwargs).fit(blobs)
            # scikit-learn's start leaves weights_ = n_k / n_samples, unnormalised (0.01 each
            # for one frame per component of 300): only a common factor, the same responsibilities.
            np.testing.assert_allclose(ours.weights_, ref.weights_ / ref.weights_.sum(), rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-5, atol=1e-8)
