"""Invariants of the EM core, checked with hypothesis on random mixtures and data.

Hypothesis chooses the structure (sizes, covariance type, scale, offset, split points,
chunk boundaries, weights) and a seed; the arrays themselves come from numpy so that the
mixtures are valid (positive definite covariances, weights summing to one).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from threadpoolctl import threadpool_limits

from speakergmm.mixture import (
    GMM,
    GaussianMixture,
    SufficientStats,
    map_update,
    ml_update,
    run_em,
    stats_from_responsibilities,
)

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

covariance_types = st.sampled_from(COVARIANCE_TYPES)
seeds = st.integers(0, 2**32 - 1)
n_components = st.integers(1, 4)
n_features = st.integers(1, 4)


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """Tiny matrices: multi-threaded BLAS only adds overhead (30x on a loaded 2-core box)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def random_gmm(rng: np.random.Generator, K: int, D: int, covariance_type: str, scale: float = 1.0,
               offset: float = 0.0, dtype: type = np.float64) -> GMM:
    """A valid random mixture: means spread over a few cluster widths ``scale``."""
    weights = rng.dirichlet(np.ones(K))
    weights /= weights.sum()
    means = offset + scale * rng.normal(scale=3.0, size=(K, D))
    if covariance_type == "full":
        A = rng.normal(size=(K, D, D))
        covariances = scale**2 * (A @ A.transpose(0, 2, 1) / D + 0.1 * np.eye(D))
    elif covariance_type == "tied":
        A = rng.normal(size=(D, D))
        covariances = scale**2 * (A @ A.T / D + 0.1 * np.eye(D))
    elif covariance_type == "diag":
        covariances = scale**2 * rng.uniform(0.1, 2.0, size=(K, D))
    else:
        covariances = scale**2 * rng.uniform(0.1, 2.0, size=K)
    return GMM(weights, means, covariances, covariance_type, dtype=dtype)


def random_frames(rng: np.random.Generator, gmm: GMM, n: int, spread: float = 1.0) -> np.ndarray:
    """Frames around the mixture (``spread`` > 1 reaches well outside it)."""
    scale = np.sqrt(np.mean(np.abs(gmm.covariances)))
    return gmm.means.mean(axis=0) + spread * scale * rng.normal(scale=4.0, size=(n, gmm.n_features))


def assert_stats_close(actual: SufficientStats, expected: SufficientStats, rtol: float = 1e-10):
    assert actual.covariance_type == expected.covariance_type
    for name in ("zeroth", "first", "second"):
        a, e = getattr(actual, name), getattr(expected, name)
        assert a.shape == e.shape, name
        np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * max(1.0, np.max(np.abs(e), initial=0)),
                                   err_msg=name)
    assert actual.n_frames == pytest.approx(expected.n_frames, rel=rtol, abs=rtol)
    assert actual.log_likelihood == pytest.approx(expected.log_likelihood, rel=rtol, abs=rtol)


def reference_log_joint(gmm: GMM, X: np.ndarray) -> np.ndarray:
    """log w_k + log N(x | mu_k, Sigma_k) from scipy, one component at a time."""
    D = gmm.n_features
    out = np.empty((X.shape[0], gmm.n_components))
    for k in range(gmm.n_components):
        cov = {"full": lambda: gmm.covariances[k], "tied": lambda: gmm.covariances,
               "diag": lambda: np.diag(gmm.covariances[k]),
               "spherical": lambda: gmm.covariances[k] * np.eye(D)}[gmm.covariance_type]()
        out[:, k] = np.log(gmm.weights[k]) + multivariate_normal.logpdf(X, gmm.means[k], cov)
    return out


# ---------------------------------------------------------------------------- E-step
@SETTINGS
@given(seed=seeds, K=n_components, D=n_features, covariance_type=covariance_types,
       n=st.integers(1, 40), scale=st.sampled_from([1e-3, 1.0, 1e3]),
       offset=st.sampled_from([0.0, 50.0, -1e4]), spread=st.sampled_from([1.0, 30.0]))
def test_estep_matches_scipy_and_responsibilities_sum_to_one(seed, K, D, covariance_type, n, scale,
                                                              offset, spread):
    rng = np.random.default_rng(seed)
    gmm = random_gmm(rng, K, D, covariance_type, scale, offset * scale)
    X = random_frames(rng, gmm, n, spread)
    log_joint = gmm.log_joint(X)
    expected = reference_log_joint(gmm, X)
    np.testing.assert_allclose(log_joint, expected, rtol=1e-9, atol=1e-9 * np.max(np.abs(expected)))
    log_prob = gmm.score_samples(X)
    np.testing.assert_allclose(log_prob, logsumexp(expected, axis=1), rtol=1e-9,
                               atol=1e-9 * np.max(np.abs(expected)))
    resp = gmm.predict_proba(X)
    assert np.all(resp >= 0)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    e_log_prob, stats = gmm.e_step(X)
    np.testing.assert_array_equal(e_log_prob, log_prob)
    np.testing.assert_allclose(stats.zeroth, resp.sum(axis=0), rtol=1e-10, atol=1e-10)
    assert stats.n_frames == n
    assert stats.log_likelihood == pytest.approx(log_prob.sum(), rel=1e-12)

    single = gmm.astype(np.float32)
    resp32 = single.predict_proba(X)
    assert resp32.dtype == np.float32 and np.all(resp32 >= 0)
    np.testing.assert_allclose(resp32.sum(axis=1), 1.0, rtol=0, atol=1e-5)


