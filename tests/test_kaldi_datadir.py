"""Kaldi data directories on real audio: wav.scp commands, segments, validation.

Directories are built from the Free Spoken Digit Dataset (8 kHz wav) and the
speechocean762 train subset (16 kHz FLAC); every form of ``wav.scp`` entry must give the
same features as the plain path, and every bad entry is skipped with its ``file:line``.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speakergmm.corpus import CorpusError, Segment, read_data_dir, validate_data_dir, write_data_dir
from speakergmm.features import FeatureConfig, FeatureStore, extract_data_dir
from speakergmm.features.audio import FeatureError, cut_segment, read_raw

SPEECHOCEAN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speechocean762-train"
PY_CAT = f"{shlex.quote(sys.executable)} -c 'import sys; sys.stdout.buffer.write(open(sys.argv[1], \"rb\").read())'"
CONFIG = FeatureConfig(n_mfcc=13, delta_order=1)  # small and fast; VAD and CMVN on


@pytest.fixture(scope="session")
def speechocean() -> Path:
    if not (SPEECHOCEAN / "recordings").is_dir():
        pytest.skip(f"speechocean762 train subset not found at {SPEECHOCEAN}")
    return SPEECHOCEAN / "recordings"


def _fsdd_files(fsdd: Path, speakers=("george", "jackson", "theo"), per_speaker=4) -> dict[str, Path]:
    return {f"{spk}-{d}_{spk}_{i}": fsdd / f"{d}_{spk}_{i}.wav"
            for spk in speakers for d, i in zip(range(per_speaker), range(5, 5 + per_speaker))}


def _write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def _scp(rows) -> str:
    return "".join(f"{a} {b}\n" for a, b in rows)


def _utt2spk(utts) -> str:
    return "".join(f"{u} {u.split('-')[0]}\n" for u in sorted(utts))


def _features(data_dir: Path, out: Path, config=CONFIG):
    report = extract_data_dir(data_dir, out, config, jobs=1)
    store = FeatureStore(out)
    return report, {u: store[u] for u in store.utterances}


def _assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for utt in a:
        assert a[utt].shape == b[utt].shape, utt
        np.testing.assert_allclose(a[utt], b[utt], atol=1e-6, rtol=0, err_msg=utt)


def _command_forms(path: Path) -> dict[str, str]:
    """wav.scp command entries that print ``path`` (FSDD wav or speechocean FLAC) as audio."""
    q = shlex.quote(str(path))
    forms = {"cat": f"cat {q} |", "python": f"{PY_CAT} {q} |"}
    if shutil.which("sox"):
        forms["sox"] = f"sox {q} -t wav - |"
    if shutil.which("flac") and path.suffix == ".flac":
        forms["flac"] = f"flac -c -d -s {q} |"
    return forms


# ---------------------------------------------------------------------- commands
def test_every_wav_scp_form_gives_the_plain_path_features_fsdd(fsdd, tmp_path):
    files = _fsdd_files(fsdd)
    plain = _write(tmp_path / "plain", {"wav.scp": _scp((u, p) for u, p in sorted(files.items())),
                                        "utt2spk": _utt2spk(files)})
    _, expected = _features(plain, tmp_path / "f-plain")
    forms = sorted(_command_forms(next(iter(files.values()))))
    # one directory mixing the forms: each utterance through the next form in turn
    rows = []
    for i, (utt, path) in enumerate(sorted(files.items())):
        form = forms[i % len(forms)]
        rows.append((utt, _command_forms(path)[form] if form != "path" else str(path)))
    piped = _write(tmp_path / "piped", {"wav.scp": _scp(rows), "utt2spk": _utt2spk(files)})
    report, got = _features(piped, tmp_path / "f-piped")
    assert report.exit_status == 0 and report.n_extracted == len(files)
    _assert_same(got, expected)
    # a rerun reuses the features of unchanged command lines
    assert extract_data_dir(piped, tmp_path / "f-piped", CONFIG).n_reused == len(files)


@pytest.mark.parametrize("program", ["flac", "sox"])
def test_commands_of_audio_tools(program, speechocean, tmp_path):
    if shutil.which(program) is None:
        pytest.skip(f"`{program}` is not installed (apt-get install {program}); its wav.scp form is untested here")
    flacs = sorted(speechocean.glob("*/*.flac"))[:3]
    files = {f"{p.parent.name}-{p.stem}": p for p in flacs}
    config = FeatureConfig(sample_rate=16000, n_mfcc=13, delta_order=1)
    plain = _write(tmp_path / "plain", {"wav.scp": _scp((u, p) for u, p in sorted(files.items())),
                                        "utt2spk": _utt2spk(files)})
    piped = _write(tmp_path / "piped", {"wav.scp": _scp((u, _command_forms(p)[program]) for u, p in sorted(files.items())),
                                        "utt2spk": _utt2spk(files)})
    _, expected = _features(plain, tmp_path / "f1", config)
    report, got = _features(piped, tmp_path / "f2", config)
    assert report.exit_status == 0
    _assert_same(got, expected)


def test_speechocean_flac_through_cat_and_python(speechocean, tmp_path):
    flacs = sorted(speechocean.glob("*/*.flac"))[10:14]
    files = {f"{p.parent.name}-{p.stem}": p for p in flacs}
    config = FeatureConfig(sample_rate=16000, n_mfcc=13, delta_order=1)
    rows = [(u, _command_forms(p)["cat" if i % 2 else "python"]) for i, (u, p) in enumerate(sorted(files.items()))]
    plain = _write(tmp_path / "plain", {"wav.scp": _scp((u, p) for u, p in sorted(files.items())),
                                        "utt2spk": _utt2spk(files)})
    piped = _write(tmp_path / "piped", {"wav.scp": _scp(rows), "utt2spk": _utt2spk(files)})
    _, expected = _features(plain, tmp_path / "f1", config)
    _, got = _features(piped, tmp_path / "f2", config)
    _assert_same(got, expected)


def test_read_raw_errors_name_the_entry(tmp_path):
    with pytest.raises(FeatureError, match=r"wav.scp:7: command failed \(exit status 3\): oops"):
        read_raw("echo oops >&2; exit 3 |", "wav.scp:7")
    with pytest.raises(FeatureError, match=r"wav.scp:2: command output \(6 bytes\) is not audio"):
        read_raw("echo hello |", "wav.scp:2")
    with pytest.raises(FeatureError, match="wrote nothing"):
        read_raw("true |", "wav.scp:1")
    with pytest.raises(FeatureError, match="audio file not found"):
        read_raw(str(tmp_path / "nope.wav"))


def test_cut_segment_bounds():
    data = np.arange(8000.0)[:, None]
    assert cut_segment(data, 8000, 0.25, 0.5, "r").shape[0] == 2000
    assert cut_segment(data, 8000, 0.5, None, "r").shape[0] == 4000
    assert cut_segment(data, 8000, 0.5, 1.4, "r").shape[0] == 4000  # overshoot <= 0.5 s: cut at the end
    with pytest.raises(FeatureError, match="segments:3: segment ends at 1.6 s, past the end"):
        cut_segment(data, 8000, 0.5, 1.6, "r", "segments:3")
    with pytest.raises(FeatureError, match="at or past the end"):
        cut_segment(data, 8000, 1.0, 1.2, "r")


# ---------------------------------------------------------------------- segments
def _recording(files: list[Path], out: Path) -> list[tuple[float, float]]:
    """Concatenate audio files into one recording; returns each file's (start, end) in seconds."""
    parts, spans, pos = [], [], 0
    rate = None
    for f in files:
        data, rate = sf.read(f, dtype="int16")
        parts.append(data)
        spans.append((pos / rate, (pos + len(data)) / rate))
        pos += len(data)
    sf.write(out, np.concatenate(parts), rate, subtype="PCM_16")
    return spans


