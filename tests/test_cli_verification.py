"""The verification command line: train-ubm, enroll, score, evaluate, verify and demo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from speakergmm.cli import main
from speakergmm.datasets.synthetic import make_synthetic_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny synthetic corpus: 3 enrolled speakers, 2 UBM speakers, short utterances."""
    return make_synthetic_corpus(tmp_path_factory.mktemp("corpus") / "c", n_speakers=3, n_ubm_speakers=2,
                                 ubm_utterances_per_speaker=4, enroll_utterances_per_speaker=2,
                                 test_utterances_per_speaker=2, duration_range=(1.0, 1.5), seed=1)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _base(corpus):
    return ("verify", "--ubm-data", corpus.ubm, "--enroll-data", corpus.enroll, "--test-data", corpus.test)


def _verify_args(corpus, out, *extra):
    return ("verify", "--ubm-data", corpus.ubm, "--enroll-data", corpus.enroll, "--test-data", corpus.test,
            "--trials", corpus.trials, "--out", out, "-k", "4", "--jobs", "1", *extra)


# --------------------------------------------------------------------------- help
@pytest.mark.parametrize("command", ["train-ubm", "enroll", "score", "evaluate", "verify", "demo"])
def test_every_subcommand_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"speakergmm {command}" in out


# --------------------------------------------------------------------------- the chain
def test_verify_end_to_end_writes_results_and_resumes(corpus, tmp_path, capsys):
    out = tmp_path / "exp"
    status, stdout, stderr = _run(capsys, *_verify_args(corpus, out))
    assert status == 0, stderr
    results = json.loads((out / "results.json").read_text())
    for key in ("eer", "min_dcf", "n_target", "n_nontarget", "min_dcf_sre10", "actual_dcf_sre08", "cllr"):
        assert key in results
    assert 0.0 <= results["eer"] <= 1.0 and 0.0 <= results["min_dcf"]
    assert results["n_target"] == 6 and results["n_nontarget"] == 12
    assert results["identification_accuracy"] is not None  # every test utt vs every model
    assert Path(results["det_plot"]).is_file()
    assert results["ubm_components"] == 4 and results["reused"] == []
    assert len((out / "scores.txt").read_text().splitlines()) == 18
    assert "EER" in stdout and "det.png" in stdout
    # A rerun reuses the features, the UBM and the speaker models.
    status, _, stderr = _run(capsys, *_verify_args(corpus, out))
    assert status == 0
    again = json.loads((out / "results.json").read_text())
    assert again["reused"] == ["ubm", "enroll"] and again["eer"] == results["eer"]
    assert "reusing" in stderr and "0 extracted" in stderr


def test_subcommands_chain_matches_verify(corpus, tmp_path, capsys):
    exp = tmp_path / "exp"
    status, _, err = _run(capsys, "train-ubm", "--data", corpus.ubm, "--out", exp / "ubm.npz", "-k", "4", "-j", "1")
    assert status == 0, err
    assert (exp / "features" / "ubm" / "index.json").is_file()
    status, _, err = _run(capsys, "train-ubm", "--data", corpus.ubm, "--out", exp / "ubm.npz", "-k", "4", "-j", "1")
    assert status == 0 and "reusing" in err
    status, _, err = _run(capsys, "enroll", "--data", corpus.enroll, "--ubm", exp / "ubm.npz",
                          "--out", exp / "speakers.npz", "-j", "1")
    assert status == 0, err
    status, _, err = _run(capsys, "score", "--data", corpus.test, "--ubm", exp / "ubm.npz",
                          "--models", exp / "speakers.npz", "--trials", corpus.trials,
                          "--out", exp / "scores.txt", "-j", "1")
    assert status == 0, err
    lines = (exp / "scores.txt").read_text().splitlines()
    assert len(lines) == 18 and lines[0].split()[3] in ("target", "nontarget")
    status, out, err = _run(capsys, "evaluate", "--scores", exp / "scores.txt", "--out", exp / "eval")
    assert status == 0, err
    results = json.loads((exp / "eval" / "results.json").read_text())
    assert results["n_target"] == 6 and (exp / "eval" / "det.png").is_file()
    # Same data and settings as `verify`: the same scores.
    status, _, _ = _run(capsys, *_verify_args(corpus, tmp_path / "v"))
    verify_scores = (tmp_path / "v" / "scores.txt").read_text()
    assert verify_scores == (exp / "scores.txt").read_text()
    # Labels from a trial list when the score file has none.
    bare = tmp_path / "bare.txt"
    bare.write_text("\n".join(" ".join(line.split()[:3]) for line in lines) + "\n")
    status, _, err = _run(capsys, "evaluate", "--scores", bare, "--out", tmp_path / "e2", "--no-plot")
    assert status == 1 and "has no label" in err and "bare.txt:1" in err
    status, _, err = _run(capsys, "evaluate", "--scores", bare, "--trials", corpus.trials,
                          "--out", tmp_path / "e2", "--no-plot")
    assert status == 0, err
    assert json.loads((tmp_path / "e2" / "results.json").read_text())["eer"] == results["eer"]