@SETTINGS
@given(seed=seeds, K=st.integers(1, 5), D=n_features, covariance_type=covariance_types,
       n=st.integers(1, 30), C=st.integers(1, 5), single=st.booleans())
def test_log_joint_at_equals_gathered_log_joint(seed, K, D, covariance_type, n, C, single):
    rng = np.random.default_rng(seed)
    gmm = random_gmm(rng, K, D, covariance_type, dtype=np.float32 if single else np.float64)
    X = random_frames(rng, gmm, n)
    indices = rng.integers(0, K, size=(n, C))  # repeats allowed, any order
    at = gmm.log_joint_at(X, indices)
    assert at.shape == (n, C)
    gathered = np.take_along_axis(gmm.log_joint(X), indices, axis=1)
    rtol = 1e-5 if single else 1e-12
    np.testing.assert_allclose(at, gathered, rtol=rtol, atol=rtol * np.max(np.abs(gathered)))


# ---------------------------------------------------------------------------- statistics
@SETTINGS
@given(seed=seeds, K=n_components, D=n_features, covariance_type=covariance_types,
       n=st.integers(0, 50), data=st.data(), weighted=st.booleans())
def test_stats_of_two_halves_sum_to_stats_of_whole(seed, K, D, covariance_type, n, data, weighted):
    rng = np.random.default_rng(seed)
    gmm = random_gmm(rng, K, D, covariance_type, offset=20.0)
    X = random_frames(rng, gmm, n)
    w = rng.uniform(0, 3, size=n) if weighted else None
    split = data.draw(st.integers(0, n), label="split")
    whole_log_prob, whole = gmm.e_step(X, w)
    first_log_prob, first = gmm.e_step(X[:split], None if w is None else w[:split])
    second_log_prob, second = gmm.e_step(X[split:], None if w is None else w[split:])
    np.testing.assert_allclose(np.concatenate([first_log_prob, second_log_prob]), whole_log_prob,
                               rtol=1e-12)
    assert_stats_close(first + second, whole)
    assert_stats_close(sum([first, second]), whole)
    # Accumulating into an existing accumulator is the same as adding.
    running = first.copy()
    gmm.e_step(X[split:], None if w is None else w[split:], stats=running)
    assert_stats_close(running, whole)
    # The E-step's statistics are those of its own responsibilities.
    assert_stats_close(whole, _with_likelihood(
        stats_from_responsibilities(X, gmm.predict_proba(X), w, covariance_type), whole), rtol=1e-8)


def _raw_moments(X: np.ndarray, resp: np.ndarray, w: np.ndarray | None, covariance_type: str):
    """Raw moments straight from the definition (float64, no shift)."""
    g = resp if w is None else resp * w[:, None]
    if covariance_type == "full":
        second = np.einsum("nk,ni,nj->kij", g, X, X)
    elif covariance_type == "tied":
        second = (X if w is None else X * w[:, None]).T @ X
    else:
        second = g.T @ (X * X)
    return g.sum(axis=0), g.T @ X, second


@SETTINGS
@given(seed=seeds, K=n_components, D=n_features, covariance_type=covariance_types,
       n=st.integers(1, 40), weighted=st.booleans())
