"""Batch extraction of a data directory into an on-disk feature cache, and its reader.

Cache layout (``out_dir``)::

    config.json         the FeatureConfig (FeatureConfig.save)
    feats/<shard>.npy   float32 (n_frames, n_features) arrays: the frames of a run of
                        consecutive utterances, one after the other (plain numpy)
    index.json          utterance -> shard, first row, frame count, and its audio's
                        (path, size, mtime)
    report.json         the last run's summary: counts and every skipped utterance with its reason
    .journal.jsonl      results of a run in progress (lets an interrupted run resume)
    .lock               held (flock) by the run writing the cache; names its process

Two runs on one cache directory serialise: the second waits for the first's lock (saying
so on the log) and then finds its features current, so the cache is always consistent.

Shards (a few dozen utterances each) rather than one file per utterance: most FSDD files
give under 50 frames, and creating, renaming and later opening 3000 tiny files cost as much
as computing their features. Every file is written atomically. A rerun reuses the
features of every utterance whose audio (path, size, modification time) and
configuration are unchanged, so it is instant when nothing changed and an interrupted run
resumes where it stopped (recomputed utterances go to new shards; shards nothing refers
to any more are deleted); a changed configuration, or ``force``, recomputes everything.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import stat
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from speakergmm.corpus import DataDir, read_data_dir
from speakergmm.exit_codes import EXIT_PARTIAL
from speakergmm.features.audio import FeatureError, cut_segment, is_command, read_raw
from speakergmm.features.config import FeatureConfig, FeatureConfigError
from speakergmm.features.extract import get_extractor
from speakergmm.io import atomic_path, atomic_write_json, atomic_write_text
from speakergmm.cluster import as_executor, executor_workers
from speakergmm.utils import effective_jobs, progress, renamed_argument, worker_pool

__all__ = [
    "BatchReport",
    "SkippedUtterance",
    "FeatureStore",
    "FeatureStream",
    "FeatureStoreError",
    "FeatureCacheMismatch",
    "extract_data_dir",
    "EXIT_SKIPPED",
]

CACHE_FORMAT = "speakergmm.FeatureCache"
CACHE_VERSION = 1
REPORT_FORMAT = "speakergmm.FeatureReport"

#: Exit status of a batch that finished but skipped some utterances (see speakergmm.exit_codes).
EXIT_SKIPPED = EXIT_PARTIAL

_CONFIG = "config.json"
_INDEX = "index.json"
_REPORT = "report.json"
_JOURNAL = ".journal.jsonl"
_FEATS = "feats"
_LOCK = ".lock"
# Shard names are plain file names inside feats/: an index entry cannot point elsewhere.
_SHARD_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}\.npy")

logger = logging.getLogger(__name__)


class FeatureStoreError(ValueError):
    """A feature cache is missing, incomplete, corrupt or inconsistent."""


class FeatureCacheMismatch(FeatureStoreError):
    """A feature cache holds features of another configuration; ``differences`` maps
    field -> (the cache's value, the requested value)."""

    def __init__(self, message: str, differences: Mapping[str, tuple[Any, Any]]):
        super().__init__(message)
        self.differences = dict(differences)


@dataclass(frozen=True)
class SkippedUtterance:
    """An utterance a batch could not extract, with the reason."""

    utt: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.utt} ({self.path}): {self.reason}"


