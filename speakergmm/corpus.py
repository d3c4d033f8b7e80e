"""Kaldi-style data directories and trial lists.

A data directory holds plain two-column text files, one utterance (or speaker) per line:

``wav.scp``
    ``utt-id path`` -- the audio file (the rest of the line, so paths may hold spaces).
    Relative paths are taken relative to the data directory. Piped commands
    (``utt-id sox ... |``) are refused: convert the audio to files first.
``utt2spk``
    ``utt-id speaker-id``; every utterance of ``wav.scp`` needs one.
``spk2utt``
    ``speaker-id utt-id utt-id ...``; derived from ``utt2spk`` when missing, checked against
    it when present.
``utt2<field>``
    Any other per-utterance field (``utt2digit``, ``utt2index``, ...), kept in
    :attr:`DataDir.fields`.

A trial list has lines ``enroll-id test-utt-id target|nontarget``.

Readers check everything they can (malformed lines, duplicate ids, utterances without a
speaker, unknown ids) and raise :class:`CorpusError` whose message names the file and the
line. Whether the audio files exist is *not* checked here: feature extraction reports and
skips missing or unreadable audio. Writers are atomic.
"""

from __future__ import annotations

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
@dataclass
class DataDir:
    """An in-memory Kaldi-style data directory.

    Attributes
    ----------
    wav : dict of str to str
        Utterance id -> audio path (absolute, or as given for in-memory directories).
    utt2spk : dict of str to str
        Utterance id -> speaker id (same keys as ``wav``).
    fields : dict of str to dict of str to str
        Extra per-utterance fields, e.g. ``fields["digit"]["george-0_george_5"] == "0"``
        (one ``utt2<name>`` file each).
    path : Path or None
        Where it was read from.
    """

    wav: dict[str, str]
    utt2spk: dict[str, str]
    fields: dict[str, dict[str, str]] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []
        for utt in self.wav:
            if utt not in self.utt2spk:
                problems.append(f"utterance {utt!r} has no speaker in utt2spk")
        for utt in self.utt2spk:
            if utt not in self.wav:
                problems.append(f"utterance {utt!r} of utt2spk has no audio in wav.scp")
        for name, values in self.fields.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name == "spk":
                problems.append(f"field name {name!r} is not allowed (letters, digits, '_', '.', '-'; not 'spk')")
            for utt in values:
                if utt not in self.wav:
                    problems.append(f"utt2{name}: utterance {utt!r} is not in wav.scp")
        if problems:
            raise CorpusError(problems)
        # Kaldi keeps utterances sorted; with speaker-prefixed ids this groups speakers.
        self.wav = dict(sorted(self.wav.items()))
        self.utt2spk = {utt: self.utt2spk[utt] for utt in self.wav}

    @property
    def utterances(self) -> list[str]:
        """Utterance ids, sorted."""
        return list(self.wav)

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

    def __len__(self) -> int:
        return len(self.wav)

    def __contains__(self, utt: object) -> bool:
        return utt in self.wav

    def audio_path(self, utt: str) -> Path:
        """The audio file of an utterance."""
        return Path(self.wav[utt])

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
        keep = list(self.wav)
        if utterances is not None:
            wanted = list(utterances)
            unknown = [u for u in wanted if u not in self.wav]
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
        return DataDir(
            wav={u: self.wav[u] for u in keep},
            utt2spk={u: self.utt2spk[u] for u in keep},
            fields={name: {u: v for u, v in values.items() if u in keep_set}
                    for name, values in self.fields.items()},
            path=None,
        )

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write as a data directory; see :func:`write_data_dir`."""
        return write_data_dir(self, out_dir)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DataDir":
        """Read a data directory; see :func:`read_data_dir`."""
        return read_data_dir(path)


def read_data_dir(path: str | os.PathLike) -> DataDir:
    """Read and validate a Kaldi-style data directory.

    Raises
    ------
    CorpusError
        Naming file and line of every problem found: the directory or ``wav.scp`` missing,
        malformed lines, duplicate ids, piped commands, utterances without a speaker (or
        speakers' utterances without audio), a ``spk2utt`` that disagrees with ``utt2spk``.
    """
    root = Path(path)
    if not root.is_dir():
        raise CorpusError(f"{root}: no such data directory")
    wav_scp, utt2spk_path, spk2utt_path = root / "wav.scp", root / "utt2spk", root / "spk2utt"
    problems: list[str] = []
    if not wav_scp.is_file():
        raise CorpusError(f"{wav_scp}: missing (a data directory needs wav.scp and utt2spk)")
    if not utt2spk_path.is_file():
        raise CorpusError(f"{utt2spk_path}: missing (a data directory needs wav.scp and utt2spk)")

    wav: dict[str, str] = {}
    wav_lines: dict[str, int] = {}
    refused: set[str] = set()  # utterances whose wav.scp line is already reported
    for number, (utt, location) in _read_table(wav_scp, 2, 2, problems):
        if utt in wav:
            problems.append(f"{wav_scp}:{number}: duplicate utterance {utt!r} (first on line {wav_lines[utt]})")
            continue
        if location.endswith("|"):
            problems.append(f"{wav_scp}:{number}: piped command entries ({location!r}) are not "
                            "supported; convert the audio to files and list their paths")
            refused.add(utt)
            continue
        wav[utt] = location if os.path.isabs(location) else os.path.join(root, location)
        wav_lines[utt] = number

    utt2spk, spk_lines = _read_pairs(utt2spk_path, "utterance", problems)
    for utt, number in wav_lines.items():
        if utt not in utt2spk:
            problems.append(f"{wav_scp}:{number}: utterance {utt!r} has no speaker in {utt2spk_path.name}")
    for utt, number in spk_lines.items():
        if utt not in wav and utt not in refused:
            problems.append(f"{utt2spk_path}:{number}: utterance {utt!r} is not in {wav_scp.name}")

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

    fields: dict[str, dict[str, str]] = {}
    for extra in sorted(root.glob("utt2*")):
        name = extra.name[len("utt2"):]
        if name == "spk" or not extra.is_file() or extra.name.startswith(".") or "." in name:
            continue  # utt2spk read above; skip editor backups and temporary files
        values, lines = _read_pairs(extra, "utterance", problems)
        for utt, number in lines.items():
            if utt not in wav:
                problems.append(f"{extra}:{number}: utterance {utt!r} is not in {wav_scp.name}")
        fields[name] = {u: v for u, v in values.items() if u in wav}

    if problems:
        raise CorpusError(problems)
    data = DataDir(wav=wav, utt2spk=utt2spk, fields=fields)
    data.path = root
    return data


def write_data_dir(data: DataDir, out_dir: str | os.PathLike) -> Path:
    """Write ``wav.scp``, ``utt2spk``, ``spk2utt`` and one ``utt2<field>`` per extra field.

    Each file is written atomically; ids must hold no whitespace. Returns the directory.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for utt, spk in data.utt2spk.items():
        _check_token(utt, "utterance id")
        _check_token(spk, "speaker id")
    for utt, location in data.wav.items():
        if "\n" in location or not location.strip():
            raise CorpusError(f"audio path {location!r} of utterance {utt!r} cannot be written to wav.scp")
    _write_table(out / "wav.scp", ((utt, path) for utt, path in data.wav.items()))
    _write_table(out / "utt2spk", ((utt, spk) for utt, spk in data.utt2spk.items()))
    _write_table(out / "spk2utt", ([spk, *utts] for spk, utts in data.spk2utt.items()))
    for name, values in data.fields.items():
        for value in values.values():
            _check_token(value, f"utt2{name} value")
        _write_table(out / f"utt2{name}", ((utt, values[utt]) for utt in data.wav if utt in values))
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
