"""The synthetic-voice corpus: deterministic, well-formed, atomic, and speaker-dependent."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from speakergmm.datasets import (
    SyntheticCorpus,
    make_synthetic_corpus,
    random_voice,
    synthesize_utterance,
)
from speakergmm.datasets import synthetic

SMALL = dict(n_speakers=3, n_ubm_speakers=2, ubm_utterances_per_speaker=2,
             enroll_utterances_per_speaker=2, test_utterances_per_speaker=3,
             duration_range=(0.8, 1.2))


def read_table(path):
    return [line.split() for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> SyntheticCorpus:
    return make_synthetic_corpus(tmp_path_factory.mktemp("syn") / "corpus", seed=3, **SMALL)


# ---------------------------------------------------------------------- formats


def test_layout_and_wav_format(small_corpus):
    root = small_corpus.root
    assert (root / "COMPLETE.json").is_file()
    wavs = sorted((root / "wav").rglob("*.wav"))
    assert len(wavs) == 2 * 2 + 3 * (2 + 3)
    for wav in wavs:
        info = sf.info(wav)
        assert (info.samplerate, info.channels, info.format, info.subtype) == (
            8000, 1, "WAV", "PCM_16")
        assert 0.8 <= info.duration <= 1.2 + 1e-3
        audio, _ = sf.read(wav)
        assert 0.25 < np.abs(audio).max() <= 0.8 + 1e-4   # peak-normalised, no clipping
        # Low-level noise before and after the speech.
        lead, body = audio[:800], audio[len(audio) // 3: 2 * len(audio) // 3]
        assert 0 < np.std(lead) < 0.05 * np.std(body)


def test_kaldi_files_are_consistent(small_corpus):
    enrolled = {f"spk{i:02d}" for i in (1, 2, 3)}
    split_speakers = {"ubm": {"ubm01", "ubm02"}, "enroll": enrolled, "test": enrolled}
    all_utts = set()
    for split, directory in (("ubm", small_corpus.ubm), ("enroll", small_corpus.enroll),
                             ("test", small_corpus.test)):
        scp = read_table(directory / "wav.scp")
        utt2spk = read_table(directory / "utt2spk")
        spk2utt = read_table(directory / "spk2utt")
        assert all(len(row) == 2 for row in scp + utt2spk)
        utts = [row[0] for row in scp]
        assert utts == sorted(utts) and len(set(utts)) == len(utts)
        assert [row[0] for row in utt2spk] == utts
        mapping = dict(utt2spk)
        assert set(mapping.values()) == split_speakers[split]
        assert all(utt.startswith(mapping[utt] + f"-{split}-") for utt in utts)
        assert [row[0] for row in spk2utt] == sorted(split_speakers[split])
        for spk, *spk_utts in spk2utt:
            assert spk_utts == sorted(u for u in utts if mapping[u] == spk)
        for utt, path in scp:
            assert path.startswith(str(small_corpus.root)) and sf.info(path).frames > 0
        assert not all_utts & set(utts)
        all_utts |= set(utts)

    trials = read_table(small_corpus.trials)
    test_utt2spk = dict(read_table(small_corpus.test / "utt2spk"))
    assert len(trials) == len(enrolled) * len(test_utt2spk)
    assert {(spk, utt) for spk, utt, _ in trials} == {
        (spk, utt) for spk in enrolled for utt in test_utt2spk}
    for spk, utt, label in trials:
        assert label == ("target" if test_utt2spk[utt] == spk else "nontarget")


def test_readable_by_the_corpus_module(small_corpus):
    corpus = pytest.importorskip("speakergmm.corpus")
    enroll = corpus.read_data_dir(small_corpus.enroll)
    test = corpus.read_data_dir(small_corpus.test)
    trials = corpus.read_trials(small_corpus.trials)
    assert len(trials) == len(enroll.speakers) * len(test)
    assert sum(t.target for t in trials) == len(test)


# ------------------------------------------------------- determinism and atomicity


def test_deterministic_from_the_seed(small_corpus, tmp_path):
    again = make_synthetic_corpus(tmp_path / "again", seed=3, **SMALL)
    for old in sorted((small_corpus.root / "wav").rglob("*.wav")):
        new = again.root / old.relative_to(small_corpus.root)
        assert new.read_bytes() == old.read_bytes()
    for name in ("utt2spk", "spk2utt"):
        assert (again.test / name).read_text() == (small_corpus.test / name).read_text()
    assert again.trials.read_text() == small_corpus.trials.read_text()
    other = make_synthetic_corpus(tmp_path / "other", seed=4, **SMALL)
    a, _ = sf.read(small_corpus.root / "wav/spk01/spk01-test-000.wav")
    b, _ = sf.read(other.root / "wav/spk01/spk01-test-000.wav")
    assert a.shape != b.shape or not np.allclose(a, b)


def test_reuses_a_complete_corpus_and_refuses_to_clobber(small_corpus):
    marker = small_corpus.root / "COMPLETE.json"
    before = marker.stat().st_mtime_ns
    assert make_synthetic_corpus(small_corpus.root, seed=3, **SMALL) == small_corpus
    assert marker.stat().st_mtime_ns == before
    assert json.loads(marker.read_text())["seed"] == 3
    with pytest.raises(FileExistsError, match="other parameters"):
        make_synthetic_corpus(small_corpus.root, seed=5, **SMALL)


def test_overwrite_and_foreign_directories(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a complete synthetic corpus"):
        make_synthetic_corpus(foreign, seed=1, **SMALL)
    assert (foreign / "notes.txt").read_text() == "keep me"
    corpus = make_synthetic_corpus(foreign, seed=1, overwrite=True, **SMALL)
    assert not (foreign / "notes.txt").exists() and corpus.trials.is_file()
    # An existing empty directory is fine.
    (tmp_path / "empty").mkdir()
    make_synthetic_corpus(tmp_path / "empty", seed=1, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "mine"]


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic.synthesize_utterance

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "synthesize_utterance", failing)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_corpus(tmp_path / "corpus", seed=0, **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_argument_validation(tmp_path):
    with pytest.raises(ValueError, match="n_speakers"):
        make_synthetic_corpus(tmp_path / "c", n_speakers=1)
    with pytest.raises(ValueError, match="test_utterances_per_speaker"):
        make_synthetic_corpus(tmp_path / "c", test_utterances_per_speaker=0)
    with pytest.raises(ValueError, match="duration_range"):
        make_synthetic_corpus(tmp_path / "c", duration_range=(3.0, 2.0))
    with pytest.raises(ValueError, match="sample_rate"):
        make_synthetic_corpus(tmp_path / "c", sample_rate=4000)
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------- the voices


def long_term_spectrum(audio, sample_rate=8000):
    _, power = signal.welch(audio, sample_rate, nperseg=256)
    log_power = np.log(power[4:-4] + 1e-12)
    return log_power - log_power.mean()   # level-independent shape


def test_speakers_differ_more_than_utterances_of_one_speaker():
    n_speakers, n_utts = 6, 4
    voices = [random_voice(np.random.default_rng([0, i])) for i in range(n_speakers)]
    spectra = np.array([
        [long_term_spectrum(synthesize_utterance(v, 2.0, 8000, np.random.default_rng([1, i, k])))
         for k in range(n_utts)]
        for i, v in enumerate(voices)
    ])
    dist = np.sqrt(((spectra[:, :, None, None] - spectra[None, None]) ** 2).mean(-1))
    upper = np.triu_indices(n_utts, 1)
    within = np.mean([dist[i, :, i, :][upper].mean() for i in range(n_speakers)])
    between = np.mean([dist[i, :, j, :].mean()
                       for i in range(n_speakers) for j in range(n_speakers) if i != j])
    assert between > 1.15 * within


def test_pitch_follows_the_voice():
    librosa = pytest.importorskip("librosa")
    for index in range(4):
        voice = random_voice(np.random.default_rng([11, index]))
        audio = synthesize_utterance(voice, 3.0, 8000, np.random.default_rng([12, index]))
        f0 = librosa.yin(audio.astype(np.float64), fmin=60, fmax=400, sr=8000,
                         frame_length=1024, hop_length=160)
        rms = librosa.feature.rms(y=audio, frame_length=1024, hop_length=160)[0]
        measured = np.median(f0[rms > 0.3 * rms.max()])  # the loud, mostly voiced frames
        assert abs(12 * np.log2(measured / voice.f0_hz)) < 3.0  # within 3 semitones


def test_voice_parameters_span_the_population():
    voices = [random_voice(np.random.default_rng([5, i])) for i in range(200)]
    f0 = np.array([v.f0_hz for v in voices])
    vtl = np.array([v.vtl_factor for v in voices])
    assert 90 <= f0.min() < 110 and 200 < f0.max() <= 220
    assert np.corrcoef(np.log(f0), vtl)[0, 1] > 0.5   # high voices, short vocal tracts
    assert len({v.breathiness for v in voices}) == 200


def test_synthesize_utterance_is_deterministic_and_validates():
    voice = random_voice(np.random.default_rng(0))
    a = synthesize_utterance(voice, 1.0, 16000, np.random.default_rng(1))
    b = synthesize_utterance(voice, 1.0, 16000, np.random.default_rng(1))
    assert a.dtype == np.float32 and a.shape == (16000,)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="duration"):
        synthesize_utterance(voice, 0.1)
    with pytest.raises(ValueError, match="sample_rate"):
        synthesize_utterance(voice, 1.0, 4000)


def test_default_corpus_size(tmp_path):
    corpus = make_synthetic_corpus(tmp_path / "default")
    assert len(list((corpus.root / "wav").rglob("*.wav"))) == 8 * 16 + 10 * (5 + 12)
    labels = [row[2] for row in read_table(corpus.trials)]
    assert len(labels) == 10 * 120 and labels.count("target") == 120