@dataclass
class BatchReport:
    """Outcome of :func:`extract_data_dir` (also saved as ``report.json``).

    Attributes
    ----------
    out_dir : Path
    n_utterances : int
        Utterances in the data directory.
    n_extracted, n_reused : int
        Computed in this run / taken unchanged from the cache.
    skipped : list of SkippedUtterance
    n_frames : int
        Frames in the cache over all good utterances.
    audio_seconds : float
        Seconds of audio behind the cached features.
    extracted_seconds : float
        Seconds of audio analysed in this run.
    elapsed : float
        Wall-clock seconds of the run.
    config_hash : str
    """

    out_dir: Path
    n_utterances: int
    n_extracted: int
    n_reused: int
    skipped: list[SkippedUtterance] = field(default_factory=list)
    n_frames: int = 0
    audio_seconds: float = 0.0
    extracted_seconds: float = 0.0
    elapsed: float = 0.0
    config_hash: str = ""
    jobs: int = 1

    @property
    def n_ok(self) -> int:
        """Utterances with features in the cache."""
        return self.n_extracted + self.n_reused

    @property
    def ok(self) -> bool:
        """True when no utterance was skipped."""
        return not self.skipped

    @property
    def exit_status(self) -> int:
        """0 when everything was extracted, :data:`EXIT_SKIPPED` (3) when some were skipped."""
        return 0 if self.ok else EXIT_SKIPPED

    @property
    def real_time_factor(self) -> float:
        """Wall-clock seconds per second of audio analysed in this run (nan if none)."""
        return self.elapsed / self.extracted_seconds if self.extracted_seconds > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (what ``report.json`` holds)."""
        return {
            "format": REPORT_FORMAT,
            "version": 1,
            "out_dir": str(self.out_dir),
            "config_hash": self.config_hash,
            "n_utterances": self.n_utterances,
            "n_ok": self.n_ok,
            "n_extracted": self.n_extracted,
            "n_reused": self.n_reused,
            "n_skipped": len(self.skipped),
            "skipped": [{"utt": s.utt, "path": s.path, "reason": s.reason} for s in self.skipped],
            "n_frames": self.n_frames,
            "audio_seconds": round(self.audio_seconds, 3),
            "extracted_seconds": round(self.extracted_seconds, 3),
            "elapsed_seconds": round(self.elapsed, 3),
            "jobs": self.jobs,
            "exit_status": self.exit_status,
        }

    def summary(self) -> str:
        """Human-readable lines: counts, then one line per skipped utterance."""
        lines = [f"{self.n_ok} of {self.n_utterances} utterances have features in {self.out_dir} "
                 f"({self.n_extracted} extracted, {self.n_reused} reused from the cache; "
                 f"{self.n_frames} frames, {self.audio_seconds:.1f} s of audio) in {self.elapsed:.2f} s"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} utterance(s):")
            lines.extend(f"  {s}" for s in self.skipped)
        return "\n".join(lines)


# ---------------------------------------------------------------------- workers
@dataclass(frozen=True)
class ExtractionChunk:
    """A chunk of utterances to extract into one shard file: what a worker receives."""

    config: dict  # FeatureConfig.to_dict()
    feats_dir: str
    shard: str  # the shard's file name in feats_dir
    items: list  # (utt, location, start, end, origin) per utterance


def _extract_chunk(task: ExtractionChunk) -> list[tuple]:
    """Extract a chunk of utterances into one shard file (runs in a worker).

    Items are ``(utt, location, start, end, origin)``: a plain file without a segment goes
    through :meth:`FeatureExtractor.extract_full` by path; a command or a segment reads its
    recording once (consecutive items of one recording share the read) and cuts it.
    Returns small tuples only, one per utterance: ``(utt, first_row, n_frames, seconds, None)``
    or ``(utt, None, None, 0.0, reason)``.
    """
    feats_dir, shard, items = task.feats_dir, task.shard, task.items
    extractor = get_extractor(FeatureConfig.from_dict(task.config))
    results: list[tuple] = []
    arrays: list[np.ndarray] = []
    row = 0
    recording: tuple[str, Any] = ("", None)  # (location, (data, rate) or the FeatureError)
    for utt, location, start, end, origin in items:
        try:
            if start is None and not is_command(location):
                extraction = extractor.extract_full(location)
            else:
                if recording[0] != location:
                    try:
                        recording = (location, read_raw(location, origin))
                    except FeatureError as exc:
                        recording = (location, exc)
                audio = recording[1]
                if isinstance(audio, FeatureError):
                    raise audio
                data, rate = audio
                if start is not None:
                    data = cut_segment(data, rate, start, end, location, origin)
                extraction = extractor.extract_full(data, rate, source=origin or location)
        except FeatureError as exc:
            reason = exc.reason
            if origin and not reason.startswith(origin):
                reason = f"{reason} ({origin})"
            results.append((utt, None, None, 0.0, reason))
            continue
        except MemoryError:
            results.append((utt, None, None, 0.0, "out of memory while extracting"))
            continue
        except Exception as exc:  # a bad file must never stop the batch
            results.append((utt, None, None, 0.0, f"extraction failed ({type(exc).__name__}: {exc})"))
            continue
        n_frames = int(extraction.features.shape[0])
        arrays.append(extraction.features)
        results.append((utt, row, n_frames, extraction.duration, None))
        row += n_frames
    if arrays:
        with atomic_path(os.path.join(feats_dir, shard)) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.concatenate(arrays) if len(arrays) > 1 else arrays[0], allow_pickle=False)
    return results


# Chunk bounds: a chunk is one task, one shard file and one journal line, so an interrupted
# run loses at most one chunk per process. Small chunks cost a task, a result message and a
# shard write each (with 32 files a chunk that overhead held two jobs to ~1.6x one job on
# FSDD); large ones hold features in memory and leave processes idle at the end.
_CHUNK_MAX_FILES = 128
_CHUNK_MAX_BYTES = 32 * 2**20   # of audio: about 17 minutes at 16 kHz, 16-bit
_CHUNK_MIN_FILES = 8


def _plan_chunks(todo: list[tuple], jobs: int, chunk_size: int | None) -> list[list[tuple]]:
    """Cut the utterances to extract into runs of consecutive ones, one task and shard each.

    A fixed ``chunk_size`` gives equal counts. Otherwise guided self-scheduling by audio
    bytes: each chunk takes about 1/(4 * jobs) of the bytes still to plan, within the bounds
    above, so chunks shrink towards the end and the processes finish together.
    Items are ``(utt, location, segment..., size)``; a chunk never ends between two
    segments of one recording, so each recording is read once.
    """
    if chunk_size:
        chunks, start = [], 0
        while start < len(todo):
            end = min(start + chunk_size, len(todo))
            while end < len(todo) and todo[end][1] == todo[end - 1][1] and todo[end][2] is not None:
                end += 1
            chunks.append(todo[start:end])
            start = end
        return chunks
    sizes = [max(int(item[-1]), 1) for item in todo]
    remaining = float(sum(sizes))
    chunks = []
    start = 0
    while start < len(todo):
        target = min(_CHUNK_MAX_BYTES, remaining / (4 * max(jobs, 1)))
        end, taken = start, 0.0
        while end < len(todo) and end - start < _CHUNK_MAX_FILES and (
                taken < target or end - start < _CHUNK_MIN_FILES):
            if end > start and taken + sizes[end] > _CHUNK_MAX_BYTES:
                break
            taken += sizes[end]
            end += 1
        while end < len(todo) and todo[end][1] == todo[end - 1][1] and todo[end][2] is not None:
            taken += sizes[end]  # the rest of this recording's segments
            end += 1
        chunks.append(todo[start:end])
        remaining -= taken
        start = end
    return chunks


# ---------------------------------------------------------------------- cache state
def _read_json(path: Path) -> Any:
    """The JSON document in ``path``, or None when it is missing, unreadable or malformed
    (including nesting too deep for the parser)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def _previous_entries(out: Path, config_hash: str) -> dict[str, dict[str, Any]]:
    """Entries of a previous run (finished or interrupted) made with the same configuration."""
    index = _read_json(out / _INDEX)
    entries: dict[str, dict[str, Any]] = {}
    if (isinstance(index, dict) and index.get("format") == CACHE_FORMAT
            and index.get("version") == CACHE_VERSION and index.get("config_hash") == config_hash
            and isinstance(index.get("utterances"), dict)):
        entries.update(index["utterances"])
    journal = out / _JOURNAL
    if journal.is_file():
        with open(journal, encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):
                    continue  # a line cut short by an interruption (or garbage)
                if (isinstance(record, dict) and record.get("config_hash") == config_hash
                        and isinstance(record.get("entries"), dict)):
                    entries.update(record["entries"])
    return entries


