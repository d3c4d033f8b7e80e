"""MFCC extraction: one precomputed :class:`FeatureExtractor` per configuration.

Per-file cost matters (most Free Spoken Digit Dataset files are under half a second), so
everything that depends only on the configuration -- window, mel filterbank, DCT with the
lifter folded in, delta filters -- is built once; a file then costs a strided framing view,
one real FFT and two small matrix products before the post-processing.

Pipeline (``extract``):

1. read, mix down to mono, resample to ``sample_rate``, scale to the 16-bit range, dither;
2. frames (``snip_edges``), DC removal, raw log energy, pre-emphasis, window, power spectrum,
   log mel energies, DCT + lifter (c0 replaced by log energy or dropped when asked);
3. deltas on the whole utterance (edges replicated);
4. the energy VAD's mask, from the raw log energy, applied to all streams;
5. normalisation (utterance CMVN, sliding CMN(VN) or feature warping) over the kept frames.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from scipy.fft import rfft as _rfft

from speakergmm.features.audio import (INT16_SCALE, FeatureError, as_mono, check_signal,
                                       dither_signal, read_audio, resample)
from speakergmm.features.config import FeatureConfig
from speakergmm.features.processing import add_deltas, cmvn, energy_vad, feature_warp, sliding_cmvn

__all__ = ["FeatureExtractor", "get_extractor", "extract_features", "Extraction"]

# Kaldi floors energies at float32 machine epsilon before taking logs.
_ENERGY_FLOOR = float(np.finfo(np.float32).eps)


def _mel(freq: np.ndarray | float) -> np.ndarray:
    """HTK mel scale, ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)


