"""The feature pipeline: MFCC, deltas, CMVN, warping, VAD, audio reading; on FSDD and synthetic signals."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speakergmm.features import (FeatureConfig, FeatureError, add_deltas, cmvn, delta_filters,
                                 energy_vad, extract_features, feature_warp, get_extractor,
                                 sliding_cmvn)
from speakergmm.features.processing import window_starts

RAW = dict(cmvn="none", vad=False, delta_order=0)  # statics only, nothing dropped or normalised


def _fsdd_files(fsdd, step=100):
    return sorted(fsdd.glob("*.wav"))[::step]


# ---------------------------------------------------------------------- deltas
def _kaldi_deltas_reference(x, order, window):
    """Kaldi's add-deltas written out frame by frame (clamped indices)."""
    filters = delta_filters(order, window)
    half = filters.shape[1] // 2
    n = len(x)
    out = []
    for o in range(order + 1):
        block = np.zeros_like(x)
        for t in range(n):
            for j, w in enumerate(filters[o]):
                block[t] += w * x[min(max(t + j - half, 0), n - 1)]
        out.append(block)
    return np.hstack(out)


def test_delta_filters_match_kaldi():
    f = delta_filters(2, 2)
    np.testing.assert_allclose(f[1], [0, 0, -0.2, -0.1, 0, 0.1, 0.2, 0, 0])
    np.testing.assert_allclose(f[2], [0.04, 0.04, 0.01, -0.04, -0.1, -0.04, 0.01, 0.04, 0.04])


@pytest.mark.parametrize("order, window, n", [(1, 2, 12), (2, 2, 12), (2, 3, 5), (3, 1, 7), (2, 2, 1)])
def test_deltas_match_the_frame_by_frame_reference(order, window, n):
    x = np.random.default_rng(order * 10 + n).normal(size=(n, 4))
    np.testing.assert_allclose(add_deltas(x, order, window), _kaldi_deltas_reference(x, order, window),
                               atol=1e-12)
    assert add_deltas(x, 0).shape == (n, 4)


def test_last_frames_deltas_are_not_all_identical(fsdd):
    """librosa's default ``delta(mode="interp")`` makes the final frames' deltas identical
    (one polynomial fit over the last ``width`` frames), which collapsed Gaussians onto them
    in a GMM-HMM; edge replication must not."""
    import librosa

    config = FeatureConfig(cmvn="none", vad=False)
    for path in _fsdd_files(fsdd, 300):
        feats = extract_features(path, config)
        delta, delta2 = feats[:, 20:40], feats[:, 40:]
        for stream in (delta, delta2):
            tail = stream[-4:]
            assert not np.allclose(tail, tail[-1]), path.name
            assert len(np.unique(tail.round(6), axis=0)) == 4
        # the premise: librosa's interp mode does make them identical
        static = feats[:, :20].T
        tail_interp = librosa.feature.delta(static, width=9, order=2)[:, -4:]
        np.testing.assert_allclose(tail_interp, tail_interp[:, -1:].repeat(4, axis=1), atol=1e-4)


# ---------------------------------------------------------------------- normalisation
def test_cmvn_gives_zero_mean_unit_variance():
    x = np.random.default_rng(0).normal(3.0, 5.0, size=(50, 6))
    x[:, 2] = 7.0  # constant dimension: only mean-normalised, no division by zero
    y = cmvn(x)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(y.std(0)[[0, 1, 3, 4, 5]], 1, atol=1e-12)
    assert np.all(y[:, 2] == 0)
    np.testing.assert_allclose(cmvn(x, variance=False).std(0), x.std(0))


@pytest.mark.parametrize("n, window", [(40, 300), (500, 300), (17, 6), (301, 300)])
def test_sliding_cmvn_matches_a_per_frame_loop(n, window):
    x = np.random.default_rng(n).normal(2.0, 3.0, size=(n, 3)) + np.linspace(0, 10, n)[:, None]
    starts, width = window_starts(n, window)
    mean = np.array([x[s:s + width].mean(0) for s in starts])
    std = np.array([x[s:s + width].std(0) for s in starts])
    np.testing.assert_allclose(sliding_cmvn(x, window, variance=False), x - mean, atol=1e-9)
    np.testing.assert_allclose(sliding_cmvn(x, window, variance=True), (x - mean) / std, atol=1e-9)


