"""Reading audio for the front end: any soundfile format, mono, at the configured rate.

Every way a file can be unusable raises :class:`FeatureError` (a ``ValueError``) whose
message names the file and the reason, so that batch jobs can skip it and say why.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = ["FeatureError", "read_audio", "as_mono", "resample", "dither_signal", "INT16_SCALE"]

#: Samples are analysed in the 16-bit integer range (as Kaldi does), so that dither and
#: energy thresholds keep their usual meaning whatever the file's sample format.
INT16_SCALE = 32768.0


class FeatureError(ValueError):
    """A file or signal cannot give features; ``source`` names it and ``reason`` says why."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


#: Recording rates read_audio accepts (a header outside them is damaged or hostile).
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000


def read_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as a mono float64 signal scaled to the 16-bit range.

    Parameters
    ----------
    path : path-like
        Any format libsndfile reads (wav, flac, ogg, ...).
    sample_rate : int, optional
        Resample to this rate when the file's rate differs.

    Returns
    -------
    signal : ndarray of shape (n_samples,), float64, in [-32768, 32768)
    sample_rate : int
        The signal's rate (``sample_rate`` when given).

    Raises
    ------
    FeatureError
        When the file is missing, unreadable, empty, silent (all samples zero) or holds
        non-finite samples.
    """
    import soundfile

    name = str(path)
    try:
        data, rate = soundfile.read(name, dtype="float64", always_2d=True)
    except FileNotFoundError:
        raise FeatureError(name, "audio file not found") from None
    except MemoryError:
        raise FeatureError(name, "the file's header claims more audio than fits in memory "
                                 "(damaged file?)") from None
    except (soundfile.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as exc:
        raise FeatureError(name, _unreadable_reason(Path(name), exc)) from None
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        # A damaged header's rate would size the resampling filter (10 taps per unit of the
        # rates' ratio): gigabytes for a rate of millions.
        raise FeatureError(name, f"implausible sample rate {rate} Hz in the file's header "
                                 f"(expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE})")
    signal = check_signal(as_mono(data), name)
    signal = signal * INT16_SCALE
    if sample_rate is not None and rate != sample_rate:
        try:
            signal = resample(signal, rate, sample_rate)
        except MemoryError:
            raise FeatureError(name, f"out of memory resampling {rate} Hz to {sample_rate} Hz") from None
        rate = sample_rate
    return signal, int(rate)


def _unreadable_reason(path: Path, exc: BaseException) -> str:
    if not path.exists():
        return "audio file not found"
    if path.is_dir():
        return "is a directory, not an audio file"
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
    except OSError:
        pass
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # libsndfile says "Error opening '<path>': <why>"; the path is already in the message.
    if detail.startswith("Error opening") and "': " in detail:
        detail = detail.split("': ", 1)[1]
    return f"unreadable audio ({detail})"


def as_mono(data: np.ndarray) -> np.ndarray:
    """Average the channels of a ``(n_samples, n_channels)`` array (1-D passes through)."""
    if data.ndim == 1:
        return data
    if data.ndim != 2:
        raise ValueError(f"expected a 1-D signal or (n_samples, n_channels), got shape {data.shape}")
    return data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)


def check_signal(signal: np.ndarray, name: str) -> np.ndarray:
    """Refuse empty, non-finite and all-zero signals with a :class:`FeatureError`."""
    if signal.size == 0:
        raise FeatureError(name, "empty audio (0 samples)")
    if not np.isfinite(signal).all():
        raise FeatureError(name, "audio holds non-finite samples (NaN or infinity)")
    if not signal.any():
        raise FeatureError(name, f"silent audio: all {signal.size} samples are zero")
    return signal


def resample(signal: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (:func:`scipy.signal.resample_poly`, Kaiser-windowed FIR)."""
    if orig_rate == target_rate:
        return signal
    from scipy.signal import resample_poly

    g = math.gcd(int(orig_rate), int(target_rate))
    return resample_poly(signal, int(target_rate) // g, int(orig_rate) // g)


def dither_signal(signal: np.ndarray, amount: float, seed: int | None) -> np.ndarray:
    """Add Gaussian noise of standard deviation ``amount``.

    With a ``seed`` the noise depends only on (seed, the signal's samples), so a file gets
    the same dither in every run and every process, wherever it is stored.
    """
    if amount <= 0:
        return signal
    if seed is None:
        rng = np.random.default_rng()
    else:
        digest = zlib.crc32(np.ascontiguousarray(signal).view(np.uint8))
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, digest])
    return signal + amount * rng.standard_normal(signal.shape[0])


