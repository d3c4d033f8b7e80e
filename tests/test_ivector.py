"""Total-variability model: EM monotonicity, closed-form posteriors, subspace recovery, files."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import subspace_angles

from speakergmm.io import ModelFileError
from speakergmm.mixture import GMM
from speakergmm.verification import VerificationError
from speakergmm.verification.ivector import TotalVariability, UtteranceStats, utterance_stats


def _ubm(K: int = 6, D: int = 3, seed: int = 0) -> GMM:
    rng = np.random.default_rng(seed)
    return GMM(rng.dirichlet(np.full(K, 5.0)), 3.0 * rng.normal(size=(K, D)),
               rng.uniform(0.5, 1.5, (K, D)))


def _corpus(ubm: GMM, n_utts: int = 30, rank: int = 2, seed: int = 1) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    T = rng.normal(size=(ubm.n_components, ubm.n_features, rank))
    utts = []
    for u in range(n_utts):
        w = rng.normal(size=rank)
        X, labels = ubm.sample(int(rng.integers(50, 300)), random_state=seed * 1000 + u)
        utts.append(X + (T @ w)[labels])
    return utts, T


def test_utterance_stats_match_responsibilities():
    ubm = _ubm()
    utts, _ = _corpus(ubm, n_utts=4)
    stats = utterance_stats(ubm, utts, dtype="float64", store_dtype="float64")
    for u, X in enumerate(utts):
        gamma = ubm.predict_proba(X)
        np.testing.assert_allclose(stats.zeroth[u], gamma.sum(0), rtol=1e-10)
        expected = gamma.T @ X - gamma.sum(0)[:, None] * ubm.means
        np.testing.assert_allclose(stats.first[u], expected, rtol=1e-8, atol=1e-8)
        quad = (gamma[:, :, None] * (X[:, None, :] - ubm.means) ** 2 / ubm.covariances).sum()
        assert stats.quadratic[u] == pytest.approx(quad, rel=1e-9)


@pytest.mark.parametrize("min_divergence", [True, False])
@pytest.mark.parametrize("init", ["pca", "random"])
def test_em_objective_never_decreases(min_divergence, init):
    ubm = _ubm()
    utts, _ = _corpus(ubm)
    stats = utterance_stats(ubm, utts)
    tv = TotalVariability(ubm, n_components=4, n_iter=12, min_divergence=min_divergence, init=init).fit(stats)
    history = np.array(tv.history_ + [tv.objective(stats)])
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[:-1])), history
    assert history[-1] > history[0]


def test_min_divergence_gives_standard_prior():
    ubm = _ubm()
    utts, _ = _corpus(ubm, n_utts=60)
    stats = utterance_stats(ubm, utts)
    tv = TotalVariability(ubm, n_components=2, n_iter=30).fit(stats)
    mean, cov = tv.posterior(stats)
    # At convergence the posteriors' average first and second moments are those of N(0, I).
    np.testing.assert_allclose(mean.mean(0), 0.0, atol=0.02)
    np.testing.assert_allclose((cov + mean[:, :, None] * mean[:, None, :]).mean(0), np.eye(2), atol=0.05)


def test_extraction_equals_dense_posterior():
    """The i-vector is the posterior mean of w under the frame-level Gaussian model,
    computed densely frame by frame from the UBM's responsibilities."""
    ubm = _ubm(K=4, D=2)
    utts, _ = _corpus(ubm, n_utts=12, rank=2)
    stats = utterance_stats(ubm, utts, dtype="float64", store_dtype="float64")
    tv = TotalVariability(ubm, n_components=3, n_iter=3).fit(stats)
    T, o, var = tv.T_, tv.offset_, ubm.covariances
    ivectors = tv.transform(stats)
    means, covs = tv.posterior(stats)
    R = T.shape[2]
    for u, X in enumerate(utts[:4]):
        gamma = ubm.predict_proba(X)
        precision = np.eye(R)
        linear = np.zeros(R)
        for t in range(X.shape[0]):
            for k in range(ubm.n_components):
                Tk = T[k] / var[k][:, None]  # Sigma_k^{-1} T_k
                precision += gamma[t, k] * T[k].T @ Tk
                linear += gamma[t, k] * Tk.T @ (X[t] - ubm.means[k] - o[k])
        np.testing.assert_allclose(ivectors[u], np.linalg.solve(precision, linear), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(covs[u], np.linalg.inv(precision), rtol=1e-7, atol=1e-10)


def test_objective_is_marginal_likelihood():
    """The objective equals log p(frames | alignment) with w integrated out, computed densely."""
    ubm = _ubm(K=3, D=2)
    utts, _ = _corpus(ubm, n_utts=3, rank=1)
    utts = [X[:15] for X in utts]
    stats = utterance_stats(ubm, utts, dtype="float64", store_dtype="float64")
    tv = TotalVariability(ubm, n_components=2, n_iter=2).fit(stats)
    T, o, var = tv.T_, tv.offset_, ubm.covariances
    total = 0.0
    for X in utts:
        gamma = ubm.predict_proba(X)
        # log prod_t prod_k N(x_t; m_k + o_k + T_k w, S_k)^gamma_tk is Gaussian in w: integrate
        # it against N(0, I) on a fine grid-free path: exact quadratic form.
        c = 0.0
        P = np.eye(2)
        b = np.zeros(2)
        for t in range(X.shape[0]):
            for k in range(ubm.n_components):
                d = X[t] - ubm.means[k] - o[k]
                c += gamma[t, k] * (-0.5 * np.sum(np.log(2 * np.pi * var[k])) - 0.5 * np.sum(d * d / var[k]))
                P += gamma[t, k] * T[k].T @ (T[k] / var[k][:, None])
                b += gamma[t, k] * (T[k] / var[k][:, None]).T @ d
        total += c - 0.5 * np.linalg.slogdet(P)[1] + 0.5 * b @ np.linalg.solve(P, b)
    assert tv.objective(stats) == pytest.approx(total / stats.n_frames.sum(), rel=1e-9)


def test_float32_estep_close_to_float64():
    ubm = _ubm()
    utts, _ = _corpus(ubm)
    stats = utterance_stats(ubm, utts)
    a = TotalVariability(ubm, 3, 5, dtype="float64").fit(stats)
    b = TotalVariability(ubm, 3, 5, dtype="float32").fit(stats)
    np.testing.assert_allclose(b.transform(stats), a.transform(stats), rtol=1e-3, atol=1e-3)


def test_recovers_planted_low_rank_subspace():
    """Synthetic statistics from a planted rank-3 T: EM finds its column space."""
    rng = np.random.default_rng(7)
    K, D, R, U = 16, 4, 3, 400
    ubm = GMM(np.full(K, 1.0 / K), rng.normal(size=(K, D)), rng.uniform(0.5, 2.0, (K, D)))
    T_true = rng.normal(size=(K, D, R))
    N = rng.gamma(4.0, 10.0, size=(U, K))
    W = rng.normal(size=(U, R))
    sd = np.sqrt(ubm.covariances)
    F = N[:, :, None] * np.einsum("kdr,ur->ukd", T_true, W) + np.sqrt(N)[:, :, None] * sd * rng.normal(size=(U, K, D))
    quadratic = (F ** 2 / N[:, :, None] / ubm.covariances).sum((1, 2)) + (N.sum(1) - K) * D
    stats = UtteranceStats([str(u) for u in range(U)], N, F, quadratic, N.sum(1), ubm.fingerprint())
    tv = TotalVariability(ubm, n_components=R, n_iter=15, init="random").fit(stats)
    fitted = (tv.T_ / sd[:, :, None]).reshape(K * D, R)
    planted = (T_true / sd[:, :, None]).reshape(K * D, R)
    assert np.degrees(subspace_angles(fitted, planted)).max() < 3.0
    # The i-vectors are the planted factors up to a rotation: a linear map explains them.
    iv = tv.transform(stats)
    coef, *_ = np.linalg.lstsq(iv, W, rcond=None)
    assert 1 - ((iv @ coef - W) ** 2).sum() / (W ** 2).sum() > 0.97


def test_save_load_and_resume(tmp_path):
    ubm = _ubm()
    utts, _ = _corpus(ubm)
    stats = utterance_stats(ubm, utts)
    full = TotalVariability(ubm, 3, 6).fit(stats)
    full.save(tmp_path / "tv.npz")
    loaded = TotalVariability.load(tmp_path / "tv.npz")
    np.testing.assert_allclose(loaded.transform(stats), full.transform(stats))
    ckpt = tmp_path / "tv.ckpt"
    TotalVariability(ubm, 3, 2, checkpoint=ckpt).fit(stats)          # interrupted after 2 passes
    resumed = TotalVariability(ubm, 3, 6, checkpoint=ckpt).fit(stats)
    np.testing.assert_allclose(resumed.T_, full.T_, rtol=1e-9, atol=1e-12)
    assert resumed.history_ == pytest.approx(full.history_)
    stats.save(tmp_path / "stats.npz")
    again = UtteranceStats.load(tmp_path / "stats.npz")
    np.testing.assert_array_equal(again.first, stats.first)
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        TotalVariability.load(tmp_path / "bad.npz")


def test_bad_input():
    ubm = _ubm()
    with pytest.raises(VerificationError, match="not trained"):
        TotalVariability(ubm, 2).transform(utterance_stats(ubm, [np.zeros((5, 3))]))
    with pytest.raises(VerificationError, match="utterance '1'"):
        utterance_stats(ubm, [np.zeros((5, 3)), np.zeros((5, 2))])
    errors: dict = {}
    stats = utterance_stats(ubm, [np.zeros((5, 3)), np.full((4, 3), np.nan)], errors=errors)
    assert len(stats) == 1 and "1" in errors and "NaN" in errors["1"]
    full = GMM(np.ones(1), np.zeros((1, 3)), np.eye(3)[None], "full")
    with pytest.raises(VerificationError, match="diagonal"):
        TotalVariability(full, 2)


def test_map_enrolment_from_utterance_stats_equals_frames():
    """The statistics computed once serve MAP enrolment: same means as enrolling from frames."""
    from speakergmm.mixture import map_update
    from speakergmm.verification import enroll_speakers

    ubm = _ubm()
    utts, _ = _corpus(ubm, n_utts=6)
    source = {str(i): X for i, X in enumerate(utts)}
    stats = utterance_stats(ubm, source, dtype="float64", store_dtype="float64")
    spk2utt = {"a": ["0", "1", "2"], "b": ["3", "4"]}
    models = enroll_speakers(ubm, source, spk2utt, relevance_factor=16.0)
    for speaker, rows in spk2utt.items():
        adapted = map_update(stats.sufficient_stats(rows, ubm), prior=ubm, relevance_factor=16.0, adapt="m")
        np.testing.assert_allclose(adapted.means, models.means[models.index(speaker)], rtol=1e-6, atol=1e-8)


def test_total_variability_params_and_clone():
    from sklearn.base import clone

    ubm = _ubm()
    tv = TotalVariability(ubm, n_components=3, n_iter=2, init="random")
    copy = clone(tv)
    assert copy.get_params()["n_components"] == 3 and copy.ubm.fingerprint() == ubm.fingerprint()
    copy.set_params(n_iter=4)
    assert copy.n_iter == 4
    with pytest.raises(ValueError, match="invalid parameter"):
        copy.set_params(rank=5)