def test_segments_equal_the_files_they_were_cut_from(fsdd, tmp_path, monkeypatch):
    files = _fsdd_files(fsdd, speakers=("lucas", "nicolas"), per_speaker=3)
    rec_dir = tmp_path / "recordings"
    rec_dir.mkdir()
    segments, wav = [], []
    for spk in ("lucas", "nicolas"):
        utts = sorted(u for u in files if u.startswith(spk))
        spans = _recording([files[u] for u in utts], rec_dir / f"{spk}.wav")
        wav.append((f"rec_{spk}", str(rec_dir / f"{spk}.wav") if spk == "lucas"
                    else f"cat {rec_dir / f'{spk}.wav'} |"))
        segments += [(u, f"rec_{spk} {a:.6f} {b:.6f}") for u, (a, b) in zip(utts, spans)]
    seg = _write(tmp_path / "seg", {"wav.scp": _scp(wav), "segments": _scp(segments),
                                    "utt2spk": _utt2spk(files)})
    data = read_data_dir(seg)
    assert data.utterances == sorted(files) and data.recordings.keys() == {"rec_lucas", "rec_nicolas"}
    assert isinstance(data.segments[sorted(files)[0]], Segment)
    assert validate_data_dir(seg) == []
    plain = _write(tmp_path / "plain", {"wav.scp": _scp((u, p) for u, p in sorted(files.items())),
                                        "utt2spk": _utt2spk(files)})
    _, expected = _features(plain, tmp_path / "f1")

    # each recording is read once, however many segments it holds
    from speakergmm.features import store as store_module
    reads = []
    real = store_module.read_raw
    monkeypatch.setattr(store_module, "read_raw", lambda loc, origin="": reads.append(loc) or real(loc, origin))
    report, got = _features(seg, tmp_path / "f2")
    assert report.exit_status == 0 and len(reads) == 2
    _assert_same(got, expected)
    # written back, the directory keeps its segments
    again = read_data_dir(write_data_dir(data, tmp_path / "copy"))
    assert again.segments == data.segments and again.recordings == data.recordings