# ---------------------------------------------------------------------- wav.scp entries
#: A segment may end this much past the end of its recording and is then cut at the end
#: (Kaldi's ``extract-segments --max-overshoot`` default); further is an error.
MAX_SEGMENT_OVERSHOOT = 0.5

#: Seconds a ``wav.scp`` command may run before it is stopped and its utterance skipped.
COMMAND_TIMEOUT = 600.0


def is_command(location: str) -> bool:
    """True for a ``wav.scp`` entry that is a shell command ending in ``|``."""
    return location.rstrip().endswith("|")


def read_raw(location: str, origin: str = "") -> tuple[np.ndarray, int]:
    """The audio of a ``wav.scp`` location as soundfile gives it: ``(float64 (n, channels), rate)``.

    ``location`` is a path or, as in Kaldi, a shell command ending in ``|``, run through
    the shell with its standard output read as audio (any format soundfile reads from a
    stream: wav, flac, ogg...). Errors name ``origin`` (``file:line`` of the entry) when given.

    Raises
    ------
    FeatureError
        The file is missing or unreadable, the command fails (its exit status and the last
        line of its standard error are in the message), times out, or writes no audio.
    """
    import soundfile

    if not is_command(location):
        try:
            data, rate = soundfile.read(location, dtype="float64", always_2d=True)
        except FileNotFoundError:
            raise FeatureError(location, "audio file not found") from None
        except (soundfile.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as exc:
            raise FeatureError(location, _unreadable_reason(Path(location), exc)) from None
        return data, int(rate)

    import io
    import subprocess

    where = f"{origin}: " if origin else ""
    command = location.rstrip()[:-1].strip()
    if not command:
        raise FeatureError(location, f"{where}empty command before '|'")
    try:
        done = subprocess.run(command, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise FeatureError(location, f"{where}command did not finish within {COMMAND_TIMEOUT:g} s") from None
    except OSError as exc:
        raise FeatureError(location, f"{where}command could not be started ({exc})") from None
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = f": {lines[-1].strip()}" if lines else ""
        status = (f"killed by signal {-done.returncode}" if done.returncode < 0
                  else f"exit status {done.returncode}")
        raise FeatureError(location, f"{where}command failed ({status}){detail}")
    if not done.stdout:
        raise FeatureError(location, f"{where}command wrote nothing to its standard output")
    try:
        data, rate = soundfile.read(io.BytesIO(done.stdout), dtype="float64", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FeatureError(location, f"{where}command output ({len(done.stdout)} bytes) is not audio "
                                     f"soundfile can read ({detail})") from None
    return data, int(rate)


def cut_segment(data: np.ndarray, rate: int, start: float, end: float | None, source: str,
                origin: str = "") -> np.ndarray:
    """Samples ``[round(start * rate), round(end * rate))`` of a recording (``end=None``: to its end).

    A segment ending up to :data:`MAX_SEGMENT_OVERSHOOT` seconds past the recording is cut at
    its end (as Kaldi's ``extract-segments``); further, or starting past the end, is a
    :class:`FeatureError` naming ``origin``.
    """
    where = f"{origin}: " if origin else ""
    n = data.shape[0]
    duration = n / rate
    first = int(round(start * rate))
    if first >= n:
        raise FeatureError(source, f"{where}segment starts at {start:g} s, at or past the end of its "
                                   f"recording ({duration:.3f} s)")
    if end is None:
        return data[first:]
    last = int(round(end * rate))
    if last > n:
        if end - duration > MAX_SEGMENT_OVERSHOOT:
            raise FeatureError(source, f"{where}segment ends at {end:g} s, past the end of its recording "
                                       f"({duration:.3f} s) by more than {MAX_SEGMENT_OVERSHOOT:g} s")
        last = n
    return data[first:last]


def probe_sample_rate(location: str) -> int:
    """The sample rate of a ``wav.scp`` location: from the file's header, or for a command
    by running it (its output is read once and dropped). Raises :class:`FeatureError`."""
    if not is_command(location):
        import soundfile

        try:
            return int(soundfile.info(location).samplerate)
        except Exception as exc:
            raise FeatureError(location, _unreadable_reason(Path(location), exc)) from None
    return read_raw(location)[1]