def kaldi_mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular filters linear on the mel scale, as Kaldi's ``MelBanks`` shapes them.

    Edges are equally spaced in mel between ``fmin`` and ``fmax``; each FFT bin below
    Nyquist weighs ``(mel - left) / (centre - left)`` on the rising side and
    ``(right - mel) / (right - centre)`` on the falling one (zero at the edges); the Nyquist
    bin is left out. Returns ``(n_fft // 2 + 1, n_mels)``, ready for ``power @ bank``.
    """
    bins = np.arange(n_fft // 2 + 1)
    mel = _mel(bins * (sample_rate / n_fft))
    low, high = _mel(fmin), _mel(fmax)
    delta = (high - low) / (n_mels + 1)
    left = low + delta * np.arange(n_mels)
    centre, right = left + delta, left + 2 * delta
    m = mel[:, None]
    rising = (m - left) / (centre - left)
    falling = (right - m) / (right - centre)
    bank = np.where(m <= centre, rising, falling)
    bank = np.where((m > left) & (m < right), bank, 0.0)
    bank[-1] = 0.0  # Kaldi's bank spans n_fft / 2 bins: Nyquist has no weight
    return np.ascontiguousarray(bank)


class Extraction:
    """What :meth:`FeatureExtractor.extract_full` returns: features and their bookkeeping.

    Attributes
    ----------
    features : ndarray (n_kept, n_features), float32
    n_samples : int
        Samples analysed (at the configured rate).
    n_frames : int
        Frames before VAD.
    voiced : ndarray of bool (n_frames,)
        The VAD mask (all True without VAD).
    """

    __slots__ = ("features", "n_samples", "n_frames", "voiced", "sample_rate")

    def __init__(self, features, n_samples, n_frames, voiced, sample_rate):
        self.features = features
        self.n_samples = n_samples
        self.n_frames = n_frames
        self.voiced = voiced
        self.sample_rate = sample_rate

    @property
    def duration(self) -> float:
        """Seconds of audio analysed."""
        return self.n_samples / self.sample_rate


class FeatureExtractor:
    """Computes features for one :class:`FeatureConfig`; build once, apply to many files.

    Use :func:`get_extractor` to share extractors (they are cached per configuration).
    """

    def __init__(self, config: FeatureConfig):
        from librosa.filters import mel
        from scipy.fft import dct

        self.config = config
        c = config
        self.frame_length = c.frame_length_samples
        self.frame_shift = c.frame_shift_samples
        self.n_fft = c.fft_size
        n = np.arange(self.frame_length)
        # Symmetric windows over the frame (as Kaldi and HTK).
        denom = max(self.frame_length - 1, 1)
        if c.window == "hamming":
            window = 0.54 - 0.46 * np.cos(2 * np.pi * n / denom)
        else:
            hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / denom)
            window = hann ** 0.85 if c.window == "povey" else hann
        self.window = window
        # Triangular filters on the HTK mel scale, peak 1 (no area normalisation, as Kaldi);
        # transposed so that power (T, bins) @ melbank (bins, mels).
        if c.mel_filters == "kaldi":
            self.melbank = kaldi_mel_filters(c.sample_rate, self.n_fft, c.mel_bands, c.fmin,
                                             c.upper_frequency)
        else:
            self.melbank = np.ascontiguousarray(
                mel(sr=c.sample_rate, n_fft=self.n_fft, n_mels=c.mel_bands, fmin=c.fmin,
                    fmax=c.upper_frequency, htk=True, norm=None, dtype=np.float64).T)
        empty = np.flatnonzero(self.melbank.sum(axis=0) == 0)
        if empty.size:
            raise ValueError(
                f"mel band(s) {empty.tolist()} of {c.mel_bands} get no FFT bin at n_fft={self.n_fft}, "
                f"{c.sample_rate} Hz between {c.fmin} and {c.upper_frequency} Hz; use fewer mel bands "
                "or a larger n_fft")
        # Orthonormal DCT-II with the lifter folded in: log mel (T, mels) @ dct_lift (mels, n_mfcc).
        basis = dct(np.eye(c.mel_bands), type=2, norm="ortho", axis=1)
        first = 1 if c.energy == "none" else 0
        index = np.arange(first, first + c.n_mfcc)
        lifter = 1.0 + 0.5 * c.lifter * np.sin(np.pi * index / c.lifter) if c.lifter > 0 else np.ones(len(index))
        self.dct_lift = np.ascontiguousarray(basis[:, index] * lifter)

    # ------------------------------------------------------------------ stages
    def frames(self, signal: np.ndarray) -> np.ndarray:
        """``(n_frames, frame_length)`` strided view of the signal (no copy)."""
        signal = np.ascontiguousarray(signal)
        n_frames = self.n_frames(signal.shape[0])
        step = signal.strides[0]
        # as_strided directly: sliding_window_view's checks cost more than the maths here
        return np.lib.stride_tricks.as_strided(
            signal, shape=(n_frames, self.frame_length), strides=(self.frame_shift * step, step),
            writeable=False)

    def n_frames(self, n_samples: int) -> int:
        """Frames a signal of ``n_samples`` gives (0 when shorter than one window)."""
        if n_samples < self.frame_length:
            return 0
        return 1 + (n_samples - self.frame_length) // self.frame_shift

    def mfcc(self, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Static cepstra and raw log energy of a 16-bit-scaled signal.

        Returns
        -------
        cepstra : ndarray (n_frames, n_mfcc), float64
        log_energy : ndarray (n_frames,), float64
        """
        c = self.config
        frames = self.frames(signal)
        if c.remove_dc:
            frames = frames - frames.mean(axis=1, keepdims=True)
        else:
            frames = np.array(frames)
        energy = np.einsum("ij,ij->i", frames, frames)
        log_energy = np.log(np.maximum(energy, _ENERGY_FLOOR))
        if c.preemphasis > 0:
            # In place, from the end, within each frame; the first sample uses itself (Kaldi).
            frames[:, 1:] -= c.preemphasis * frames[:, :-1]
            frames[:, 0] *= 1.0 - c.preemphasis
        frames *= self.window
        spectrum = _rfft(frames, n=self.n_fft, axis=1)
        power = spectrum.real ** 2 + spectrum.imag ** 2
        log_mel = np.log(np.maximum(power @ self.melbank, _ENERGY_FLOOR))
        cepstra = log_mel @ self.dct_lift
        if c.energy == "log_energy":
            cepstra[:, 0] = log_energy
        return cepstra, log_energy

    def postprocess(self, cepstra: np.ndarray, log_energy: np.ndarray,
                    source: str = "<signal>") -> tuple[np.ndarray, np.ndarray]:
        """Deltas, VAD and normalisation; returns (features float32, voiced mask)."""
        c = self.config
        feats = add_deltas(cepstra, c.delta_order, c.delta_window)
        if c.vad:
            voiced = energy_vad(log_energy, c.vad_threshold, c.vad_mean_scale,
                                c.vad_context, c.vad_proportion)
            n_voiced = int(voiced.sum())
            if n_voiced == 0:
                raise FeatureError(source, f"no speech: all {len(voiced)} frames are below the VAD "
                                           f"energy threshold (mean log energy {log_energy.mean():.1f})")
            if n_voiced < len(voiced):
                feats = feats[voiced]
        else:
            voiced = np.ones(len(log_energy), dtype=bool)
        if c.cmvn == "utterance":
            feats = cmvn(feats, variance=c.cmvn_variance)
        elif c.cmvn == "sliding":
            feats = sliding_cmvn(feats, c.cmvn_window, variance=c.cmvn_variance)
        elif c.cmvn == "warp":
            feats = feature_warp(feats, c.cmvn_window)
        return np.ascontiguousarray(feats, dtype=np.float32), voiced

    # ------------------------------------------------------------------ whole pipeline
    def prepare(self, signal: np.ndarray, sample_rate: int, source: str = "<signal>") -> np.ndarray:
        """Mono, checked, 16-bit-scaled, resampled and dithered signal ready for :meth:`mfcc`.

        ``signal`` is 1-D or ``(n_samples, n_channels)``; floats in [-1, 1] or integer PCM.
        """
        c = self.config
        signal = np.asarray(signal)
        if np.issubdtype(signal.dtype, np.integer):
            # Integer PCM: scale by the type's range, like soundfile does.
            signal = signal.astype(np.float64) / -float(np.iinfo(signal.dtype).min)
        elif not np.issubdtype(signal.dtype, np.floating):
            raise FeatureError(source, f"signal must hold numbers, got dtype {signal.dtype}")
        try:
            signal = as_mono(signal)
        except ValueError as exc:
            raise FeatureError(source, str(exc)) from None
        signal = check_signal(np.asarray(signal, dtype=np.float64), source) * INT16_SCALE
        if sample_rate != c.sample_rate:
            signal = resample(signal, sample_rate, c.sample_rate)
        return dither_signal(signal, c.dither, c.dither_seed)

    def extract_full(self, path_or_signal, sample_rate: int | None = None,
                     source: str | None = None) -> Extraction:
        """Like :meth:`extract` but also returns frame counts and the VAD mask.

        ``source`` names an array signal in error messages (default ``"<signal>"``).
        """
        c = self.config
        if isinstance(path_or_signal, (str, os.PathLike)):
            source = str(path_or_signal)
            signal, _ = read_audio(source, c.sample_rate)  # checked, mono, scaled, resampled
            signal = dither_signal(signal, c.dither, c.dither_seed)
        else:
            source = source or "<signal>"
            if sample_rate is None:
                raise TypeError("extract_features(signal, ...) needs sample_rate= for an array signal")
            signal = self.prepare(path_or_signal, int(sample_rate), source)
        n_samples = signal.shape[0]
        if n_samples < self.frame_length:
            raise FeatureError(
                source, f"too short: {n_samples} samples ({n_samples / c.sample_rate * 1000:.1f} ms at "
                        f"{c.sample_rate} Hz) is less than one {c.frame_length_ms:g} ms analysis window "
                        f"({self.frame_length} samples)")
        cepstra, log_energy = self.mfcc(signal)
        features, voiced = self.postprocess(cepstra, log_energy, source)
        return Extraction(features, n_samples, len(voiced), voiced, c.sample_rate)

    def extract(self, path_or_signal, sample_rate: int | None = None) -> np.ndarray:
        """Features of a file or signal; see :func:`extract_features`."""
        return self.extract_full(path_or_signal, sample_rate).features


@functools.lru_cache(maxsize=8)
def get_extractor(config: FeatureConfig) -> FeatureExtractor:
    """The (cached) :class:`FeatureExtractor` of a configuration."""
    return FeatureExtractor(config)


def extract_features(path_or_signal, config: FeatureConfig | None = None,
                     sample_rate: int | None = None) -> np.ndarray:
    """MFCC features (with deltas, VAD and normalisation as configured) of a file or signal.

    Parameters
    ----------
    path_or_signal : path-like or ndarray
        An audio file (wav, flac, ogg, ...: anything libsndfile reads), or a signal: 1-D, or
        ``(n_samples, n_channels)`` as soundfile returns; floats in [-1, 1] or integer PCM.
    config : FeatureConfig, optional
        Defaults to ``FeatureConfig()``.
    sample_rate : int, optional
        The signal's rate; required for arrays, ignored for files (their header says).
        Audio at another rate than ``config.sample_rate`` is resampled.

    Returns
    -------
    ndarray of shape (n_frames, config.n_features), float32

    Raises
    ------
    FeatureError
        (a ``ValueError``) naming the file and the reason when it is missing, unreadable,
        empty, silent, non-finite, shorter than one analysis window, or has no speech
        left after VAD.
    """
    return get_extractor(config if config is not None else FeatureConfig()).extract(path_or_signal, sample_rate)
