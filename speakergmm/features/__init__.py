"""The front end: audio files -> MFCC (+ deltas, CMVN, VAD) frames for the EM core.

Quick use::

    from speakergmm.features import FeatureConfig, extract_features, extract_data_dir, FeatureStore

    config = FeatureConfig()                           # Kaldi/HTK-like defaults, 8 kHz
    X = extract_features("0_george_5.wav", config)     # (n_frames, 60) float32
    report = extract_data_dir("data/train", "feats/train", config, jobs=2)
    store = FeatureStore("feats/train")                # store[utt] -> array
"""

from speakergmm.features.audio import FeatureError, read_audio
from speakergmm.features.config import (CMVN_MODES, ENERGY_MODES, MEL_FILTERS, PIPELINE_VERSION, WINDOWS,
                                        FeatureConfig, FeatureConfigError, FeatureConfigMismatch)
from speakergmm.features.extract import Extraction, FeatureExtractor, extract_features, get_extractor
from speakergmm.features.processing import (add_deltas, cmvn, delta_filters, energy_vad,
                                            feature_warp, sliding_cmvn)
from speakergmm.features.store import (EXIT_SKIPPED, BatchReport, FeatureCacheMismatch, FeatureStore,
                                       FeatureStoreError, cache_beside, check_cache_config,
                                       FeatureStream, SkippedUtterance, extract_data_dir)

__all__ = [
    "FeatureConfig", "FeatureConfigError", "FeatureConfigMismatch", "PIPELINE_VERSION",
    "WINDOWS", "ENERGY_MODES", "CMVN_MODES",
    "FeatureError", "read_audio",
    "FeatureExtractor", "Extraction", "extract_features", "get_extractor",
    "add_deltas", "delta_filters", "cmvn", "sliding_cmvn", "feature_warp", "energy_vad",
    "extract_data_dir", "BatchReport", "SkippedUtterance", "FeatureStore", "FeatureStream",
    "FeatureStoreError", "FeatureCacheMismatch", "cache_beside", "check_cache_config", "EXIT_SKIPPED",
]
