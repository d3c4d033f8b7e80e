"""hmmlearn's interface on GMMHMM / GaussianHMM: parity with hmmlearn on identical parameters."""

from __future__ import annotations

import numpy as np
import pytest

hmmlearn_hmm = pytest.importorskip("hmmlearn.hmm")

from speakergmm.hmm import GMMHMM, GaussianHMM, NoPathError, Topology  # noqa: E402

COVARIANCE_TYPES = ["spherical", "diag", "full", "tied"]
LENGTHS = [30, 45, 12, 60]


def _covars(rng, cov, n_states, n_mix, n_features):
    if cov == "spherical":
        return rng.uniform(0.5, 2.0, size=(n_states, n_mix))
    if cov == "diag":
        return rng.uniform(0.5, 2.0, size=(n_states, n_mix, n_features))
    if cov == "full":
        A = rng.normal(size=(n_states, n_mix, n_features, n_features))
        return A @ A.transpose(0, 1, 3, 2) + np.eye(n_features)
    A = rng.normal(size=(n_states, n_features, n_features))
    return A @ A.transpose(0, 2, 1) + np.eye(n_features)


def _reference(cov, seed=0, n_states=3, n_mix=2, n_features=3, sparse=False):
    rng = np.random.default_rng(seed)
    ref = hmmlearn_hmm.GMMHMM(n_states, n_mix, covariance_type=cov, init_params="", n_iter=1)
    start = rng.dirichlet(np.ones(n_states))
    trans = rng.dirichlet(np.ones(n_states) * 2, size=n_states)
    if sparse:  # structural zeros become the topology
        trans[0, 2] = 0.0
        trans /= trans.sum(axis=1, keepdims=True)
    ref.startprob_, ref.transmat_ = start, trans
    ref.weights_ = rng.dirichlet(np.ones(n_mix) * 2, size=n_states)
    ref.means_ = rng.normal(scale=2.0, size=(n_states, n_mix, n_features))
    ref.covars_ = _covars(rng, cov, n_states, n_mix, n_features)
    ref.n_features = n_features
    X, _ = ref.sample(sum(LENGTHS), random_state=1)
    return ref, X


@pytest.fixture(params=COVARIANCE_TYPES)
def pair(request):
    ref, X = _reference(request.param)
    return ref, GMMHMM.from_hmmlearn(ref), X


def test_attributes_have_hmmlearn_names_and_shapes(pair):
    ref, ours, _ = pair
    for name in ("startprob_", "transmat_", "weights_", "means_", "covars_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), err_msg=name)
    assert ours.n_mix == ref.n_mix and ours.n_features == ref.n_features


def test_score_and_score_samples_match(pair):
    ref, ours, X = pair
    assert ours.score(X, LENGTHS) == pytest.approx(ref.score(X, LENGTHS), rel=1e-10)
    log_prob, posteriors = ours.score_samples(X, LENGTHS)
    ref_log_prob, ref_posteriors = ref.score_samples(X, LENGTHS)
    assert log_prob == pytest.approx(ref_log_prob, rel=1e-10)
    np.testing.assert_allclose(posteriors, ref_posteriors, atol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X, LENGTHS), ref.predict_proba(X, LENGTHS), atol=1e-9)
    # One sequence without lengths, as in hmmlearn.
    assert ours.score(X[:50]) == pytest.approx(ref.score(X[:50]), rel=1e-10)


def test_decode_and_predict_match(pair):
    ref, ours, X = pair
    log_prob, states = ours.decode(X, LENGTHS)
    ref_log_prob, ref_states = ref.decode(X, LENGTHS, algorithm="viterbi")
    assert log_prob == pytest.approx(ref_log_prob, rel=1e-10)
    np.testing.assert_array_equal(states, ref_states)
    np.testing.assert_array_equal(ours.predict(X, LENGTHS), ref.predict(X, LENGTHS))
    map_log_prob, map_states = ours.decode(X, LENGTHS, algorithm="map")
    _, ref_map_states = ref.decode(X, LENGTHS, algorithm="map")
    np.testing.assert_array_equal(map_states, ref_map_states)
    # hmmlearn 0.3 sums the chosen posteriors; we sum their logarithms (documented).
    posteriors = ref.predict_proba(X, LENGTHS)
    assert map_log_prob == pytest.approx(np.log(posteriors.max(axis=1)).sum(), rel=1e-9)
    with pytest.raises(ValueError, match="algorithm"):
        ours.decode(X, LENGTHS, algorithm="beam")


