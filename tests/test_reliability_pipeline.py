"""Degenerate scores, silent configuration choices, trials without a score, smaller faults."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from speakergmm.cli import main
from speakergmm.datasets.synthetic import make_synthetic_corpus
from speakergmm.features import FeatureConfig
from speakergmm.mixture import GMM
from speakergmm.verification import SpeakerModels, VerificationError, enroll_speakers, score_trials
from speakergmm.verification.pipeline import default_feature_config, evaluate_trials

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_synthetic_corpus(tmp_path_factory.mktemp("corpus") / "c", n_speakers=3, n_ubm_speakers=2,
                                 ubm_utterances_per_speaker=4, enroll_utterances_per_speaker=2,
                                 test_utterances_per_speaker=2, duration_range=(1.0, 1.5), seed=1)


def _run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _logsumexp(a: np.ndarray) -> np.ndarray:
    m = a.max(axis=1, keepdims=True)
    return (np.log(np.exp(a - m).sum(axis=1, keepdims=True)) + m)[:, 0]


# ------------------------------------------------------------------ 3. degenerate scores
def test_far_away_frames_get_their_finite_llr_not_minus_infinity():
    # Frames far from both UBM components: the component where the speaker model wins has
    # a UBM posterior that underflows to 0 in the linear domain.
    ubm = GMM(np.array([0.5, 0.5]), np.array([[0.0], [50.0]]), np.ones((2, 1)), "diag")
    models = SpeakerModels(["s"], np.array([[[200.0], [50.0]]]), None, None, ubm.fingerprint(), "diag")
    X = 200.0 + np.random.default_rng(0).normal(size=(20, 1))
    speaker = models.model("s", ubm)
    brute = np.mean(_logsumexp(speaker.log_joint(X)) - _logsumexp(ubm.log_joint(X)))
    assert brute > 1000
    for exact in (True, False):
        score = score_trials(ubm, models, {"t": X}, [("s", "t")], exact=exact, top_c=2)[0]
        assert np.isfinite(score) and score == pytest.approx(brute, rel=1e-9)


def test_evaluate_refuses_non_finite_scores(tmp_path, capsys):
    scores = tmp_path / "scores.txt"
    scores.write_text("a u1 1.5 target\nb u1 -inf nontarget\nb u2 -0.5 nontarget\na u2 nan target\n")
    status, out, err = _run(capsys, "evaluate", "--scores", scores, "--out", tmp_path / "e", "--no-plot")
    assert status == 1 and not (tmp_path / "e" / "results.json").exists()
    assert "scores.txt:2: score '-inf' of trial b u1 is not a finite number" in err
    assert "scores.txt:4: score 'nan'" in err and "Traceback" not in err
    with pytest.raises(VerificationError, match=r"1 trial\(s\) have no finite score: b u1"):
        evaluate_trials([("a", "u1", True), ("b", "u1", False), ("b", "u2", False)],
                        [1.0, -np.inf, 0.0], tmp_path / "e2", plot=False)


def test_python_enrolment_refuses_features_of_another_configuration():
    ubm = GMM(np.array([0.5, 0.5]), np.array([[0.0, 0.0], [3.0, 3.0]]), np.ones((2, 2)), "diag")

    class Store(dict):
        config = FeatureConfig(sample_rate=16000)

    store = Store(u=np.random.default_rng(1).normal(size=(50, 2)))
    with pytest.raises(VerificationError, match="feature configuration mismatch.*sample_rate"):
        enroll_speakers(ubm, store, {"s": ["u"]}, feature_config=FeatureConfig(sample_rate=8000))
    assert len(enroll_speakers(ubm, store, {"s": ["u"]}, feature_config=FeatureConfig(sample_rate=16000))) == 1


# ------------------------------------------------------------------ 4. configuration choices
def test_sample_rate_is_decided_by_the_majority_and_logged(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    wav, spk = [], []
    rng = np.random.default_rng(0)
    for name, rate in [("aaa-first", 44100)] + [(f"utt{i:02d}", 8000) for i in range(6)]:
        path = tmp_path / f"{name}.wav"
        soundfile.write(path, rng.normal(scale=0.1, size=rate // 2), rate, subtype="PCM_16")
        wav.append(f"{name} {path}")
        spk.append(f"{name} s")
    (data / "wav.scp").write_text("\n".join(wav) + "\n")
    (data / "utt2spk").write_text("\n".join(spk) + "\n")
    lines: list[str] = []
    config = default_feature_config(data, log=lines.append)
    assert config.sample_rate == 8000
    assert len(lines) == 1 and "8000 Hz analysis chosen from 7 files" in lines[0]
    assert "8000 Hz: 6" in lines[0] and "44100 Hz: 1" in lines[0] and "aaa-first (44100 Hz)" in lines[0]


def test_a_ubm_size_the_data_cannot_support_is_reduced_in_one_line(corpus, tmp_path, capsys):
    status, _, err = _run(capsys, "train-ubm", "--data", corpus.ubm, "--out", tmp_path / "u.npz",
                          "-k", "1024", "-j", "1", "--final-iter", "2", "--iter-per-split", "1")
    assert status == 0, err
    assert "1024 Gaussians need at least 10240 training frames" in err
    assert "EmptyComponentWarning" not in err and "warnings.warn" not in err
    from speakergmm.verification import load_ubm
    gmm, meta = load_ubm(tmp_path / "u.npz")
    assert gmm.n_components < 1024 and meta["training"]["requested_components"] == 1024
    from speakergmm.verification.pipeline import supported_components

    assert supported_components(1024, 624) == 32 and supported_components(8, 10_000) == 8


# ------------------------------------------------------------------ 6. trials without a score
def _noise_recording(path: Path) -> None:
    # About 1 s of low-level line noise: the energy VAD keeps none of its frames.
    rng = np.random.default_rng(5)
    soundfile.write(path, (rng.normal(scale=8.0, size=8000)).astype(np.int16), 8000, subtype="PCM_16")


def test_a_recording_the_vad_empties_is_scored_on_fallback_features(corpus, tmp_path, capsys):
    test_dir = tmp_path / "test"
    shutil.copytree(corpus.test, test_dir)
    _noise_recording(tmp_path / "noise.wav")
    with open(test_dir / "wav.scp", "a") as fh:
        fh.write(f"spk01-test-noise {tmp_path / 'noise.wav'}\n")
    with open(test_dir / "utt2spk", "a") as fh:
        fh.write("spk01-test-noise spk01\n")
    (test_dir / "spk2utt").unlink(missing_ok=True)
    trials = tmp_path / "trials"
    trials.write_text(corpus.trials.read_text() + "spk01 spk01-test-noise target\n"
                      "spk02 spk01-test-noise nontarget\nspk03 spk01-test-noise nontarget\n")
    out = tmp_path / "o"
    status, stdout, err = _run(capsys, "verify", "--ubm-data", corpus.ubm, "--enroll-data", corpus.enroll,
                               "--test-data", test_dir, "--trials", trials, "--out", out, "-k", "4", "-j", "1")
    assert status == 3, err
    assert "spk01-test-noise" in err and "scored on all" in err and "VAD off" in err
    results = json.loads((out / "results.json").read_text())
    assert results["n_target"] + results["n_nontarget"] == 21          # every trial evaluated
    assert "spk01-test-noise" in results["fallback_utterances"] and results["unscorable_trials"] == []
    scores = (out / "scores.txt").read_text()
    assert "nan" not in scores and scores.count("spk01-test-noise") == 3


def test_unscorable_trials_get_the_documented_score(tmp_path):
    from speakergmm.verification.pipeline import UNSCORABLE_SCORE, VerifySettings, run_score

    ubm = GMM(np.array([0.5, 0.5]), np.array([[0.0, 0.0], [3.0, 3.0]]), np.ones((2, 2)), "diag")
    models = SpeakerModels(["a"], ubm.means[None], None, None, ubm.fingerprint(), "diag")
    features = {"t": np.random.default_rng(0).normal(size=(30, 2))}
    result = run_score(ubm, models, features, [("a", "t", True), ("a", "gone", False), ("zed", "t", False)],
                       VerifySettings(jobs=1), log=None)
    assert np.isfinite(result.value).all()
    assert result.value[1] == result.value[2] == UNSCORABLE_SCORE
    assert result.details["unscorable_trials"] == ["a gone", "zed t"]
    assert any("model zed" in p for p in result.problems)


# ------------------------------------------------------------------ 7. smaller faults
def test_a_changed_settings_run_keeps_the_other_runs_checkpoint(corpus, tmp_path, capsys):
    from speakergmm.features import FeatureStore
    from speakergmm.verification import train_ubm

    out = tmp_path / "u.npz"
    assert _run(capsys, "train-ubm", "--data", corpus.ubm, "--out", out, "-k", "2", "-j", "1")[0] == 0
    store = FeatureStore(tmp_path / "features" / Path(corpus.ubm).name)
    old = tmp_path / "u.npz.ckpt"                # an interrupted run's checkpoint (other settings)
    train_ubm(store, 4, checkpoint=old, stop_after=2, iter_per_split=1, final_iter=1)
    before = old.read_bytes()
    assert _run(capsys, "train-ubm", "--data", corpus.ubm, "--out", out, "-k", "8", "-j", "1")[0] == 0
    assert old.read_bytes() == before
    assert not list(tmp_path.glob("u.npz.*.ckpt"))  # the finished run removed only its own


def test_one_empty_sequence_does_not_abort_a_predict_batch(caplog):
    from speakergmm.hmm import GMMHMM, WordRecognizer

    rng = np.random.default_rng(0)
    train = {w: [rng.normal(loc=3 * i, size=(25, 2)) for _ in range(4)] for i, w in enumerate(["a", "b"])}
    rec = WordRecognizer(hmm=GMMHMM(n_states=2, n_components=1, n_iter=2)).fit(train)
    batch = [train["a"][0], np.zeros((0, 2)), train["b"][1], train["a"][1][:1]]
    with caplog.at_level("WARNING", logger="speakergmm"):
        assert list(rec.predict(batch)) == ["a", "", "b", ""]
    assert "2 of 4 sequence(s) labelled ''" in caplog.text and ": 1, 3" in caplog.text


def test_broken_pipe_gives_no_traceback(tmp_path):
    scores = tmp_path / "scores.txt"
    scores.write_text("a u1 1.5 target\nb u1 -1 nontarget\na u2 2 target\nb u2 -2 nontarget\n")
    proc = subprocess.Popen([sys.executable, "-m", "speakergmm.cli", "evaluate", "--scores", str(scores),
                             "--out", str(tmp_path / "e"), "--no-plot"],
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                           # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err
    assert proc.returncode == 141


def test_features_has_quiet_and_uses_all_cores_by_default(corpus, tmp_path, capsys):
    from speakergmm.cli import build_parser

    args = build_parser().parse_args(["features", "d", "o"])
    assert args.jobs == 0 and args.quiet is False
    status, out, err = _run(capsys, "features", corpus.enroll, tmp_path / "f", "-q", "-j", "1")
    assert status == 0 and err == "" and out == ""


def test_messages_go_through_logging(corpus, tmp_path, caplog):
    from speakergmm.verification.pipeline import prepare_features

    with caplog.at_level(logging.INFO, logger="speakergmm"):
        prepare_features(corpus.enroll, tmp_path / "f", FeatureConfig(), jobs=1)
    records = [r for r in caplog.records if r.name == "speakergmm.verification.pipeline"]
    assert records and "utterances have features" in records[0].getMessage()


# ------------------------------------------------------------------ library vs command line
def test_library_errors_name_parameters_and_the_cli_maps_them_to_options(corpus, tmp_path, capsys):
    from speakergmm.verification.pipeline import InvalidArgument, VerifySettings, verify

    with pytest.raises(InvalidArgument, match=r"^enroll_data .*nope: no such directory") as info:
        verify(corpus.ubm, tmp_path / "nope", corpus.test, corpus.trials, tmp_path / "o")
    assert info.value.argument == "enroll_data" and "--" not in str(info.value)
    with pytest.raises(InvalidArgument, match="^cohort_data is needed by norm='znorm'"):
        verify(corpus.ubm, corpus.enroll, corpus.test, corpus.trials, tmp_path / "o",
               settings=VerifySettings(norm="znorm"))
    status, _, err = _run(capsys, "verify", "--ubm-data", corpus.ubm, "--enroll-data", tmp_path / "nope",
                          "--test-data", corpus.test, "--trials", corpus.trials, "--out", tmp_path / "o")
    assert status == 1 and err.splitlines()[-1].startswith("speakergmm verify: --enroll-data ")
    assert "enroll_data" not in err


def test_results_json_is_written_once_and_trials_are_one_type(corpus, tmp_path, monkeypatch):
    from speakergmm.corpus import Trial
    from speakergmm.verification import pipeline

    writes = []
    original = pipeline.atomic_write_json
    monkeypatch.setattr(pipeline, "atomic_write_json", lambda path, obj: (writes.append(Path(path).name),
                                                                           original(path, obj)))
    results = pipeline.verify(corpus.ubm, corpus.enroll, corpus.test, corpus.trials, tmp_path / "o",
                              settings=pipeline.VerifySettings(n_components=4, jobs=1), log=None)
    assert writes.count("results.json") == 1 and "timings" in json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["exit_status"] == 0
    trials, scores = pipeline.read_scores(tmp_path / "o" / "scores.txt")
    assert all(type(t) is Trial for t in trials) and np.isfinite(scores).all()


def test_one_exit_code_module():
    from speakergmm import exit_codes
    from speakergmm.cli import features as cli_features
    from speakergmm.cli import verification as cli_verification
    from speakergmm.features import EXIT_SKIPPED
    from speakergmm.verification import pipeline

    assert EXIT_SKIPPED == pipeline.EXIT_PARTIAL == cli_verification.EXIT_PARTIAL == cli_features.EXIT_SKIPPED \
        == exit_codes.EXIT_PARTIAL == 3
    source = "".join(Path(m.__file__).read_text() for m in (cli_features, cli_verification, pipeline))
    assert "= 3\n" not in source
