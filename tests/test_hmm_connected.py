"""Connected-word decoding: token passing over word HMMs, insertion penalty, silence, WER."""

from __future__ import annotations

import numpy as np
import pytest

from speakergmm.hmm import GMMHMM, NoPathError, Topology
from speakergmm.hmm.connected import ConnectedWordDecoder, join_with_pauses, tune_insertion_penalty
from speakergmm.hmm.scoring import word_error_rate
from speakergmm.mixture import GMM

WORDS = ("alpha", "bravo", "charlie")


def _word(offset: float, seed: int) -> GMMHMM:
    topo = Topology.left_to_right(3)
    trans = np.array([[0.7, 0.3, 0.0], [0.0, 0.7, 0.3], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(seed)
    states = [GMM([1.0], rng.normal(size=(1, 3)) * 3 + offset, np.ones((1, 3)) * 0.5) for _ in range(3)]
    return GMMHMM.from_parameters(states, topo.startprob, trans, topology=topo)


@pytest.fixture(scope="module")
def models():
    return {w: _word(2.0 * i, i + 10) for i, w in enumerate(WORDS)}


@pytest.fixture(scope="module")
def silence():
    topo = Topology.left_to_right(1)
    return GMMHMM.from_parameters([GMM([1.0], np.full((1, 3), -8.0), np.ones((1, 3)) * 0.2)],
                                  topo.startprob, topo.transmat, topology=topo)


def _strings(models, rng, n, silence=None):
    X, refs = [], []
    for _ in range(n):
        words = list(rng.choice(WORDS, size=int(rng.integers(1, 5))))
        parts = []
        for w in words:
            if silence is not None:
                parts.append(silence.sample(int(rng.integers(3, 8)), random_state=int(rng.integers(2**31)))[0])
            parts.append(models[w].sample(int(rng.integers(8, 14)), random_state=int(rng.integers(2**31)))[0])
        X.append(np.concatenate(parts))
        refs.append(words)
    return X, refs


def test_decodes_strings_of_words(models):
    rng = np.random.default_rng(0)
    X, refs = _strings(models, rng, 30)
    decoded = ConnectedWordDecoder(models).decode(X)
    counts = word_error_rate(refs, [list(d.words) for d in decoded])
    assert counts.wer <= 0.05, counts.to_dict()
    # Segments tile each utterance in order.
    for d, x in zip(decoded, X):
        assert d.segments[0][1] == 0 and d.segments[-1][2] == x.shape[0]
        assert all(a[2] == b[1] for a, b in zip(d.segments, d.segments[1:]))
    # A repeated word is two words (re-entering the start state is a boundary).
    twice = np.concatenate([models["bravo"].sample(10, random_state=1)[0],
                            models["bravo"].sample(10, random_state=2)[0]])
    assert ConnectedWordDecoder(models).decode([twice])[0].words == ("bravo", "bravo")


def test_insertion_penalty_trades_insertions_for_deletions(models):
    rng = np.random.default_rng(1)
    X, refs = _strings(models, rng, 20)
    many = word_error_rate(refs, [list(d.words) for d in ConnectedWordDecoder(models, insertion_penalty=60).decode(X)])
    few = word_error_rate(refs, [list(d.words) for d in ConnectedWordDecoder(models, insertion_penalty=-200).decode(X)])
    assert many.insertions > 0 and few.deletions > 0
    best, results = tune_insertion_penalty(models, X, refs, [-200, 0, 60])
    assert best == 0 and results[0].wer < min(many.wer, few.wer)


def test_optional_silence_model(models, silence):
    rng = np.random.default_rng(2)
    X, refs = _strings(models, rng, 20, silence=silence)
    with_silence = ConnectedWordDecoder(models, silence=silence).decode(X)
    counts = word_error_rate(refs, [list(d.words) for d in with_silence])
    assert counts.wer <= 0.05 and all("<sil>" not in d.words for d in with_silence)
    without = ConnectedWordDecoder(models).decode(X)
    assert word_error_rate(refs, [list(d.words) for d in without]).wer > counts.wer


def test_bad_input(models):
    with pytest.raises(NoPathError, match="too short"):
        ConnectedWordDecoder(models).decode([np.zeros((2, 3))])
    with pytest.raises(ValueError, match="no word models"):
        ConnectedWordDecoder({})
    with pytest.raises(ValueError, match="has 2 features"):
        ConnectedWordDecoder(models).decode([np.zeros((10, 2))])
    with pytest.raises(ValueError, match="3 pauses"):
        join_with_pauses([np.zeros(10), np.zeros(10)], 8000, [0.1])
    joined = join_with_pauses([np.ones(10), np.ones(5)], 100, [0.1, 0.2, 0.0])
    assert joined.size == 10 + 10 + 20 + 5


# ---------------------------------------------------------------------- WER properties
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from speakergmm.hmm.scoring import align_words  # noqa: E402

_words = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=8)


@settings(max_examples=200, deadline=None)
@given(_words, _words)
def test_alignment_is_an_edit_script(reference, hypothesis):
    alignment = align_words(reference, hypothesis)
    # Reading either side of the alignment gives back the sequences.
    assert [r for r, _ in alignment.pairs if r is not None] == reference
    assert [h for _, h in alignment.pairs if h is not None] == hypothesis
    # Its cost is the Levenshtein distance (computed here independently, by recursion).
    from functools import lru_cache

    @lru_cache(maxsize=None)
    def distance(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(distance(i - 1, j) + 1, distance(i, j - 1) + 1,
                   distance(i - 1, j - 1) + (reference[i - 1] != hypothesis[j - 1]))

    assert alignment.errors == distance(len(reference), len(hypothesis))
    assert alignment.n_reference == len(reference)
    assert (alignment.errors == 0) == (reference == hypothesis)
    assert align_words(hypothesis, reference).errors == alignment.errors