def test_stats_with_different_shifts_add_exactly(seed, K, D, covariance_type, n, weighted):
    """Statistics of two mixtures with different centres (different shifts) add to the
    statistics of the whole, whichever shift the sum keeps, and re-express exactly."""
    rng = np.random.default_rng(seed)
    gmm = random_gmm(rng, K, D, covariance_type, offset=20.0)
    moved = GMM(gmm.weights, gmm.means + rng.uniform(-30, 30, size=D), gmm.covariances,
                covariance_type)
    X = random_frames(rng, gmm, n)
    w = rng.uniform(0, 3, size=n) if weighted else None
    # Same responsibilities from both (moved evaluates moved frames), different shifts.
    _, a = gmm.e_step(X, w)
    _, b = moved.e_step(X + (moved.means[0] - gmm.means[0]), w)
    assert not np.array_equal(a.shift, b.shift)
    raw = _raw_moments(X + (moved.means[0] - gmm.means[0]), gmm.predict_proba(X), w, covariance_type)
    for total in (a.about(b.shift) + b, b + a, sum([b, a])):
        np.testing.assert_allclose(total.zeroth, 2 * raw[0], rtol=1e-10)
        # b's frames are a's plus the move: compare with raw moments of both halves.
        expected = _raw_moments(np.vstack([X, X + (moved.means[0] - gmm.means[0])]),
                                np.vstack([gmm.predict_proba(X)] * 2),
                                None if w is None else np.concatenate([w, w]), covariance_type)
        scale = max(1.0, np.max(np.abs(expected[2])))
        np.testing.assert_allclose(total.first, expected[1], rtol=1e-10, atol=1e-10 * scale)
        np.testing.assert_allclose(total.second, expected[2], rtol=1e-10, atol=1e-10 * scale)
        assert total.n_frames == pytest.approx(a.n_frames + b.n_frames, rel=1e-12)
    # Re-expressing about a point and back is exact up to rounding; raw = about the origin.
    there_and_back = a.about(b.shift).about(a.shift)
    np.testing.assert_allclose(there_and_back.centred_second, a.centred_second, rtol=1e-9,
                               atol=1e-9 * max(1.0, np.max(np.abs(a.centred_second))))
    origin = a.about(np.zeros(D))
    np.testing.assert_array_equal(origin.centred_first, a.first)
    np.testing.assert_array_equal(origin.centred_second, a.second)


def test_stats_keep_centred_moments_far_from_the_origin():
    """Frames 1e8 from the origin with unit spread: the stored moments are about the
    mixture's centre, so the scatter (and the ML variance) keeps full precision, also
    after adding statistics from another mixture whose centre is nearby."""
    rng = np.random.default_rng(3)
    X = 1e8 + rng.normal(size=(500, 2))
    gmm = GMM([1.0], [[1e8, 1e8]], [[1.0, 1.0]], "diag")
    moved = GMM([1.0], [[1e8 + 0.5, 1e8 - 0.25]], [[1.0, 1.0]], "diag")
    _, stats = gmm.e_step(X[:250])
    moved.e_step(X[250:], stats=stats)
    truth = ((X - X.mean(axis=0)) ** 2).sum(axis=0)
    np.testing.assert_allclose(stats.scatter()[0], truth, rtol=1e-9)
    np.testing.assert_allclose(ml_update(stats, reg_covar=0.0).covariances[0], X.var(axis=0), rtol=1e-9)
    # The raw moments exist, but a variance from them would be rounding noise.
    raw = stats.second[0] / 500 - (stats.first[0] / 500) ** 2
    assert np.max(np.abs(raw - X.var(axis=0))) > 1e-3


