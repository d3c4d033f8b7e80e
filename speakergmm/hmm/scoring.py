"""Word error rate by alignment (Levenshtein over words, as NIST's sclite and Kaldi's compute-wer).

The reference and the hypothesis of an utterance are aligned by dynamic programming with
unit costs for a substitution, a deletion (a reference word missing from the hypothesis)
and an insertion (a hypothesis word not in the reference); ties prefer a match or a
substitution, then a deletion. WER = (S + D + I) / N over all utterances, N the number of
reference words, so it can exceed 100 %.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

__all__ = ["WordAlignment", "ErrorCounts", "align_words", "word_error_rate"]


@dataclass(frozen=True)
class WordAlignment:
    """One utterance's alignment: ``pairs`` of (reference word or None, hypothesis word or None)."""

    pairs: tuple[tuple[str | None, str | None], ...]

    @property
    def substitutions(self) -> int:
        return sum(1 for r, h in self.pairs if r is not None and h is not None and r != h)

    @property
    def deletions(self) -> int:
        return sum(1 for r, h in self.pairs if h is None)

    @property
    def insertions(self) -> int:
        return sum(1 for r, h in self.pairs if r is None)

    @property
    def n_reference(self) -> int:
        return sum(1 for r, _ in self.pairs if r is not None)

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def __str__(self) -> str:
        ref = " ".join(r if r is not None else "*" * len(h) for r, h in self.pairs)
        hyp = " ".join(h if h is not None else "*" * len(r) for r, h in self.pairs)
        return f"REF: {ref}\nHYP: {hyp}"


def align_words(reference: Sequence[str], hypothesis: Sequence[str]) -> WordAlignment:
    """Minimum-edit-distance alignment of two word sequences."""
    ref, hyp = list(reference), list(hypothesis)
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]),
                             cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    pairs: list[tuple[str | None, str | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            pairs.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            pairs.append((ref[i - 1], None))
            i -= 1
        else:
            pairs.append((None, hyp[j - 1]))
            j -= 1
    return WordAlignment(tuple(reversed(pairs)))


@dataclass
class ErrorCounts:
    """Totals over utterances: WER, sentence error rate and the error kinds."""

    n_reference: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    n_sentences: int = 0
    sentence_errors: int = 0
    alignments: list[WordAlignment] = field(default_factory=list, repr=False)

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """(S + D + I) / N; NaN without reference words."""
        return self.errors / self.n_reference if self.n_reference else float("nan")

    @property
    def sentence_error_rate(self) -> float:
        return self.sentence_errors / self.n_sentences if self.n_sentences else float("nan")

    def to_dict(self) -> dict:
        return {"wer": self.wer, "sentence_error_rate": self.sentence_error_rate,
                "sentence_accuracy": 1.0 - self.sentence_error_rate if self.n_sentences else None,
                "n_reference_words": self.n_reference, "n_sentences": self.n_sentences,
                "substitutions": self.substitutions, "deletions": self.deletions,
                "insertions": self.insertions}


def word_error_rate(references: Iterable[Sequence[str]], hypotheses: Iterable[Sequence[str]]) -> ErrorCounts:
    """Align every (reference, hypothesis) pair of word sequences and total the errors.

    Raises
    ------
    ValueError
        If the two iterables have different lengths.
    """
    refs, hyps = list(references), list(hypotheses)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    counts = ErrorCounts()
    for ref, hyp in zip(refs, hyps):
        if isinstance(ref, str) or isinstance(hyp, str):
            raise TypeError("references and hypotheses are sequences of words, not strings "
                            "(split them first)")
        alignment = align_words(ref, hyp)
        counts.alignments.append(alignment)
        counts.n_reference += alignment.n_reference
        counts.substitutions += alignment.substitutions
        counts.deletions += alignment.deletions
        counts.insertions += alignment.insertions
        counts.n_sentences += 1
        counts.sentence_errors += int(alignment.errors > 0)
    return counts
