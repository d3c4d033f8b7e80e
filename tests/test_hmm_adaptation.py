"""Speaker adaptation of HMMs: Baum-Welch statistics, MAP, MLLR, speaker CMVN, VTLN warping."""

from __future__ import annotations

import numpy as np
import pytest

from speakergmm.hmm import GMMHMM, Topology, WordRecognizer
from speakergmm.hmm.adaptation import (MLLRTransform, apply_mllr, estimate_mllr, speaker_cmvn,
                                       vtln_warp_factor, warped_extractor)
from speakergmm.mixture import GMM

WORDS = ("alpha", "bravo", "charlie")


def _word(offset: float, seed: int) -> GMMHMM:
    topo = Topology.left_to_right(3)
    trans = np.array([[0.8, 0.2, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(seed)
    states = [GMM([0.5, 0.5], rng.normal(size=(2, 4)) * 2 + offset, np.full((2, 4), 0.5)) for _ in range(3)]
    return GMMHMM.from_parameters(states, topo.startprob, trans, topology=topo)


def _draw(model, n, rng):
    return [model.sample(int(rng.integers(15, 30)), random_state=int(rng.integers(2**31)))[0] for _ in range(n)]


@pytest.fixture(scope="module")
def speakers():
    """Words of a training speaker, and of a new speaker whose frames are x' = A x + b."""
    rng = np.random.default_rng(0)
    generators = {w: _word(float(i), i + 1) for i, w in enumerate(WORDS)}
    train = {w: _draw(generators[w], 30, rng) for w in WORDS}
    A = np.eye(4) + rng.normal(scale=0.15, size=(4, 4))
    b = rng.normal(scale=1.5, size=4)
    new_X, new_y = [], []
    for w in WORDS:
        for x in _draw(generators[w], 15, rng):
            new_X.append(x @ A.T + b)
            new_y.append(w)
    return train, new_X, np.array(new_y), A, b


@pytest.fixture(scope="module")
def recognizer(speakers):
    train = speakers[0]
    return WordRecognizer(hmm=GMMHMM(n_states=3, n_components=2, n_iter=6, reg_covar=1e-3)).fit(train)


def test_accumulated_statistics_are_one_baum_welch_e_step(speakers, recognizer):
    model = recognizer.models_["alpha"]
    seqs = speakers[0]["alpha"][:10]
    stats = model.accumulate(seqs)
    assert stats.n_sequences == 10
    assert stats.log_likelihood == pytest.approx(model.score(seqs))
    total_frames = sum(x.shape[0] for x in seqs)
    assert sum(s.zeroth.sum() for s in stats.states) == pytest.approx(total_frames)
    halves = model.accumulate(seqs[:4]) + model.accumulate(seqs[4:])
    np.testing.assert_allclose(halves.transition_counts, stats.transition_counts)
    for a, b in zip(halves.states, stats.states):
        np.testing.assert_allclose(a.first, b.first)
    # The ML update of these statistics is exactly one Baum-Welch iteration.
    from speakergmm.mixture import ml_update

    one = GMMHMM.from_parameters(model.states_, model.startprob_, model.transmat_, topology=model.topology_,
                                 n_iter=1, reg_covar=1e-3, occupancy_threshold=model.occupancy_threshold)
    one.fit(seqs, warm_start=True)
    for gmm, st, new in zip(model.states_, stats.states, one.states_):
        np.testing.assert_allclose(ml_update(st, reg_covar=1e-3, previous=gmm).means, new.means)


def test_map_moves_means_towards_the_data_by_their_occupancy(speakers, recognizer):
    model = recognizer.models_["bravo"]
    seqs = [x + 3.0 for x in speakers[0]["bravo"][:5]]
    stats = model.accumulate(seqs)
    adapted = model.adapt_map(seqs, relevance_factor=8.0)
    for gmm, st, new in zip(model.states_, stats.states, adapted.states_):
        alpha = st.zeroth / (st.zeroth + 8.0)
        data_means = st.first / st.zeroth[:, None]
        np.testing.assert_allclose(new.means, alpha[:, None] * data_means + (1 - alpha[:, None]) * gmm.means)
        np.testing.assert_array_equal(new.covariances, gmm.covariances)
    np.testing.assert_array_equal(adapted.transmat_, model.transmat_)
    assert adapted.score(seqs) > model.score(seqs)
    assert recognizer.models_["bravo"] is model and model.states_[0] is not adapted.states_[0]


def test_mllr_recovers_an_affine_change_of_the_means(recognizer):
    """Data drawn from the models with every mean moved by a known transform: the
    estimated transform is that transform."""
    rng = np.random.default_rng(3)
    truth = MLLRTransform(np.hstack([rng.normal(scale=0.5, size=(4, 1)),
                                     np.eye(4) + rng.normal(scale=0.1, size=(4, 4))]))
    models = [recognizer.models_[w] for w in WORDS]
    moved = [apply_mllr(m, truth) for m in models]
    data = [[m.sample(40, random_state=int(rng.integers(2**31)))[0] for _ in range(40)] for m in moved]
    stats = [m.accumulate(seqs) for m, seqs in zip(models, data)]
    estimate = estimate_mllr(models, stats)
    np.testing.assert_allclose(estimate.W, truth.W, atol=0.08)
    identity = estimate_mllr(models, [None, None, None])
    np.testing.assert_array_equal(identity.W, MLLRTransform.identity(4).W)
    with pytest.raises(ValueError, match="3 models but 2"):
        estimate_mllr(models, stats[:2])


def test_unsupervised_adaptation_to_a_new_speaker(speakers, recognizer):
    _, X, y, _, _ = speakers
    before = np.mean(recognizer.predict(X) == y)
    results = {}
    for method in ("mllr", "map", "mllr+map"):
        adapted = recognizer.adapt(X, method=method, iterations=3)
        results[method] = np.mean(adapted.predict(X) == y)
        assert adapted.models_ is not recognizer.models_
    assert np.mean(recognizer.predict(X) == y) == before  # the original is untouched
    # Measured: 37/45 (0.82) before; 45/45 after each method.
    assert before < 0.9
    assert all(accuracy >= 0.95 for accuracy in results.values()), results
    supervised = recognizer.adapt(X, labels=list(y), method="mllr")
    assert np.mean(supervised.predict(X) == y) >= 0.95
    with pytest.raises(ValueError, match="method"):
        recognizer.adapt(X, method="fmllr")
    with pytest.raises(ValueError, match="unknown word"):
        recognizer.adapt(X[:1], labels=["zulu"])


def test_speaker_cmvn_normalises_each_speaker():
    rng = np.random.default_rng(0)
    feats = {f"a{i}": rng.normal(5, 2, size=(10 + i, 3)) for i in range(4)}
    feats.update({f"b{i}": rng.normal(-1, 0.5, size=(12, 3)) for i in range(3)})
    utt2spk = {u: u[0] for u in feats}
    out = speaker_cmvn(feats, utt2spk)
    for spk in "ab":
        frames = np.concatenate([out[u] for u in out if u[0] == spk])
        np.testing.assert_allclose(frames.mean(axis=0), 0, atol=1e-12)
        np.testing.assert_allclose(frames.std(axis=0), 1)
    # Utterance means are kept relative to each other (what per-utterance CMVN would erase).
    assert not np.allclose(out["a0"].mean(axis=0), 0)
    with pytest.raises(ValueError, match="without a speaker"):
        speaker_cmvn({"c0": np.zeros((3, 3))}, utt2spk)


def test_vtln_warped_filterbank_and_grid_search():
    from speakergmm.features import FeatureConfig

    config = FeatureConfig(cmvn="none")
    plain, same = warped_extractor(config, 1.0), warped_extractor(config, 1.0)
    np.testing.assert_array_equal(plain.melbank, same.melbank)
    centre = lambda bank: (bank * np.arange(bank.shape[0])[:, None]).sum(0) / bank.sum(0)  # noqa: E731
    up, down = warped_extractor(config, 1.1), warped_extractor(config, 0.9)
    # warp > 1 reads the spectrum at f / warp: each band moves to higher FFT bins.
    assert np.all(centre(up.melbank)[:15] > centre(plain.melbank)[:15])
    assert np.all(centre(down.melbank)[:15] < centre(plain.melbank)[:15])
    signal = np.random.default_rng(0).normal(size=8000) * 1000
    assert up.mfcc(signal)[0].shape == plain.mfcc(signal)[0].shape
    best, scores = vtln_warp_factor(lambda w: -(w - 1.04) ** 2, [0.96, 1.0, 1.04, 1.08])
    assert best == 1.04 and len(scores) == 4
    with pytest.raises(ValueError, match="warp"):
        warped_extractor(config, 3.0)