def test_bad_entries_are_skipped_with_file_and_line_and_exit_3(fsdd, tmp_path, capsys):
    from speakergmm.cli import main

    good = _fsdd_files(fsdd, speakers=("yweweler",), per_speaker=2)
    g1, g2 = sorted(good)
    rec = tmp_path / "rec.wav"
    spans = _recording([good[g1], good[g2]], rec)
    wav = _write(tmp_path / "wavdir", {
        "wav.scp": _scp([(g1, f"cat {good[g1]} |"), ("yweweler-bad-fail", "cat /no/such/file.wav |"),
                         ("yweweler-bad-missing", str(tmp_path / "missing.wav")),
                         ("yweweler-bad-text", "echo not audio |")]),
        "utt2spk": _utt2spk([g1, "yweweler-bad-fail", "yweweler-bad-missing", "yweweler-bad-text"])})
    code = main(["features", str(wav), str(tmp_path / "f-wav"), "--n-mfcc", "13", "--deltas", "1"])
    err = capsys.readouterr().err
    assert code == 3
    assert "3 of 4 utterance(s) skipped" in err
    assert f"{wav / 'wav.scp'}:2: command failed" in err
    assert f"{wav / 'wav.scp'}:4: command output" in err and "is not audio" in err
    assert "missing.wav): audio file not found" in err

    seg = _write(tmp_path / "segdir", {
        "wav.scp": _scp([("rec", str(rec)), ("rec_gone", str(tmp_path / "gone.wav"))]),
        "segments": _scp([(g1, f"rec {spans[0][0]} {spans[0][1]}"), (g2, f"rec {spans[1][0]} {spans[1][1]}"),
                          ("yweweler-x-backwards", "rec 0.5 0.2"), ("yweweler-x-gone", "rec_gone 0 1"),
                          ("yweweler-x-past", f"rec 0.1 {spans[1][1] + 2}"),
                          ("yweweler-x-unknown", "rec_nowhere 0 1")]),
        "utt2spk": _utt2spk([g1, g2, "yweweler-x-backwards", "yweweler-x-gone", "yweweler-x-past",
                             "yweweler-x-unknown"])})
    problems = validate_data_dir(seg)
    assert any("segments:3: segment ends at 0.2 s, not after its start 0.5 s" in p for p in problems)
    code = main(["features", str(seg), str(tmp_path / "f-seg"), "--n-mfcc", "13", "--deltas", "1"])
    err = capsys.readouterr().err
    assert code == 3 and "4 of 6 utterance(s) skipped" in err
    s = seg / "segments"
    assert f"{s}:3: segment ends at 0.5 s" not in err and f"{s}:3: segment ends at 0.2 s, not after" in err
    assert "gone.wav): audio file not found" in err and f"({s}:4)" in err
    assert f"{s}:5: segment ends at" in err and "past the end of its recording" in err
    assert f"{s}:6: recording 'rec_nowhere' is not in wav.scp" in err
    # the good segments have exactly the plain files' features
    plain = _write(tmp_path / "plain", {"wav.scp": _scp(sorted(good.items())), "utt2spk": _utt2spk(good)})
    _, expected = _features(plain, tmp_path / "f-plain")
    store = FeatureStore(tmp_path / "f-seg")
    _assert_same({u: store[u] for u in store.utterances}, expected)


