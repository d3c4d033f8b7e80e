"""``speakergmm hmm train|decode|align`` end to end on a small FSDD subset, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speakergmm.cli import main
from speakergmm.hmm.scoring import align_words, word_error_rate

DIGITS = ("0", "1", "2")


def _data_dir(folder: Path, fsdd: Path, indices: range, extra_text: dict[str, str] | None = None) -> Path:
    wav, spk, text = [], [], []
    for path in sorted(fsdd.glob("*.wav")):
        digit, speaker, index = path.stem.split("_")
        if digit in DIGITS and int(index) in indices:
            utt = f"{speaker}-{path.stem}"
            wav.append(f"{utt} {path}")
            spk.append(f"{utt} {speaker}")
            text.append(f"{utt} {digit}")
    folder.mkdir(parents=True)
    (folder / "wav.scp").write_text("\n".join(wav) + "\n")
    (folder / "utt2spk").write_text("\n".join(spk) + "\n")
    (folder / "text").write_text("\n".join(text) + "\n")
    return folder


def test_word_error_rate_by_alignment():
    alignment = align_words("one two three four".split(), "one too three three four five".split())
    assert (alignment.substitutions, alignment.deletions, alignment.insertions) == (1, 0, 2)
    counts = word_error_rate([["a", "b"], ["c"]], [["a"], ["c"]])
    assert counts.wer == pytest.approx(1 / 3) and counts.deletions == 1
    assert counts.sentence_error_rate == 0.5
    with pytest.raises(TypeError, match="split them"):
        word_error_rate(["a b"], ["a b"])


@pytest.mark.fsdd
def test_train_decode_align_on_fsdd(fsdd, tmp_path, capsys):
    train = _data_dir(tmp_path / "data" / "train", fsdd, range(5, 15))
    test = _data_dir(tmp_path / "data" / "test", fsdd, range(0, 3))
    model = tmp_path / "exp" / "digits.model"
    status = main(["hmm", "train", "--data", str(train), "--out", str(model), "--states", "5",
                   "--mixtures", "4", "--iterations", "4", "--iter-per-split", "2", "-q",
                   "--silence-out", str(tmp_path / "exp" / "silence.hmm")])
    assert status == 0 and model.is_file() and (tmp_path / "exp" / "silence.hmm").is_file()

    decoded = tmp_path / "exp" / "decode"
    assert main(["hmm", "decode", "--data", str(test), "--model", str(model), "--out", str(decoded),
                 "-q"]) == 0
    results = json.loads((decoded / "results.json").read_text())
    assert results["n_decoded"] == 54 and results["n_scored"] == 54
    # Measured 54/54 with these settings (speaker CMVN, the default; 53/54 with per-utterance
    # CMVN) on the three digits; three errors of margin.
    assert results["accuracy"] >= 51 / 54 and results["cmvn"] == "speaker"
    assert results["wer"] == pytest.approx(1 - results["accuracy"])
    lines = (decoded / "results.txt").read_text().split("\n")[:-1]
    assert len(lines) == 54 and all(len(line.split()) == 3 for line in lines)
    assert np.trace(np.asarray(results["confusion_matrix"])) == round(54 * results["accuracy"])
    assert (decoded / "confusion.png").is_file()

    adapted = tmp_path / "exp" / "decode_adapted"
    assert main(["hmm", "decode", "--data", str(test), "--model", str(model), "--out", str(adapted),
                 "--adapt", "mllr+map", "--adapt-iterations", "2", "--no-plot", "-q"]) == 0
    results = json.loads((adapted / "results.json").read_text())
    assert results["adapt"] == "mllr+map" and results["accuracy"] >= 51 / 54  # measured 54/54

    aligned = tmp_path / "exp" / "align"
    utts = [line.split()[0] for line in lines[:2]]
    assert main(["hmm", "align", "--data", str(test), "--model", str(model), "--out", str(aligned),
                 "--plot", "--utterances", *utts, "-q"]) == 0
    rows = [line.split() for line in (aligned / "alignments.txt").read_text().splitlines()]
    for utt in utts:
        states = [int(r[2]) for r in rows if r[0] == utt]
        assert states == [0, 1, 2, 3, 4]  # every state once, in order (left-to-right, no skips)
        times = [(float(r[3]), float(r[4])) for r in rows if r[0] == utt]
        assert all(a < b for a, b in times) and all(times[i][1] <= times[i + 1][0] + 1e-6
                                                    for i in range(len(times) - 1))
        assert (aligned / "plots" / f"{utt}.png").is_file()

    # Connected digits: strings of three test recordings of one speaker joined by pauses.
    import soundfile

    from speakergmm.features.audio import read_audio
    from speakergmm.hmm.connected import join_with_pauses

    strings = tmp_path / "data" / "strings"
    strings.mkdir()
    rng = np.random.default_rng(0)
    wav, spk, text = [], [], []
    for n, speaker in enumerate(["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]):
        words = [str(d) for d in rng.choice(len(DIGITS), size=3)]
        signals = [read_audio(fsdd / f"{w}_{speaker}_{int(rng.integers(0, 3))}.wav")[0] for w in words]
        joined = join_with_pauses(signals, 8000, [0.2, 0.3, 0.3, 0.2], seed=n) / 32768.0
        path = strings / f"{speaker}-string{n}.wav"
        soundfile.write(path, joined, 8000, subtype="PCM_16")
        wav.append(f"{speaker}-string{n} {path}")
        spk.append(f"{speaker}-string{n} {speaker}")
        text.append(f"{speaker}-string{n} {' '.join(words)}")
    for name, lines in (("wav.scp", wav), ("utt2spk", spk), ("text", text)):
        (strings / name).write_text("\n".join(lines) + "\n")
    connected = tmp_path / "exp" / "connected"
    assert main(["hmm", "decode", "--data", str(strings), "--model", str(model), "--out", str(connected),
                 "--connected", "--insertion-penalty", "-100", "-q"]) == 0
    results = json.loads((connected / "results.json").read_text())
    assert results["n_reference_words"] == 18 and results["mode"] == "connected"
    assert results["wer"] <= 3 / 18, results["errors"]  # measured 0/18 errors (also at penalties 0, -40)
    hyp_lines = (connected / "results.txt").read_text().splitlines()
    assert len(hyp_lines) == 6 and all(len(line.split()) >= 2 for line in hyp_lines)
    assert main(["hmm", "decode", "--data", str(strings), "--model", str(model), "--out",
                 str(tmp_path / "exp" / "connected_sil"), "--connected", "--insertion-penalty", "-100",
                 "--silence-model", str(tmp_path / "exp" / "silence.hmm"), "-q"]) == 0
    results = json.loads((tmp_path / "exp" / "connected_sil" / "results.json").read_text())
    assert results["wer"] <= 3 / 18 and results["silence_model"]  # measured 0/18 errors

    # Bad input: an utterance with unreadable audio, one without a transcription, one with an
    # unknown word. The batch goes on, reports them and exits with status 3.
    bad = _data_dir(tmp_path / "data" / "bad", fsdd, range(0, 1))
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wave file")
    with open(bad / "wav.scp", "a") as f:
        f.write(f"zz-broken {tmp_path / 'broken.wav'}\nzz-nolabel {next(fsdd.glob('0_*_0.wav'))}\n")
    with open(bad / "utt2spk", "a") as f:
        f.write("zz-broken zz\nzz-nolabel zz\n")
    with open(bad / "text", "a") as f:
        f.write("zz-broken 7\n")
    capsys.readouterr()
    assert main(["hmm", "decode", "--data", str(bad), "--model", str(model), "--out",
                 str(tmp_path / "exp" / "bad"), "--no-plot"]) == 3
    err = capsys.readouterr().err
    assert "zz-broken" in err and "skipped" in err
    results = json.loads((tmp_path / "exp" / "bad" / "results.json").read_text())
    assert results["n_decoded"] == 19 and results["n_scored"] == 18
    assert main(["hmm", "align", "--data", str(bad), "--model", str(model), "--out",
                 str(tmp_path / "exp" / "bad_align")]) == 3
    err = capsys.readouterr().err
    assert "zz-nolabel: no transcription" in err and "zz-broken: transcription '7' is not one known word" in err


def test_bad_arguments_are_named(tmp_path, capsys):
    assert main(["hmm", "decode", "--data", str(tmp_path), "--model", str(tmp_path / "none.model"),
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "--model" in err and "no such file" in err
    assert main(["hmm", "train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "m")]) == 1
    assert "--data" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "wav.scp").write_text("")
    (tmp_path / "d" / "utt2spk").write_text("")
    assert main(["hmm", "train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "m")]) == 1
    assert "text: missing" in capsys.readouterr().err
    assert main(["hmm"]) == 2