def test_raw_moments_are_read_only_and_assignable():
    gmm = GMM([0.5, 0.5], [[10.0, 0.0], [12.0, 1.0]], [[1.0, 1.0], [1.0, 2.0]], "diag")
    X = np.random.default_rng(0).normal(size=(20, 2)) + [11.0, 0.5]
    _, stats = gmm.e_step(X)
    assert stats.shift.any()
    with pytest.raises(ValueError, match="read-only"):
        stats.first[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        stats.second += 1.0
    first, second = stats.first, stats.second
    # Assigning raw moments stores them about the origin; the other moment is kept.
    stats.first = 2.0 * first
    np.testing.assert_array_equal(stats.shift, 0.0)
    np.testing.assert_array_equal(stats.first, 2.0 * first)
    np.testing.assert_allclose(stats.second, second, rtol=1e-14)
    with pytest.raises(ValueError, match="do not fit statistics"):
        stats.second = np.zeros((3, 2))
    half = stats.scaled(0.5)
    np.testing.assert_allclose(half.first, first, rtol=1e-15)
    assert half.n_frames == 10.0


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_scatter_is_the_within_component_scatter(covariance_type):
    rng = np.random.default_rng(4)
    gmm = random_gmm(rng, 3, 3, covariance_type, offset=50.0)
    X = random_frames(rng, gmm, 60)
    resp = gmm.predict_proba(X)
    _, stats = gmm.e_step(X)
    means = (resp.T @ X) / resp.sum(axis=0)[:, None]
    per_component = np.einsum("nk,nki,nkj->kij", resp, X[:, None] - means, X[:, None] - means)
    expected = {"full": per_component, "tied": per_component.sum(axis=0),
                "diag": np.diagonal(per_component, axis1=1, axis2=2),
                "spherical": np.diagonal(per_component, axis1=1, axis2=2)}[covariance_type]
    np.testing.assert_allclose(stats.scatter(), expected, rtol=1e-9, atol=1e-9)


def test_stats_arrays_without_shift_are_raw_moments():
    """Arrays written before statistics had a shift still load (as raw moments)."""
    gmm = GMM([0.5, 0.5], [[10.0], [12.0]], [[1.0], [2.0]], "diag")
    _, stats = gmm.e_step(np.array([[9.0], [11.5], [13.0]]))
    old = {"covariance_type": np.array("diag"), "zeroth": stats.zeroth, "first": stats.first,
           "second": stats.second, "log_likelihood": np.array(stats.log_likelihood),
           "n_frames": np.array(stats.n_frames)}
    restored = SufficientStats.from_arrays(old)
    np.testing.assert_array_equal(restored.shift, [0.0])
    np.testing.assert_array_equal(restored.first, stats.first)
    np.testing.assert_array_equal(restored.second, stats.second)
    np.testing.assert_allclose((restored + stats).first, 2 * stats.first, rtol=1e-14)
    with pytest.raises(ValueError, match=r"shift must be a finite array of shape \(1,\)"):
        SufficientStats("diag", [1.0], [[1.0]], [[1.0]], shift=[0.0, 1.0])


def _with_likelihood(stats: SufficientStats, source: SufficientStats) -> SufficientStats:
    stats.log_likelihood = source.log_likelihood
    return stats


@SETTINGS
@given(seed=seeds, K=n_components, D=n_features, covariance_type=covariance_types,
       n=st.integers(1, 30), data=st.data())
def test_integer_sample_weight_equals_repeating_frames(seed, K, D, covariance_type, n, data):
    rng = np.random.default_rng(seed)
    gmm = random_gmm(rng, K, D, covariance_type)
    X = random_frames(rng, gmm, n)
    counts = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n), label="counts"))
    repeated = np.repeat(X, counts, axis=0)
    _, weighted = gmm.e_step(X, counts.astype(float))
    _, expected = gmm.e_step(repeated)
    assert_stats_close(weighted, expected)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_with_sample_weight_two_equals_fit_on_repeated_frame(covariance_type):
    rng = np.random.default_rng(5)
    truth = random_gmm(rng, 2, 2, covariance_type)
    X = truth.sample(60, random_state=1)[0]
    w = np.ones(60)
    w[[3, 17, 40]] = 2.0
    repeated = np.vstack([X, X[[3, 17, 40]]])
    kwargs = dict(n_components=2, covariance_type=covariance_type, tol=0, max_iter=4,
                  weights_init=truth.weights, means_init=truth.means + 0.3,
                  precisions_init=truth.precisions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = GaussianMixture(**kwargs).fit(X, sample_weight=w)
        b = GaussianMixture(**kwargs).fit(repeated)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-10, atol=1e-12)
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=1e-12)


@SETTINGS
@given(seed=seeds, K=n_components, D=n_features, covariance_type=covariance_types)
def test_stats_array_round_trip(seed, K, D, covariance_type):
    rng = np.random.default_rng(seed)
    gmm = random_gmm(rng, K, D, covariance_type)
    _, stats = gmm.e_step(random_frames(rng, gmm, 25), rng.uniform(0, 2, size=25))
    buffer = io.BytesIO()
    np.savez(buffer, **stats.to_arrays())  # what crosses processes and machines
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as archive:
        restored = SufficientStats.from_arrays(dict(archive))
    assert restored.covariance_type == covariance_type
    for name in ("zeroth", "first", "second", "centred_first", "centred_second", "shift"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(stats, name))
    assert restored.log_likelihood == stats.log_likelihood
    assert restored.n_frames == stats.n_frames
    # The same for the mixture itself.
    again = GMM.from_arrays(gmm.to_arrays())
    np.testing.assert_array_equal(again.covariances, gmm.covariances)
    X = random_frames(rng, gmm, 5)
    np.testing.assert_array_equal(again.log_joint(X), gmm.log_joint(X))


# ---------------------------------------------------------------------------- updates
@SETTINGS
@given(seed=seeds, K=n_components, D=n_features, covariance_type=covariance_types,
       n=st.integers(1, 40), duplicates=st.booleans(), floor=st.sampled_from([None, 0.05]))
