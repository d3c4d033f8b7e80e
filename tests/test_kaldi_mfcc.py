"""FeatureConfig.kaldi() against kaldi-native-fbank (Kaldi's MFCC code, test-only dependency),
frame by frame on real recordings: FSDD (8 kHz wav) and speechocean762 (16 kHz FLAC)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speakergmm.features import FeatureConfig, get_extractor
from speakergmm.features.extract import kaldi_mel_filters

knf = pytest.importorskip("kaldi_native_fbank", reason="kaldi-native-fbank (test extra) is not installed")

SPEECHOCEAN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speechocean762-train" / "recordings"


def kaldi_mfcc(path: Path) -> np.ndarray:
    """compute-mfcc-feats with default options and --dither=0, through kaldi-native-fbank."""
    samples, rate = sf.read(path, dtype="int16")  # Kaldi reads 16-bit integers as they are
    opts = knf.MfccOptions()
    opts.frame_opts.samp_freq = rate
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 23     # Kaldi's default (kaldi-native-fbank's too, stated for clarity)
    opts.num_ceps = 13
    opts.use_energy = True
    mfcc = knf.OnlineMfcc(opts)
    mfcc.accept_waveform(rate, samples.astype(np.float32).tolist())
    mfcc.input_finished()
    return np.array([mfcc.get_frame(i) for i in range(mfcc.num_frames_ready)])


def _assert_parity(files: list[Path], rate: int) -> float:
    extractor = get_extractor(FeatureConfig.kaldi(sample_rate=rate))
    worst = 0.0
    for path in files:
        ref = kaldi_mfcc(path)
        ours = extractor.extract(path)
        assert ours.shape == ref.shape, f"{path}: {ours.shape} frames x coefficients vs Kaldi's {ref.shape}"
        span = ref.max(axis=0) - ref.min(axis=0)
        diff = np.abs(ours - ref).max(axis=0)
        assert np.all(diff < 1e-3 * span), f"{path}: |diff| {diff} vs 1e-3 x range {1e-3 * span}"
        worst = max(worst, float((diff / span).max()))
    return worst


def test_kaldi_preset_matches_kaldi_on_fsdd(fsdd):
    files = sorted(fsdd.glob("*.wav"))[::100]   # 30 files, every speaker and digit
    assert _assert_parity(files, 8000) < 1e-4


def test_kaldi_preset_matches_kaldi_on_speechocean():
    if not SPEECHOCEAN.is_dir():
        pytest.skip(f"speechocean762 train subset not found at {SPEECHOCEAN}")
    files = sorted(SPEECHOCEAN.glob("*/*.flac"))[::125]  # 10 recordings, 10 speakers, 2-20 s
    assert _assert_parity(files, 16000) < 1e-4


def test_the_default_filterbank_is_not_kaldis(fsdd):
    """The default's triangles are linear in Hz (and reach Nyquist): documented, measurable."""
    path = sorted(fsdd.glob("*.wav"))[0]
    ref = kaldi_mfcc(path)
    htk = get_extractor(FeatureConfig.kaldi(sample_rate=8000, mel_filters="htk")).extract(path)
    assert np.abs(htk[:, 1:] - ref[:, 1:]).max() > 0.05


def test_kaldi_filters_shape():
    bank = kaldi_mel_filters(16000, 512, 23, 20.0, 8000.0)
    assert bank.shape == (257, 23) and bank[-1].sum() == 0 and bank[0].sum() == 0
    assert np.all(bank >= 0) and np.all(bank <= 1) and np.all(bank.sum(axis=0) > 0)


def test_kaldi_preset_fields():
    c = FeatureConfig.kaldi(sample_rate=8000)
    assert (c.n_mfcc, c.mel_bands, c.energy, c.lifter, c.window, c.n_features) == (13, 23, "log_energy", 22.0, "povey", 13)
    assert not c.vad and c.cmvn == "none" and c.dither == 0.0 and c.mel_filters == "kaldi"
    # the default's hash is unaffected by the new field (existing caches and models stay valid)
    assert "mel_filters" not in FeatureConfig().resolved() and "mel_filters" in c.resolved()
    assert FeatureConfig.from_dict(c.to_dict()) == c
