"""The real speech shipped in data/fsdd and `speakergmm demo` on it (no ../shared needed)."""

from __future__ import annotations

import json
from pathlib import Path

import soundfile as sf

from speakergmm.cli import main
from speakergmm.cli.demo import find_demo_data
from speakergmm.corpus import read_data_dir, read_trials, validate_data_dir

DATA = Path(__file__).resolve().parents[1] / "data" / "fsdd"


def test_the_shipped_corpus_is_valid_real_speech_with_its_licence():
    assert (DATA / "LICENSE").is_file() and "CC BY-SA 4.0" in (DATA / "README.md").read_text()
    assert validate_data_dir(DATA / "train") == [] and validate_data_dir(DATA / "test") == []
    train, test = read_data_dir(DATA / "train"), read_data_dir(DATA / "test")
    assert len(train) == 300 and len(test) == 300 and train.speakers == test.speakers
    assert not set(train.utterances) & set(test.utterances)
    trials = read_trials(DATA / "trials", enroll=train, test=test)
    assert len(trials) == 1800 and sum(t.target for t in trials) == 300
    info = sf.info(train.wav[train.utterances[0]])
    assert info.samplerate == 8000 and info.format == "WAV"
    size = sum(p.stat().st_size for p in (DATA / "recordings").iterdir())
    assert size < 5 * 2**20


def test_demo_runs_on_the_shipped_real_voices(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # found next to the package, whatever the current directory
    assert find_demo_data() == DATA.resolve()
    out = tmp_path / "demo"
    status = main(["demo", "--out", str(out), "-k", "16", "-j", "1"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "real voices" in captured.out and "EER" in captured.out and "SYNTHETIC" not in captured.err
    results = json.loads((out / "exp" / "results.json").read_text())
    assert results["corpus"].startswith("Free Spoken Digit Dataset")
    assert results["n_target"] == 300 and results["n_nontarget"] == 1500
    assert results["eer"] < 0.1  # six real voices: a working chain separates them well


def test_demo_without_its_data_says_what_to_do(tmp_path, capsys):
    status = main(["demo", "--out", str(tmp_path / "d"), "--data", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert status == 1 and "not found" in err and "--synthetic" in err