def test_ml_update_gives_normalised_weights_and_spd_covariances(seed, K, D, covariance_type, n,
                                                                duplicates, floor):
    rng = np.random.default_rng(seed)
    gmm = random_gmm(rng, K, D, covariance_type)
    X = random_frames(rng, gmm, n)
    if duplicates:  # few distinct points: components collapse onto them
        X = X[rng.integers(0, min(n, 2), size=n)]
    _, stats = gmm.e_step(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = ml_update(stats, reg_covar=1e-6, variance_floor=floor, previous=gmm)
    assert new.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(new.weights >= 0)
    assert np.all(np.isfinite(new.means))
    _assert_spd(new)
    if floor is not None:
        _assert_above_floor(new, floor)
    # The updated mixture is usable: finite log-likelihoods, normalised responsibilities.
    assert np.all(np.isfinite(new.score_samples(X)))
    np.testing.assert_allclose(new.predict_proba(X).sum(axis=1), 1.0, atol=1e-12)


@SETTINGS
@given(seed=seeds, K=n_components, D=n_features, covariance_type=covariance_types,
       n=st.integers(0, 40), relevance=st.sampled_from([0.0, 1.0, 16.0]),
       adapt=st.sampled_from(["m", "w", "v", "mw", "mv", "wv", "mwv"]))
def test_map_update_stays_a_valid_mixture(seed, K, D, covariance_type, n, relevance, adapt):
    rng = np.random.default_rng(seed)
    prior = random_gmm(rng, K, D, covariance_type)
    _, stats = prior.e_step(random_frames(rng, prior, n))
    if relevance == 0 and "v" in adapt:
        relevance = 1.0  # r = 0 gives ML variances, which may be zero (tested elsewhere)
    adapted = map_update(stats, prior, relevance_factor=relevance, adapt=adapt)
    assert adapted.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.isfinite(adapted.means))
    _assert_spd(adapted)
    for letter, name in (("m", "means"), ("w", "weights"), ("v", "covariances")):
        if letter not in adapt:
            np.testing.assert_array_equal(getattr(adapted, name), getattr(prior, name))


def _shifted(gmm: GMM, shift: np.ndarray) -> GMM:
    return GMM(gmm.weights, gmm.means + shift, gmm.covariances, gmm.covariance_type)


@SETTINGS
@given(seed=seeds, K=n_components, D=n_features, covariance_type=covariance_types,
       n=st.integers(1, 40), relevance=st.sampled_from([1.0, 16.0]),
       adapt=st.sampled_from(["m", "w", "v", "mw", "mv", "wv", "mwv"]))