def test_window_starts_stay_inside_and_are_centred():
    starts, width = window_starts(1000, 300)
    assert width == 300 and starts[0] == 0 and starts[-1] == 700
    assert starts[500] == 350  # centred: frame 500 sits in the middle of its window
    starts, width = window_starts(40, 300)
    assert width == 40 and np.all(starts == 0)


def test_feature_warping_matches_ranks_and_is_gaussian():
    from scipy.special import ndtri
    from scipy.stats import kstest

    rng = np.random.default_rng(1)
    x = np.exp(rng.normal(size=(700, 2)))  # skewed
    x[100:110, 1] = 1.0  # ties
    y = feature_warp(x, window=300, block=64)
    starts, width = window_starts(700, 300)
    for t in (0, 5, 350, 699):
        win = x[starts[t]:starts[t] + width]
        for d in range(2):
            rank = np.sum(win[:, d] < x[t, d]) + 0.5 * (np.sum(win[:, d] == x[t, d]) + 1)
            assert y[t, d] == pytest.approx(ndtri((rank - 0.5) / width))
    assert kstest(y[:, 0], "norm").pvalue > 0.01  # warped values are standard normal
    assert np.all(np.isfinite(y))


# ---------------------------------------------------------------------- VAD
def test_energy_vad_threshold_and_context():
    energy = np.array([0, 0, 0, 20, 20, 20, 20, 0, 0, 0, 20, 0, 0, 0], dtype=float)
    plain = energy_vad(energy, threshold=5.5, mean_scale=0.5, context=0)
    assert np.array_equal(plain, energy > 5.5 + 0.5 * energy.mean())
    smooth = energy_vad(energy, threshold=5.5, mean_scale=0.5, context=2, proportion=0.6)
    # the isolated loud frame 10 is outvoted by its silent neighbours
    assert not smooth[10] and smooth[4] and not smooth[0]
    assert energy_vad(np.zeros(0)).shape == (0,)


@pytest.mark.parametrize("noise", [0.0, 1e-4])
def test_vad_drops_silence_padded_onto_a_real_recording(fsdd, noise):
    """Half a second of silence (digital zeros, or low noise) each side: no frame of pure
    padding is kept, and at least what VAD keeps of the bare recording is (padding lowers
    the mean-relative threshold, never raises it)."""
    extractor = get_extractor(FeatureConfig())
    rng = np.random.default_rng(0)
    pad = 4000  # samples: 50 frames at 8 kHz / 10 ms
    for path in _fsdd_files(fsdd, 100):
        x, rate = sf.read(path)
        padded = np.concatenate([rng.normal(0, noise, pad) if noise else np.zeros(pad), x,
                                 rng.normal(0, noise, pad) if noise else np.zeros(pad)])
        bare = extractor.extract_full(path)
        full = extractor.extract_full(padded, sample_rate=rate)
        kept = np.flatnonzero(full.voiced)
        # frames whose 200-sample window overlaps the recording [pad, pad + len(x))
        first_overlap = -(-(pad - 199) // 80)
        last_overlap = (pad + len(x) - 1) // 80
        assert kept.min() >= first_overlap and kept.max() <= last_overlap, path.name
        assert len(kept) >= bare.features.shape[0] - 2, path.name


# ---------------------------------------------------------------------- MFCC
def test_mfcc_matches_a_librosa_reference_with_the_kaldi_extras_off(fsdd):
    """With pre-emphasis, DC removal and liftering off, a Hann window and n_fft = frame
    length, our MFCC is textbook: power STFT (no centring) -> HTK mel bank -> log -> DCT-II."""
    import librosa
    from scipy.fft import dct

    config = FeatureConfig(preemphasis=0.0, remove_dc=False, lifter=0, window="hann", n_fft=200, **RAW)
    path = _fsdd_files(fsdd)[3]
    y, sr = sf.read(path)
    y = y * 32768.0
    n = np.arange(200)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / 199)
    power = np.abs(librosa.stft(y, n_fft=200, hop_length=80, window=window, center=False)) ** 2
    bank = librosa.filters.mel(sr=sr, n_fft=200, n_mels=23, fmin=20.0, fmax=4000.0, htk=True, norm=None)
    reference = dct(np.log(np.maximum(bank @ power, np.finfo(np.float32).eps)), type=2, norm="ortho",
                    axis=0)[:20].T
    ours = extract_features(path, config)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-3)


