"""Data sets generated on the fly (no downloads): the synthetic-voice demo corpus."""

from speakergmm.datasets.synthetic import (
    VOWEL_FORMANTS,
    SyntheticCorpus,
    Voice,
    make_synthetic_corpus,
    random_voice,
    synthesize_utterance,
)

__all__ = [
    "VOWEL_FORMANTS",
    "SyntheticCorpus",
    "Voice",
    "make_synthetic_corpus",
    "random_voice",
    "synthesize_utterance",
]