# --------------------------------------------------------------------------- errors
def test_missing_directories_are_named(corpus, tmp_path, capsys):
    status, _, err = _run(capsys, "train-ubm", "--data", tmp_path / "nope", "--out", tmp_path / "u.npz")
    assert status == 1 and "--data" in err and "nope: no such directory" in err
    status, _, err = _run(capsys, "verify", "--ubm-data", tmp_path / "nope", "--enroll-data", corpus.enroll,
                          "--test-data", corpus.test, "--trials", corpus.trials, "--out", tmp_path / "o")
    assert status == 1 and "--ubm-data" in err and "no such directory" in err
    status, _, err = _run(capsys, *_base(corpus), "--trials", tmp_path / "none.trials", "--out", tmp_path / "o")
    assert status == 1 and "--trials" in err and "no such file" in err
    status, _, err = _run(capsys, "enroll", "--data", corpus.enroll, "--ubm", tmp_path / "missing.npz",
                          "--out", tmp_path / "s.npz")
    assert status == 1 and "missing.npz: no such model file" in err


def test_bad_trial_lines_and_unknown_speakers_are_refused(corpus, tmp_path, capsys):
    bad = tmp_path / "bad_trials"
    lines = corpus.trials.read_text().splitlines()
    bad.write_text("\n".join([lines[0], "spk01 only-two-fields", lines[2]]) + "\n")
    status, _, err = _run(capsys, *_base(corpus), "--trials", bad, "--out", tmp_path / "o", "-k", "4")
    assert status == 1 and "bad_trials:2" in err and "fields, got 2" in err

    unknown = tmp_path / "unknown_trials"
    test_utt = lines[0].split()[1]
    unknown.write_text(f"{lines[0]}\ncarol {test_utt} nontarget\n")
    args = list(_verify_args(corpus, tmp_path / "o"))
    args[args.index(corpus.trials)] = unknown
    status, _, err = _run(capsys, *args)
    assert status == 1 and "unknown_trials:2" in err and "'carol'" in err

    label = tmp_path / "label_trials"
    label.write_text(f"{lines[0].rsplit(' ', 1)[0]} maybe\n")
    args[args.index(unknown)] = label
    status, _, err = _run(capsys, *args)
    assert status == 1 and "label_trials:1" in err and "'maybe'" in err


def test_score_refuses_models_of_another_ubm_and_unknown_speakers(corpus, tmp_path, capsys):
    exp = tmp_path / "exp"
    assert _run(capsys, *_verify_args(corpus, exp))[0] == 0
    assert _run(capsys, "train-ubm", "--data", corpus.enroll, "--out", tmp_path / "other.npz", "-k", "2",
                "-j", "1")[0] == 0
    status, _, err = _run(capsys, "score", "--data", corpus.test, "--ubm", tmp_path / "other.npz",
                          "--models", exp / "speakers.npz", "--trials", corpus.trials,
                          "--out", tmp_path / "s.txt")
    assert status == 1 and "not from this UBM" in err
    trials = tmp_path / "t"
    test_utt = corpus.trials.read_text().split()[1]
    trials.write_text(f"dave {test_utt} target\n")
    status, _, err = _run(capsys, "score", "--data", corpus.test, "--ubm", exp / "ubm.npz",
                          "--models", exp / "speakers.npz", "--trials", trials, "--out", tmp_path / "s.txt")
    assert status == 1 and "'dave'" in err
    status, _, err = _run(capsys, "score", "--data", corpus.test, "--ubm", exp / "ubm.npz",
                          "--models", exp / "speakers.npz", "--trials", corpus.trials,
                          "--out", tmp_path / "s.txt", "--norm", "znorm")
    assert status == 2 and "--cohort-data" in err


