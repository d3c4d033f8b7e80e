"""Synthetic voices: a small speaker-verification corpus generated from nothing.

The default demo must run a complete verification experiment on a fresh machine, so this
module synthesises speech-like audio with a **source-filter model**:

* **Source.** A glottal pulse train whose pitch follows a per-utterance contour
  (declination plus slow random movement around the speaker's median pitch), with
  period jitter and amplitude shimmer, shaped by a glottal low-pass (double pole) and lip
  radiation (first difference), plus pitch-synchronous aspiration noise (breathiness) and
  a speaker-specific spectral tilt. Fricatives use shaped white noise.
* **Filter.** A cascade of second-order resonators (``scipy.signal.sosfilt``) at the
  formants of ten English vowels (Peterson & Barney 1952, adult male means), scaled by a
  speaker's vocal-tract-length factor and perturbed by speaker-specific per-vowel offsets;
  bandwidths scale with a speaker factor.
* **Utterances.** Random sequences of vowel-like and fricative-like segments and short
  pauses with raised-cosine envelopes, overlap-added, between stretches of low-level
  background noise; each utterance also gets a mild random channel tilt and its own noise
  level, so the same speaker never sounds exactly the same twice.

Speakers therefore differ in pitch, formant scaling, vowel idiosyncrasies, tilt,
breathiness and speaking rate, but their parameter ranges overlap: MFCC + GMM-UBM separates
them well yet imperfectly.

:func:`make_synthetic_corpus` writes 16-bit PCM wav files plus Kaldi-style data directories
(``wav.scp``, ``utt2spk``, ``spk2utt``) for ``ubm``, ``enroll`` and ``test`` splits and a
``trials`` file, deterministically from a seed, atomically (built in a temporary
directory and renamed) and idempotently (a complete corpus with the same parameters is
reused).
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import soundfile as sf
from scipy import signal

__all__ = [
    "VOWEL_FORMANTS",
    "Voice",
    "random_voice",
    "synthesize_utterance",
    "SyntheticCorpus",
    "make_synthetic_corpus",
]

#: Mean formant frequencies F1-F3 (Hz) of adult male speakers for ten American English
#: vowels (Peterson & Barney, 1952).
VOWEL_FORMANTS: dict[str, tuple[float, float, float]] = {
    "i": (270.0, 2290.0, 3010.0),   # heed
    "I": (390.0, 1990.0, 2550.0),   # hid
    "E": (530.0, 1840.0, 2480.0),   # head
    "ae": (660.0, 1720.0, 2410.0),  # had
    "A": (730.0, 1090.0, 2440.0),   # hod
    "O": (570.0, 840.0, 2410.0),    # hawed
    "U": (440.0, 1020.0, 2240.0),   # hood
    "u": (300.0, 870.0, 2240.0),    # who'd
    "V": (640.0, 1190.0, 2390.0),   # hud
    "3": (490.0, 1350.0, 1690.0),   # heard
}
_FORMANT_TABLE = np.array(list(VOWEL_FORMANTS.values()))            # (n_vowels, 3)
_F4_HZ = 3300.0                                                      # typical male F4
_BASE_BANDWIDTHS = np.array([70.0, 100.0, 160.0, 250.0])             # B1-B4 (Hz)

# Fricative-like noises: (centre frequency Hz, bandwidth Hz, level dB re vowels); the
# centres scale with the speaker's fricative factor. Roughly /s/, /sh/, /f/ and /h/.
_FRICATIVES = np.array([
    [3400.0, 900.0, -12.0],
    [2500.0, 700.0, -10.0],
    [1500.0, 2500.0, -20.0],
    [1100.0, 1800.0, -18.0],
])

_FORMAT_VERSION = 1
_MARKER = "COMPLETE.json"
_SPLITS = ("ubm", "enroll", "test")


@dataclass(frozen=True)
class Voice:
    """The parameters of one synthetic speaker.

    Attributes
    ----------
    f0_hz : float
        Median pitch.
    f0_range_semitones : float
        Size of the slow pitch movements.
    jitter : float
        Standard deviation of pulse timing, relative to the pitch period.
    shimmer : float
        Standard deviation of pulse amplitude, relative.
    vtl_factor : float
        Formant scaling (inverse vocal-tract length; 1.0 = the adult-male table).
    formant_offsets : tuple of tuple of float
        Per-vowel, per-formant multiplicative idiosyncrasies, shape (n_vowels, 3).
    bandwidth_factor : float
        Scales all formant bandwidths.
    tilt : float
        Pole of the speaker's one-pole spectral-tilt low-pass (0 = flat).
    breathiness : float
        Aspiration-noise level relative to the voiced source.
    fricative_factor : float
        Scales fricative centre frequencies.
    speaking_rate : float
        Divides segment durations.
    """

    f0_hz: float
    f0_range_semitones: float
    jitter: float
    shimmer: float
    vtl_factor: float
    formant_offsets: tuple[tuple[float, float, float], ...]
    bandwidth_factor: float
    tilt: float
    breathiness: float
    fricative_factor: float
    speaking_rate: float


def random_voice(rng: np.random.Generator) -> Voice:
    """Draw a speaker from the population (pitch 90-220 Hz, VTL factor about 0.85-1.25).

    Pitch and vocal-tract length are correlated, as in people: higher voices tend to have
    shorter vocal tracts (higher formants).
    """
    f0 = float(np.exp(rng.uniform(np.log(90.0), np.log(220.0))))
    pitch_position = math.log(f0 / 90.0) / math.log(220.0 / 90.0)   # 0 (low) .. 1 (high)
    vtl = float(np.clip(0.92 + 0.24 * pitch_position + rng.normal(0.0, 0.04), 0.85, 1.25))
    offsets = np.clip(rng.normal(1.0, 0.04, _FORMANT_TABLE.shape), 0.9, 1.1)
    return Voice(
        f0_hz=f0,
        f0_range_semitones=float(rng.uniform(1.0, 4.0)),
        jitter=float(rng.uniform(0.005, 0.02)),
        shimmer=float(rng.uniform(0.03, 0.12)),
        vtl_factor=vtl,
        formant_offsets=tuple(tuple(float(v) for v in row) for row in offsets),
        bandwidth_factor=float(rng.uniform(0.8, 1.5)),
        tilt=float(rng.uniform(0.0, 0.7)),
        breathiness=float(rng.uniform(0.02, 0.35)),
        fricative_factor=float(rng.uniform(0.85, 1.15)),
        speaking_rate=float(rng.uniform(0.8, 1.25)),
    )


# -------------------------------------------------------------------- signal pieces


def _resonator_sos(freqs: np.ndarray, bandwidths: np.ndarray, sample_rate: int) -> np.ndarray:
    """Second-order sections of a cascade of unit-DC-gain resonators (Klatt style)."""
    r = np.exp(-np.pi * bandwidths / sample_rate)
    theta = 2.0 * np.pi * freqs / sample_rate
    a1 = -2.0 * r * np.cos(theta)
    a2 = r * r
    sos = np.zeros((freqs.size, 6))
    sos[:, 0] = 1.0 + a1 + a2    # numerator gain: H(z=1) = 1
    sos[:, 3] = 1.0
    sos[:, 4] = a1
    sos[:, 5] = a2
    return sos


@functools.lru_cache(maxsize=256)  # a speaker's few fricatives recur in every utterance
def _bandpass_sos(centre: float, bandwidth: float, sample_rate: int) -> np.ndarray:
    nyquist = sample_rate / 2.0
    low = max(centre - bandwidth / 2.0, 100.0) / nyquist
    high = min(centre + bandwidth / 2.0, 0.95 * nyquist) / nyquist
    return signal.butter(2, [low, min(high, 0.99)], btype="bandpass", output="sos")


def _pitch_contour(voice: Voice, n_samples: int, sample_rate: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Per-sample f0: median * 2**((declination + slow random movements) / 12)."""
    t = np.arange(n_samples) / sample_rate
    duration = max(t[-1], 1e-3)
    semitones = rng.uniform(-1.0, 1.0) - rng.uniform(1.0, 3.0) * t / duration  # declination
    rates = rng.uniform(0.4, 3.0, 3)
    phases = rng.uniform(0.0, 2.0 * np.pi, 3)
    amplitudes = voice.f0_range_semitones * rng.dirichlet(np.ones(3))
    semitones = semitones + (amplitudes[:, None]
                             * np.sin(2.0 * np.pi * rates[:, None] * t + phases[:, None])).sum(0)
    return voice.f0_hz * 2.0 ** (semitones / 12.0)


