"""GMM-UBM speaker verification: UBM training over a corpus, MAP enrolment, LLR scoring.

- :func:`train_ubm` grows a UBM by binary splitting and EM, streaming features utterance by
  utterance (memory flat in the corpus size), in parallel over shards, with a checkpoint
  after every pass so that an interrupted run resumes where it stopped.
- :func:`enroll_speakers` MAP-adapts one model per speaker (Reynolds 2000, relevance
  factor 16) into a :class:`SpeakerModels` file bound to its UBM and feature configuration.
- :func:`score_trials` / :func:`score_matrix` give average per-frame log-likelihood ratios
  with top-C fast scoring, vectorised over trials; :func:`normalize_scores` applies Z-, T-,
  ZT- or S-norm (:mod:`speakergmm.verification.normalization`).
- :mod:`speakergmm.verification.pipeline` runs the whole chain on Kaldi-style data
  directories (the ``speakergmm verify`` command).
"""

from speakergmm.verification.enroll import SpeakerModels, enroll_speakers, speaker_stats
from speakergmm.verification.scoring import (
    cohort_scores,
    frame_llr,
    normalize_scores,
    score_matrix,
    score_trials,
    top_components,
)
from speakergmm.verification.sources import FeatureSource, VerificationError, as_source
from speakergmm.verification.ubm import UBMConfig, UBMResult, load_ubm, save_ubm, train_ubm

__all__ = [
    "FeatureSource",
    "SpeakerModels",
    "UBMConfig",
    "UBMResult",
    "VerificationError",
    "as_source",
    "cohort_scores",
    "enroll_speakers",
    "frame_llr",
    "load_ubm",
    "normalize_scores",
    "save_ubm",
    "score_matrix",
    "score_trials",
    "speaker_stats",
    "top_components",
    "train_ubm",
]