def test_bad_argument_values_exit_2(corpus, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", "--ubm-data", str(corpus.ubm), "--enroll-data", str(corpus.enroll), "--test-data",
              str(corpus.test), "--trials", str(corpus.trials), "--out", str(tmp_path), "--top-c", "0"])
    assert exit_info.value.code == 2
    assert "positive integer" in capsys.readouterr().err
    status, _, err = _run(capsys, *_verify_args(corpus, tmp_path / "o", "--adapt", "q"))
    assert status == 2 and "adapt" in err


def test_missing_test_audio_is_skipped_reported_and_exits_3(corpus, tmp_path, capsys):
    test_dir = tmp_path / "test"
    shutil.copytree(corpus.test, test_dir)
    wav = (test_dir / "wav.scp").read_text().splitlines()
    victim = wav[0].split()[0]
    wav[0] = f"{victim} {tmp_path / 'gone.wav'}"
    (test_dir / "wav.scp").write_text("\n".join(wav) + "\n")
    args = list(_verify_args(corpus, tmp_path / "o"))
    args[args.index(corpus.test)] = test_dir
    status, _, err = _run(capsys, *args)
    assert status == 3
    assert victim in err and "audio file not found" in err
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    # Evaluation keeps every trial: the three of the missing recording get the defined score.
    assert len(results["unscorable_trials"]) == 3 and results["n_target"] + results["n_nontarget"] == 18
    assert all(victim in t for t in results["unscorable_trials"]) and results["unscorable_score"] == 0.0
    assert results["exit_status"] == 3 and any(victim in p for p in results["problems"])


def test_score_normalisation_with_a_cohort(corpus, tmp_path, capsys):
    # The UBM speakers (not enrolled) serve as the impostor cohort.
    status, _, err = _run(capsys, *_verify_args(corpus, tmp_path / "o", "--norm", "snorm",
                                                "--cohort-data", corpus.ubm))
    assert status == 0, err
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["settings"]["norm"] == "snorm" and "snorm with a cohort of 2 speakers" in err


# --------------------------------------------------------------------------- demo
def test_demo_runs_end_to_end_on_synthetic_voices(tmp_path, capsys):
    out = tmp_path / "demo"
    status, stdout, stderr = _run(capsys, "demo", "--synthetic", "--out", out, "--speakers", "3", "--ubm-speakers", "2",
                                  "--test-utterances", "2", "-k", "4", "-j", "1")
    assert status == 0, stderr
    assert "SYNTHETIC voices" in stderr
    assert "EER" in stdout and "minDCF" in stdout and "DET plot" in stdout
    results = json.loads((out / "exp" / "results.json").read_text())
    assert results["corpus"].startswith("synthetic") and Path(results["det_plot"]).is_file()
    assert (out / "corpus" / "COMPLETE.json").is_file()
    # A different corpus size in the same directory is refused with advice, not overwritten.
    status, _, stderr = _run(capsys, "demo", "--synthetic", "--out", out, "--speakers", "4", "-j", "1")
    assert status == 1 and "choose another --out" in stderr


@pytest.mark.parametrize("flag", ["--variance-floor-ratio", "--variance-floor"])
def test_relative_variance_floor_flag_and_its_former_name(flag):
    from speakergmm.cli import build_parser
    from speakergmm.cli.verification import settings_from_args

    args = build_parser().parse_args(["train-ubm", "--data", "d", "--out", "u.npz", flag, "0.01"])
    assert settings_from_args(args).ubm_config(8).variance_floor_ratio == 0.01