def test_validate_data_dir_applies_kaldis_ordering_rules(tmp_path):
    root = _write(tmp_path / "d", {"wav.scp": "b /x.wav\na /y.wav\n", "utt2spk": "a s2\nb s1\n"})
    read_data_dir(root)  # readable: we sort ourselves
    problems = validate_data_dir(root)
    assert any(f"{root / 'wav.scp'}:2: utterance 'a' is out of order" in p for p in problems)
    assert any("sorting on speaker and on utterance give different orders" in p for p in problems)
    with pytest.raises(CorpusError, match="no such data directory"):
        read_data_dir(tmp_path / "none")
    assert validate_data_dir(tmp_path / "none") == [f"{tmp_path / 'none'}: no such data directory"]


def test_speechocean_as_a_kaldi_data_directory(speechocean, tmp_path):
    """utt2spk, spk2gender of the corpus itself + a wav.scp of flac commands or paths."""
    src = speechocean.parent
    spk2gender = dict(line.split() for line in (src / "spk2gender").read_text().splitlines() if line.strip())
    flacs = sorted(speechocean.glob("*/*.flac"))[:20]
    utt2spk = {p.stem: p.parent.name for p in flacs}
    speakers = sorted(set(utt2spk.values()))
    root = _write(tmp_path / "so", {
        "wav.scp": _scp((p.stem, f"flac -c -d -s {p} |" if shutil.which("flac") else str(p)) for p in flacs),
        "utt2spk": _scp(sorted(utt2spk.items())),
        "spk2gender": _scp((s, spk2gender[s]) for s in speakers),
        "utt2dur": _scp((p.stem, f"{sf.info(p).duration:.3f}") for p in flacs)})
    data = read_data_dir(root)
    assert data.spk2gender == {s: spk2gender[s] for s in speakers}
    assert len(data) == 20 and set(data.fields) == {"dur"}
    assert validate_data_dir(root) == []


def test_verify_on_commands_and_segments_equals_plain_paths(fsdd, tmp_path, capsys):
    """`speakergmm verify` with a UBM directory of `cat |` commands, enrolment by segments and
    tests through a python command gives the plain-path scores."""
    from speakergmm.cli import main

    ubm_files = _fsdd_files(fsdd, speakers=("george", "jackson", "lucas", "nicolas"), per_speaker=5)
    enroll_files = {f"{s}-{d}_{s}_{i}": fsdd / f"{d}_{s}_{i}.wav" for s in ("theo", "yweweler")
                    for d, i in ((1, 1), (2, 2), (3, 3))}
    test_files = {f"{s}-{d}_{s}_{i}": fsdd / f"{d}_{s}_{i}.wav" for s in ("theo", "yweweler")
                  for d, i in ((4, 20), (5, 21))}
    trials = "".join(f"{spk} {u} {'target' if u.startswith(spk) else 'nontarget'}\n"
                     for spk in ("theo", "yweweler") for u in sorted(test_files))

    def plain_dir(name, files):
        return _write(tmp_path / name, {"wav.scp": _scp(sorted(files.items())), "utt2spk": _utt2spk(files)})

    plain = [plain_dir("p-ubm", ubm_files), plain_dir("p-enroll", enroll_files), plain_dir("p-test", test_files)]
    ubm = _write(tmp_path / "k-ubm", {"wav.scp": _scp((u, f"cat {p} |") for u, p in sorted(ubm_files.items())),
                                      "utt2spk": _utt2spk(ubm_files)})
    rec_rows, seg_rows = [], []
    for spk in ("theo", "yweweler"):
        utts = sorted(u for u in enroll_files if u.startswith(spk))
        spans = _recording([enroll_files[u] for u in utts], tmp_path / f"{spk}.wav")
        rec_rows.append((f"{spk}-rec", str(tmp_path / f"{spk}.wav")))
        seg_rows += [(u, f"{spk}-rec {a!r} {b!r}") for u, (a, b) in zip(utts, spans)]
    enroll = _write(tmp_path / "k-enroll", {"wav.scp": _scp(rec_rows), "segments": _scp(seg_rows),
                                            "utt2spk": _utt2spk(enroll_files)})
    test = _write(tmp_path / "k-test", {"wav.scp": _scp((u, f"{PY_CAT} {p} |") for u, p in sorted(test_files.items())),
                                        "utt2spk": _utt2spk(test_files)})
    (tmp_path / "trials").write_text(trials)
    scores = {}
    for name, (u, e, t) in {"plain": plain, "kaldi": (ubm, enroll, test)}.items():
        code = main(["verify", "--ubm-data", str(u), "--enroll-data", str(e), "--test-data", str(t),
                     "--trials", str(tmp_path / "trials"), "--out", str(tmp_path / name), "-k", "8",
                     "--sample-rate", "8000", "-j", "1", "--final-iter", "3", "--iter-per-split", "2", "-q"])
        assert code == 0, capsys.readouterr().err
        scores[name] = [float(line.split()[2]) for line in (tmp_path / name / "scores.txt").read_text().splitlines()]
    assert len(scores["plain"]) == 8
    np.testing.assert_allclose(scores["kaldi"], scores["plain"], atol=1e-6)