def _usable_entry(entry: Any) -> bool:
    try:
        _check_entry(Path(_INDEX), "", entry)
    except FeatureStoreError:
        return False
    return True


def _same_source(entry: Mapping[str, Any], path: str, st: os.stat_result | None,
                 segment: str | None) -> bool:
    """Same audio as when the entry was made: path (or command), segment, size and mtime.

    A command's output is taken as unchanged while the command line is (its inputs cannot
    be known); ``--force`` recomputes.
    """
    if entry.get("path") != path or entry.get("segment") != segment:
        return False
    if st is None:
        return entry.get("size") is None
    return entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns


def check_cache_config(out_dir: str | os.PathLike, config: FeatureConfig) -> None:
    """Refuse to put features of ``config`` into a cache that holds another configuration's.

    Raises
    ------
    FeatureCacheMismatch
        When ``out_dir`` holds features computed with other settings; the message lists
        each setting that differs (the cache's value and the requested one).
    FeatureStoreError
        When it holds features whose configuration cannot be read.
    """
    out = Path(out_dir)
    has_features = (out / _INDEX).is_file() or (out / _JOURNAL).is_file()
    if not has_features and ((out / "feats.scp").is_file() or (out.is_dir() and any(out.glob("*.npy")))):
        raise FeatureStoreError(f"{out}: holds features that are not a feature cache (feats.scp or "
                                ".npy files); it is left as it is (give it as the data directory to use "
                                "those features, or write the cache elsewhere)")
    if not (out / _CONFIG).is_file():
        if has_features:
            raise FeatureStoreError(f"{out}: holds features but no {_CONFIG}; it is left as it is "
                                    "(write the features elsewhere, or delete it)")
        return
    try:
        old = FeatureConfig.load(out / _CONFIG)
    except FeatureConfigError as exc:
        if not has_features:
            return
        raise FeatureStoreError(f"{out}: holds features of an unreadable configuration ({exc}); it is "
                                "left as it is (write the features elsewhere, or delete it)") from exc
    differences = old.differences(config)
    if differences and has_features:
        listed = "; ".join(f"{name} {a!r} in the cache, {b!r} asked for"
                           for name, (a, b) in differences.items())
        raise FeatureCacheMismatch(
            f"{out}: feature cache made with another configuration ({listed}); it is left as it "
            "is: write these features to another directory, use the cache's configuration, or "
            "delete the cache to replace it", differences)


