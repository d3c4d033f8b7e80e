"""Forward-backward and Viterbi: parity with hmmlearn and with brute-force path enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hmmlearn.hmm import GaussianHMM
from hmmlearn.hmm import GMMHMM as HmmlearnGMMHMM
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from speakergmm.hmm import _kernels as K
from speakergmm.hmm import GMMHMM, Topology
from speakergmm.mixture import GMM


def _random_hmm(rng, n_states, n_features, sparse=False):
    start = rng.dirichlet(np.ones(n_states))
    trans = rng.dirichlet(np.ones(n_states), size=n_states)
    if sparse:  # a few structural zeros
        trans[0, -1] = 0.0
        trans[-1, 0] = 0.0
        trans /= trans.sum(axis=1, keepdims=True)
    means = rng.normal(scale=2.0, size=(n_states, n_features))
    variances = rng.uniform(0.5, 2.0, size=(n_states, n_features))
    return start, trans, means, variances


def _gaussian_emissions(X, means, variances):
    """log N(x_t | mu_s, diag var_s) for every frame and state, straight from scipy."""
    return np.column_stack([multivariate_normal(m, np.diag(v)).logpdf(X)
                            for m, v in zip(means, variances)])


def _run_kernels(start, trans, final, emit, lengths):
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    with np.errstate(divide="ignore"):
        log_start, log_trans = np.log(start), np.log(trans)
    log_final = np.where(final, 0.0, -np.inf)
    e = K.edge_lists(log_trans)
    gamma, xi, ll = K.forward_backward(log_start, log_final, e.pred_ptr, e.pred_src, e.pred_logp,
                                       e.succ_ptr, e.succ_dst, e.succ_logp,
                                       emit, offsets)
    ll_fwd = K.forward_loglik(log_start, log_final, e.pred_ptr, e.pred_src, e.pred_logp, emit, offsets)
    path, score = K.viterbi(log_start, log_final, e.pred_ptr, e.pred_src, e.pred_logp, emit, offsets)
    n_states = start.size
    xi_full = np.zeros((len(lengths), n_states, n_states))
    xi_full[:, e.succ_src, e.succ_dst] = xi
    return offsets, gamma, xi_full, ll, ll_fwd, path, score


def _brute_force(start, trans, final, emit):
    """Log-likelihood, occupancies, xi sums and best path by enumerating every state path."""
    n_frames, n_states = emit.shape
    with np.errstate(divide="ignore"):
        ls, lt = np.log(start), np.log(trans)
    paths = np.array(list(itertools.product(range(n_states), repeat=n_frames)))
    logp = ls[paths[:, 0]] + emit[np.arange(n_frames), paths].sum(axis=1)
    logp += lt[paths[:, :-1], paths[:, 1:]].sum(axis=1)
    logp = np.where(final[paths[:, -1]], logp, -np.inf)
    ll = logsumexp(logp)
    post = np.exp(logp - ll)
    gamma = np.zeros((n_frames, n_states))
    xi = np.zeros((n_states, n_states))
    for p, w in zip(paths, post):
        gamma[np.arange(n_frames), p] += w
        np.add.at(xi, (p[:-1], p[1:]), w)
    return ll, gamma, xi, paths[np.argmax(logp)], logp.max()


@pytest.mark.parametrize("sparse", [False, True])
def test_kernels_match_hmmlearn_gaussian_hmm(sparse):
    rng = np.random.default_rng(0)
    n_states, n_features = 4, 3
    start, trans, means, variances = _random_hmm(rng, n_states, n_features, sparse)
    ref = GaussianHMM(n_states, "diag", init_params="")
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = start, trans, means, variances
    lengths = [30, 1, 2, 57]
    X, _ = ref.sample(sum(lengths), random_state=1)
    emit = _gaussian_emissions(X, means, variances)
    offsets, gamma, _, ll, ll_fwd, path, score = _run_kernels(
        start, trans, np.ones(n_states, bool), emit, lengths)
    for n, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])):
        ref_ll, ref_post = ref.score_samples(X[a:b])
        ref_score, ref_path = ref.decode(X[a:b], algorithm="viterbi")
        assert ll[n] == pytest.approx(ref_ll, rel=1e-12, abs=1e-9)
        assert ll_fwd[n] == pytest.approx(ref_ll, rel=1e-12, abs=1e-9)
        np.testing.assert_allclose(gamma[a:b], ref_post, atol=1e-10)
        assert score[n] == pytest.approx(ref_score, rel=1e-12, abs=1e-9)
        np.testing.assert_array_equal(path[a:b], ref_path)


@pytest.mark.parametrize("final_last", [False, True])
def test_kernels_match_brute_force_enumeration(final_last):
    rng = np.random.default_rng(3)
    n_states, n_frames = 3, 6
    start, trans, means, variances = _random_hmm(rng, n_states, 2, sparse=True)
    final = np.zeros(n_states, bool)
    final[-1] = True
    if not final_last:
        final[:] = True
    X = rng.normal(scale=2.0, size=(n_frames, 2))
    emit = _gaussian_emissions(X, means, variances)
    _, gamma, xi, ll, ll_fwd, path, score = _run_kernels(start, trans, final, emit, [n_frames])
    ref_ll, ref_gamma, ref_xi, ref_path, ref_score = _brute_force(start, trans, final, emit)
    assert ll[0] == pytest.approx(ref_ll, abs=1e-10)
    assert ll_fwd[0] == pytest.approx(ref_ll, abs=1e-10)
    np.testing.assert_allclose(gamma, ref_gamma, atol=1e-12)
    np.testing.assert_allclose(xi[0], ref_xi, atol=1e-12)
    np.testing.assert_array_equal(path, ref_path)
    assert score[0] == pytest.approx(ref_score, abs=1e-10)


def test_structural_zeros_are_never_used():
    rng = np.random.default_rng(1)
    topo = Topology.left_to_right(4, n_skips=1)
    emit = rng.normal(size=(40, 4)) * 3
    _, gamma, xi, ll, _, path, _ = _run_kernels(topo.startprob, topo.transmat, topo.final, emit, [40])
    assert np.isfinite(ll[0])
    assert np.all(xi[0][~topo.transition_mask] == 0)
    assert path[0] == 0 and path[-1] == 3 and np.all(np.diff(path) >= 0) and np.all(np.diff(path) <= 2)
    np.testing.assert_allclose(gamma.sum(axis=1), 1.0, atol=1e-12)
    assert gamma[0, 0] == pytest.approx(1.0) and gamma[-1, 3] == pytest.approx(1.0)


def test_sequence_without_a_path_gets_minus_infinity():
    topo = Topology.left_to_right(5)  # must visit all 5 states: needs >= 5 frames
    emit = np.zeros((4 + 7, 5))
    offsets, gamma, xi, ll, ll_fwd, path, score = _run_kernels(
        topo.startprob, topo.transmat, topo.final, emit, [4, 7])
    assert ll[0] == -np.inf and ll_fwd[0] == -np.inf and score[0] == -np.inf
    assert np.all(gamma[:4] == 0) and np.all(xi[0] == 0) and np.all(path[:4] == -1)
    assert np.isfinite(ll[1]) and np.all(path[4:] >= 0)


def test_segment_logsumexp():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 12)) * 10
    x[0, :4] = -np.inf
    out = K.segment_logsumexp(x, 3, 4)
    np.testing.assert_allclose(out, logsumexp(x.reshape(7, 3, 4), axis=2))


# ---------------------------------------------------------------------- model-level parity
def _hmmlearn_gmmhmm(rng, n_states=3, n_mix=2, n_features=2, cov="diag"):
    start, trans, _, _ = _random_hmm(rng, n_states, n_features)
    weights = rng.dirichlet(np.ones(n_mix), size=n_states)
    means = rng.normal(scale=2.0, size=(n_states, n_mix, n_features))
    if cov == "diag":
        covs = rng.uniform(0.5, 2.0, size=(n_states, n_mix, n_features))
    else:
        A = rng.normal(size=(n_states, n_mix, n_features, n_features))
        covs = A @ A.transpose(0, 1, 3, 2) + np.eye(n_features)
    ref = HmmlearnGMMHMM(n_states, n_mix, covariance_type=cov, init_params="")
    ref.startprob_, ref.transmat_ = start, trans
    ref.weights_, ref.means_, ref.covars_ = weights, means, covs
    ours = GMMHMM.from_parameters([GMM(weights[s], means[s], covs[s], cov) for s in range(n_states)],
                                  start, trans)
    return ref, ours


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_gmmhmm_inference_matches_hmmlearn(cov):
    rng = np.random.default_rng(5)
    ref, ours = _hmmlearn_gmmhmm(rng, cov=cov)
    X, _ = ref.sample(80, random_state=2)
    ll, gamma = ours.posteriors(X)
    ref_ll, ref_gamma = ref.score_samples(X)
    assert ll == pytest.approx(ref_ll, rel=1e-10)
    np.testing.assert_allclose(gamma, ref_gamma, atol=1e-9)
    assert ours.score(X) == pytest.approx(ref_ll, rel=1e-10)
    score, path = ours.decode(X)
    ref_score, ref_path = ref.decode(X)
    assert score == pytest.approx(ref_score, rel=1e-10)
    np.testing.assert_array_equal(path, ref_path)


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_one_baum_welch_iteration_matches_gaussian_hmm(cov):
    """Single-Gaussian states: our update equals hmmlearn's GaussianHMM with its priors off."""
    rng = np.random.default_rng(7)
    n_states, n_features = 3, 2
    start, trans, means, variances = _random_hmm(rng, n_states, n_features, sparse=True)
    covs = variances if cov == "diag" else np.stack([np.diag(v) + 0.3 for v in variances])
    gen = GaussianHMM(n_states, cov, init_params="")
    gen.startprob_, gen.transmat_, gen.means_, gen.covars_ = start, trans, means, covs
    lengths = [40, 25, 60]
    X, _ = gen.sample(sum(lengths), random_state=3)
    # Non-informative priors: every MAP term of hmmlearn's update vanishes.
    ref = GaussianHMM(n_states, cov, startprob_prior=1.0, transmat_prior=1.0, means_prior=0,
                      means_weight=0, covars_prior=0.0, covars_weight=1 if cov == "diag" else 0,
                      n_iter=1, tol=-np.inf, init_params="", params="stmc")
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = start, trans, means, covs
    ref.fit(X, lengths)
    ours = GMMHMM.from_parameters(
        [GMM([1.0], means[s:s + 1], covs[s:s + 1], cov) for s in range(n_states)], start, trans,
        n_iter=1, reg_covar=0.0, occupancy_threshold=0.0)
    seqs = np.split(X, np.cumsum(lengths)[:-1])
    ours.fit(seqs, warm_start=True)
    np.testing.assert_allclose(ours.startprob_, ref.startprob_, atol=1e-10)
    np.testing.assert_allclose(ours.transmat_, ref.transmat_, atol=1e-10)
    np.testing.assert_allclose(np.vstack([g.means for g in ours.states_]), ref.means_, atol=1e-9)
    ref_covs = ref.covars_ if cov == "full" else np.stack([np.diag(c) for c in ref.covars_])
    np.testing.assert_allclose(np.vstack([g.covariances for g in ours.states_]), ref_covs, atol=1e-9)
    assert ours.history_[0] == pytest.approx(ref.monitor_.history[0], rel=1e-10)


