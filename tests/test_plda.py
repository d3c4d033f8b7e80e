"""Back end: PLDA log-likelihood ratios, EM, LDA, WCCN, whitening, length norm, cosine, files."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from speakergmm.io import ModelFileError
from speakergmm.verification import VerificationError
from speakergmm.verification.backend import (LDA, PLDA, WCCN, Chain, LengthNorm, Whitening,
                                             cosine_scores)


def _speakers(n_speakers=40, per=5, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(dim, dim))
    B = A @ A.T / dim + 0.5 * np.eye(dim)
    C = rng.normal(size=(dim, dim))
    W = C @ C.T / dim * 0.5 + 0.1 * np.eye(dim)
    y_s = rng.multivariate_normal(rng.normal(size=dim), B, n_speakers)
    X = np.repeat(y_s, per, axis=0) + rng.multivariate_normal(np.zeros(dim), W, n_speakers * per)
    return X, np.repeat(np.arange(n_speakers), per)


def _direct_llr(plda, enroll, test):
    """Two-covariance LLR from the joint Gaussian of all vectors, densely."""
    B, W, mu = plda.between_, plda.within_, plda.mean_
    k = len(enroll)
    joint = np.kron(np.ones((k + 1, k + 1)), B) + np.kron(np.eye(k + 1), W)
    alone = np.kron(np.ones((k, k)), B) + np.kron(np.eye(k), W)
    Z = np.vstack([enroll, test[None]]) - mu
    return (multivariate_normal.logpdf(Z.ravel(), cov=joint)
            - multivariate_normal.logpdf((enroll - mu).ravel(), cov=alone)
            - multivariate_normal.logpdf(test - mu, cov=B + W))


@pytest.mark.parametrize("n_iter,shrinkage", [(0, 0.0), (10, 0.0), (5, 0.2)])
def test_plda_llr_equals_two_covariance_formula(n_iter, shrinkage):
    X, y = _speakers()
    plda = PLDA(n_iter=n_iter, shrinkage=shrinkage).fit(X, y)
    rng = np.random.default_rng(1)
    for k in (1, 3):
        enroll = X[rng.choice(len(X), k, replace=False)]
        tests = X[rng.choice(len(X), 4, replace=False)]
        got = plda.score(enroll.mean(0)[None], tests, n_enroll=k)[0]
        want = [_direct_llr(plda, enroll, t) for t in tests]
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8)
        paired = plda.score_trials(np.repeat(enroll.mean(0)[None], 4, 0), tests, n_enroll=k)
        np.testing.assert_allclose(paired, want, rtol=1e-8, atol=1e-8)


def test_plda_em_increases_likelihood_and_recovers_covariances():
    X, y = _speakers(n_speakers=300, per=6, dim=3, seed=3)
    plda = PLDA(n_iter=25).fit(X, y)
    h = np.array(plda.history_)
    assert np.all(np.diff(h) >= -1e-10)
    _, _, within, _ = __import__("speakergmm.verification.backend", fromlist=["class_scatter"]).class_scatter(X, y)
    np.testing.assert_allclose(plda.within_, within * len(X) / (len(X) - 300), rtol=0.05, atol=0.02)


def test_lda_against_generalised_eigenproblem():
    X, y = _speakers(dim=8)
    lda = LDA(n_components=3).fit(X, y)
    mu = X.mean(0)
    classes = np.unique(y)
    means = np.stack([X[y == c].mean(0) for c in classes])
    counts = np.array([(y == c).sum() for c in classes])
    Sb = ((means - mu) * counts[:, None]).T @ (means - mu) / len(X)
    Sw = sum((X[y == c] - means[i]).T @ (X[y == c] - means[i]) for i, c in enumerate(classes)) / len(X)
    vals = np.sort(np.linalg.eigvals(np.linalg.solve(Sw, Sb)).real)[::-1][:3]
    np.testing.assert_allclose(lda.eigenvalues_, vals, rtol=1e-8)
    V = lda.scalings_
    np.testing.assert_allclose(V.T @ Sw @ V, np.eye(3), atol=1e-8)
    np.testing.assert_allclose(V.T @ Sb @ V, np.diag(vals), atol=1e-8)
    np.testing.assert_allclose(lda.transform(X), (X - mu) @ V)


def test_wccn_whitening_lengthnorm_against_numpy():
    X, y = _speakers(dim=5)
    wccn = WCCN().fit(X, y)
    classes = np.unique(y)
    Sw = sum((X[y == c] - X[y == c].mean(0)).T @ (X[y == c] - X[y == c].mean(0)) for c in classes) / len(X)
    Bm = wccn.transform_
    np.testing.assert_allclose(Bm @ Bm.T, np.linalg.inv(Sw), rtol=1e-8)
    np.testing.assert_allclose(Bm, np.tril(Bm))
    Z = wccn.transform(X)
    Sz = sum((Z[y == c] - Z[y == c].mean(0)).T @ (Z[y == c] - Z[y == c].mean(0)) for c in classes) / len(X)
    np.testing.assert_allclose(Sz, np.eye(5), atol=1e-8)

    white = Whitening().fit(X)
    Z = white.transform(X)
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(np.cov(Z.T, bias=True), np.eye(5), atol=1e-8)

    L = LengthNorm().fit_transform(X)
    np.testing.assert_allclose(np.linalg.norm(L, axis=1), np.sqrt(5))
    np.testing.assert_allclose(L, X / np.linalg.norm(X, axis=1, keepdims=True) * np.sqrt(5))


def test_cosine_scores():
    rng = np.random.default_rng(0)
    E, T = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    want = [[e @ t / np.linalg.norm(e) / np.linalg.norm(t) for t in T] for e in E]
    np.testing.assert_allclose(cosine_scores(E, T), want)


def test_plda_separates_speakers():
    X, y = _speakers(n_speakers=60, per=4, dim=6, seed=5)
    chain = Chain([Whitening(), LengthNorm(), LDA(4), LengthNorm(), PLDA(n_iter=5)]).fit(X[:200], y[:200])
    Z = chain.transform(X[200:])
    yt = y[200:]
    S = chain.plda.score(Z, Z)
    same = yt[:, None] == yt[None, :]
    off = ~np.eye(len(yt), dtype=bool)
    assert S[same & off].mean() > S[~same].mean() + 3


def test_chain_save_load(tmp_path):
    X, y = _speakers()
    chain = Chain([Whitening(), LengthNorm(), LDA(4), WCCN(), LengthNorm(), PLDA(n_iter=3)]).fit(X, y)
    chain.save(tmp_path / "backend.npz")
    back = Chain.load(tmp_path / "backend.npz")
    np.testing.assert_allclose(back.transform(X), chain.transform(X))
    Z = chain.transform(X[:5])
    np.testing.assert_allclose(back.plda.score(Z, Z), chain.plda.score(Z, Z))
    single = LDA(3).fit(X, y)
    single.save(tmp_path / "lda.npz")
    np.testing.assert_allclose(LDA.load(tmp_path / "lda.npz").transform(X), single.transform(X))
    with pytest.raises(ModelFileError):
        PLDA.load(tmp_path / "lda.npz")


def test_bad_input():
    X, y = _speakers()
    with pytest.raises(VerificationError, match="labels"):
        LDA(2).fit(X)
    with pytest.raises(VerificationError, match="NaN"):
        Whitening().fit(np.full((3, 2), np.nan))
    plda = PLDA(2).fit(X, y)
    with pytest.raises(VerificationError, match="expects 6"):
        plda.score(X[:2, :3], X[:2])
    with pytest.raises(VerificationError, match="2 speakers"):
        PLDA().fit(X[:5], np.zeros(5))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 0.9))
def test_plda_single_enrolment_llr_is_symmetric(seed, shrinkage):
    """With one enrolment vector the same-speaker hypothesis treats both vectors alike."""
    X, y = _speakers(n_speakers=12, per=3, dim=4, seed=seed % 1000)
    plda = PLDA(n_iter=2, shrinkage=shrinkage).fit(X, y)
    S = plda.score(X[:6], X[:6])
    np.testing.assert_allclose(S, S.T, rtol=1e-9, atol=1e-9)


def test_estimators_work_with_sklearn_clone_and_pipeline():
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline

    X, y = _speakers()
    lda = clone(LDA(n_components=3, reg=0.1))
    assert lda.get_params() == {"n_components": 3, "reg": 0.1}
    pipe = make_pipeline(Whitening(), LengthNorm(), LDA(3), WCCN())
    Z = pipe.fit(X, y).transform(X)
    np.testing.assert_allclose(Z, Chain([Whitening(), LengthNorm(), LDA(3), WCCN()]).fit(X, y).transform(X))
    plda = PLDA().set_params(n_iter=2, shrinkage=0.1)
    assert plda.get_params() == {"n_iter": 2, "shrinkage": 0.1}
    with pytest.raises(ValueError, match="invalid parameter"):
        PLDA().set_params(rank=3)
