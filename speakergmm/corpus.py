"""Kaldi-style data directories and trial lists.

A data directory holds plain two-column text files, one utterance (or speaker) per line:

``wav.scp``
    ``id location`` -- the audio: a path (the rest of the line, so paths may hold spaces;
    relative paths are taken relative to the data directory) or, as in Kaldi, a shell
    command ending in ``|`` whose standard output is the audio (``flac -c -d x.flac |``,
    ``sox x.sph -t wav - |``). The id is an utterance's, or a recording's with ``segments``.
``segments``
    ``utt-id recording-id start end`` (seconds; ``end`` -1 is the end of the recording):
    utterances cut from the recordings of ``wav.scp``, each recording read once.
``utt2spk``
    ``utt-id speaker-id``; every utterance needs one.
``spk2utt``
    ``speaker-id utt-id utt-id ...``; derived from ``utt2spk`` when missing, checked against
    it when present.
``feats.scp``
    ``utt-id rxspecifier`` -- features computed elsewhere (Kaldi ark offsets, read through
    kaldiio); a directory may hold it without ``wav.scp``.
``spk2gender``
    ``speaker-id m|f``.
``utt2<field>``
    Any other per-utterance field (``utt2dur``, ``utt2digit``, ...), kept in
    :attr:`DataDir.fields`.

A trial list has lines ``enroll-id test-utt-id target|nontarget``.

Readers check everything they can (malformed lines, duplicate ids, utterances without a
speaker, unknown ids) and raise :class:`CorpusError` whose message names the file and the
line; :func:`validate_data_dir` adds Kaldi's sort-order rules. Whether the audio exists is
*not* checked here (commands are not run): feature extraction reports and skips missing or
unreadable audio, failing commands and segments past the end of their recording, naming
the ``file:line`` of the entry. Writers are atomic.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple

from speakergmm.io import atomic_write_text

__all__ = [
    "CorpusError",
    "DataDir",
    "Trial",
    "read_data_dir",
    "validate_data_dir",
    "Segment",
    "AudioEntry",
    "is_command",
    "write_data_dir",
    "read_trials",
    "write_trials",
    "make_data_dir",
    "MakeDataDirResult",
    "parse_filename_pattern",
]

_MAX_LISTED = 10


class CorpusError(ValueError):
    """A data directory or trial list is malformed; ``problems`` lists ``file:line: what``."""

    def __init__(self, problems: list[str] | str):
        problems = [problems] if isinstance(problems, str) else list(problems)
        shown = problems[:_MAX_LISTED]
        more = len(problems) - len(shown)
        message = "\n  ".join(shown) + (f"\n  ... and {more} more problem(s)" if more > 0 else "")
        super().__init__(message)
        self.problems = problems


# ---------------------------------------------------------------------- low-level files
def _read_table(path: Path, min_fields: int, max_fields: int | None,
                problems: list[str]) -> list[tuple[int, list[str]]]:
    """Lines of a whitespace-separated table as (line number, fields); blank lines skipped."""
    rows: list[tuple[int, list[str]]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 text ({exc})")
        return rows
    except OSError as exc:
        problems.append(f"{path}: cannot be read ({exc.strerror or exc})")
        return rows
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, max_fields - 1) if max_fields else line.split()
        if len(parts) < min_fields:
            problems.append(f"{path}:{number}: expected at least {min_fields} fields, got "
                            f"{len(parts)} in {line.strip()!r}")
            continue
        parts[-1] = parts[-1].rstrip()  # split() strips all but the rest-of-line field
        rows.append((number, parts))
    return rows


def _read_pairs(path: Path, what: str, problems: list[str]) -> tuple[dict[str, str], dict[str, int]]:
    """A two-column ``key value`` file: (dict, line of each key); duplicates are problems."""
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, (key, value) in _read_table(path, 2, 2, problems):
        if key in values:
            problems.append(f"{path}:{number}: duplicate {what} {key!r} (first on line {lines[key]})")
            continue
        values[key] = value
        lines[key] = number
    return values, lines


def _write_table(path: Path, rows: Iterable[Iterable[str]]) -> None:
    atomic_write_text(path, "".join(" ".join(row) + "\n" for row in rows))


def _check_token(value: str, what: str) -> str:
    if not value or any(ch.isspace() for ch in value):
        raise CorpusError(f"{what} {value!r} must be non-empty and hold no whitespace")
    return value


# ---------------------------------------------------------------------- data directories
def is_command(location: str) -> bool:
    """True for a ``wav.scp`` (or ``feats.scp``) entry that is a shell command ending in ``|``."""
    return location.rstrip().endswith("|")


@dataclass(frozen=True)
class Segment:
    """One line of a ``segments`` file: an utterance cut from a recording.

    ``end`` is ``None`` for Kaldi's ``-1`` (to the end of the recording).
    """

    recording: str
    start: float
    end: float | None

    def __str__(self) -> str:
        # repr: the shortest text that reads back as the same float
        return f"{self.recording} {self.start!r} {'-1' if self.end is None else repr(self.end)}"


@dataclass
class DataDir:
    """An in-memory Kaldi-style data directory.

    Attributes
    ----------
    wav : dict of str to str
        Utterance id -> where its audio comes from: a path (absolute, or as given for
        in-memory directories) or a shell command ending in ``|``. With ``segments`` it is
        the location of the utterance's recording. Utterances known only by their
        features (``feats``) or whose entry is unusable (``unusable``) have none.
    utt2spk : dict of str to str
        Utterance id -> speaker id; its keys are the utterances of the directory.
    fields : dict of str to dict of str to str
        Extra per-utterance fields, e.g. ``fields["digit"]["george-0_george_5"] == "0"``
        (one ``utt2<name>`` file each; ``utt2dur`` gives ``fields["dur"]``).
    path : Path or None
        Where it was read from.
    segments : dict of str to Segment
        Utterance id -> its span of a recording (empty without a ``segments`` file).
    recordings : dict of str to str
        Recording id -> location, the ``wav.scp`` of a segmented directory (empty otherwise).
    feats : dict of str to str
        Utterance id -> Kaldi rxspecifier of its features (``feats.scp``; ark paths resolved).
    spk2gender : dict of str to str
        Speaker id -> ``m`` or ``f``.
    origin : dict of str to str
        Utterance id -> ``file:line`` of the entry its audio comes from (for messages).
    unusable : dict of str to str
        Utterances whose audio entry cannot give audio -> ``file:line: reason`` (a segment
        ending before it starts, an unknown recording). They stay in the directory so that
        batch jobs report and skip them.
    """

    wav: dict[str, str]
    utt2spk: dict[str, str]
    fields: dict[str, dict[str, str]] = field(default_factory=dict)
    path: Path | None = None
    segments: dict[str, Segment] = field(default_factory=dict)
    recordings: dict[str, str] = field(default_factory=dict)
    feats: dict[str, str] = field(default_factory=dict)
    spk2gender: dict[str, str] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    unusable: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems: list[str] = []
        for utt in self.wav:
            if utt not in self.utt2spk:
                problems.append(f"utterance {utt!r} has no speaker in utt2spk")
        for utt in self.feats:
            if utt not in self.utt2spk:
                problems.append(f"utterance {utt!r} of feats.scp has no speaker in utt2spk")
        for utt in self.utt2spk:
            if utt not in self.wav and utt not in self.feats and utt not in self.unusable:
                problems.append(f"utterance {utt!r} of utt2spk has no audio in wav.scp"
                                + (" (nor features in feats.scp)" if self.feats else ""))
        for utt, segment in self.segments.items():
            if utt not in self.utt2spk:
                problems.append(f"segments: utterance {utt!r} has no speaker in utt2spk")
        for name, values in self.fields.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name == "spk":
                problems.append(f"field name {name!r} is not allowed (letters, digits, '_', '.', '-'; not 'spk')")
            for utt in values:
                if utt not in self.utt2spk:
                    problems.append(f"utt2{name}: utterance {utt!r} is not in wav.scp")
        if problems:
            raise CorpusError(problems)
        # Kaldi keeps utterances sorted; with speaker-prefixed ids this groups speakers.
        self.utt2spk = dict(sorted(self.utt2spk.items()))
        self.wav = {utt: self.wav[utt] for utt in self.utt2spk if utt in self.wav}
        self.feats = {utt: self.feats[utt] for utt in self.utt2spk if utt in self.feats}
        self.segments = {utt: self.segments[utt] for utt in self.utt2spk if utt in self.segments}

    @property
    def utterances(self) -> list[str]:
        """Utterance ids, sorted."""
        return list(self.utt2spk)

    @property
    def speakers(self) -> list[str]:
        """Speaker ids, sorted."""
        return sorted(set(self.utt2spk.values()))

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        """Speaker id -> its utterance ids (sorted)."""
        out: dict[str, list[str]] = {spk: [] for spk in self.speakers}
        for utt, spk in self.utt2spk.items():
            out[spk].append(utt)
        return out

    @property
    def has_audio(self) -> bool:
        """True when the directory says where its audio is (``wav.scp``)."""
        return bool(self.wav) or bool(self.unusable)

    def __len__(self) -> int:
        return len(self.utt2spk)

    def __contains__(self, utt: object) -> bool:
        return utt in self.utt2spk

    def audio_path(self, utt: str) -> Path:
        """The audio file of an utterance (for segments: its recording's)."""
        return Path(self.wav[utt])

    def audio(self, utt: str) -> "AudioEntry":
        """Where an utterance's audio comes from: location, segment and ``file:line``."""
        return AudioEntry(utt, self.wav.get(utt, ""), self.segments.get(utt),
                          self.origin.get(utt, ""), self.unusable.get(utt))

    def utt_fields(self, utt: str) -> dict[str, str]:
        """All extra fields of one utterance (plus ``speaker``)."""
        out = {name: values[utt] for name, values in self.fields.items() if utt in values}
        out["speaker"] = self.utt2spk[utt]
        return out

    def subset(self, utterances: Iterable[str] | None = None, speakers: Iterable[str] | None = None,
               where: Callable[[str, Mapping[str, str]], bool] | None = None) -> "DataDir":
        """A new directory with the given utterances / speakers / utterances passing ``where``.

        ``where(utt_id, fields)`` receives :meth:`utt_fields`. Unknown ids raise CorpusError.
        """
        keep = list(self.utt2spk)
        if utterances is not None:
            wanted = list(utterances)
            unknown = [u for u in wanted if u not in self.utt2spk]
            if unknown:
                raise CorpusError([f"subset: unknown utterance {u!r}" for u in unknown])
            chosen = set(wanted)
            keep = [u for u in keep if u in chosen]
        if speakers is not None:
            wanted_spk = set(speakers)
            unknown_spk = sorted(wanted_spk - set(self.utt2spk.values()))
            if unknown_spk:
                raise CorpusError([f"subset: unknown speaker {s!r}" for s in unknown_spk])
            keep = [u for u in keep if self.utt2spk[u] in wanted_spk]
        if where is not None:
            keep = [u for u in keep if where(u, self.utt_fields(u))]
        keep_set = set(keep)
        pick = lambda table: {u: v for u, v in table.items() if u in keep_set}  # noqa: E731
        segments = pick(self.segments)
        kept_speakers = {self.utt2spk[u] for u in keep}
        return DataDir(
            wav=pick(self.wav), utt2spk=pick(self.utt2spk),
            fields={name: pick(values) for name, values in self.fields.items()},
            path=None, segments=segments,
            recordings={r: loc for r, loc in self.recordings.items()
                        if r in {s.recording for s in segments.values()}},
            feats=pick(self.feats),
            spk2gender={s: g for s, g in self.spk2gender.items() if s in kept_speakers},
            origin=pick(self.origin), unusable=pick(self.unusable),
        )

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write as a data directory; see :func:`write_data_dir`."""
        return write_data_dir(self, out_dir)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DataDir":
        """Read a data directory; see :func:`read_data_dir`."""
        return read_data_dir(path)


class AudioEntry(NamedTuple):
    """Where one utterance's audio comes from (see :meth:`DataDir.audio`)."""

    utt: str
    location: str              # path or command ending in "|" ("" when there is none)
    segment: Segment | None    # the span of the recording, or None for the whole file
    origin: str                # "file:line" of the entry, for messages
    problem: str | None        # why the entry cannot give audio, when it cannot

    @property
    def recording_key(self) -> str:
        """Identifies the recording (utterances with the same key share one read)."""
        return self.location


def _resolve(location: str, root: Path) -> str:
    """A wav.scp location: commands as they are, relative paths taken from the directory."""
    if is_command(location) or os.path.isabs(location):
        return location
    return os.path.join(root, location)


_RXFILE_OFFSET = re.compile(r"^(?P<path>.+?)(?P<rest>:\d+(\[[^\]]*\])?)$")


def _resolve_rxspecifier(spec: str, root: Path) -> str:
    """A feats.scp rxspecifier with a relative ark path made absolute.

    Kaldi resolves relative paths from the working directory (recipes run from their
    root); a path that does not exist there is taken relative to the data directory.
    """
    if is_command(spec):
        return spec
    match = _RXFILE_OFFSET.match(spec)
    path, rest = (match.group("path"), match.group("rest")) if match else (spec, "")
    if os.path.isabs(path) or os.path.exists(path):
        return os.path.abspath(path) + rest
    return os.path.join(root, path) + rest


def _parse_time(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _check_sorted(path: Path, keys: list[tuple[int, str]], what: str, problems: list[str]) -> None:
    """Kaldi's rule: keys in ``LC_ALL=C sort`` order (byte order), no repeats."""
    previous: str | None = None
    for number, key in keys:
        if previous is not None and key.encode() < previous.encode():
            problems.append(f"{path}:{number}: {what} {key!r} is out of order (after {previous!r}); "
                            f"Kaldi needs the file sorted with LC_ALL=C sort")
            return
        previous = key


def _read(root: Path, strict: bool) -> tuple[DataDir | None, list[str], list[str]]:
    """Read a data directory: (DataDir or None when there are problems, problems, the
    ``file:line: reason`` of each unusable segment)."""
    if not root.is_dir():
        return None, [f"{root}: no such data directory"], []
    wav_scp, utt2spk_path, spk2utt_path = root / "wav.scp", root / "utt2spk", root / "spk2utt"
    segments_path, feats_path, gender_path = root / "segments", root / "feats.scp", root / "spk2gender"
    problems: list[str] = []
    if not wav_scp.is_file() and not feats_path.is_file():
        return None, [f"{wav_scp}: missing (a data directory needs wav.scp or feats.scp, and utt2spk)"], []
    if not utt2spk_path.is_file():
        return None, [f"{utt2spk_path}: missing (a data directory needs wav.scp or feats.scp, and utt2spk)"], []

    # wav.scp: utterance (or, with segments, recording) -> path or command
    entries: dict[str, str] = {}
    entry_lines: dict[str, int] = {}
    if wav_scp.is_file():
        what = "recording" if segments_path.is_file() else "utterance"
        for number, (key, location) in _read_table(wav_scp, 2, 2, problems):
            if key in entries:
                problems.append(f"{wav_scp}:{number}: duplicate {what} {key!r} (first on line {entry_lines[key]})")
                continue
            entries[key] = _resolve(location.strip(), root)
            entry_lines[key] = number
        if strict:
            _check_sorted(wav_scp, [(n, k) for k, n in entry_lines.items()], what, problems)

    wav: dict[str, str] = {}
    origin: dict[str, str] = {}
    unusable: dict[str, str] = {}
    segments: dict[str, Segment] = {}
    recordings: dict[str, str] = {}
    audio_lines: dict[str, tuple[Path, int]] = {}  # utterance -> where its audio entry is
    if segments_path.is_file():
        if not wav_scp.is_file():
            problems.append(f"{segments_path}: present but {wav_scp.name} is missing (segments cut "
                            "recordings listed in wav.scp)")
        recordings = dict(entries)
        seg_lines: list[tuple[int, str]] = []
        for number, parts in _read_table(segments_path, 4, None, problems):
            where = f"{segments_path}:{number}"
            if len(parts) != 4:
                problems.append(f"{where}: expected 4 fields (utterance recording start end), got {len(parts)}")
                continue
            utt, rec, start_text, end_text = parts
            if utt in audio_lines:
                problems.append(f"{where}: duplicate utterance {utt!r} (first on line {audio_lines[utt][1]})")
                continue
            start, end = _parse_time(start_text), _parse_time(end_text)
            if start is None or end is None:
                problems.append(f"{where}: start and end must be numbers (seconds), got "
                                f"{start_text!r} {end_text!r}")
                continue
            audio_lines[utt] = (segments_path, number)
            seg_lines.append((number, utt))
            origin[utt] = where
            segment = Segment(rec, start, None if end == -1 else end)
            segments[utt] = segment
            if rec not in recordings:
                unusable[utt] = f"{where}: recording {rec!r} is not in {wav_scp.name}"
            elif start < 0:
                unusable[utt] = f"{where}: segment starts at {start:g} s, before the recording"
            elif segment.end is not None and segment.end <= start:
                unusable[utt] = f"{where}: segment ends at {end:g} s, not after its start {start:g} s"
            else:
                wav[utt] = recordings[rec]
        if strict:
            _check_sorted(segments_path, seg_lines, "utterance", problems)
    else:
        for key, location in entries.items():
            wav[key] = location
            origin[key] = f"{wav_scp}:{entry_lines[key]}"
            audio_lines[key] = (wav_scp, entry_lines[key])

    feats: dict[str, str] = {}
    feat_lines: dict[str, int] = {}
    if feats_path.is_file():
        for number, (utt, spec) in _read_table(feats_path, 2, 2, problems):
            if utt in feats:
                problems.append(f"{feats_path}:{number}: duplicate utterance {utt!r} (first on line {feat_lines[utt]})")
                continue
            feats[utt] = _resolve_rxspecifier(spec.strip(), root)
            feat_lines[utt] = number
        if strict:
            _check_sorted(feats_path, [(n, k) for k, n in feat_lines.items()], "utterance", problems)

    utt2spk, spk_lines = _read_pairs(utt2spk_path, "utterance", problems)
    if strict:
        _check_sorted(utt2spk_path, [(n, k) for k, n in spk_lines.items()], "utterance", problems)
        # Kaldi also needs utt2spk sorted when sorted on speaker first (speaker-prefixed ids)
        by_speaker = sorted(utt2spk.items(), key=lambda kv: (kv[1].encode(), kv[0].encode()))
        if [u for u, _ in by_speaker] != sorted(utt2spk, key=str.encode):
            first = next(u for (u, _), v in zip(by_speaker, sorted(utt2spk, key=str.encode)) if u != v)
            problems.append(f"{utt2spk_path}:{spk_lines[first]}: sorting on speaker and on utterance "
                            f"give different orders (from utterance {first!r}); Kaldi needs speaker ids "
                            "to be prefixes of utterance ids")
    has_audio = wav_scp.is_file()
    for utt, (file, number) in audio_lines.items():
        if utt not in utt2spk:
            problems.append(f"{file}:{number}: utterance {utt!r} has no speaker in {utt2spk_path.name}")
    for utt, number in feat_lines.items():
        if utt not in utt2spk:
            problems.append(f"{feats_path}:{number}: utterance {utt!r} has no speaker in {utt2spk_path.name}")
    for utt, number in spk_lines.items():
        if has_audio and utt not in audio_lines:
            source = segments_path if segments_path.is_file() else wav_scp
            problems.append(f"{utt2spk_path}:{number}: utterance {utt!r} is not in {source.name}")
        elif feats and utt not in feats:
            problems.append(f"{utt2spk_path}:{number}: utterance {utt!r} is not in {feats_path.name}")

    if spk2utt_path.is_file():
        seen: dict[str, int] = {}
        listed: dict[str, tuple[str, int]] = {}
        for number, parts in _read_table(spk2utt_path, 2, None, problems):
            spk, utts = parts[0], parts[1:]
            if spk in seen:
                problems.append(f"{spk2utt_path}:{number}: duplicate speaker {spk!r} (first on line {seen[spk]})")
                continue
            seen[spk] = number
            for utt in utts:
                if utt in listed:
                    problems.append(f"{spk2utt_path}:{number}: utterance {utt!r} listed again "
                                    f"(first for speaker {listed[utt][0]!r} on line {listed[utt][1]})")
                    continue
                listed[utt] = (spk, number)
                if utt2spk.get(utt) != spk:
                    problems.append(f"{spk2utt_path}:{number}: utterance {utt!r} of speaker {spk!r} "
                                    f"disagrees with {utt2spk_path.name} "
                                    f"({'speaker ' + repr(utt2spk[utt]) if utt in utt2spk else 'absent there'})")
        for utt, number in spk_lines.items():
            if utt not in listed:
                problems.append(f"{utt2spk_path}:{number}: utterance {utt!r} is missing from {spk2utt_path.name}")

    spk2gender: dict[str, str] = {}
    if gender_path.is_file():
        genders, gender_lines = _read_pairs(gender_path, "speaker", problems)
        speakers = set(utt2spk.values())
        for spk, number in gender_lines.items():
            if genders[spk] not in ("m", "f"):
                problems.append(f"{gender_path}:{number}: gender of {spk!r} must be 'm' or 'f', got {genders[spk]!r}")
            elif spk not in speakers:
                problems.append(f"{gender_path}:{number}: speaker {spk!r} is not in {utt2spk_path.name}")
            else:
                spk2gender[spk] = genders[spk]
        missing = sorted(speakers - set(genders))
        if missing:
            problems.append(f"{gender_path}: no gender for speaker(s) {', '.join(map(repr, missing[:5]))}"
                            + (" ..." if len(missing) > 5 else ""))

    fields: dict[str, dict[str, str]] = {}
    for extra in sorted(root.glob("utt2*")):
        name = extra.name[len("utt2"):]
        if name == "spk" or not extra.is_file() or extra.name.startswith(".") or "." in name:
            continue  # utt2spk read above; skip editor backups and temporary files
        values, lines = _read_pairs(extra, "utterance", problems)
        for utt, number in lines.items():
            if utt not in utt2spk:
                problems.append(f"{extra}:{number}: utterance {utt!r} is not in {utt2spk_path.name}")
            elif name in ("dur", "num_frames"):
                number_value = _parse_time(values[utt])
                if number_value is None or number_value <= 0:
                    problems.append(f"{extra}:{number}: {name} of {utt!r} must be a positive number, "
                                    f"got {values[utt]!r}")
        fields[name] = {u: v for u, v in values.items() if u in utt2spk}

    if problems:
        return None, problems, list(unusable.values())
    try:
        data = DataDir(wav={u: loc for u, loc in wav.items() if u in utt2spk}, utt2spk=utt2spk,
                       fields=fields, segments=segments, recordings=recordings, feats=feats,
                       spk2gender=spk2gender, origin=origin, unusable=unusable)
    except CorpusError as exc:
        return None, exc.problems, list(unusable.values())
    data.path = root
    return data, [], list(unusable.values())


def read_data_dir(path: str | os.PathLike) -> DataDir:
    """Read and validate a Kaldi-style data directory.

    Reads ``wav.scp`` (paths or commands ending in ``|``), ``segments``, ``utt2spk``,
    ``spk2utt``, ``feats.scp``, ``spk2gender`` and every ``utt2<field>`` (``utt2dur``...).
    A directory may hold ``feats.scp`` without ``wav.scp`` (features computed elsewhere).
    Commands are not run here, nor audio files opened: feature extraction does that and
    reports each utterance whose audio cannot be had. Segments that cannot be cut (ending
    before they start, naming a recording not in ``wav.scp``) are kept in
    :attr:`DataDir.unusable` with their ``file:line`` so that batch jobs skip and report them.

    Raises
    ------
    CorpusError
        Naming file and line of every problem found: the directory or ``wav.scp`` missing,
        malformed lines, duplicate ids, utterances without a speaker (or speakers'
        utterances without audio), a ``spk2utt`` that disagrees with ``utt2spk``, bad
        genders or durations. Sort order is checked by :func:`validate_data_dir` only.
    """
    data, problems, _ = _read(Path(path), strict=False)
    if problems:
        raise CorpusError(problems)
    assert data is not None
    return data


def validate_data_dir(path: str | os.PathLike) -> list[str]:
    """Every problem of a data directory as Kaldi's ``validate_data_dir.sh`` sees it.

    Everything :func:`read_data_dir` refuses, plus Kaldi's ordering rules (files sorted
    in ``LC_ALL=C`` order; ``utt2spk`` in the same order when sorted on the speaker) and the
    unusable segments, each as ``file:line: what``. An empty list means the directory is
    valid for Kaldi too.
    """
    _, problems, unusable = _read(Path(path), strict=True)
    return problems + unusable


def write_data_dir(data: DataDir, out_dir: str | os.PathLike) -> Path:
    """Write ``wav.scp``, ``utt2spk``, ``spk2utt`` and one ``utt2<field>`` per extra field.

    Also ``segments`` (then ``wav.scp`` lists the recordings), ``feats.scp`` and
    ``spk2gender`` when the directory has them. Each file is written atomically; ids must
    hold no whitespace. Returns the directory.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for utt, spk in data.utt2spk.items():
        _check_token(utt, "utterance id")
        _check_token(spk, "speaker id")
    for utt, location in data.wav.items():
        if "\n" in location or not location.strip():
            raise CorpusError(f"audio path {location!r} of utterance {utt!r} cannot be written to wav.scp")
    if data.segments:
        _write_table(out / "wav.scp", sorted(data.recordings.items()))
        _write_table(out / "segments", ((utt, str(seg)) for utt, seg in data.segments.items()))
    elif data.wav:
        _write_table(out / "wav.scp", ((utt, path) for utt, path in data.wav.items()))
    if data.feats:
        _write_table(out / "feats.scp", data.feats.items())
    _write_table(out / "utt2spk", ((utt, spk) for utt, spk in data.utt2spk.items()))
    _write_table(out / "spk2utt", ([spk, *utts] for spk, utts in data.spk2utt.items()))
    if data.spk2gender:
        _write_table(out / "spk2gender", sorted(data.spk2gender.items()))
    for name, values in data.fields.items():
        for value in values.values():
            _check_token(value, f"utt2{name} value")
        _write_table(out / f"utt2{name}", ((utt, values[utt]) for utt in data.utt2spk if utt in values))
    return out


# ---------------------------------------------------------------------- trials
class Trial(NamedTuple):
    """One verification trial: does ``test`` come from the enrolled ``enroll`` model?"""

    enroll: str
    test: str
    target: bool


def read_trials(path: str | os.PathLike, enroll: Iterable[str] | DataDir | None = None,
                test: Iterable[str] | DataDir | None = None) -> list[Trial]:
    """Read a trial list ``enroll-id test-utt-id target|nontarget``.

    Parameters
    ----------
    path : path-like
    enroll : iterable of str or DataDir, optional
        Known enrolment ids (a DataDir gives its speakers); unknown ones are errors.
    test : iterable of str or DataDir, optional
        Known test utterances (a DataDir gives its utterances); unknown ones are errors.

    Raises
    ------
    CorpusError
        Naming file and line of malformed lines, bad labels, duplicate trials and unknown ids.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such trial list")
    known_enroll = None if enroll is None else set(enroll.speakers if isinstance(enroll, DataDir) else enroll)
    known_test = None if test is None else set(test.utterances if isinstance(test, DataDir) else test)
    problems: list[str] = []
    trials: list[Trial] = []
    seen: dict[tuple[str, str], int] = {}
    for number, parts in _read_table(path, 3, None, problems):
        if len(parts) != 3:
            problems.append(f"{path}:{number}: expected 3 fields (enroll-id test-utt-id "
                            f"target|nontarget), got {len(parts)}")
            continue
        model, utt, label = parts
        if label not in ("target", "nontarget"):
            problems.append(f"{path}:{number}: label must be 'target' or 'nontarget', got {label!r}")
            continue
        if (model, utt) in seen:
            problems.append(f"{path}:{number}: duplicate trial {model} {utt} (first on line {seen[model, utt]})")
            continue
        seen[model, utt] = number
        if known_enroll is not None and model not in known_enroll:
            problems.append(f"{path}:{number}: enrolment id {model!r} is in no enrolment data")
            continue
        if known_test is not None and utt not in known_test:
            problems.append(f"{path}:{number}: test utterance {utt!r} is in no test data")
            continue
        trials.append(Trial(model, utt, label == "target"))
    if problems:
        raise CorpusError(problems)
    return trials


def write_trials(path: str | os.PathLike, trials: Iterable[Trial | tuple[str, str, bool]]) -> None:
    """Write a trial list atomically (``target`` may be a bool or the label string)."""
    rows = []
    for model, utt, target in trials:
        if isinstance(target, str):
            if target not in ("target", "nontarget"):
                raise CorpusError(f"trial label must be 'target' or 'nontarget', got {target!r}")
            label = target
        else:
            label = "target" if target else "nontarget"
        rows.append((_check_token(model, "enrolment id"), _check_token(utt, "test utterance id"), label))
    _write_table(Path(path), rows)


# ---------------------------------------------------------------------- building from files
def parse_filename_pattern(pattern: str) -> tuple[re.Pattern[str], list[str]]:
    """Compile a pattern such as ``"{digit}_{speaker}_{index}.wav"`` to a regex.

    Fields match one or more characters other than ``/`` (shortest first, anchored at both
    ends); everything else matches literally. Returns the regex and the field names.
    """
    names: list[str] = []
    parts: list[str] = []
    pos = 0
    for match in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", pattern):
        parts.append(re.escape(pattern[pos:match.start()]))
        name = match.group(1)
        if name in names:
            raise ValueError(f"filename pattern {pattern!r} names field {name!r} twice")
        names.append(name)
        parts.append(f"(?P<{name}>[^/]+?)")
        pos = match.end()
    parts.append(re.escape(pattern[pos:]))
    if not names:
        raise ValueError(f"filename pattern {pattern!r} has no {{field}}")
    leftover = re.sub(r"\{[A-Za-z_][A-Za-z0-9_]*\}", "", pattern)
    if "{" in leftover or "}" in leftover:
        raise ValueError(f"filename pattern {pattern!r}: fields are written {{name}} with a "
                         "letter or '_' first, then letters, digits or '_'")
    return re.compile("".join(parts) + r"\Z"), names


@dataclass
class MakeDataDirResult:
    """What :func:`make_data_dir` built and what it left out."""

    data: DataDir
    out_dir: Path | None
    unmatched: list[str]          # files that did not match the pattern
    not_selected: int             # files that matched but ``select`` refused

    def __iter__(self) -> Iterator[Any]:  # allows ``data, *_ = make_data_dir(...)``
        return iter((self.data, self.out_dir, self.unmatched, self.not_selected))


def make_data_dir(folder: str | os.PathLike, out_dir: str | os.PathLike | None,
                  pattern: str = "{digit}_{speaker}_{index}.wav", speaker_field: str = "speaker",
                  select: Callable[[Mapping[str, str]], bool] | None = None,
                  recursive: bool = False) -> MakeDataDirResult:
    """Build a data directory from a folder of audio files named by a pattern.

    Parameters
    ----------
    folder : path-like
        Folder holding the audio files (the Free Spoken Digit Dataset's ``recordings``).
    out_dir : path-like or None
        Where to write the data directory; ``None`` only builds it in memory.
    pattern : str
        File name pattern with ``{field}`` placeholders, matched against the file name (or,
        with ``recursive``, the path relative to ``folder``).
    speaker_field : str
        The field naming the speaker.
    select : callable, optional
        ``select(fields) -> bool`` with the parsed fields (strings, e.g.
        ``{"digit": "0", "speaker": "george", "index": "7"}``); False leaves the file out.
    recursive : bool
        Look in sub-folders too.

    Returns
    -------
    MakeDataDirResult
        ``.data`` (a :class:`DataDir` whose utterance ids are ``<speaker>-<file stem>`` so
        sorting groups speakers, with every other field in ``.data.fields``, written as
        ``utt2<field>``), ``.unmatched`` file names and the ``.not_selected`` count.

    Raises
    ------
    CorpusError
        If the folder is missing, the pattern lacks the speaker field, or no file matched.
    """
    root = Path(folder)
    if not root.is_dir():
        raise CorpusError(f"{root}: no such folder")
    regex, names = parse_filename_pattern(pattern)
    if speaker_field not in names:
        raise CorpusError(f"filename pattern {pattern!r} has no {{{speaker_field}}} field "
                          f"(fields: {', '.join(names)})")
    candidates = sorted(p for p in (root.rglob("*") if recursive else root.iterdir()) if p.is_file())
    wav: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    extra: dict[str, dict[str, str]] = {n: {} for n in names if n != speaker_field}
    unmatched: list[str] = []
    not_selected = 0
    problems: list[str] = []
    for file in candidates:
        rel = file.relative_to(root).as_posix() if recursive else file.name
        match = regex.match(rel)
        if match is None or any(not v or any(ch.isspace() for ch in v) for v in match.groupdict().values()):
            unmatched.append(rel)
            continue
        values = match.groupdict()
        if select is not None and not select(dict(values)):
            not_selected += 1
            continue
        speaker = values[speaker_field]
        stem = Path(rel).with_suffix("").as_posix().replace("/", "-")
        utt = f"{speaker}-{stem}"
        if any(ch.isspace() for ch in utt):
            unmatched.append(rel)
            continue
        if utt in wav:
            problems.append(f"{file}: utterance id {utt!r} also made from {wav[utt]}")
            continue
        wav[utt] = str(file.resolve())
        utt2spk[utt] = speaker
        for name in extra:
            extra[name][utt] = values[name]
    if problems:
        raise CorpusError(problems)
    if not wav:
        raise CorpusError(f"{root}: no file matched {pattern!r}"
                          + (f" and passed the selection ({not_selected} matched)" if not_selected else "")
                          + (f"; e.g. {unmatched[0]!r} did not match" if unmatched else ""))
    data = DataDir(wav=wav, utt2spk=utt2spk, fields=extra)
    written = None
    if out_dir is not None:
        written = write_data_dir(data, out_dir)
        data.path = written
    return MakeDataDirResult(data, written, unmatched, not_selected)
