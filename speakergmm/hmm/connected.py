"""Connected-word recognition: Viterbi token passing over word HMMs in a word-loop grammar.

All word models (and an optional silence model) are joined into one network: inside a
word the word's own transitions; from every final state of any word (or of silence) a
token may leave for the start state of any word, paying the grammar's log-probability
(uniform, ``-log V``) and the *word insertion penalty*, or for silence at no cost. One
Viterbi pass over the network (the numba kernel of :mod:`speakergmm.hmm._kernels`) keeps,
for every state and frame, the best token, which is exactly token passing with one token
per state (Young, Russell and Thornton, 1989). The best path ending in a final state,
split where it re-enters a start state, gives the words and their times.

A word model's last state loops with probability 1 in isolated-word training; leaving it
therefore costs nothing beyond the penalty, and the penalty alone balances deletions
against insertions (tune it on development data; :func:`tune_insertion_penalty`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from speakergmm.hmm import _kernels as K
from speakergmm.hmm.model import GMMHMM, NoPathError, check_sequences
from speakergmm.hmm.scoring import ErrorCounts, word_error_rate

__all__ = ["ConnectedWordDecoder", "DecodedString", "join_with_pauses", "tune_insertion_penalty"]

SILENCE = "<sil>"


@dataclass(frozen=True)
class DecodedString:
    """One decoded utterance: the words and, per word, its first and end frame."""

    words: tuple[str, ...]
    segments: tuple[tuple[str, int, int], ...]
    log_score: float


class ConnectedWordDecoder:
    """Word-loop decoder over word HMMs.

    Parameters
    ----------
    models : mapping word -> GMMHMM, or a fitted WordRecognizer
        Word models of one feature dimension.
    insertion_penalty : float
        Added (in nats) each time a word starts; negative values discourage insertions.
    silence : GMMHMM, optional
        A silence (pause) model that may appear before, between and after words, at no
        cost; it is not part of the output.
    grammar_weight : float
        Scale of the uniform word-loop log-probability ``-log V`` added per word.
    """

    def __init__(self, models, insertion_penalty: float = 0.0, silence: GMMHMM | None = None,
                 grammar_weight: float = 1.0) -> None:
        if hasattr(models, "models_"):
            if models.models_ is None:
                raise ValueError("the WordRecognizer is not trained")
            models = {w: models.models_[w] for w in models.words_}
        if not models:
            raise ValueError("no word models")
        self.models = dict(models)
        self.insertion_penalty = float(insertion_penalty)
        self.silence = silence
        self.grammar_weight = float(grammar_weight)
        dims = {m.n_features for m in self.models.values()} | ({silence.n_features} if silence else set())
        if len(dims) != 1:
            raise ValueError(f"word models of different dimensions {sorted(dims)}")
        self.n_features = dims.pop()
        self._build()

    def _build(self) -> None:
        units = [(w, m) for w, m in self.models.items()]
        if self.silence is not None:
            units.append((SILENCE, self.silence))
        sizes = [len(m.states_) for _, m in units]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        n = int(offsets[-1])
        with np.errstate(divide="ignore"):
            trans = np.full((n, n), -np.inf)
            start = np.full(n, -np.inf)
            final = np.full(n, -np.inf)
            word_entry = -self.grammar_weight * np.log(len(self.models)) + self.insertion_penalty
            for (name, model), a in zip(units, offsets[:-1]):
                S = len(model.states_)
                trans[a:a + S, a:a + S] = np.log(model.transmat_)
                entry = np.log(model.startprob_) + (0.0 if name == SILENCE else word_entry)
                start[a:a + S] = np.maximum(start[a:a + S], entry)
                final[a:a + S] = np.where(model.topology_.final, 0.0, -np.inf)
            # Grammar arcs: any final state -> the start states of any unit.
            for (name_from, model_from), a in zip(units, offsets[:-1]):
                exits = a + np.flatnonzero(model_from.topology_.final)
                for (name_to, model_to), b in zip(units, offsets[:-1]):
                    if name_from == SILENCE and name_to == SILENCE:
                        continue  # a silence already loops
                    enter = np.log(model_to.startprob_) + (0.0 if name_to == SILENCE else word_entry)
                    for e in exits:
                        trans[e, b:b + len(model_to.states_)] = np.maximum(
                            trans[e, b:b + len(model_to.states_)], enter)
        self._units = units
        self._offsets = offsets
        self._unit_of = np.repeat(np.arange(len(units)), sizes)
        self._start = start
        self._final = final
        self._edges = K.edge_lists(trans)
        self._start_states = {int(a + s) for (_, m), a in zip(units, offsets[:-1])
                              for s in np.flatnonzero(m.startprob_ > 0)}
        self._final_states = {int(a + s) for (_, m), a in zip(units, offsets[:-1])
                              for s in np.flatnonzero(m.topology_.final)}

    def _emissions(self, X: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.hstack([m.log_emissions(X) for _, m in self._units]))

    def decode(self, sequences: Sequence[np.ndarray] | np.ndarray) -> list[DecodedString]:
        """The best word string of each (T, D) sequence.

        Raises
        ------
        NoPathError
            If a sequence is shorter than every word (and silence) model.
        """
        X, offsets = check_sequences(sequences, self.n_features)
        emit = self._emissions(X)
        e = self._edges
        path, score = K.viterbi(self._start, self._final, e.pred_ptr, e.pred_src, e.pred_logp, emit, offsets)
        out = []
        for n, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])):
            if score[n] == -np.inf:
                raise NoPathError(f"sequence {n}: {b - a} frames, too short for any word")
            out.append(self._segment(path[a:b], float(score[n])))
        return out

    def _segment(self, path: np.ndarray, score: float) -> DecodedString:
        segments = []
        begin = 0
        for t in range(1, path.size + 1):
            boundary = t == path.size
            if not boundary:
                prev, cur = int(path[t - 1]), int(path[t])
                boundary = (self._unit_of[prev] != self._unit_of[cur]
                            or (prev in self._final_states and cur in self._start_states and cur < prev))
            if boundary:
                name = self._units[self._unit_of[int(path[begin])]][0]
                if name != SILENCE:
                    segments.append((name, begin, t))
                begin = t
        return DecodedString(tuple(s[0] for s in segments), tuple(segments), score)


def tune_insertion_penalty(models, sequences: Sequence[np.ndarray], references: Sequence[Sequence[str]],
                           penalties: Iterable[float], silence: GMMHMM | None = None
                           ) -> tuple[float, dict[float, ErrorCounts]]:
    """The insertion penalty with the lowest WER on development data, and each one's errors."""
    results: dict[float, ErrorCounts] = {}
    for penalty in penalties:
        decoder = ConnectedWordDecoder(models, insertion_penalty=penalty, silence=silence)
        hyps = [d.words for d in decoder.decode(sequences)]
        results[float(penalty)] = word_error_rate([list(r) for r in references], [list(h) for h in hyps])
    if not results:
        raise ValueError("no penalties given")
    best = min(results, key=lambda p: (results[p].wer, abs(p)))
    return best, results


def join_with_pauses(signals: Sequence[np.ndarray], sample_rate: int, pause_seconds: Sequence[float],
                     noise_level: float = 2.0, seed: int = 0) -> np.ndarray:
    """Recordings joined by pauses of low-level Gaussian noise (connected-word test strings).

    ``pause_seconds`` has one more entry than ``signals``: the pauses before, between and
    after the recordings. ``noise_level`` is the noise's standard deviation in the
    signals' units (2.0 is about -84 dB of full scale for signals in the 16-bit range, as
    :func:`~speakergmm.features.audio.read_audio` returns them).
    """
    if len(pause_seconds) != len(signals) + 1:
        raise ValueError(f"{len(signals)} recordings need {len(signals) + 1} pauses, got {len(pause_seconds)}")
    rng = np.random.default_rng(seed)
    parts = []
    for i, pause in enumerate(pause_seconds):
        parts.append(rng.normal(scale=noise_level, size=int(round(pause * sample_rate))))
        if i < len(signals):
            parts.append(np.asarray(signals[i], dtype=np.float64))
    return np.concatenate(parts)

