"""GMMHMM training properties, topology, bad input, forced alignment and model files."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from speakergmm.hmm import GMMHMM, NoPathError, Topology, TopologyError
from speakergmm.io import ModelFileError, load_model_file, save_model_file
from speakergmm.mixture import GMM


def _known_hmm(end: str = "any") -> GMMHMM:
    """3-state left-to-right HMM, 2 well separated diagonal components per state, 2-D.

    It may end in any state, so that sampled sequences are not conditioned on reaching the
    last state (which would shorten the durations of the first states and bias the
    estimated self-loops below the truth).
    """
    topo = Topology.left_to_right(3, end=end)
    trans = np.array([[0.9, 0.1, 0.0], [0.0, 0.9, 0.1], [0.0, 0.0, 1.0]])
    states = [
        GMM([0.6, 0.4], [[0.0, 0.0], [3.0, 0.0]], [[0.3, 0.3], [0.2, 0.4]]),
        GMM([0.5, 0.5], [[0.0, 6.0], [3.0, 6.0]], [[0.4, 0.2], [0.3, 0.3]]),
        GMM([0.3, 0.7], [[-6.0, 0.0], [-6.0, 3.0]], [[0.2, 0.2], [0.5, 0.3]]),
    ]
    return GMMHMM.from_parameters(states, topo.startprob, trans, topology=topo)


def _sample_sequences(model, n, rng, low=20, high=50):
    return [model.sample(int(rng.integers(low, high)), random_state=int(rng.integers(2**31)))[0]
            for _ in range(n)]


@pytest.fixture(scope="module")
def sampled():
    rng = np.random.default_rng(0)
    truth = _known_hmm()
    return truth, _sample_sequences(truth, 150, rng)


def test_training_recovers_a_known_hmm(sampled):
    """150 sequences (~5000 frames, ~1500 per state): the estimates are within a few
    standard errors of the truth. A self-loop probability estimated from ~1500 frames has
    standard error sqrt(p(1-p)/n) ~ 0.008, so 0.03 is ~4 sigma; a mean estimated from ~600
    frames of variance <= 0.5 has standard error ~0.03, so 0.15 is ~5 sigma; a weight from
    ~1500 frames ~0.013, so 0.06 ~4.5 sigma; a variance from ~600 frames has relative
    standard error sqrt(2/600) ~ 0.06, so 0.25 is ~4 sigma."""
    truth, seqs = sampled
    model = GMMHMM(topology=truth.topology_, n_components=2, viterbi_iter=3, n_iter=30,
                   tol=1e-6, grow_mixtures=True).fit(seqs)
    np.testing.assert_allclose(model.transmat_, truth.transmat_, atol=0.03)
    np.testing.assert_array_equal(model.startprob_, truth.startprob_)
    for est, ref in zip(model.states_, truth.states_):
        # Components are unordered: match them by their means.
        order = min(([0, 1], [1, 0]), key=lambda o: np.abs(est.means[o] - ref.means).max())
        np.testing.assert_allclose(est.means[order], ref.means, atol=0.15)
        np.testing.assert_allclose(est.weights[order], ref.weights, atol=0.06)
        np.testing.assert_allclose(est.covariances[order], ref.covariances, rtol=0.25)
    # The fitted model explains held-out data about as well as the truth does.
    test = _sample_sequences(truth, 30, np.random.default_rng(1))
    per_frame = sum(len(x) for x in test)
    gap = (truth.score_sequences(test).sum() - model.score_sequences(test).sum()) / per_frame
    assert abs(gap) < 0.05


@pytest.mark.parametrize("cov", ["diag", "full", "spherical", "tied"])
def test_log_likelihood_never_decreases(sampled, cov):
    _, seqs = sampled
    model = GMMHMM(n_states=3, n_components=2, covariance_type=cov, n_iter=12, tol=0.0,
                   reg_covar=1e-6, occupancy_threshold=0.0).fit(seqs[:60])
    history = np.asarray(model.history_)
    assert len(history) == 12
    assert np.all(np.diff(history) >= -1e-8 * np.abs(history[1:]))
    assert history[-1] > history[0]


def test_viterbi_training_never_decreases_best_path_score(sampled):
    _, seqs = sampled
    model = GMMHMM(n_states=3, n_components=2, viterbi_iter=8, n_iter=0).fit(seqs[:60])
    history = np.asarray(model.viterbi_history_)
    assert np.all(np.diff(history) >= -1e-8 * np.abs(history[1:]))


@pytest.mark.parametrize("n_skips", [0, 1])
def test_fixed_topology_stays_left_to_right(sampled, n_skips):
    _, seqs = sampled
    model = GMMHMM(n_states=4, n_components=1, n_skips=n_skips, n_iter=8, transition_floor=1e-3,
                   fixed_topology=True).fit(seqs[:50])
    allowed = Topology.left_to_right(4, n_skips=n_skips).transition_mask
    assert np.all(model.transmat_[~allowed] == 0)
    assert np.all(model.transmat_[allowed] >= 1e-3 * 0.99)
    np.testing.assert_allclose(model.transmat_.sum(axis=1), 1.0)
    assert model.startprob_[0] == 1.0
    for seq in seqs[:10]:
        _, path = model.decode(seq)
        assert path[0] == 0 and path[-1] == 3
        assert np.all(np.diff(path) >= 0) and np.all(np.diff(path) <= 1 + n_skips)


def test_unfixed_topology_floor_opens_transitions(sampled):
    _, seqs = sampled
    model = GMMHMM(n_states=3, n_components=1, n_iter=3, transition_floor=1e-3,
                   fixed_topology=False).fit(seqs[:30])
    assert np.all(model.transmat_ > 0)


def test_ergodic_topology_and_flat_start(sampled):
    _, seqs = sampled
    model = GMMHMM(n_states=3, n_components=2, topology="ergodic", n_iter=5).fit(seqs[:40])
    assert model.topology_.final.all() and np.all(model.transmat_ >= 0)
    flat = GMMHMM(n_states=3, n_components=1, init="flat", n_iter=10).fit(seqs[:40])
    # A left-to-right flat start still separates the states (the topology breaks symmetry).
    means = np.vstack([g.means for g in flat.states_])
    assert np.ptp(means[:, 0]) > 3.0


# ---------------------------------------------------------------------- bad input
def test_empty_and_short_sequences():
    model = _known_hmm(end="last")  # strict left-to-right, must end in the last: >= 3 frames
    assert model.topology_.min_frames == 3
    with pytest.raises(ValueError, match="empty"):
        model.score(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="no .*s given"):
        model.score_sequences([])
    two = np.zeros((2, 2))
    assert model.score(two) == -np.inf  # documented: no path -> likelihood 0
    scores, paths = model.decode_sequences([two, np.zeros((5, 2))])
    assert scores[0] == -np.inf and np.all(paths[0] == -1) and np.isfinite(scores[1])
    with pytest.raises(NoPathError, match="at least 3 frames"):
        model.decode(two)
    with pytest.raises(NoPathError, match="at least 3 frames"):
        model.posteriors(two)
    with pytest.raises(NoPathError, match="sequence 1 has 2 frames"):
        GMMHMM(n_states=3).fit([np.ones((10, 2)), two])
    # The same sequence is fine when the model may end anywhere.
    anywhere = GMMHMM.from_parameters(model.states_, model.startprob_, model.transmat_)
    assert np.isfinite(anywhere.score(two))


def test_dimension_mismatch_and_non_finite():
    model = _known_hmm()
    with pytest.raises(ValueError, match="sequence 1 has 3 features, but the model expects 2"):
        model.score_sequences([np.zeros((5, 2)), np.zeros((5, 3))])
    with pytest.raises(ValueError, match="2-D"):
        model.score(np.zeros(5))
    bad = np.zeros((5, 2))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="sequence 1 contains NaN"):
        model.score_sequences([np.zeros((4, 2)), bad])
    with pytest.raises(ValueError, match="sequence 1 has 3 features"):
        GMMHMM(n_states=2).fit([np.zeros((5, 2)), np.zeros((5, 3))])
    with pytest.raises(RuntimeError, match="no parameters"):
        GMMHMM().score(np.zeros((5, 2)))


def test_bad_topologies():
    with pytest.raises(TopologyError, match="sums to"):
        Topology([1.0, 0.0], [[0.5, 0.4], [0.0, 1.0]])
    with pytest.raises(TopologyError, match="no final state can be reached"):
        Topology([1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]], final=[False, True])
    with pytest.raises(TopologyError, match="n_states"):
        Topology.left_to_right(0)
    with pytest.raises(ValueError, match="unknown topology"):
        GMMHMM(topology="circular").fit([np.zeros((5, 2))])
    assert Topology.left_to_right(5, n_skips=1).min_frames == 3
    assert Topology.left_to_right(5, end="any").min_frames == 1
    assert not Topology.ergodic(3).is_left_to_right


def test_from_parameters_refuses_forbidden_transitions():
    topo = Topology.left_to_right(2)
    states = [GMM([1.0], [[0.0]], [[1.0]]), GMM([1.0], [[1.0]], [[1.0]])]
    with pytest.raises(ValueError, match="forbids"):
        GMMHMM.from_parameters(states, [1.0, 0.0], [[0.5, 0.5], [0.5, 0.5]], topology=topo)


# ---------------------------------------------------------------------- alignment, sampling
def test_forced_alignment_to_a_state_sequence(sampled):
    truth = _known_hmm(end="last")
    X, states = truth.sample(30, random_state=5)
    score, path = truth.align_states(X, [0, 1, 2])
    best, best_path = truth.decode(X)
    np.testing.assert_array_equal(path, best_path)  # same constraint as the topology itself
    assert score == pytest.approx(best)
    assert np.mean(path == states) > 0.9  # states are well separated
    # Skipping state 1 is forbidden by the transitions.
    with pytest.raises(ValueError, match="forbidden transition"):
        truth.align_states(X, [0, 2])
    with pytest.raises(ValueError, match="outside"):
        truth.align_states(X, [0, 7])
    with pytest.raises(NoPathError, match="cannot be aligned"):
        truth.align_states(X[:2], [0, 1, 2])
    # A state listed twice is visited as two consecutive segments.
    _, path2 = truth.align_states(X, [0, 0, 1, 2])
    assert np.all(np.diff(path2) >= 0) and path2[0] == 0 and path2[-1] == 2


def test_sample_follows_topology():
    truth = _known_hmm(end="last")
    X, states = truth.sample(25, random_state=0)
    assert X.shape == (25, 2) and states[0] == 0 and states[-1] == 2
    assert np.all(np.diff(states) >= 0)
    with pytest.raises(NoPathError):
        truth.sample(2, random_state=0, max_tries=5)


# ---------------------------------------------------------------------- model files
def test_save_load_round_trip(tmp_path, sampled):
    _, seqs = sampled
    model = GMMHMM(n_states=3, n_components=2, n_iter=3).fit(seqs[:30])
    path = tmp_path / "word.hmm"
    model.save(path, meta={"word": "three"})
    loaded = GMMHMM.load(path)
    np.testing.assert_array_equal(loaded.transmat_, model.transmat_)
    np.testing.assert_array_equal(loaded.topology_.final, model.topology_.final)
    assert loaded.score(seqs[0]) == model.score(seqs[0])
    assert loaded.n_components == 2 and loaded.get_params()["n_iter"] == 3
    # Loaded models train further.
    loaded.n_iter = 1
    loaded.fit(seqs[:30], warm_start=True)


def test_load_refuses_bad_files(tmp_path):
    model = _known_hmm()
    path = tmp_path / "m.hmm"
    model.save(path)
    arrays, meta, _ = load_model_file(path, "speakergmm.GMMHMM")
    other = tmp_path / "v2.hmm"
    save_model_file(other, "speakergmm.GMMHMM", 2, arrays, meta)
    with pytest.raises(ModelFileError, match="version 2"):
        GMMHMM.load(other)
    wrong = tmp_path / "gmm.npz"
    model.states_[0].save(wrong)
    with pytest.raises(ModelFileError, match="expected a 'speakergmm.GMMHMM'"):
        GMMHMM.load(wrong)
    corrupt = tmp_path / "corrupt.hmm"
    corrupt.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelFileError):
        GMMHMM.load(corrupt)
    missing_state = tmp_path / "missing.hmm"
    save_model_file(missing_state, "speakergmm.GMMHMM", 1,
                    {k: v for k, v in arrays.items() if not k.startswith("state2.")}, meta)
    with pytest.raises(ModelFileError, match="corrupt"):
        GMMHMM.load(missing_state)


@pytest.mark.parametrize("cov", ["diag", "full", "spherical"])
def test_batched_statistics_equal_per_state_e_steps(sampled, cov):
    """The stacked path (one stats_from_responsibilities call for all states) accumulates
    exactly what each state's own gmm.e_step(X, sample_weight=gamma_s) does."""
    from speakergmm.hmm.model import check_sequences

    _, seqs = sampled
    model = GMMHMM(n_states=3, n_components=2, covariance_type=cov, n_iter=2,
                   occupancy_threshold=0.0).fit(seqs[:20])
    X, offsets = check_sequences(seqs[:20])
    emit, joint = model._emissions(X, keep_joint=True)
    assert joint is not None
    gamma, _, _ = model._forward_backward(X, offsets, emit)
    batched = model._stacked_statistics(X, joint, emit, gamma)
    reference = model._per_state_statistics(X, gamma)
    for a, b in zip(batched, reference):
        np.testing.assert_allclose(a.zeroth, b.zeroth, rtol=1e-10)
        np.testing.assert_allclose(a.first, b.first, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(a.second, b.second, rtol=1e-9, atol=1e-9)
        assert a.n_frames == pytest.approx(b.n_frames)
        assert a.log_likelihood == pytest.approx(b.log_likelihood)


def test_check_sequences_applies_check_frames_rules_naming_the_sequence():
    """The per-array rules are the core validator's; the error names the sequence at fault."""
    from speakergmm.hmm import check_sequences

    good = np.zeros((4, 2))
    with pytest.raises(ValueError, match="sequence 1 must hold real numbers"):
        check_sequences([good, np.zeros((3, 2), dtype=complex)])
    with pytest.raises(ValueError, match=r"sequence 2 contains NaN or infinity \(first at row 1, column 0\)"):
        check_sequences([good, good, np.array([[0.0, 0.0], [np.inf, 0.0]])])
    with pytest.raises(ValueError, match="sequence 0 has 0 feature"):
        check_sequences([np.zeros((3, 0))])
    X, offsets = check_sequences([good.astype(np.float32), np.ones((2, 2), dtype=int)])
    assert X.dtype == np.float64 and X.flags.c_contiguous and offsets.tolist() == [0, 4, 6]