def test_validate_data_dir_command(tmp_path, capsys):
    from speakergmm.cli import main

    good = _write(tmp_path / "good", {"wav.scp": "r1 cat /x.wav |\n", "segments": "s-a r1 0 1\ns-b r1 1 2\n",
                                      "utt2spk": "s-a s\ns-b s\n"})
    assert main(["validate-data-dir", str(good)]) == 0
    assert "valid (2 utterances of 1 speakers, segments of 1 recordings, 2 audio commands)" in capsys.readouterr().err
    bad = _write(tmp_path / "bad", {"wav.scp": "r1 /x.wav\n", "segments": "s-b r1 1 2\ns-a r1 0.5 0.1\n",
                                    "utt2spk": "s-a s\ns-b s\n"})
    assert main(["validate-data-dir", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad / 'segments'}:2: utterance 's-a' is out of order" in out
    assert f"{bad / 'segments'}:2: segment ends at 0.1 s, not after its start 0.5 s" in out


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5000), rate=st.sampled_from([8000, 16000, 44100]),
       a=st.floats(0, 1, allow_nan=False), b=st.floats(0, 1, allow_nan=False))
def test_cut_segment_takes_exactly_the_rounded_span(n, rate, a, b):
    data = np.arange(n, dtype=np.float64)[:, None]
    duration = n / rate
    start, end = sorted((a * duration, b * duration))
    first, last = int(round(start * rate)), min(int(round(end * rate)), n)
    if first >= n:
        with pytest.raises(FeatureError):
            cut_segment(data, rate, start, end, "r")
        return
    cut = cut_segment(data, rate, start, end, "r")
    np.testing.assert_array_equal(cut[:, 0], np.arange(first, max(first, last)))
    np.testing.assert_array_equal(cut_segment(data, rate, start, None, "r")[:, 0], np.arange(first, n))


@settings(max_examples=60, deadline=None)
@given(start=st.floats(0, 1e5, allow_nan=False), length=st.floats(1e-3, 1e4, allow_nan=False),
       to_end=st.booleans())
def test_segments_survive_writing_and_reading(tmp_path_factory, start, length, to_end):
    root = tmp_path_factory.mktemp("seg")
    end = None if to_end else start + length
    text = f"u r {start!r} {'-1' if end is None else repr(end)}\n"
    _write(root, {"wav.scp": "r /x.wav\n", "segments": text, "utt2spk": "u s\n"})
    data = read_data_dir(root)
    assert data.segments["u"] == Segment("r", start, end)
    again = read_data_dir(write_data_dir(data, root / "copy"))
    assert again.segments == data.segments