def cache_beside(out_dir: str | os.PathLike, config: FeatureConfig) -> Path:
    """``out_dir`` when it is free or holds ``config``'s features, else a cache beside it.

    The cache beside is ``<out_dir>-<config hash>``, so runs with different configurations
    each keep their own features.
    """
    out = Path(out_dir)
    try:
        check_cache_config(out, config)
        return out
    except FeatureStoreError:
        return out.with_name(f"{out.name}-{config.hash()[:8]}")


def _write_speakers(out: Path, data: DataDir) -> None:
    """utt2spk / spk2utt (and spk2gender) in the cache, so that it can stand for its data directory."""
    atomic_write_text(out / "utt2spk", "".join(f"{u} {s}\n" for u, s in data.utt2spk.items()))
    atomic_write_text(out / "spk2utt", "".join(f"{s} {' '.join(us)}\n" for s, us in data.spk2utt.items()))
    if data.spk2gender:
        atomic_write_text(out / "spk2gender", "".join(f"{s} {g}\n" for s, g in sorted(data.spk2gender.items())))


# ---------------------------------------------------------------------- locking
@contextlib.contextmanager
def cache_lock(out: Path, wait: bool = True) -> Iterator[None]:
    """Hold the cache directory's write lock (``out/.lock``, an advisory ``flock``).

    The lock is released by the kernel when the holder exits, however it exits (even
    ``kill -9``), so a stale lock never blocks a later run. ``wait=False`` refuses at once
    with a :class:`FeatureStoreError` when another run holds it.
    """
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX (Windows): nothing to lock with
        logger.warning("features: no file locking on this platform; concurrent runs on %s are "
                       "not serialised", out)
        yield
        return
    fd = os.open(out / _LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            if not wait:
                raise FeatureStoreError(
                    f"{out}: another feature extraction ({holder}) is writing this cache; wait "
                    "for it to finish or choose another output directory") from None
            logger.warning("features: waiting for another extraction (%s) writing %s to finish",
                        holder, out)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


# ---------------------------------------------------------------------- the batch
def extract_data_dir(data_dir: str | os.PathLike | DataDir, out_dir: str | os.PathLike,
                     config: FeatureConfig | None = None, jobs: int = 1,
                     show_progress: bool | None = None, force: bool = False,
                     chunk_size: int | None = None, wait: bool = True,
                     client: Any = None, progress: bool | None = None) -> BatchReport:
    """Extract features for every utterance of a data directory into a cache on disk.

    Parameters
    ----------
    data_dir : path-like or DataDir
        Kaldi-style data directory (see :mod:`speakergmm.corpus`).
    out_dir : path-like
        Feature cache directory (created; reused when it holds a previous run).
    config : FeatureConfig, optional
        Defaults to ``FeatureConfig()``. A cache holding features of another configuration
        is never overwritten: :class:`FeatureCacheMismatch` says which settings differ
        (:func:`cache_beside` picks a directory beside it instead).
    jobs : int
        Worker processes (0 or None: all cores; negative: all but some); each worker
        extracts whole chunks of files and writes their features itself, so only paths
        and frame counts cross process boundaries.
    show_progress : bool, optional
        Show a progress bar (default: when stderr is a terminal).
    force : bool
        Recompute every utterance even when its cached features are current.
    chunk_size : int, optional
        Files per task (one shard file each). Default: chunks that shrink towards the end,
        at most 128 files or 32 MiB of audio.
    wait : bool
        When another run is writing ``out_dir``, wait for it (default; then this run reuses
        what it computed) instead of refusing with a :class:`FeatureStoreError`.
    client : dask.distributed.Client or concurrent.futures.Executor, optional
        Extract on a cluster instead of local processes (see :mod:`speakergmm.cluster`):
        each task reads its audio and writes its shard under ``out_dir``, which must
        therefore be on storage the workers share; only paths and frame counts travel.
    progress : bool, optional
        Deprecated name of ``show_progress`` (DeprecationWarning; it wins when given).

    Returns
    -------
    BatchReport
        Also written to ``out_dir/report.json``. Bad audio (missing, unreadable, empty,
        silent, too short, no speech after VAD) never stops the batch: it is skipped and
        listed with its reason; ``report.exit_status`` is then 3.

    Raises
    ------
    CorpusError
        If the data directory itself is malformed.
    FeatureStoreError
        If ``out_dir`` cannot be used (e.g. it is a file), or is locked and ``wait`` is False.
    """
    start = time.perf_counter()
    show_progress = renamed_argument(show_progress, progress, former="progress", name="show_progress",
                                     owner="extract_data_dir")
    config = config if config is not None else FeatureConfig()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FeatureStoreError(f"{out}: exists and is not a directory")
    # A malformed data directory, or a folder that must not be written into (features of
    # another kind or configuration), is refused before the cache directory is locked.
    data_dir = data_dir if isinstance(data_dir, DataDir) else read_data_dir(data_dir)
    if out.is_dir():
        check_cache_config(out, config)
    executor = as_executor(client)
    if executor is not None:
        try:
            with cache_lock(out, wait=wait):
                return _extract_data_dir(data_dir, out_dir, config, executor_workers(executor), executor,
                                         show_progress, force, chunk_size, start)
        finally:
            executor.shutdown(wait=True)
    jobs = effective_jobs(jobs)
    get_extractor(config)  # built before any fork, so that workers inherit it
    pool = None
    if jobs > 1:
        # Started now, the workers initialise while this process reads the data directory
        # and checks the cache (a small but serial part of the run).
        pool = worker_pool(jobs)
    try:
        with cache_lock(out, wait=wait):
            return _extract_data_dir(data_dir, out_dir, config, jobs, pool, show_progress, force,
                                     chunk_size, start)
    except BaseException:
        if pool is not None:  # interrupted: kill the workers instead of awaiting their chunks
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _extract_data_dir(data_dir, out_dir, config: FeatureConfig, jobs: int, pool,
                      show_progress: bool | None, force: bool, chunk_size: int | None,
                      start: float) -> BatchReport:
    data = data_dir if isinstance(data_dir, DataDir) else read_data_dir(data_dir)
    if not data.has_audio:
        raise FeatureStoreError(f"{data.path or 'the data directory'}: no wav.scp, nothing to extract "
                                "(its feats.scp features are used as they are)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FeatureStoreError(f"{out}: exists and is not a directory")
    config_hash = config.hash()
    old_config = _read_json(out / _CONFIG)
    same_config = isinstance(old_config, dict) and old_config.get("hash") == config_hash
    if not same_config:
        check_cache_config(out, config)  # never overwrite features of another configuration
    feats_dir = out / _FEATS
    feats_dir.mkdir(parents=True, exist_ok=True)
    previous = {} if (force or not same_config) else _previous_entries(out, config_hash)
    if not same_config:
        # Drop the old run's bookkeeping *before* any new feature is written, so nothing
        # computed with the old configuration can ever be taken for current.
        for name in (_INDEX, _JOURNAL):
            (out / name).unlink(missing_ok=True)
        config.save(out / _CONFIG)

    entries: dict[str, dict[str, Any]] = {}
    skipped: list[SkippedUtterance] = []
    todo: list[tuple] = []   # (utt, location, start, end, origin, stat, size)
    shards_on_disk = {e.name for e in os.scandir(feats_dir)}
    stats: dict[str, os.stat_result | str] = {}   # one stat per recording
    n_segments: dict[str, int] = {}
    for utt in data.utterances:
        n_segments[data.wav.get(utt, "")] = n_segments.get(data.wav.get(utt, ""), 0) + 1
    for utt in data.utterances:
        audio = data.audio(utt)
        if audio.problem is not None:
            skipped.append(SkippedUtterance(utt, audio.location or audio.origin, audio.problem))
            continue
        path, segment = audio.location, audio.segment
        where = f" ({audio.origin})" if segment is not None else ""
        st: os.stat_result | None = None
        if is_command(path):
            size = 256 * 1024 // n_segments[path]  # unknown before it runs
        else:
            if path not in stats:
                try:
                    stats[path] = os.stat(path)
                except FileNotFoundError:
                    stats[path] = "audio file not found"
                except OSError as exc:
                    stats[path] = f"cannot access audio ({exc.strerror or exc})"
                else:
                    if not stat.S_ISREG(stats[path].st_mode):
                        stats[path] = "not a regular file" + (
                            " (a directory)" if stat.S_ISDIR(stats[path].st_mode) else "")
            found = stats[path]
            if isinstance(found, str):
                skipped.append(SkippedUtterance(utt, path, found + where))
                continue
            st = found
            size = st.st_size // n_segments[path]
        seg_text = None if segment is None else str(segment)
        entry = previous.get(utt)
        if (entry is not None and _usable_entry(entry) and _same_source(entry, path, st, seg_text)
                and entry.get("shard") in shards_on_disk):
            entries[utt] = entry
            continue
        todo.append((utt, path, None if segment is None else segment.start,
                     None if segment is None else segment.end, audio.origin if segment is not None
                     or is_command(path) else "", st, size))
    n_reused = len(entries)
    # the segments of one recording next to each other, so that one read serves them all
    first_seen: dict[str, int] = {}
    for item in todo:
        first_seen.setdefault(item[1], len(first_seen))
    todo.sort(key=lambda item: first_seen[item[1]])

    n_extracted = 0
    extracted_seconds = 0.0
    if todo:
        chunks = _plan_chunks(todo, jobs, chunk_size)
        by_utt = {item[0]: item for item in todo}
        config_dict = config.to_dict()
        run_id = uuid.uuid4().hex[:12]  # new shards never overwrite ones still in use
        tasks = [ExtractionChunk(config_dict, str(feats_dir), f"{run_id}-{i:05d}.npy",
                                 [item[:5] for item in chunk]) for i, chunk in enumerate(chunks)]
        with open(out / _JOURNAL, "a", encoding="utf-8") as journal:
            pending: dict[str, dict[str, Any]] = {}
            results = _run_tasks(tasks, pool if len(tasks) > 1 else None)
            for shard, (utt, row, n_frames, seconds, reason), last in _progress(results, len(todo), show_progress):
                _, path, seg_start, _, _, st, _ = by_utt[utt]
                if reason is not None:
                    skipped.append(SkippedUtterance(utt, path, reason))
                else:
                    pending[utt] = {"shard": shard, "row": row, "n_frames": n_frames, "path": path,
                                    "size": None if st is None else st.st_size,
                                    "mtime_ns": None if st is None else st.st_mtime_ns,
                                    "segment": None if seg_start is None else str(data.segments[utt]),
                                    "seconds": round(seconds, 6)}
                    n_extracted += 1
                    extracted_seconds += seconds
                if last and pending:  # one journal line per finished shard
                    entries.update(pending)
                    journal.write(json.dumps({"config_hash": config_hash, "entries": pending},
                                             separators=(",", ":")) + "\n")
                    journal.flush()
                    pending = {}

    order = {utt: i for i, utt in enumerate(data.utterances)}
    entries = dict(sorted(entries.items(), key=lambda kv: order[kv[0]]))
    skipped.sort(key=lambda s: order[s.utt])
    # compact JSON: for large corpora the indented form costs noticeable time and space
    atomic_write_text(out / _INDEX, json.dumps({
        "format": CACHE_FORMAT, "version": CACHE_VERSION, "config_hash": config_hash,
        "n_features": config.n_features,
        "data_dir": str(data.path) if data.path is not None else None,
        "utterances": entries,
    }, separators=(",", ":")) + "\n")
    (out / _JOURNAL).unlink(missing_ok=True)
    _write_speakers(out, data)
    _remove_stale_files(feats_dir, {e["shard"] for e in entries.values()})

    report = BatchReport(
        out_dir=out, n_utterances=len(data), n_extracted=n_extracted, n_reused=n_reused,
        skipped=skipped, n_frames=int(sum(e["n_frames"] for e in entries.values())),
        audio_seconds=float(sum(e.get("seconds", 0.0) for e in entries.values())),
        extracted_seconds=extracted_seconds, config_hash=config_hash, jobs=jobs,
    )
    report.elapsed = time.perf_counter() - start
    atomic_write_json(out / _REPORT, report.to_dict())
    return report


def _run_tasks(tasks: list[ExtractionChunk], pool: Any) -> Iterator[tuple[str, tuple, bool]]:
    """``(shard, per-utterance result, last of its shard?)`` of all tasks, in-process
    (``pool=None``) or from the pool's pinned workers (chunks arrive in completion order)."""
    def per_utterance(shard: str, results: list[tuple]) -> Iterator[tuple[str, tuple, bool]]:
        for i, result in enumerate(results):
            yield shard, result, i == len(results) - 1

    if pool is None:
        for task in tasks:
            yield from per_utterance(task.shard, _extract_chunk(task))
        return
    futures = {pool.submit(_extract_chunk, task): task.shard for task in tasks}
    try:
        for future in as_completed(futures):
            yield from per_utterance(futures[future], future.result())
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def _progress(results: Iterable[tuple], total: int, enabled: bool | None) -> Iterable[tuple]:
    return progress(results, desc="features", total=total, enabled=enabled, unit="utt")


def _remove_stale_files(feats_dir: Path, keep: set[str]) -> None:
    """Delete shards no current utterance uses (and leftovers of interrupted writes)."""
    for entry in os.scandir(feats_dir):
        name = entry.name
        if name in keep:
            continue
        if name.endswith(".npy") or (name.startswith(".") and name.endswith(".tmp")):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


# ---------------------------------------------------------------------- reading
def _check_entry(index_path: Path, utt: str, entry: Any) -> None:
    """An index entry names a shard inside ``feats/`` and a non-negative row range."""
    if not isinstance(entry, dict):
        raise FeatureStoreError(f"{index_path}: entry of {utt!r} is not a JSON object (corrupt?)")
    shard = entry.get("shard")
    if not isinstance(shard, str) or not _SHARD_NAME.fullmatch(shard):
        raise FeatureStoreError(f"{index_path}: entry of {utt!r} names shard {str(shard)[:80]!r}, "
                                f"which is not a file name inside {_FEATS}/ (corrupt or tampered index)")
    for key in ("row", "n_frames"):
        value = entry.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise FeatureStoreError(f"{index_path}: entry of {utt!r} has {key} {str(value)[:40]!r}, "
                                    "expected a non-negative integer (corrupt index)")


class FeatureStream:
    """A re-iterable sequence of feature arrays (one per utterance), read lazily from a store.

    Iterating it twice reads the files twice, so it can feed multi-pass EM over a corpus
    without holding the corpus in memory.
    """

    def __init__(self, store: "FeatureStore", utterances: list[str]):
        self.store = store
        self.utterances = utterances

    def __iter__(self) -> Iterator[np.ndarray]:
        for utt in self.utterances:
            yield self.store[utt]

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def n_frames(self) -> int:
        """Total frames over the stream's utterances (from the index; no file is read)."""
        return sum(self.store.n_frames(u) for u in self.utterances)


class FeatureStore(Mapping):
    """Read-only access to a feature cache written by :func:`extract_data_dir`.

    A mapping ``utterance id -> (n_frames, n_features) float32 array``. Shards are memory
    mapped (the few most recently used stay open), so reading an utterance touches only its
    own rows; ``store[utt]`` returns a private copy, or with ``mmap=True`` a read-only view.

    Examples
    --------
    >>> store = FeatureStore("exp/feats")                   # doctest: +SKIP
    >>> store.config.n_features, len(store)                  # doctest: +SKIP
    >>> X = store["george-0_george_5"]                       # doctest: +SKIP
    >>> for utt, X in store.items(): ...                     # doctest: +SKIP
    >>> gmm_training_data = store.arrays(train_utterances)   # re-iterable, lazy
    """

    _OPEN_SHARDS = 8

    def __init__(self, path: str | os.PathLike, mmap: bool = False):
        self.path = Path(path)
        self.mmap = mmap
        index_path = self.path / _INDEX
        if not self.path.is_dir():
            raise FeatureStoreError(f"{self.path}: no such feature cache directory")
        if not index_path.is_file():
            if (self.path / _JOURNAL).is_file():
                raise FeatureStoreError(f"{self.path}: feature cache is incomplete (an extraction was "
                                        "interrupted); rerun `speakergmm features` to finish it")
            raise FeatureStoreError(f"{self.path}: not a feature cache (no {_INDEX})")
        try:
            self.config = FeatureConfig.load(self.path / _CONFIG)
        except (FeatureConfigError, RecursionError) as exc:
            raise FeatureStoreError(f"{self.path}: unusable feature cache configuration: {exc}") from exc
        index = _read_json(index_path)
        if not isinstance(index, dict) or index.get("format") != CACHE_FORMAT:
            raise FeatureStoreError(f"{index_path}: not a {CACHE_FORMAT} index (corrupt?)")
        if index.get("version") != CACHE_VERSION:
            raise FeatureStoreError(f"{index_path}: cache version {index.get('version')!r} is not supported "
                                    f"(this speakergmm reads version {CACHE_VERSION}); re-extract")
        if index.get("config_hash") != self.config.hash():
            raise FeatureStoreError(f"{self.path}: index and {_CONFIG} disagree (config hash "
                                    f"{index.get('config_hash')} vs {self.config.hash()}); re-extract")
        entries = index.get("utterances") or {}
        if not isinstance(entries, dict):
            raise FeatureStoreError(f"{index_path}: 'utterances' is not a JSON object (corrupt?)")
        for utt, entry in entries.items():
            _check_entry(index_path, utt, entry)
        self._entries: dict[str, dict[str, Any]] = entries
        self.n_features = self.config.n_features
        self.data_dir = index.get("data_dir")
        self._shards: OrderedDict[str, np.ndarray] = OrderedDict()

    def _shard(self, name: str) -> np.ndarray:
        shard = self._shards.get(name)
        if shard is not None:
            self._shards.move_to_end(name)
            return shard
        file = self.path / _FEATS / name
        try:
            shard = np.load(file, mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - a damaged .npy header fails in many ways
            # (ValueError, EOFError, OSError, and SyntaxError or tokenize errors from
            # numpy's parsing of the header text)
            raise FeatureStoreError(f"{file}: feature shard missing or corrupt ({exc}); re-extract") from exc
        if shard.ndim != 2 or shard.shape[1] != self.n_features or shard.dtype != np.float32:
            raise FeatureStoreError(f"{file}: feature shard holds {shard.dtype} {shard.shape}, expected "
                                    f"float32 (n, {self.n_features}); re-extract")
        self._shards[name] = shard
        if len(self._shards) > self._OPEN_SHARDS:
            self._shards.popitem(last=False)
        return shard

    # Mapping protocol -------------------------------------------------------------
    def __getitem__(self, utt: str) -> np.ndarray:
        entry = self._entries.get(utt)
        if entry is None:
            reason = self.skipped.get(utt)
            why = f" (skipped at extraction: {reason})" if reason else ""
            raise KeyError(f"utterance {utt!r} has no features in {self.path}{why}")
        shard = self._shard(entry["shard"])
        row, n_frames = int(entry["row"]), int(entry["n_frames"])
        if row + n_frames > shard.shape[0]:
            raise FeatureStoreError(
                f"{self.path / _FEATS / entry['shard']}: rows {row}..{row + n_frames} of {utt!r} lie "
                f"beyond the shard's {shard.shape[0]} rows; re-extract")
        view = shard[row:row + n_frames]
        return view if self.mmap else np.array(view)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, utt: object) -> bool:
        return utt in self._entries

    # Extras --------------------------------------------------------------------------
    @property
    def utterances(self) -> list[str]:
        """Utterance ids with features, in data-directory order."""
        return list(self._entries)

    def n_frames(self, utt: str) -> int:
        """Frame count of an utterance (from the index; no file is read)."""
        return int(self._entries[utt]["n_frames"])

    @property
    def total_frames(self) -> int:
        """Frames over all utterances."""
        return sum(int(e["n_frames"]) for e in self._entries.values())

    @property
    def skipped(self) -> dict[str, str]:
        """Utterances the last extraction skipped -> reason (from ``report.json``)."""
        report = _read_json(self.path / _REPORT)
        if not isinstance(report, dict):
            return {}
        return {s["utt"]: s["reason"] for s in report.get("skipped", []) if isinstance(s, dict)}

    def arrays(self, utterances: Iterable[str] | None = None) -> FeatureStream:
        """A lazy, re-iterable stream of the arrays of ``utterances`` (default: all).

        Raises KeyError (naming them) when some utterances have no features.
        """
        utts = self.utterances if utterances is None else list(utterances)
        missing = [u for u in utts if u not in self._entries]
        if missing:
            shown = ", ".join(repr(u) for u in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise KeyError(f"{len(missing)} utterance(s) have no features in {self.path}: {shown}")
        return FeatureStream(self, utts)

    def concatenate(self, utterances: Iterable[str] | None = None) -> np.ndarray:
        """All frames of ``utterances`` (default: all) stacked into one (N, D) float32 array."""
        stream = self.arrays(utterances)
        out = np.empty((stream.n_frames, self.n_features), dtype=np.float32)
        pos = 0
        for array in stream:
            out[pos:pos + len(array)] = array
            pos += len(array)
        return out

    def close(self) -> None:
        """Drop the open shard maps (they are reopened on demand)."""
        self._shards.clear()

    def __repr__(self) -> str:
        return (f"FeatureStore({str(self.path)!r}: {len(self)} utterances, {self.n_features} dims, "
                f"config {self.config.hash()})")