def _brute_force_mixture_update(start, trans, weights, means, covs, sequences):
    """Baum-Welch update of a GMM-HMM from path enumeration and textbook formulas.

    gamma_{s,k}(t) = gamma_s(t) p(k | x_t, s); covariances are centred on the *new* means
    (not on the previous ones, hmmlearn issue 365).
    """
    n_states, n_mix = weights.shape
    start_acc = np.zeros(n_states)
    xi_acc = np.zeros((n_states, n_states))
    occ = np.zeros((n_states, n_mix))
    first = np.zeros(means.shape)
    frames_all, post_all = [], []
    for X in sequences:
        comp = np.array([[np.log(weights[s, k]) + multivariate_normal(means[s, k], covs[s, k]).logpdf(X)
                          for k in range(n_mix)] for s in range(n_states)]).transpose(2, 1, 0)  # (T, K, S)
        emit = logsumexp(comp, axis=1)
        _, gamma, xi, _, _ = _brute_force(start, trans, np.ones(n_states, bool), emit)
        resp = np.exp(comp - emit[:, None, :])  # p(k | x_t, s)
        g_sk = gamma[:, None, :] * resp  # (T, K, S)
        start_acc += gamma[0]
        xi_acc += xi
        occ += g_sk.sum(axis=0).T
        first += np.einsum("tks,td->skd", g_sk, X)
        frames_all.append(X)
        post_all.append(g_sk)
    new_means = first / occ[..., None]
    new_covs = np.zeros(covs.shape)
    for X, g_sk in zip(frames_all, post_all):
        diff = X[:, None, None, :] - new_means[None]  # (T, S, K, D)
        new_covs += np.einsum("tks,tskd,tske->skde", g_sk, diff, diff)
    new_covs /= occ[..., None, None]
    return (start_acc / start_acc.sum(), xi_acc / xi_acc.sum(axis=1, keepdims=True),
            occ / occ.sum(axis=1, keepdims=True), new_means, new_covs)


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_one_baum_welch_iteration_of_mixture_states_matches_brute_force(cov):
    rng = np.random.default_rng(11)
    n_states, n_mix, n_features = 2, 2, 2
    start, trans, _, _ = _random_hmm(rng, n_states, n_features)
    weights = rng.dirichlet(np.ones(n_mix) * 3, size=n_states)
    means = rng.normal(scale=1.5, size=(n_states, n_mix, n_features))
    A = rng.normal(size=(n_states, n_mix, n_features, n_features)) * 0.5
    full_covs = A @ A.transpose(0, 1, 3, 2) + 0.5 * np.eye(n_features)
    if cov == "diag":
        full_covs = full_covs * np.eye(n_features)
    sequences = [rng.normal(scale=2.0, size=(T, n_features)) for T in (7, 5, 8)]
    ref = _brute_force_mixture_update(start, trans, weights, means, full_covs, sequences)
    param = (lambda c: np.diagonal(c, axis1=-2, axis2=-1)) if cov == "diag" else (lambda c: c)
    ours = GMMHMM.from_parameters(
        [GMM(weights[s], means[s], param(full_covs[s]), cov) for s in range(n_states)], start, trans,
        n_iter=1, reg_covar=0.0, occupancy_threshold=0.0)
    ours.fit(sequences, warm_start=True)
    np.testing.assert_allclose(ours.startprob_, ref[0], atol=1e-10)
    np.testing.assert_allclose(ours.transmat_, ref[1], atol=1e-10)
    for s, gmm in enumerate(ours.states_):
        np.testing.assert_allclose(gmm.weights, ref[2][s], atol=1e-9)
        np.testing.assert_allclose(gmm.means, ref[3][s], atol=1e-9)
        np.testing.assert_allclose(gmm.covariances, param(ref[4][s]), atol=1e-9)