def test_energy_modes_and_lifter(fsdd):
    path = _fsdd_files(fsdd)[0]
    c0 = extract_features(path, FeatureConfig(lifter=0, **RAW))
    none = extract_features(path, FeatureConfig(lifter=0, energy="none", **RAW))
    energy = extract_features(path, FeatureConfig(lifter=0, energy="log_energy", **RAW))
    np.testing.assert_allclose(none[:, :19], c0[:, 1:20], rtol=1e-5, atol=1e-4)  # c1..c20
    np.testing.assert_allclose(energy[:, 1:], c0[:, 1:], rtol=1e-6)
    x, _ = sf.read(path)
    frames = np.lib.stride_tricks.sliding_window_view(x * 32768, 200)[::80]
    frames = frames - frames.mean(1, keepdims=True)
    np.testing.assert_allclose(energy[:, 0], np.log((frames ** 2).sum(1)), rtol=1e-5)
    liftered = extract_features(path, FeatureConfig(**RAW))
    scale = 1 + 11 * np.sin(np.pi * np.arange(20) / 22)
    np.testing.assert_allclose(liftered, c0 * scale, rtol=1e-4, atol=1e-3)


def test_fsdd_features_have_the_expected_shape_and_are_finite(fsdd):
    config = FeatureConfig(vad=False)
    for path in _fsdd_files(fsdd, 50):
        n_samples = sf.info(path).frames
        feats = extract_features(path, config)
        assert feats.dtype == np.float32
        assert feats.shape == (1 + (n_samples - 200) // 80, 60)
        assert np.all(np.isfinite(feats))


@pytest.mark.parametrize("mode", ["utterance", "sliding"])
@pytest.mark.parametrize("vad", [True, False])
def test_cmvn_output_is_normalised_per_utterance(fsdd, mode, vad):
    # FSDD files are < 300 frames, so the sliding window covers the whole utterance
    config = FeatureConfig(cmvn=mode, vad=vad)
    for path in _fsdd_files(fsdd, 150):
        feats = extract_features(path, config).astype(np.float64)
        np.testing.assert_allclose(feats.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(feats.std(0), 1, atol=1e-4)


def test_cmn_only_and_warping(fsdd):
    path = _fsdd_files(fsdd)[5]
    cmn = extract_features(path, FeatureConfig(cmvn_variance=False))
    np.testing.assert_allclose(cmn.mean(0), 0, atol=1e-4)
    assert not np.allclose(cmn.std(0), 1, atol=0.1)
    warped = extract_features(path, FeatureConfig(cmvn="warp"))
    n = len(warped)
    from scipy.special import ndtri

    # every column is a permutation of the normal quantiles of the mid-ranks (no ties here)
    expected = ndtri((np.arange(1, n + 1) - 0.5) / n)
    np.testing.assert_allclose(np.sort(warped, axis=0), np.repeat(expected[:, None], 60, 1), atol=1e-5)


def test_resampled_16k_copy_gives_features_close_to_the_8k_original(fsdd, tmp_path):
    """A 16 kHz copy (polyphase x2, saved as 16-bit PCM) read with an 8 kHz configuration is
    resampled back. The round trip's anti-aliasing filters (scipy's Kaiser-windowed
    polyphase FIR) attenuate the top few percent of the band below 4 kHz, inside the top
    mel bands, and 16-bit requantisation adds noise ~90 dB down; every cepstral coefficient
    mixes all bands, so each moves by a few percent. Measured over 60 FSDD files (all
    speakers): relative error median 3 %, max 7.3 %; per-dimension correlation min 0.991,
    per-file mean >= 0.997. Bounds with margin: relative error < 10 %, every dimension's
    correlation > 0.985, mean correlation > 0.995."""
    from scipy.signal import resample_poly

    config = FeatureConfig(vad=False)  # VAD decisions near threshold could shift a frame
    for path in _fsdd_files(fsdd, 50):
        x, rate = sf.read(path)
        copy = tmp_path / f"{path.stem}_16k.wav"
        sf.write(copy, resample_poly(x, 2, 1), 16000, subtype="PCM_16")
        original, resampled = extract_features(path, config), extract_features(copy, config)
        assert resampled.shape == original.shape
        rel = np.linalg.norm(resampled - original) / np.linalg.norm(original)
        assert rel < 0.10, path.name
        corr = [np.corrcoef(original[:, d], resampled[:, d])[0, 1] for d in range(60)]
        assert min(corr) > 0.985 and np.mean(corr) > 0.995, path.name


def test_16k_configuration_on_a_16k_signal():
    rng = np.random.default_rng(3)
    t = np.arange(16000) / 16000
    signal = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.normal(size=t.size)
    feats = extract_features(signal, FeatureConfig(sample_rate=16000, vad=False), sample_rate=16000)
    assert feats.shape == (1 + (16000 - 400) // 160, 60)
    assert get_extractor(FeatureConfig(sample_rate=16000)).melbank.shape == (257, 40)


def test_formats_channels_and_integer_signals(fsdd, tmp_path):
    path = _fsdd_files(fsdd)[1]
    x, rate = sf.read(path)
    reference = extract_features(path)
    for ext in ("flac", "ogg"):
        other = tmp_path / f"copy.{ext}"
        sf.write(other, x, rate)
        feats = extract_features(other)
        assert feats.shape[1] == 60 and np.all(np.isfinite(feats))
        if ext == "flac":  # lossless
            np.testing.assert_allclose(feats, reference, atol=1e-4)
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([x, x], axis=1), rate)
    np.testing.assert_allclose(extract_features(stereo), reference, atol=1e-4)
    pcm, _ = sf.read(path, dtype="int16")
    np.testing.assert_allclose(extract_features(pcm, sample_rate=rate), reference, atol=1e-4)
    np.testing.assert_allclose(extract_features(x, sample_rate=rate), reference, atol=1e-4)


def test_dither_is_deterministic_per_file_when_seeded(fsdd):
    path = _fsdd_files(fsdd)[2]
    seeded = FeatureConfig(dither=1.0, dither_seed=3)
    a, b = extract_features(path, seeded), extract_features(path, seeded)
    np.testing.assert_array_equal(a, b)
    other_seed = extract_features(path, FeatureConfig(dither=1.0, dither_seed=4))
    assert not np.array_equal(a, other_seed)
    # dither of one 16-bit step changes normalised features by ~3 % (max 16 % on quiet files)
    assert np.linalg.norm(a - other_seed) / np.linalg.norm(a) < 0.25
    unseeded = FeatureConfig(dither=1.0, dither_seed=None)
    assert not np.array_equal(extract_features(path, unseeded), extract_features(path, unseeded))


# ---------------------------------------------------------------------- bad input
def _write(path, samples, rate=8000):
    sf.write(path, samples, rate)
    return path


@pytest.mark.parametrize("make, fragment", [
    (lambda d: d / "missing.wav", "audio file not found"),
    (lambda d: (d / "junk.wav").write_bytes(b"RIFF not really a wave file" * 4) and d / "junk.wav",
     "unreadable audio"),
    (lambda d: (d / "empty.wav").write_bytes(b"") or d / "empty.wav", "empty file (0 bytes)"),
    (lambda d: _write(d / "nosamples.wav", np.zeros(0)), "empty audio (0 samples)"),
    (lambda d: _write(d / "zeros.wav", np.zeros(4000)), "silent audio: all 4000 samples are zero"),
    (lambda d: _write(d / "short.wav", np.full(150, 0.1)), "too short: 150 samples"),
    (lambda d: _write(d / "hiss.wav", np.random.default_rng(0).normal(0, 3e-4, 8000)), "no speech"),
    (lambda d: d, "is a directory"),
])
def test_bad_files_raise_feature_error_naming_file_and_reason(tmp_path, make, fragment):
    path = make(tmp_path)
    with pytest.raises(FeatureError) as info:
        extract_features(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value) and fragment in str(info.value)
    assert info.value.source == str(path) and fragment in info.value.reason


def test_bad_signals():
    with pytest.raises(FeatureError, match="non-finite"):
        extract_features(np.array([0.1, np.nan] * 200), sample_rate=8000)
    with pytest.raises(FeatureError, match="empty audio"):
        extract_features(np.zeros(0), sample_rate=8000)
    with pytest.raises(TypeError, match="sample_rate"):
        extract_features(np.ones(400))
    short = np.random.default_rng(0).normal(0, 0.1, 150)
    with pytest.raises(FeatureError, match="less than one 25 ms analysis window"):
        extract_features(short, sample_rate=8000)
    # long enough after resampling matters, not before: 300 samples at 16 kHz = 150 at 8 kHz
    with pytest.raises(FeatureError, match="too short"):
        extract_features(np.random.default_rng(0).normal(0, 0.1, 300), sample_rate=16000)
