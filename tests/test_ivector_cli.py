"""Command line of the i-vector back end: verify --backend, stage commands, evaluate presets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speakergmm.cli import main
from speakergmm.datasets.synthetic import make_synthetic_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny synthetic corpus: 3 enrolled speakers, 4 background speakers."""
    return make_synthetic_corpus(tmp_path_factory.mktemp("corpus") / "c", n_speakers=3, n_ubm_speakers=4,
                                 ubm_utterances_per_speaker=4, enroll_utterances_per_speaker=2,
                                 test_utterances_per_speaker=2, duration_range=(1.0, 1.5), seed=1)


def _run(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _verify(corpus, out, backend, *extra):
    return ("verify", "--ubm-data", corpus.ubm, "--enroll-data", corpus.enroll, "--test-data", corpus.test,
            "--trials", corpus.trials, "--out", out, "-k", "8", "--jobs", "1", "--backend", backend,
            "--ivector-rank", "6", *extra)


@pytest.mark.parametrize("command", ["train-ivector", "extract-ivectors", "train-plda", "calibrate"])
def test_stage_commands_have_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"speakergmm {command}" in out


def test_verify_ivector_plda_end_to_end_and_resumes(corpus, tmp_path, capsys):
    out = tmp_path / "exp"
    status, stdout, stderr = _run(capsys, *_verify(corpus, out, "ivector-plda"))
    assert status == 0, stderr
    results = json.loads((out / "results.json").read_text())
    for key in ("eer", "eer_kaldi", "min_dcf", "n_target", "n_nontarget", "cllr", "timings", "problems"):
        assert key in results
    assert results["backend"] == "ivector-plda"
    assert results["n_target"] == 6 and results["n_nontarget"] == 12
    assert np.all(np.diff(results["t_matrix_history"]) >= -1e-6)
    for name in ("ivector_extractor.npz", "backend.npz", "ivectors_test.npz", "stats_backend.npz", "det.png"):
        assert (out / name).is_file(), name
    assert "EER" in stdout
    status, _, stderr = _run(capsys, *_verify(corpus, out, "ivector-plda"))
    assert status == 0 and "reusing" in stderr
    again = json.loads((out / "results.json").read_text())
    assert again["eer"] == results["eer"]
    assert {"ubm", "stats_backend", "stats_test", "ivector_extractor"} <= set(again["reused"])
    # adaptive S-norm against the back-end speakers
    status, _, stderr = _run(capsys, *_verify(corpus, out, "ivector-plda", "--norm", "snorm"))
    assert status == 0, stderr
    normed = json.loads((out / "results.json").read_text())
    assert normed["ivector_settings"]["snorm"] is True
    status, _, stderr = _run(capsys, *_verify(corpus, out, "ivector-plda", "--norm", "znorm"))
    assert status == 1 and "snorm" in stderr


def test_missing_test_audio_is_skipped_and_exits_3(corpus, tmp_path, capsys):
    import shutil

    test_dir = tmp_path / "test"
    shutil.copytree(corpus.test, test_dir)
    wav = (test_dir / "wav.scp").read_text().splitlines()
    victim = wav[0].split()[0]
    wav[0] = f"{victim} {tmp_path / 'gone.wav'}"
    (test_dir / "wav.scp").write_text("\n".join(wav) + "\n")
    args = list(_verify(corpus, tmp_path / "o", "ivector-plda"))
    args[args.index(corpus.test)] = test_dir
    status, _, err = _run(capsys, *args)
    assert status == 3 and victim in err
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    # every trial keeps a score: the three of the missing recording get the documented one
    assert len(results["unscorable_trials"]) == 3 and results["n_target"] + results["n_nontarget"] == 18
    assert all(victim in t for t in results["unscorable_trials"])
    assert results["exit_status"] == 3 and any(victim in p for p in results["problems"])


def test_verify_fusion(corpus, tmp_path, capsys):
    out = tmp_path / "fusion"
    status, _, stderr = _run(capsys, *_verify(corpus, out, "fusion"))
    assert status == 0, stderr
    results = json.loads((out / "results.json").read_text())
    assert results["backend"] == "fusion" and (out / "gmm-ubm" / "results.json").is_file()
    assert results["n_target"] == 6


def test_verify_bad_backend_input(corpus, tmp_path, capsys):
    status, _, err = _run(capsys, *_verify(corpus, tmp_path / "x", "ivector-plda", "--backend-data",
                                           tmp_path / "missing"))
    assert status == 1 and "--backend-data" in err and "missing" in err
    with pytest.raises(SystemExit) as exit_info:
        main(list(map(str, _verify(corpus, tmp_path / "x", "plda-only"))))
    assert exit_info.value.code == 2


def test_stage_commands_chain(corpus, tmp_path, capsys):
    exp = tmp_path / "exp"
    status, _, err = _run(capsys, "train-ubm", "--data", corpus.ubm, "--out", exp / "ubm.npz", "-k", "8", "-j", "1")
    assert status == 0, err
    status, _, err = _run(capsys, "train-ivector", "--data", corpus.ubm, "--ubm", exp / "ubm.npz",
                          "--out", exp / "tv.npz", "--rank", "5", "--iter", "3", "-j", "1")
    assert status == 0, err
    status, _, err = _run(capsys, "extract-ivectors", "--data", corpus.ubm, "--extractor", exp / "tv.npz",
                          "--out", exp / "iv_ubm.npz", "-j", "1")
    assert status == 0, err
    status, _, err = _run(capsys, "train-plda", "--ivectors", exp / "iv_ubm.npz", "--data", corpus.ubm,
                          "--out", exp / "backend.npz", "--lda-dim", "3")
    assert status == 0, err
    from speakergmm.verification.backend import Chain
    from speakergmm.verification.ivector_chain import load_ivectors

    ids, X, _ = load_ivectors(exp / "iv_ubm.npz")
    assert X.shape == (16, 5)
    assert Chain.load(exp / "backend.npz").transform(X).shape == (16, 3)
    # bad inputs: a missing model file, a missing data directory
    status, _, err = _run(capsys, "extract-ivectors", "--data", corpus.test, "--extractor", exp / "nope.npz",
                          "--out", exp / "iv.npz")
    assert status == 1 and "nope.npz" in err
    status, _, err = _run(capsys, "train-ivector", "--data", tmp_path / "nodata", "--ubm", exp / "ubm.npz",
                          "--out", exp / "tv2.npz")
    assert status == 1 and "nodata" in err


def test_evaluate_operating_points(corpus, tmp_path, capsys):
    scores = tmp_path / "scores.txt"
    rng = np.random.default_rng(0)
    lines = [f"m{i % 5} t{i} {rng.normal(2 if i % 7 == 0 else 0):.4f} {'target' if i % 7 == 0 else 'nontarget'}"
             for i in range(400)]
    scores.write_text("\n".join(lines) + "\n")
    status, stdout, err = _run(capsys, "evaluate", "--scores", scores, "--out", tmp_path / "e1",
                               "--preset", "VoxSRC", "--no-plot")
    assert status == 0, err
    res = json.loads((tmp_path / "e1" / "results.json").read_text())
    assert res["min_dcf_operating_point"] == "voxsrc" and "min_dcf_sre08" in res and "eer_kaldi" in res
    assert "Kaldi" in stdout
    status, _, err = _run(capsys, "evaluate", "--scores", scores, "--out", tmp_path / "e2",
                          "--p-target", "0.05", "--c-miss", "1", "--c-fa", "1", "--no-plot")
    assert status == 0, err
    res2 = json.loads((tmp_path / "e2" / "results.json").read_text())
    assert res2["min_dcf"] == pytest.approx(res["min_dcf"])
    status, _, err = _run(capsys, "evaluate", "--scores", scores, "--out", tmp_path / "e3",
                          "--preset", "sre10", "--p-target", "0.1")
    assert status == 2 and "not both" in err
    status, _, err = _run(capsys, "evaluate", "--scores", scores, "--out", tmp_path / "e3", "--p-target", "1.5")
    assert status == 2 and "p_target" in err


def test_calibrate_command_trains_and_applies_fusion(tmp_path, capsys):
    from speakergmm.verification.calibration import LinearCalibration

    rng = np.random.default_rng(3)
    n = 300
    target = np.arange(n) % 6 == 0
    a = np.where(target, rng.normal(2.0, 1.0, n), rng.normal(0.0, 1.0, n))
    b = np.where(target, rng.normal(1.0, 0.5, n), rng.normal(0.0, 0.5, n))
    files = []
    for name, values in (("a", a), ("b", b)):
        path = tmp_path / f"{name}.txt"
        order = rng.permutation(n) if name == "b" else np.arange(n)  # the trials in another order
        path.write_text("".join(f"m{i % 7} t{i} {values[i]:.6f} {'target' if target[i] else 'nontarget'}\n"
                                for i in order))
        files.append(path)
    status, out, err = _run(capsys, "calibrate", "--train", *files, "--p-target", "0.1", "--out", tmp_path / "cal.npz")
    assert status == 0, err
    ref = LinearCalibration(p_target=0.1).fit(np.column_stack([np.round(a, 6), np.round(b, 6)]), target)
    cal = LinearCalibration.load(tmp_path / "cal.npz")
    np.testing.assert_allclose(cal.coef_, ref.coef_, rtol=1e-6)
    unlabelled = tmp_path / "a_nolabel.txt"
    unlabelled.write_text("".join(f"m{i % 7} t{i} {a[i]:.6f}\n" for i in range(n)))
    status, _, err = _run(capsys, "calibrate", "--model", tmp_path / "cal.npz", "--apply", unlabelled, files[1],
                          "--out", tmp_path / "llr.txt")
    assert status == 0, err
    lines = (tmp_path / "llr.txt").read_text().splitlines()
    assert len(lines) == n
    first = lines[0].split()
    assert first[:2] == ["m0", "t0"]
    assert float(first[2]) == pytest.approx(ref.transform([[round(a[0], 6), round(b[0], 6)]])[0], abs=1e-5)
    # bad input: a trial missing from the second file, no mode, an unknown model
    (tmp_path / "short.txt").write_text("m0 t0 1.0 target\n")
    status, _, err = _run(capsys, "calibrate", "--train", files[0], tmp_path / "short.txt", "--out", tmp_path / "c2.npz")
    assert status == 1 and "short.txt" in err
    status, _, err = _run(capsys, "calibrate", "--out", tmp_path / "x.npz")
    assert status == 2
    status, _, err = _run(capsys, "calibrate", "--model", tmp_path / "nope.npz", "--apply", files[0],
                          "--out", tmp_path / "y.txt")
    assert status == 1 and "nope.npz" in err