def _voiced_source(voice: Voice, f0: np.ndarray, sample_rate: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Glottal pulse train with jitter and shimmer, glottal shaping, lip radiation and
    pitch-synchronous aspiration noise; vectorised over pulses."""
    n = f0.size
    phase = np.cumsum(f0) / sample_rate                      # in periods
    pulse_at = np.flatnonzero(np.diff(np.floor(phase)) > 0) + 1
    period = sample_rate / f0[pulse_at]
    pulse_at = np.round(pulse_at + rng.normal(0.0, voice.jitter, pulse_at.size) * period)
    pulse_at = np.clip(pulse_at.astype(np.int64), 0, n - 1)
    pulses = np.zeros(n)
    np.add.at(pulses, pulse_at, 1.0 + voice.shimmer * rng.standard_normal(pulse_at.size))
    # Glottal flow: double real pole (-12 dB/oct); lip radiation: first difference (+6).
    voiced = signal.lfilter([1.0, -1.0], [1.0, -1.94, 0.9409], pulses)
    voiced /= np.sqrt(np.mean(voiced ** 2)) + 1e-12
    # Aspiration: high-passed noise, strongest around the glottal opening.
    opening = 0.5 + 0.5 * np.cos(2.0 * np.pi * phase)
    aspiration = np.diff(rng.standard_normal(n + 1)) * opening
    aspiration /= np.sqrt(np.mean(aspiration ** 2)) + 1e-12
    source = voiced + voice.breathiness * aspiration
    if voice.tilt > 0:
        source = signal.lfilter([1.0 - voice.tilt], [1.0, -voice.tilt], source)
    return source


def _envelope(length: int, fade: int) -> np.ndarray:
    env = np.ones(length)
    fade = max(1, min(fade, length // 2))
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)
    env[:fade] = ramp
    env[length - fade:] = ramp[::-1]
    return env


def synthesize_utterance(
    voice: Voice,
    duration: float,
    sample_rate: int = 8000,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One utterance of ``voice``: vowels, fricatives and pauses between background noise.

    Parameters
    ----------
    voice : Voice
    duration : float
        Total length in seconds, including 0.15-0.4 s of leading and trailing noise.
    sample_rate : int
        At least 8000 Hz.
    rng : numpy.random.Generator, optional
        Source of all randomness (the utterance is a deterministic function of it).

    Returns
    -------
    ndarray of float32, shape (round(duration * sample_rate),)
        Peak-normalised to 0.3-0.8.
    """
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be at least 8000 Hz, got {sample_rate}")
    if not duration >= 0.5:
        raise ValueError(f"duration must be at least 0.5 s, got {duration!r}")
    rng = np.random.default_rng() if rng is None else rng
    n = int(round(duration * sample_rate))
    nyquist = sample_rate / 2.0
    speech = np.zeros(n)
    lead = int(rng.uniform(0.15, 0.4) * sample_rate)
    trail = int(rng.uniform(0.15, 0.4) * sample_rate)
    end = max(lead + 1, n - trail)

    f0 = _pitch_contour(voice, n, sample_rate, rng)
    voiced = _voiced_source(voice, f0, sample_rate, rng)
    noise = rng.standard_normal(n)
    offsets = np.asarray(voice.formant_offsets)
    bandwidths = _BASE_BANDWIDTHS * voice.bandwidth_factor
    fade = int(0.02 * sample_rate)

    position = lead
    while position < end:
        kind = rng.choice(3, p=[0.62, 0.28, 0.10])            # vowel, fricative, pause
        if kind == 2:
            position += int(rng.uniform(0.04, 0.15) * sample_rate)
            continue
        seconds = rng.uniform(0.09, 0.25) if kind == 0 else rng.uniform(0.06, 0.14)
        length = min(int(seconds / voice.speaking_rate * sample_rate), end - position)
        if length < 2 * fade:
            break
        part = slice(position, position + length)
        if kind == 0:
            vowel = rng.integers(len(_FORMANT_TABLE))
            # Token-to-token variation of +-3% around the speaker's target.
            formants = (_FORMANT_TABLE[vowel] * offsets[vowel] * voice.vtl_factor
                        * rng.normal(1.0, 0.03, 3))
            freqs = np.append(formants, _F4_HZ * voice.vtl_factor)
            keep = freqs < 0.9 * nyquist
            sos = _resonator_sos(freqs[keep], bandwidths[keep], sample_rate)
            segment = signal.sosfilt(sos, voiced[part])
            level_db = rng.normal(0.0, 2.0)
        else:
            centre, width, level_db = _FRICATIVES[rng.integers(len(_FRICATIVES))]
            centre = min(centre * voice.fricative_factor, 0.85 * nyquist)
            sos = _bandpass_sos(float(centre), float(width), sample_rate)
            segment = signal.sosfilt(sos, noise[part])
            level_db += rng.normal(0.0, 2.0)
        segment /= np.sqrt(np.mean(segment ** 2)) + 1e-12
        speech[part] += segment * _envelope(length, fade) * 10.0 ** (level_db / 20.0)
        # Neighbouring segments overlap by one fade, like coarticulation.
        position += length - fade

    speech_rms = np.sqrt(np.mean(speech[lead:end] ** 2)) + 1e-12
    # Background: low-passed noise 30-45 dB below the speech, through the whole file.
    background = signal.lfilter([1.0], [1.0, -0.7], rng.standard_normal(n))
    background *= speech_rms * 10.0 ** (-rng.uniform(30.0, 45.0) / 20.0) / np.std(background)
    audio = speech + background
    # Channel: a mild random first-order tilt per utterance (session variability).
    channel = rng.uniform(-0.25, 0.25)
    audio = signal.lfilter([1.0, channel], [1.0], audio)
    audio *= rng.uniform(0.3, 0.8) / (np.max(np.abs(audio)) + 1e-12)
    return audio.astype(np.float32)


# ------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class SyntheticCorpus:
    """Locations of a generated corpus (all absolute).

    Attributes
    ----------
    root : Path
    ubm, enroll, test : Path
        Kaldi-style data directories, each with ``wav.scp``, ``utt2spk`` and ``spk2utt``.
    trials : Path
        ``speaker-id test-utt-id target|nontarget`` lines: every test utterance against
        every enrolled speaker.
    """

    root: Path
    ubm: Path
    enroll: Path
    test: Path
    trials: Path

    @classmethod
    def at(cls, root: str | os.PathLike) -> "SyntheticCorpus":
        root = Path(root).resolve()
        data = root / "data"
        return cls(root, data / "ubm", data / "enroll", data / "test", root / "trials")


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _write_data_dir(directory: Path, utt2path: Mapping[str, str],
                    utt2spk: Mapping[str, str]) -> None:
    """``wav.scp``/``utt2spk`` sorted by utterance, ``spk2utt`` by speaker (Kaldi format)."""
    utts = sorted(utt2path)
    _write_lines(directory / "wav.scp", [f"{u} {utt2path[u]}" for u in utts])
    _write_lines(directory / "utt2spk", [f"{u} {utt2spk[u]}" for u in utts])
    spk2utt: dict[str, list[str]] = {}
    for u in utts:
        spk2utt.setdefault(utt2spk[u], []).append(u)
    _write_lines(directory / "spk2utt", [f"{s} {' '.join(spk2utt[s])}" for s in sorted(spk2utt)])


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


def make_synthetic_corpus(
    out_dir: str | os.PathLike,
    n_speakers: int = 10,
    *,
    n_ubm_speakers: int = 8,
    ubm_utterances_per_speaker: int = 16,
    enroll_utterances_per_speaker: int = 5,
    test_utterances_per_speaker: int = 12,
    duration_range: tuple[float, float] = (2.0, 4.0),
    sample_rate: int = 8000,
    seed: int = 0,
    overwrite: bool = False,
) -> SyntheticCorpus:
    """Generate (or reuse) a synthetic speaker-verification corpus in ``out_dir``.

    Layout::

        out_dir/wav/<speaker>/<utt>.wav    16-bit PCM mono
        out_dir/data/{ubm,enroll,test}/{wav.scp,utt2spk,spk2utt}
        out_dir/trials                     <speaker> <test-utt> target|nontarget
        out_dir/COMPLETE.json              the generation parameters

    UBM speakers (``ubm01``...) are disjoint from the enrolled/test speakers
    (``spk01``...); utterance ids are ``<speaker>-<split>-<index>``. ``wav.scp`` holds
    absolute paths.

    Parameters
    ----------
    out_dir : path-like
        Created if missing. If it already holds a complete corpus made with the same
        parameters, that corpus is returned untouched.
    n_speakers : int
        Enrolled (and tested) speakers.
    n_ubm_speakers, ubm_utterances_per_speaker : int
        Background speakers for training the UBM, and their utterances.
    enroll_utterances_per_speaker, test_utterances_per_speaker : int
    duration_range : (float, float)
        Utterance durations are uniform in this range (seconds, >= 0.5).
    sample_rate : int
    seed : int
        Everything (voices, utterances, file bytes) is a deterministic function of it.
    overwrite : bool
        Replace an existing corpus with different parameters (or a non-empty directory
        that is not a corpus). Without it, those raise FileExistsError.

    Returns
    -------
    SyntheticCorpus
    """
    params = {
        "format_version": _FORMAT_VERSION,
        "n_speakers": int(n_speakers),
        "n_ubm_speakers": int(n_ubm_speakers),
        "ubm_utterances_per_speaker": int(ubm_utterances_per_speaker),
        "enroll_utterances_per_speaker": int(enroll_utterances_per_speaker),
        "test_utterances_per_speaker": int(test_utterances_per_speaker),
        "duration_range": [float(duration_range[0]), float(duration_range[1])],
        "sample_rate": int(sample_rate),
        "seed": int(seed),
    }
    for name in ("n_speakers", "n_ubm_speakers", "ubm_utterances_per_speaker",
                 "enroll_utterances_per_speaker", "test_utterances_per_speaker"):
        if params[name] < 1:
            raise ValueError(f"{name} must be at least 1, got {params[name]}")
    if params["n_speakers"] < 2:
        raise ValueError("n_speakers must be at least 2 (non-target trials need two speakers)")
    low, high = params["duration_range"]
    if not 0.5 <= low <= high:
        raise ValueError(f"duration_range must satisfy 0.5 <= low <= high, got {duration_range}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be at least 8000 Hz, got {sample_rate}")

    root = Path(out_dir).resolve()
    if any(ch in str(root) for ch in "\r\n"):
        raise ValueError(f"out_dir {str(root)!r} contains a line break, which a wav.scp line "
                         f"cannot hold; choose another directory")
    corpus = SyntheticCorpus.at(root)
    existing = _read_marker(root)
    if existing == params:
        return corpus
    if root.exists() and any(root.iterdir()) and not overwrite:
        what = ("a synthetic corpus made with other parameters" if existing is not None
                else "files that are not a complete synthetic corpus")
        raise FileExistsError(f"{root} already holds {what}; pass overwrite=True to replace "
                              f"it, or choose another directory")

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the corpus is not
        _generate(tmp, root, params)
        _install(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return corpus


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _install(tmp: Path, root: Path) -> None:
    """Move the finished corpus into place; a concurrent identical build may have won."""
    trash = None
    if root.exists():
        if not any(root.iterdir()):
            root.rmdir()
        else:
            trash = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".old",
                                          dir=root.parent))
            os.replace(root, trash / "old")
    try:
        os.replace(tmp, root)
    except OSError:
        # Someone else installed a corpus at the same moment: keep theirs if complete.
        if _read_marker(root) == _read_marker(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def _generate(build: Path, final_root: Path, params: dict) -> None:
    """Write the corpus into ``build``; paths inside refer to ``final_root``."""
    seed, sample_rate = params["seed"], params["sample_rate"]
    low, high = params["duration_range"]
    splits: dict[str, tuple[dict[str, str], dict[str, str]]] = {s: ({}, {}) for s in _SPLITS}

    plan = [(f"ubm{i + 1:02d}", 0, i, {"ubm": params["ubm_utterances_per_speaker"]})
            for i in range(params["n_ubm_speakers"])]
    plan += [(f"spk{i + 1:02d}", 1, i, {"enroll": params["enroll_utterances_per_speaker"],
                                         "test": params["test_utterances_per_speaker"]})
             for i in range(params["n_speakers"])]
    for speaker, group, index, counts in plan:
        voice = random_voice(_rng(seed, 0, group, index))
        for split_no, split in enumerate(_SPLITS):
            for k in range(counts.get(split, 0)):
                rng = _rng(seed, 1, group, index, split_no, k)
                audio = synthesize_utterance(voice, rng.uniform(low, high), sample_rate, rng)
                utt = f"{speaker}-{split}-{k:03d}"
                relative = Path("wav") / speaker / f"{utt}.wav"
                (build / relative).parent.mkdir(parents=True, exist_ok=True)
                sf.write(build / relative, audio, sample_rate, subtype="PCM_16", format="WAV")
                splits[split][0][utt] = str(final_root / relative)
                splits[split][1][utt] = speaker

    for split, (utt2path, utt2spk) in splits.items():
        _write_data_dir(build / "data" / split, utt2path, utt2spk)
    enrolled = sorted(set(splits["enroll"][1].values()))
    test_utt2spk = splits["test"][1]
    _write_lines(build / "trials", [
        f"{spk} {utt} {'target' if test_utt2spk[utt] == spk else 'nontarget'}"
        for spk in enrolled for utt in sorted(test_utt2spk)
    ])
    # The marker is written last: its presence means the corpus is complete.
    (build / _MARKER).write_text(json.dumps(params, indent=2, sort_keys=True) + "\n",
                                 encoding="utf-8")
