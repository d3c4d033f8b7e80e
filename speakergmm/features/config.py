"""The front end's configuration: every default of the feature pipeline, in one place.

A :class:`FeatureConfig` is saved next to every model trained on its features (and next to
every feature cache), and :meth:`FeatureConfig.check_compatible` refuses to score features
computed with another configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from speakergmm.io import atomic_write_json

__all__ = [
    "FeatureConfig",
    "FeatureConfigError",
    "FeatureConfigMismatch",
    "PIPELINE_VERSION",
    "WINDOWS",
    "ENERGY_MODES",
    "CMVN_MODES",
    "MEL_FILTERS",
]

#: Version of the feature computation itself. It is part of :meth:`FeatureConfig.hash`, so
#: bumping it when the numbers a configuration produces change invalidates feature caches.
PIPELINE_VERSION = 1

_FILE_FORMAT = "speakergmm.FeatureConfig"
_FILE_VERSION = 1

WINDOWS = ("povey", "hamming", "hann")
ENERGY_MODES = ("c0", "log_energy", "none")
CMVN_MODES = ("utterance", "sliding", "warp", "none")
MEL_FILTERS = ("htk", "kaldi")


class FeatureConfigError(ValueError):
    """A feature configuration value (or file) is invalid; the message names the field."""


class FeatureConfigMismatch(ValueError):
    """Two feature configurations differ; ``differences`` maps field -> (expected, given)."""

    def __init__(self, message: str, differences: Mapping[str, tuple[Any, Any]]):
        super().__init__(message)
        self.differences = dict(differences)


@dataclass(frozen=True)
class FeatureConfig:
    """MFCC front end configuration (Kaldi/HTK-like defaults).

    Audio is scaled to the 16-bit integer range before analysis, as Kaldi does, so that
    ``dither`` and the VAD thresholds have Kaldi's meaning.

    Parameters
    ----------
    sample_rate : int
        Rate (Hz) the audio is analysed at; files at another rate are resampled
        (polyphase, :func:`scipy.signal.resample_poly`). Default 8000 (telephone band,
        the Free Spoken Digit Dataset's rate).
    dither : float
        Standard deviation of Gaussian noise added to the signal, in 16-bit sample units
        (Kaldi uses 1.0). 0 disables it.
    dither_seed : int or None
        With a seed the dither of a file is a function of (seed, the file's samples) only,
        so features are reproducible; ``None`` draws fresh noise every time.
    preemphasis : float
        Pre-emphasis coefficient applied within each frame (0 disables).
    frame_length_ms, frame_shift_ms : float
        Analysis window length and hop in milliseconds (25 / 10). Frames never run past the
        end of the signal (Kaldi's ``snip_edges``): ``1 + (n - length) // shift`` frames.
    window : {"povey", "hamming", "hann"}
        Analysis window ("povey" is Kaldi's default, a Hann window raised to 0.85).
    remove_dc : bool
        Subtract each frame's mean before pre-emphasis.
    n_fft : int or None
        FFT size; ``None`` rounds the frame length up to a power of two.
    n_mels : int or None
        Mel bands; ``None`` sizes the bank for the rate: 23 up to 8 kHz, 40 above.
    fmin : float
        Lowest filterbank frequency (Hz).
    fmax : float or None
        Highest filterbank frequency (Hz); ``None`` is the Nyquist frequency and a
        negative value is an offset below it (as Kaldi's ``--high-freq``).
    mel_filters : {"htk", "kaldi"}
        Shape of the triangular mel filters (both on the HTK mel scale, peak 1, edges
        equally spaced in mel): "htk" -- linear in Hz between the edges, over all FFT bins
        up to Nyquist (librosa's ``htk=True`` bank); "kaldi" -- linear in mel, over the
        bins below Nyquist (Kaldi's ``MelBanks``). :meth:`kaldi` uses "kaldi".
    n_mfcc : int
        Cepstral coefficients per frame (static part of the feature vector).
    energy : {"c0", "log_energy", "none"}
        First coefficient: "c0" keeps c0..c(n-1); "log_energy" replaces c0 by the frame's log
        energy (Kaldi ``--use-energy``); "none" drops c0 and keeps c1..cn.
    lifter : float
        Cepstral liftering coefficient ``L`` (coefficient i is scaled by
        ``1 + L/2 sin(pi i / L)``); 0 disables it.
    delta_order : int
        0: statics only; 1: + deltas; 2: + deltas and delta-deltas.
    delta_window : int
        Regression half-window ``N`` of the deltas (Kaldi: 2); edge frames are replicated.
    cmvn : {"utterance", "sliding", "warp", "none"}
        Feature normalisation, applied to all streams over the frames VAD keeps:
        per-utterance mean (and variance) normalisation, sliding-window (centred) CMN(VN),
        feature warping to a standard normal over a sliding window, or nothing.
    cmvn_variance : bool
        Normalise the variance too ("utterance" and "sliding" modes).
    cmvn_window : int
        Window, in frames, of the "sliding" and "warp" modes (300 = 3 s).
    vad : bool
        Drop non-speech frames with the energy VAD below.
    vad_threshold, vad_mean_scale : float
        A frame is above threshold when its log energy exceeds
        ``vad_threshold + vad_mean_scale * mean(log energy of the utterance)``
        (Kaldi ``compute-vad``; natural-log energy of 16-bit-scaled samples).
    vad_context : int
        Frames either side that vote for each frame's decision.
    vad_proportion : float
        A frame is speech when at least this fraction of its context window is above threshold.
    """

    sample_rate: int = 8000
    dither: float = 0.0
    dither_seed: int | None = 0
    preemphasis: float = 0.97
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window: str = "povey"
    remove_dc: bool = True
    n_fft: int | None = None
    n_mels: int | None = None
    fmin: float = 20.0
    fmax: float | None = None
    mel_filters: str = "htk"
    n_mfcc: int = 20
    energy: str = "c0"
    lifter: float = 22.0
    delta_order: int = 2
    delta_window: int = 2
    cmvn: str = "utterance"
    cmvn_variance: bool = True
    cmvn_window: int = 300
    vad: bool = True
    vad_threshold: float = 5.5
    vad_mean_scale: float = 0.5
    vad_context: int = 2
    vad_proportion: float = 0.6

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _coerce(f.name, f.type, value))
        errors = list(self._problems())
        if errors:
            raise FeatureConfigError("invalid feature configuration: " + "; ".join(errors))

    def _problems(self):
        if self.sample_rate < 1000:
            yield f"sample_rate must be at least 1000 Hz, got {self.sample_rate}"
        if self.dither < 0:
            yield f"dither must be >= 0, got {self.dither}"
        if not 0.0 <= self.preemphasis < 1.0:
            yield f"preemphasis must be in [0, 1), got {self.preemphasis}"
        if self.frame_shift_ms <= 0:
            yield f"frame_shift_ms must be > 0, got {self.frame_shift_ms}"
        if self.frame_length_ms <= 0:
            yield f"frame_length_ms must be > 0, got {self.frame_length_ms}"
        elif self.frame_length_samples < 2:
            yield (f"frame_length_ms={self.frame_length_ms} is shorter than two samples at "
                   f"{self.sample_rate} Hz")
        if self.frame_shift_ms > 0 and self.frame_shift_samples < 1:
            yield f"frame_shift_ms={self.frame_shift_ms} is under one sample at {self.sample_rate} Hz"
        if self.window not in WINDOWS:
            yield f"window must be one of {', '.join(WINDOWS)}, got {self.window!r}"
        if self.n_fft is not None and self.frame_length_ms > 0 and self.n_fft < self.frame_length_samples:
            yield (f"n_fft={self.n_fft} is smaller than the frame length "
                   f"({self.frame_length_samples} samples)")
        if self.n_mels is not None and self.n_mels < 1:
            yield f"n_mels must be >= 1, got {self.n_mels}"
        nyquist = self.sample_rate / 2
        if self.fmin < 0:
            yield f"fmin must be >= 0, got {self.fmin}"
        if not self.fmin < self.upper_frequency <= nyquist:
            yield (f"the filterbank range fmin={self.fmin} .. fmax={self.fmax} (resolves to "
                   f"{self.upper_frequency} Hz) must satisfy fmin < fmax <= {nyquist} (Nyquist)")
        if self.mel_filters not in MEL_FILTERS:
            yield f"mel_filters must be one of {', '.join(MEL_FILTERS)}, got {self.mel_filters!r}"
        if self.n_mfcc < 1:
            yield f"n_mfcc must be >= 1, got {self.n_mfcc}"
        if self.energy not in ENERGY_MODES:
            yield f"energy must be one of {', '.join(ENERGY_MODES)}, got {self.energy!r}"
        elif self.n_mels is None or self.n_mels >= 1:
            usable = self.mel_bands - (1 if self.energy == "none" else 0)
            if self.n_mfcc > usable:
                yield (f"n_mfcc={self.n_mfcc} exceeds what {self.mel_bands} mel bands give with "
                       f"energy={self.energy!r} ({usable})")
        if self.lifter < 0:
            yield f"lifter must be >= 0, got {self.lifter}"
        if self.delta_order not in (0, 1, 2, 3):
            yield f"delta_order must be 0, 1, 2 or 3, got {self.delta_order}"
        if self.delta_window < 1:
            yield f"delta_window must be >= 1, got {self.delta_window}"
        if self.cmvn not in CMVN_MODES:
            yield f"cmvn must be one of {', '.join(CMVN_MODES)}, got {self.cmvn!r}"
        if self.cmvn_window < 2:
            yield f"cmvn_window must be >= 2 frames, got {self.cmvn_window}"
        if self.vad_context < 0:
            yield f"vad_context must be >= 0, got {self.vad_context}"
        if not 0.0 <= self.vad_proportion <= 1.0:
            yield f"vad_proportion must be in [0, 1], got {self.vad_proportion}"

    @classmethod
    def kaldi(cls, sample_rate: int = 16000, dither: float = 0.0, **changes: Any) -> "FeatureConfig":
        """Kaldi's ``compute-mfcc-feats`` with its default options (``--dither`` aside).

        13 cepstra with c0 replaced by the raw log energy (``--use-energy``), 23 mel bands
        from 20 Hz to Nyquist with Kaldi's filter shape, povey window, 25/10 ms frames with
        ``snip-edges``, DC removal, pre-emphasis 0.97, energy floor 0 (machine epsilon), lifter
        22; no deltas, CMVN or VAD (Kaldi computes those with other programs). Kaldi's
        default dither is 1.0 (random); 0 here makes features reproducible, and
        ``dither=1.0`` gives Kaldi's (with a seeded, per-file noise, not Kaldi's stream).
        ``changes`` override fields.
        """
        base = dict(sample_rate=sample_rate, dither=dither, preemphasis=0.97, frame_length_ms=25.0,
                    frame_shift_ms=10.0, window="povey", remove_dc=True, n_fft=None, n_mels=23,
                    fmin=20.0, fmax=None, mel_filters="kaldi", n_mfcc=13, energy="log_energy",
                    lifter=22.0, delta_order=0, cmvn="none", vad=False)
        base.update(changes)
        return cls(**base)

    # ------------------------------------------------------------------ derived sizes
    @property
    def frame_length_samples(self) -> int:
        """Analysis window length in samples."""
        return int(round(self.sample_rate * self.frame_length_ms / 1000.0))

    @property
    def frame_shift_samples(self) -> int:
        """Hop between frames in samples."""
        return int(round(self.sample_rate * self.frame_shift_ms / 1000.0))

    @property
    def fft_size(self) -> int:
        """FFT length: ``n_fft`` or the frame length rounded up to a power of two."""
        if self.n_fft is not None:
            return self.n_fft
        return 1 << max(1, (self.frame_length_samples - 1).bit_length())

    @property
    def mel_bands(self) -> int:
        """Number of mel bands: ``n_mels`` or 23 up to 8 kHz, 40 above."""
        if self.n_mels is not None:
            return self.n_mels
        return 23 if self.sample_rate <= 8000 else 40

    @property
    def upper_frequency(self) -> float:
        """Upper edge of the filterbank in Hz."""
        nyquist = self.sample_rate / 2
        if self.fmax is None:
            return float(nyquist)
        return float(self.fmax if self.fmax > 0 else nyquist + self.fmax)

    @property
    def n_features(self) -> int:
        """Dimension of a feature vector: ``n_mfcc * (1 + delta_order)``."""
        return self.n_mfcc * (1 + self.delta_order)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureConfig":
        """Build a configuration from a dict of fields; missing fields take their defaults.

        Raises
        ------
        FeatureConfigError
            On unknown field names or invalid values.
        """
        if not isinstance(data, Mapping):
            raise FeatureConfigError(f"a feature configuration must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FeatureConfigError(
                f"unknown feature configuration field(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> "FeatureConfig":
        """A copy with some fields changed (validated)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise FeatureConfigError(f"unknown feature configuration field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def resolved(self) -> dict[str, Any]:
        """Fields with the automatic values (``n_fft``, ``n_mels``, ``fmax``) filled in.

        Two configurations that resolve to the same dict compute the same features; the
        hash and the compatibility check use this form.
        """
        data = self.to_dict()
        data["n_fft"] = self.fft_size
        data["n_mels"] = self.mel_bands
        data["fmax"] = self.upper_frequency
        if self.dither == 0:
            data["dither_seed"] = None  # the seed has no effect without dither
        if self.mel_filters == "htk":
            del data["mel_filters"]  # the original bank: hashes of earlier configurations hold
        return data

    def hash(self) -> str:
        """A stable 16-hex-digit digest of the resolved configuration and pipeline version."""
        payload = json.dumps({"pipeline_version": PIPELINE_VERSION, **self.resolved()},
                             sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    def save(self, path: str | os.PathLike) -> None:
        """Write the configuration as JSON, atomically."""
        atomic_write_json(path, {
            "format": _FILE_FORMAT,
            "version": _FILE_VERSION,
            "pipeline_version": PIPELINE_VERSION,
            "hash": self.hash(),
            "n_features": self.n_features,
            "config": self.to_dict(),
        })

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureConfig":
        """Read a configuration saved by :meth:`save`, or a hand-written JSON dict of fields.

        Raises
        ------
        FeatureConfigError
            If the file is missing, not JSON, of another format/version, or invalid.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FeatureConfigError(f"{path}: no such feature configuration file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FeatureConfigError(f"{path}: not a readable JSON file ({exc})") from exc
        if isinstance(data, dict) and "format" in data:
            if data["format"] != _FILE_FORMAT:
                raise FeatureConfigError(f"{path}: holds a {data['format']!r}, expected a {_FILE_FORMAT!r}")
            if data.get("version") != _FILE_VERSION:
                raise FeatureConfigError(
                    f"{path}: {_FILE_FORMAT} version {data.get('version')!r} is not supported "
                    f"(this speakergmm reads version {_FILE_VERSION})")
            data = data.get("config")
        try:
            return cls.from_dict(data)
        except FeatureConfigError as exc:
            raise FeatureConfigError(f"{path}: {exc}") from exc
        except TypeError as exc:  # pragma: no cover - from_dict checks names first
            raise FeatureConfigError(f"{path}: {exc}") from exc

    # ------------------------------------------------------------------ compatibility
    def differences(self, other: "FeatureConfig") -> dict[str, tuple[Any, Any]]:
        """Fields whose resolved values differ: name -> (self's value, other's value)."""
        mine, theirs = self.resolved(), other.resolved()
        return {name: (mine[name], theirs[name]) for name in mine if mine[name] != theirs[name]}

    def check_compatible(self, other: "FeatureConfig", what: str = "features",
                         expected: str = "expected", given: str = "given") -> None:
        """Raise :class:`FeatureConfigMismatch` unless ``other`` computes the same features.

        Parameters
        ----------
        other : FeatureConfig
            The configuration the features at hand were computed with.
        what : str
            What is being checked, for the message (e.g. ``"speaker model alice.npz"``).
        expected, given : str
            Labels of ``self`` and ``other`` in the message.
        """
        if not isinstance(other, FeatureConfig):
            raise TypeError(f"expected a FeatureConfig, got {type(other).__name__}")
        diffs = self.differences(other)
        if diffs:
            listed = "; ".join(f"{name}: {a!r} ({expected}) vs {b!r} ({given})"
                               for name, (a, b) in diffs.items())
            raise FeatureConfigMismatch(
                f"feature configuration mismatch for {what}: {listed}. Recompute the features "
                f"with the {expected} configuration.", diffs)


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    """Coerce JSON/CLI values to the field's type and refuse the wrong kind, naming the field."""
    text = str(annotation)
    optional = "None" in text
    if value is None:
        if optional:
            return None
        raise FeatureConfigError(f"invalid feature configuration: {name} must not be null")
    base = text.replace("| None", "").strip()
    if base == "bool":
        if isinstance(value, bool):
            return value
        raise FeatureConfigError(f"invalid feature configuration: {name} must be true or false, got {value!r}")
    if base == "int":
        if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                or not math.isfinite(value) or float(value) != int(value)):
            raise FeatureConfigError(f"invalid feature configuration: {name} must be an integer, got {value!r}")
        return int(value)
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise FeatureConfigError(f"invalid feature configuration: {name} must be a finite number, got {value!r}")
        return float(value)
    if base == "str":
        if not isinstance(value, str):
            raise FeatureConfigError(f"invalid feature configuration: {name} must be a string, got {value!r}")
        return value
    return value  # pragma: no cover