def test_lists_and_lengths_are_the_same_data(pair):
    _, ours, X = pair
    seqs = np.split(X, np.cumsum(LENGTHS)[:-1])
    assert ours.score(seqs) == pytest.approx(ours.score(X, LENGTHS), rel=1e-12)
    np.testing.assert_array_equal(ours.decode(seqs)[1], ours.decode(X, LENGTHS)[1])
    np.testing.assert_allclose(ours.score_samples(seqs)[1], ours.score_samples(X, LENGTHS)[1])


def test_sample_follows_the_model_like_hmmlearn():
    ref, _ = _reference("diag", seed=3, n_features=2)
    ours = GMMHMM.from_hmmlearn(ref)
    X, states = ours.sample(6000, random_state=0)
    ref_X, ref_states = ref.sample(6000, random_state=0)
    assert X.shape == ref_X.shape and states.shape == ref_states.shape

    def transitions(z):
        counts = np.zeros((3, 3))
        np.add.at(counts, (z[:-1], z[1:]), 1)
        return counts / counts.sum(axis=1, keepdims=True)

    # Both draw from the same chain: transition frequencies agree within sampling error.
    np.testing.assert_allclose(transitions(states), ref.transmat_, atol=0.05)
    np.testing.assert_allclose(transitions(ref_states), ref.transmat_, atol=0.05)
    _, continued = ours.sample(5, random_state=1, currstate=2)
    assert continued[0] == 2


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_one_baum_welch_iteration_matches_hmmlearn(cov):
    """Start, transitions, weights and means after one iteration equal hmmlearn's.

    Covariances are left out: hmmlearn's GMMHMM centres them on the previous means
    (hmmlearn issue 365); ours are checked against a brute-force update in
    test_hmm_kernels.py.
    """
    ref, X = _reference(cov, seed=4, sparse=True)
    ours = GMMHMM.from_hmmlearn(ref, reg_covar=0.0, occupancy_threshold=0.0)
    assert ours.topology_.transmat[0, 2] == 0  # hmmlearn's zeros are structural here
    ref.fit(X, LENGTHS)
    ours.fit(X, LENGTHS, warm_start=True)
    for name in ("startprob_", "transmat_", "weights_", "means_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), atol=1e-9, err_msg=name)
    assert ours.monitor_.history[0] == pytest.approx(ref.monitor_.history[0], rel=1e-10)
    assert ours.monitor_.iter == 1 and ours.monitor_.n_iter == 1


def test_round_trip_through_hmmlearn(pair):
    ref, ours, X = pair
    back = ours.to_hmmlearn()
    assert back.score(X, LENGTHS) == pytest.approx(ours.score(X, LENGTHS), rel=1e-10)
    again = GMMHMM.from_hmmlearn(back)
    np.testing.assert_allclose(again.covars_, ours.covars_)
    np.testing.assert_allclose(again.transmat_, ours.transmat_)


@pytest.mark.parametrize("cov", ["spherical", "diag", "full"])
def test_gaussian_hmm_matches_hmmlearn(cov):
    rng = np.random.default_rng(8)
    n_states, n_features = 3, 2
    ref = hmmlearn_hmm.GaussianHMM(n_states, cov, init_params="", n_iter=1)
    ref.n_features = n_features
    ref.startprob_ = rng.dirichlet(np.ones(n_states))
    ref.transmat_ = rng.dirichlet(np.ones(n_states) * 2, size=n_states)
    ref.means_ = rng.normal(scale=3.0, size=(n_states, n_features))
    ref.covars_ = {"spherical": rng.uniform(0.5, 2, n_states),
                   "diag": rng.uniform(0.5, 2, (n_states, n_features)),
                   "full": np.stack([np.eye(n_features) + 0.3 for _ in range(n_states)])}[cov]
    X, _ = ref.sample(sum(LENGTHS), random_state=2)
    ours = GaussianHMM.from_hmmlearn(ref)
    assert isinstance(ours, GaussianHMM)
    np.testing.assert_allclose(ours.means_, ref.means_)
    np.testing.assert_allclose(ours.covars_, ref.covars_)  # full matrices, as hmmlearn reports them
    assert ours.score(X, LENGTHS) == pytest.approx(ref.score(X, LENGTHS), rel=1e-10)
    np.testing.assert_array_equal(ours.predict(X, LENGTHS), ref.predict(X, LENGTHS))
    back = ours.to_hmmlearn()
    assert back.score(X, LENGTHS) == pytest.approx(ref.score(X, LENGTHS), rel=1e-10)


def test_gaussian_hmm_trains_and_refuses_tied():
    rng = np.random.default_rng(0)
    seqs = [np.concatenate([rng.normal(0, 1, (10, 2)), rng.normal(5, 1, (10, 2))]) for _ in range(20)]
    model = GaussianHMM(2, n_iter=5).fit(seqs)
    assert model.means_.shape == (2, 2) and model.covars_.shape == (2, 2, 2)
    assert model.means_[1, 0] > 4 and model.means_[0, 0] < 1
    with pytest.raises(ValueError, match="tied"):
        GaussianHMM(2, covariance_type="tied").fit(seqs)


def test_fit_with_lengths_equals_fit_with_a_list():
    _, X = _reference("diag", seed=5)
    seqs = np.split(X, np.cumsum(LENGTHS)[:-1])
    settings = dict(n_states=3, n_components=2, topology="ergodic", n_iter=4, random_state=0)
    from_lengths = GMMHMM(**settings).fit(X, LENGTHS)
    from_list = GMMHMM(**settings).fit(seqs)
    assert from_lengths.history_ == from_list.history_
    np.testing.assert_array_equal(from_lengths.means_, from_list.means_)
    np.testing.assert_array_equal(from_lengths.transmat_, from_list.transmat_)
    # All frames as one sequence is a different model: lengths must not be dropped.
    one = GMMHMM(**settings).fit(X)
    assert one.history_[-1] != from_lengths.history_[-1]


def test_bad_lengths_are_named():
    _, X = _reference("diag")
    model = GMMHMM(3, 2, topology="ergodic", n_iter=1)
    with pytest.raises(ValueError, match="lengths sum to 10 but X has 147"):
        model.fit(X, [5, 5])
    with pytest.raises(TypeError, match="warm_start is keyword-only"):
        model.fit(X, True)
    with pytest.raises(ValueError, match=r"lengths\[1\] is 0"):
        model.fit(X, [147, 0])
    with pytest.raises(ValueError, match="one 2-D"):
        model.fit([X[:10], X[10:]], [10, 137])


def test_no_path_in_one_of_several_sequences_is_named():
    model = GMMHMM(4, 1, n_iter=2).fit([np.random.default_rng(0).normal(size=(20, 2)) for _ in range(5)])
    assert model.topology_.min_frames == 4
    X = np.zeros((23, 2))
    assert model.score(X, [20, 3]) == -np.inf
    with pytest.raises(NoPathError, match="sequence 1"):
        model.decode(X, [20, 3])
    with pytest.raises(NoPathError, match="sequence 1"):
        model.score_samples(X, [20, 3])


def test_estimator_protocol_clone_and_params():
    sklearn_base = pytest.importorskip("sklearn.base")
    topo = Topology.left_to_right(4, n_skips=1)
    model = GMMHMM(4, 2, topology=topo, n_iter=3)
    params = model.get_params()
    assert params["n_states"] == 4 and params["n_components"] == 2 and params["topology"] is topo
    copy = sklearn_base.clone(model)
    copied = copy.get_params()
    assert copied.pop("topology").name == topo.name  # deep-copied by clone
    assert copied == {k: v for k, v in params.items() if k != "topology"}
    assert not copy.__sklearn_is_fitted__()
    model.set_params(n_iter=7)
    assert model.n_iter == 7
    with pytest.raises(ValueError, match="invalid parameter"):
        model.set_params(n_mix=3)
    assert "n_iter=7" in repr(model)
    assert set(GaussianHMM().get_params()) == set(GMMHMM().get_params()) - {
        "n_components", "mixture_init", "grow_mixtures", "iter_per_split", "grow_iter"}


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=6))
def test_any_split_by_lengths_scores_as_the_list(lengths):
    """score/decode/posteriors of (X, lengths) equal those of the list of pieces, for any split."""
    ref, _ = _reference("diag", seed=6, n_features=2)
    ours = GMMHMM.from_hmmlearn(ref)
    X, _ = ref.sample(sum(lengths), random_state=len(lengths))
    pieces = np.split(X, np.cumsum(lengths)[:-1])
    assert ours.score(X, lengths) == pytest.approx(sum(ours.score(p) for p in pieces), rel=1e-10)
    assert ours.score(X, lengths) == pytest.approx(ref.score(X, lengths), rel=1e-10)
    np.testing.assert_array_equal(ours.predict(X, lengths), np.concatenate([ours.predict(p) for p in pieces]))
    np.testing.assert_allclose(ours.predict_proba(X, lengths), ref.predict_proba(X, lengths), atol=1e-9)