def test_map_update_is_translation_equivariant(seed, K, D, covariance_type, n, relevance, adapt):
    """Moving data and prior by the same vector moves the adapted means, nothing else."""
    rng = np.random.default_rng(seed)
    prior = random_gmm(rng, K, D, covariance_type)
    X = random_frames(rng, prior, n)
    shift = rng.uniform(-20, 20, size=D)
    _, stats = prior.e_step(X)
    _, moved_stats = _shifted(prior, shift).e_step(X + shift)
    a = map_update(stats, prior, relevance, adapt)
    b = map_update(moved_stats, _shifted(prior, shift), relevance, adapt)
    np.testing.assert_allclose(b.weights, a.weights, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.means, a.means + shift, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(b.covariances, a.covariances, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("adapt", ["v", "mv", "mwv"])
def test_tied_map_variance_adaptation_is_translation_equivariant(adapt):
    """Regression: tied MAP once subtracted sum_k n_k m_k m_k^T with the *adapted* means."""
    rng = np.random.default_rng(0)
    prior = random_gmm(rng, 2, 2, "tied")
    X = random_frames(rng, prior, 30)
    shift = np.array([15.0, -8.0])
    _, stats = prior.e_step(X)
    _, moved_stats = _shifted(prior, shift).e_step(X + shift)
    a = map_update(stats, prior, 16.0, adapt)
    b = map_update(moved_stats, _shifted(prior, shift), 16.0, adapt)
    np.testing.assert_allclose(b.covariances, a.covariances, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("adapt", ["v", "wv"])
def test_map_variance_only_adaptation_does_not_depend_on_the_origin(adapt):
    """Unit-variance data with mean 0.5 away from the prior mean, r=16, 100 frames.

    (Regression: variances were once adapted around the origin, alpha (E[x^2] - mu0^2) + ...)

    With the prior mean kept, the MAP variance is alpha * E[(x - mu0)^2] + (1 - alpha) *
    sigma0^2 = alpha * 1.25 + (1 - alpha) wherever the origin is (alpha = 100/116).
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 1))
    x = (x - x.mean()) / x.std() + 0.5
    alpha = 100 / 116
    for origin in (0.0, 10.0):
        prior = GMM([1.0], [[origin]], [[1.0]], "diag")
        _, stats = prior.e_step(x + origin)
        adapted = map_update(stats, prior, relevance_factor=16.0, adapt=adapt)
        assert adapted.covariances[0, 0] == pytest.approx(alpha * 1.25 + (1 - alpha), rel=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_map_update_far_from_the_origin_equals_the_translated_update(covariance_type):
    """1e7 from the origin raw moments would lose eps * 1e14 ~ 2 % of a variance; the
    centred statistics adapt exactly as at the origin."""
    rng = np.random.default_rng(7)
    prior = random_gmm(rng, 3, 2, covariance_type)
    X = random_frames(rng, prior, 80)
    offset = np.array([1e7, -3e7])
    _, stats = prior.e_step(X)
    _, far_stats = _shifted(prior, offset).e_step(X + offset)
    a = map_update(stats, prior, 4.0, "mwv")
    b = map_update(far_stats, _shifted(prior, offset), 4.0, "mwv")
    np.testing.assert_allclose(b.weights, a.weights, rtol=1e-9)
    np.testing.assert_allclose(b.means - offset, a.means, rtol=0, atol=1e-6)
    np.testing.assert_allclose(b.covariances, a.covariances, rtol=1e-6)


def _assert_spd(gmm: GMM) -> None:
    cov = gmm.covariances
    if gmm.covariance_type in ("full", "tied"):
        matrices = cov if gmm.covariance_type == "full" else cov[None]
        np.testing.assert_allclose(matrices, matrices.transpose(0, 2, 1), rtol=1e-12, atol=1e-15)
        assert np.all(np.linalg.eigvalsh(matrices) > 0)
    else:
        assert np.all(cov > 0)
    assert np.all(np.isfinite(gmm.precisions_cholesky))


def _assert_above_floor(gmm: GMM, floor: float) -> None:
    cov = gmm.covariances
    if gmm.covariance_type in ("full", "tied"):
        matrices = cov if gmm.covariance_type == "full" else cov[None]
        # Floored in the Loewner order: Sigma - floor * I is positive semi-definite.
        assert np.all(np.linalg.eigvalsh(matrices - floor * np.eye(gmm.n_features)) > -1e-12)
    else:
        assert np.all(cov >= floor - 1e-15)


# ---------------------------------------------------------------------------- EM
@SETTINGS
@given(seed=seeds, K=n_components, D=n_features, covariance_type=covariance_types)
def test_em_log_likelihood_never_decreases(seed, K, D, covariance_type):
    """EM from K data points with the global covariance (how k-means-free inits start).

    Every component of the truth has at least 10% of 60 K frames: with reg_covar > 0 the
    M-step is not the exact maximiser, and a component collapsing onto <= D points then
    gives 1e-8 dips (scikit-learn's identical ones included); that is not tested here.
    """
    rng = np.random.default_rng(seed)
    truth = random_gmm(rng, K, D, covariance_type)
    balanced = 0.1 + (1.0 - 0.1 * K) * truth.weights  # every weight >= 0.1, sum 1
    truth = GMM(balanced, truth.means, truth.covariances, covariance_type)
    X = truth.sample(60 * K, random_state=rng)[0]
    global_cov = np.atleast_2d(np.cov(X.T))
    cov = {"full": np.repeat(global_cov[None], K, axis=0), "tied": global_cov,
           "diag": np.tile(np.diag(global_cov), (K, 1)),
           "spherical": np.full(K, np.mean(np.diag(global_cov)))}[covariance_type]
    start = GMM(np.full(K, 1.0 / K), X[rng.choice(len(X), K, replace=False)], cov, covariance_type)
    result = run_em(start, X, max_iter=15, tol=0.0)
    history = np.asarray(result.history)
    assert len(history) == result.n_iter == 15
    assert np.all(np.isfinite(history))
    assert np.all(np.diff(history) >= -1e-10 * np.maximum(1.0, np.abs(history[1:])))


@SETTINGS
@given(seed=seeds, K=n_components, D=n_features, covariance_type=covariance_types, data=st.data())
def test_chunked_fit_equals_full_batch_fit(seed, K, D, covariance_type, data):
    rng = np.random.default_rng(seed)
    truth = random_gmm(rng, K, D, covariance_type)
    n = 30 * K
    X = truth.sample(n, random_state=rng)[0]
    rng.shuffle(X)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=4), label="cuts"))
    chunks = np.split(X, cuts)  # empty chunks included
    start = random_gmm(rng, K, D, covariance_type)
    kwargs = dict(n_components=K, covariance_type=covariance_type, tol=0, max_iter=3,
                  weights_init=start.weights, means_init=start.means,
                  precisions_init=start.precisions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = GaussianMixture(**kwargs).fit(X)
        listed = GaussianMixture(**kwargs).fit_chunks(chunks)
        calls = []
        streamed = GaussianMixture(**kwargs).fit_chunks(
            lambda: (calls.append(1), iter(chunks))[1])
    assert len(calls) >= 4  # one pass per iteration (3) plus the initial sample
    for other in (listed, streamed):
        for name in ("weights_", "means_", "covariances_"):
            np.testing.assert_allclose(getattr(other, name), getattr(full, name), rtol=1e-9,
                                       atol=1e-10)
        # Sums over chunks round differently: seed 65 (K=3, D=2, full, one cut at 6) differs
        # by 1.2e-10 relative, on the code before the EM driver too; the parameters by < 1e-9.
        assert other.lower_bound_ == pytest.approx(full.lower_bound_, rel=1e-9)
        assert other.n_iter_ == full.n_iter_ == 3


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_chunked_fit_equals_full_fit_with_kmeans_init_and_weights(covariance_type):
    """Default k-means initialisation and (array, sample_weight) chunks: still the same fit."""
    rng = np.random.default_rng(11)
    truth = random_gmm(rng, 3, 2, covariance_type)
    X = truth.sample(300, random_state=2)[0]
    rng.shuffle(X)
    w = rng.uniform(0.5, 2.0, size=300)
    chunks = [(X[:90], w[:90]), (X[90:200], w[90:200]), (X[200:], w[200:])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
        chunked = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit_chunks(
            [X[:90], X[90:200], X[200:]])
        weighted = GaussianMixture(3, covariance_type=covariance_type, random_state=0,
                                   max_iter=5, tol=0).fit(X, sample_weight=w)
        weighted_chunks = GaussianMixture(3, covariance_type=covariance_type, random_state=0,
                                          max_iter=5, tol=0).fit_chunks(chunks)
    for a, b in ((chunked, full), (weighted_chunks, weighted)):
        assert a.n_iter_ == b.n_iter_
        for name in ("weights_", "means_", "covariances_"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------- MAP, by hand
def _two_component_prior() -> GMM:
    return GMM([0.6, 0.4], [[0.0, 0.0], [5.0, 5.0]], [[1.0, 1.0], [2.0, 2.0]], "diag")


def _hand_stats() -> SufficientStats:
    """4 frames, all in component 0: E[x] = (1, 2), E[x*x] = (2, 5); component 1 empty."""
    return SufficientStats("diag", zeroth=[4.0, 0.0], first=[[4.0, 8.0], [0.0, 0.0]],
                           second=[[8.0, 20.0], [0.0, 0.0]], log_likelihood=-10.0, n_frames=4.0)


def test_map_update_reynolds_hand_example():
    """r = 4, n_0 = 4: alpha_0 = 1/2, alpha_1 = 0 (Reynolds, Quatieri & Dunn 2000, eqs. 11-13).

    means:     1/2 (1, 2) + 1/2 (0, 0)                      = (0.5, 1.0); (5, 5) kept
    weights:   [1/2 * 4/4 + 1/2 * 0.6, 0 + 0.4] = [0.8, 0.4] -> normalised [2/3, 1/3]
    variances: 1/2 (2, 5) + 1/2 ((1, 1) + (0, 0)) - (0.25, 1) = (1.25, 2.0); (2, 2) kept
    """
    adapted = map_update(_hand_stats(), _two_component_prior(), relevance_factor=4.0, adapt="mwv")
    np.testing.assert_allclose(adapted.means, [[0.5, 1.0], [5.0, 5.0]], rtol=1e-15)
    np.testing.assert_allclose(adapted.weights, [2 / 3, 1 / 3], rtol=1e-15)
    np.testing.assert_allclose(adapted.covariances, [[1.25, 2.0], [2.0, 2.0]], rtol=1e-15)

    means_only = map_update(_hand_stats(), _two_component_prior(), relevance_factor=4.0, adapt="m")
    np.testing.assert_allclose(means_only.means, [[0.5, 1.0], [5.0, 5.0]], rtol=1e-15)
    np.testing.assert_array_equal(means_only.weights, [0.6, 0.4])
    np.testing.assert_array_equal(means_only.covariances, [[1.0, 1.0], [2.0, 2.0]])

    # A larger relevance factor trusts the prior more: alpha_0 = 4 / 20.
    stiff = map_update(_hand_stats(), _two_component_prior(), relevance_factor=16.0, adapt="m")
    np.testing.assert_allclose(stiff.means[0], [0.2, 0.4], rtol=1e-15)


def test_map_update_full_and_spherical_hand_examples():
    """One component, prior N(0, I), r = 2, n = 2: alpha = 1/2, E[x] = (1, 0).

    full:      E[x x^T] = [[3, 1], [1, 2]]: 1/2 E[x x^T] + 1/2 I - m m^T, m = (0.5, 0)
               = [[1.75, 0.5], [0.5, 1.5]]
    spherical: E[x*x] = (3, 2), averaged 2.5: 1/2 2.5 + 1/2 1 - mean(0.25, 0) = 1.625
    """
    full_prior = GMM([1.0], [[0.0, 0.0]], [np.eye(2)], "full")
    full_stats = SufficientStats("full", [2.0], [[2.0, 0.0]], [[[6.0, 2.0], [2.0, 4.0]]], 0.0, 2.0)
    full = map_update(full_stats, full_prior, relevance_factor=2.0, adapt="mv")
    np.testing.assert_allclose(full.means, [[0.5, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(full.covariances, [[[1.75, 0.5], [0.5, 1.5]]], rtol=1e-15)

    sph_prior = GMM([1.0], [[0.0, 0.0]], [1.0], "spherical")
    sph_stats = SufficientStats("spherical", [2.0], [[2.0, 0.0]], [[6.0, 4.0]], 0.0, 2.0)
    sph = map_update(sph_stats, sph_prior, relevance_factor=2.0, adapt="mv")
    np.testing.assert_allclose(sph.means, [[0.5, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(sph.covariances, [1.625], rtol=1e-15)


def _prior_with_awkward_numbers(covariance_type: str) -> GMM:
    """Means and variances for which (sigma^2 + mu^2) - mu^2 != sigma^2 in floating point."""
    means = [[3.3, -7.1], [0.3, 1e3]]
    if covariance_type == "full":
        cov = np.array([[[0.1, 0.02], [0.02, 0.7]], [[0.3, 0.01], [0.01, 0.01]]])
    elif covariance_type == "diag":
        cov = np.array([[0.1, 0.7], [0.3, 0.01]])
    else:
        cov = np.array([0.1, 0.3])
    return GMM([0.5, 0.5], means, cov, covariance_type)


def _stats_visiting_only_component_0(prior: GMM) -> SufficientStats:
    X = np.array([[3.0, -7.0], [3.5, -6.5], [2.9, -7.4]])
    resp = np.zeros((3, 2))
    resp[:, 0] = 1.0
    return stats_from_responsibilities(X, resp, None, prior.covariance_type)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_map_zero_occupancy_component_keeps_prior_means_exactly(covariance_type):
    prior = (_prior_with_awkward_numbers(covariance_type) if covariance_type != "tied" else
             GMM([0.5, 0.5], [[3.3, -7.1], [0.3, 1e3]], [[0.1, 0.02], [0.02, 0.7]], "tied"))
    stats = _stats_visiting_only_component_0(prior)
    for adapt in ("m", "mw", "mwv" if covariance_type != "tied" else "mw"):
        adapted = map_update(stats, prior, relevance_factor=16.0, adapt=adapt)
        np.testing.assert_array_equal(adapted.means[1], prior.means[1])
        assert not np.array_equal(adapted.means[0], prior.means[0])


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_map_zero_occupancy_component_keeps_prior_variances_exactly(covariance_type):
    """(Regression: (sigma^2 + mu^2) - mu^2 once stood for sigma^2.)"""
    prior = _prior_with_awkward_numbers(covariance_type)
    adapted = map_update(_stats_visiting_only_component_0(prior), prior, relevance_factor=16.0,
                         adapt="mwv")
    np.testing.assert_array_equal(adapted.covariances[1], prior.covariances[1])


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_map_component_far_from_all_data_keeps_the_prior(covariance_type):
    """Statistics from the E-step itself: component 1 lies 100 sd from every frame.

    The E-step floors log-responsibilities at -70 (against subnormal slowdowns), so the
    component still gets an occupancy of ~1e-29 and moves by ~1e-31: the prior is kept to
    far below any meaningful precision, though not bit for bit.
    """
    cov = {"full": np.array([np.eye(2), np.eye(2)]), "diag": np.ones((2, 2)),
           "spherical": np.ones(2)}[covariance_type]
    prior = GMM([0.5, 0.5], [[0.0, 0.0], [100.0, 0.0]], cov, covariance_type)
    X = np.random.default_rng(0).normal(size=(50, 2))
    _, stats = prior.e_step(X)
    assert stats.zeroth[1] < 1e-25
    adapted = map_update(stats, prior, relevance_factor=16.0, adapt="mwv")
    np.testing.assert_allclose(adapted.means[1], prior.means[1], rtol=1e-15, atol=1e-25)
    np.testing.assert_allclose(adapted.covariances[1], prior.covariances[1], rtol=1e-15, atol=1e-25)
    assert not np.allclose(adapted.means[0], prior.means[0], atol=1e-3)


@SETTINGS
@given(seed=seeds, K=n_components, D=n_features, covariance_type=covariance_types,
       n=st.integers(30, 80))
def test_map_with_zero_relevance_equals_ml_update(seed, K, D, covariance_type, n):
    """r = 0 trusts the data only: MAP of means, weights and variances is the ML update."""
    rng = np.random.default_rng(seed)
    prior = random_gmm(rng, K, D, covariance_type)
    X = random_frames(rng, prior, n)
    _, stats = prior.e_step(X)
    # Every component visited by enough frames for a non-singular ML covariance (without
    # reg_covar, which MAP does not add).
    assume(np.all(stats.zeroth > 3 * D))
    adapted = map_update(stats, prior, relevance_factor=0.0, adapt="mwv")
    ml = ml_update(stats, reg_covar=0.0)
    np.testing.assert_allclose(adapted.weights, ml.weights, rtol=1e-10)
    np.testing.assert_allclose(adapted.means, ml.means, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(adapted.covariances, ml.covariances, rtol=1e-8, atol=1e-10)
