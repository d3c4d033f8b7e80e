"""Kaldi-style data directories, trial lists and make_data_dir (on FSDD)."""

from __future__ import annotations

from pathlib import Path

import pytest

from speakergmm.corpus import (CorpusError, DataDir, Trial, make_data_dir, parse_filename_pattern,
                               read_data_dir, read_trials, write_data_dir, write_trials)


def _data_dir(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


GOOD = {
    "wav.scp": "alice-1 /audio/a1.wav\nalice-2 /audio/my files/a2.wav\n\nbob-1 rel/b1.wav\n",
    "utt2spk": "alice-1 alice\nalice-2 alice\nbob-1 bob\n",
}


def test_reads_a_data_directory_and_derives_spk2utt(tmp_path):
    root = _data_dir(tmp_path / "d", {**GOOD, "utt2digit": "alice-1 3\nbob-1 7\n"})
    data = read_data_dir(root)
    assert data.utterances == ["alice-1", "alice-2", "bob-1"]
    assert data.speakers == ["alice", "bob"]
    assert data.spk2utt == {"alice": ["alice-1", "alice-2"], "bob": ["bob-1"]}
    assert data.wav["alice-2"] == "/audio/my files/a2.wav"  # paths may hold spaces
    assert data.wav["bob-1"] == str(root / "rel" / "b1.wav")  # relative to the directory
    assert data.fields == {"digit": {"alice-1": "3", "bob-1": "7"}}
    assert data.utt_fields("alice-1") == {"digit": "3", "speaker": "alice"}
    assert data.path == root and len(data) == 3 and "bob-1" in data


def test_write_then_read_round_trips(tmp_path):
    data = read_data_dir(_data_dir(tmp_path / "d", {**GOOD, "utt2digit": "alice-1 3\nbob-1 7\n"}))
    out = write_data_dir(data, tmp_path / "copy")
    assert (out / "spk2utt").read_text() == "alice alice-1 alice-2\nbob bob-1\n"
    again = read_data_dir(out)  # spk2utt now present and checked
    assert again.wav == data.wav and again.utt2spk == data.utt2spk and again.fields == data.fields
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("files, expected", [
    ({"wav.scp": "alice-1\n", "utt2spk": "alice-1 alice\n"},
     "wav.scp:1: expected at least 2 fields"),
    ({"wav.scp": "a /x.wav\nb /y.wav\na /z.wav\n", "utt2spk": "a s\nb s\n"},
     "wav.scp:3: duplicate utterance 'a' (first on line 1)"),
    ({"wav.scp": "a /x.wav\nb /y.wav\n", "utt2spk": "a s\n"},
     "wav.scp:2: utterance 'b' has no speaker in utt2spk"),
    ({"wav.scp": "a /x.wav\n", "utt2spk": "a s\nc s\n"},
     "utt2spk:2: utterance 'c' is not in wav.scp"),
    ({"wav.scp": "a /x.wav\n", "utt2spk": "a s\na t\n"},
     "utt2spk:2: duplicate utterance 'a' (first on line 1)"),
    ({"wav.scp": "r /x.wav\n", "segments": "a r 0 1\nb r x 2\n", "utt2spk": "a s\nb s\n"},
     "segments:2: start and end must be numbers"),
    ({"wav.scp": "r /x.wav\n", "segments": "a r 0 1\n", "utt2spk": "a s\nb s\n"},
     "utt2spk:2: utterance 'b' is not in segments"),
    ({"wav.scp": "a /x.wav\n", "utt2spk": "a s\n", "spk2gender": "s x\n"},
     "spk2gender:1: gender of 's' must be 'm' or 'f'"),
    ({"wav.scp": "a /x.wav\n", "utt2spk": "a s\n", "utt2dur": "a -1\n"},
     "utt2dur:1: dur of 'a' must be a positive number"),
    ({"feats.scp": "a /f.ark:12\n", "utt2spk": "a s\nb s\n"},
     "utt2spk:2: utterance 'b' is not in feats.scp"),
    ({"wav.scp": "a /x.wav\nb /y.wav\n", "utt2spk": "a s\nb t\n", "spk2utt": "s a b\n"},
     "spk2utt:1: utterance 'b' of speaker 's' disagrees with utt2spk (speaker 't')"),
    ({"wav.scp": "a /x.wav\nb /y.wav\n", "utt2spk": "a s\nb s\n", "spk2utt": "s a\n"},
     "utt2spk:2: utterance 'b' is missing from spk2utt"),
    ({"wav.scp": "a /x.wav\n", "utt2spk": "a s\n", "spk2utt": "s a\ns a\n"},
     "spk2utt:2: duplicate speaker 's' (first on line 1)"),
    ({"wav.scp": "a /x.wav\n", "utt2spk": "a s\n", "utt2digit": "a 1\nzz 2\n"},
     "utt2digit:2: utterance 'zz' is not in utt2spk"),
])
def test_malformed_files_are_refused_naming_file_and_line(tmp_path, files, expected):
    root = _data_dir(tmp_path / "d", files)
    with pytest.raises(CorpusError) as info:
        read_data_dir(root)
    assert expected in str(info.value)
    assert str(root) in str(info.value)


def test_all_problems_are_listed(tmp_path):
    root = _data_dir(tmp_path / "d", {"wav.scp": "a\nb /x\nb /y\nc /z\n", "utt2spk": "b s\n"})
    with pytest.raises(CorpusError) as info:
        read_data_dir(root)
    assert len(info.value.problems) == 3  # short line 1, duplicate b on 3, c without speaker


def test_missing_directory_or_files(tmp_path):
    with pytest.raises(CorpusError, match="no such data directory"):
        read_data_dir(tmp_path / "nope")
    root = _data_dir(tmp_path / "d", {"wav.scp": "a /x\n"})
    with pytest.raises(CorpusError, match="utt2spk: missing"):
        read_data_dir(root)


def test_missing_audio_is_not_the_readers_business(tmp_path):
    data = read_data_dir(_data_dir(tmp_path / "d", GOOD))  # none of the audio exists
    assert len(data) == 3


def test_subset(tmp_path):
    data = read_data_dir(_data_dir(tmp_path / "d", {**GOOD, "utt2digit": "alice-1 3\nbob-1 7\n"}))
    assert data.subset(speakers=["bob"]).utterances == ["bob-1"]
    sub = data.subset(utterances=["alice-2", "bob-1"])
    assert sub.utterances == ["alice-2", "bob-1"] and sub.fields == {"digit": {"bob-1": "7"}}
    assert data.subset(where=lambda utt, f: f.get("digit") == "3").utterances == ["alice-1"]
    with pytest.raises(CorpusError, match="unknown utterance 'zz'"):
        data.subset(utterances=["zz"])
    with pytest.raises(CorpusError, match="unknown speaker"):
        data.subset(speakers=["carol"])


def test_datadir_validates_in_memory_construction():
    with pytest.raises(CorpusError, match="has no speaker"):
        DataDir(wav={"a": "/x"}, utt2spk={})
    with pytest.raises(CorpusError, match="has no audio"):
        DataDir(wav={}, utt2spk={"a": "s"})
    with pytest.raises(CorpusError, match="whitespace"):
        write_data_dir(DataDir(wav={"a b": "/x"}, utt2spk={"a b": "s"}), "/tmp/never-written")


# ---------------------------------------------------------------------- trials
def test_trials_round_trip_and_validation(tmp_path):
    data = read_data_dir(_data_dir(tmp_path / "d", GOOD))
    path = tmp_path / "trials"
    write_trials(path, [Trial("alice", "bob-1", False), ("bob", "alice-2", "nontarget"),
                        ("alice", "alice-2", True)])
    assert path.read_text() == "alice bob-1 nontarget\nbob alice-2 nontarget\nalice alice-2 target\n"
    trials = read_trials(path, enroll=data, test=data)
    assert trials[2] == Trial("alice", "alice-2", True) and trials[0].target is False
    assert read_trials(path, enroll=["alice", "bob"], test=["bob-1", "alice-2"]) == trials


@pytest.mark.parametrize("text, expected", [
    ("alice bob-1\n", "trials:1: expected at least 3 fields"),
    ("alice bob-1 target extra\n", "trials:1: expected 3 fields"),
    ("alice bob-1 maybe\n", "trials:1: label must be 'target' or 'nontarget', got 'maybe'"),
    ("alice bob-1 nontarget\nalice bob-1 nontarget\n", "trials:2: duplicate trial alice bob-1 (first on line 1)"),
    ("carol bob-1 nontarget\n", "trials:1: enrolment id 'carol' is in no enrolment data"),
    ("alice\tbob-1 target\n\nalice zed-9 nontarget\n", "trials:3: test utterance 'zed-9' is in no test data"),
])
def test_bad_trial_lists_name_file_and_line(tmp_path, text, expected):
    data = read_data_dir(_data_dir(tmp_path / "d", GOOD))
    path = tmp_path / "trials"
    path.write_text(text)
    with pytest.raises(CorpusError) as info:
        read_trials(path, enroll=data, test=data)
    assert expected in str(info.value) and str(path) in str(info.value)


def test_missing_trial_list(tmp_path):
    with pytest.raises(CorpusError, match="no such trial list"):
        read_trials(tmp_path / "nope")


# ---------------------------------------------------------------------- make_data_dir
def test_filename_pattern():
    regex, names = parse_filename_pattern("{digit}_{speaker}_{index}.wav")
    assert names == ["digit", "speaker", "index"]
    assert regex.match("0_george_10.wav").groupdict() == {"digit": "0", "speaker": "george", "index": "10"}
    assert regex.match("0_george_10.wav.bak") is None and regex.match("0_george.wav") is None
    with pytest.raises(ValueError, match="twice"):
        parse_filename_pattern("{a}_{a}.wav")
    with pytest.raises(ValueError, match="no {field}"):
        parse_filename_pattern("x.wav")


def test_make_data_dir_on_fsdd(fsdd, tmp_path):
    result = make_data_dir(fsdd, tmp_path / "fsdd")
    data = result.data
    assert len(data) == 3000 and result.unmatched == [] and result.not_selected == 0
    assert data.speakers == ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    assert all(len(utts) == 500 for utts in data.spk2utt.values())
    assert data.wav["george-0_george_10"] == str((fsdd / "0_george_10.wav").resolve())
    assert data.fields["digit"]["george-0_george_10"] == "0"
    assert data.fields["index"]["george-0_george_10"] == "10"
    # speaker-prefixed ids: sorted order groups each speaker's utterances
    speakers_in_order = [data.utt2spk[u] for u in data.utterances]
    assert speakers_in_order == sorted(speakers_in_order)
    written = read_data_dir(tmp_path / "fsdd")
    assert written.wav == data.wav and written.fields == data.fields
    assert (tmp_path / "fsdd" / "utt2digit").is_file() and (tmp_path / "fsdd" / "utt2index").is_file()


def test_make_data_dir_select_and_unmatched(fsdd, tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    for name in ["3_theo_0.wav", "3_theo_7.wav", "4_george_12.wav"]:
        (folder / name).symlink_to(fsdd / name)
    (folder / "README.txt").write_text("not audio")
    result = make_data_dir(folder, None, select=lambda f: int(f["index"]) >= 5)
    assert result.data.utterances == ["george-4_george_12", "theo-3_theo_7"]
    assert result.unmatched == ["README.txt"] and result.not_selected == 1 and result.out_dir is None
    with pytest.raises(CorpusError, match="no {spk} field"):
        make_data_dir(folder, None, speaker_field="spk")
    with pytest.raises(CorpusError, match="no file matched"):
        make_data_dir(folder, None, pattern="{speaker}.flac")
    with pytest.raises(CorpusError, match="no such folder"):
        make_data_dir(tmp_path / "nope", None)


def test_make_data_dir_cli(fsdd, tmp_path, capsys):
    from speakergmm.cli import main

    out = tmp_path / "train"
    assert main(["make-data-dir", str(fsdd), str(out), "--include", "index=5-49",
                 "--include", "speaker=george,theo"]) == 0
    data = read_data_dir(out)
    assert len(data) == 2 * 10 * 45 and data.speakers == ["george", "theo"]
    assert all(5 <= int(i) <= 49 for i in data.fields["index"].values())
    assert "900 utterances of 2 speakers" in capsys.readouterr().err
    assert main(["make-data-dir", str(fsdd), str(out), "--include", "session=1"]) == 2
    assert "does not have" in capsys.readouterr().err
    assert main(["make-data-dir", str(fsdd), str(out), "--include", "index"]) == 2
    assert main(["make-data-dir", str(tmp_path / "nope"), str(out)]) == 1
