"""Features in and out in Kaldi's formats (kaldiio), features computed elsewhere used as they
are by train-ubm / enroll / score, and caches of another configuration never overwritten."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speakergmm.cli import main
from speakergmm.corpus import make_data_dir
from speakergmm.features import FeatureConfig, FeatureStore, extract_data_dir
from speakergmm.features.external import KaldiFeatures, NpyFeatures, open_feature_dir

kaldiio = pytest.importorskip("kaldiio")

SPEAKERS = ("george", "jackson", "lucas", "nicolas")


@pytest.fixture(scope="module")
def small(fsdd, tmp_path_factory) -> dict[str, Path]:
    """UBM, enrolment and test data directories on FSDD, plus a trial list."""
    root = tmp_path_factory.mktemp("kaldi-io")
    dirs = {
        "ubm": make_data_dir(fsdd, root / "ubm", select=lambda f: f["speaker"] in SPEAKERS
                             and int(f["index"]) < 4 and int(f["digit"]) < 5).out_dir,
        "enroll": make_data_dir(fsdd, root / "enroll", select=lambda f: f["speaker"] in ("theo", "yweweler")
                                and int(f["index"]) < 2 and int(f["digit"]) < 4).out_dir,
        "test": make_data_dir(fsdd, root / "test", select=lambda f: f["speaker"] in ("theo", "yweweler")
                              and f["index"] == "30" and int(f["digit"]) < 3).out_dir,
    }
    test = sorted((root / "test" / "utt2spk").read_text().split("\n")[:-1])
    trials = "".join(f"{spk} {line.split()[0]} {'target' if line.split()[1] == spk else 'nontarget'}\n"
                     for spk in ("theo", "yweweler") for line in test)
    (root / "trials").write_text(trials)
    dirs["trials"] = root / "trials"
    dirs["root"] = root
    return dirs


def test_features_round_trip_through_kaldi_ark(small, tmp_path, capsys):
    out = tmp_path / "kaldi"
    assert main(["features", str(small["ubm"]), str(out), "--format", "kaldi", "--n-mfcc", "13"]) == 0
    assert "feats.ark" in capsys.readouterr().err
    assert (out / "feats.ark").is_file() and (out / "feats.scp").is_file()
    ours = FeatureStore(out / ".speakergmm-cache")
    loaded = dict(kaldiio.load_scp(str(out / "feats.scp")))
    assert sorted(loaded) == ours.utterances and len(loaded) == 80
    for utt in ours.utterances:
        np.testing.assert_array_equal(loaded[utt], ours[utt])   # float32 both ways: exact
    # and the directory reads back as a data directory whose features are those
    data, store = open_feature_dir(out)
    assert isinstance(store, KaldiFeatures) and store.config == FeatureConfig(n_mfcc=13)
    assert data.speakers == sorted(SPEAKERS) and store.n_frames(ours.utterances[0]) == len(ours[ours.utterances[0]])
    np.testing.assert_array_equal(store[ours.utterances[3]], ours[ours.utterances[3]])


def _kaldi_mfcc_ark(data_dir: Path, out: Path) -> Path:
    """A Kaldi data directory with features from kaldi-native-fbank (not from speakergmm),
    written by kaldiio: what a Kaldi recipe's make_mfcc.sh leaves."""
    import soundfile as sf

    knf = pytest.importorskip("kaldi_native_fbank")
    out.mkdir(parents=True)
    wav = dict(line.split(None, 1) for line in (data_dir / "wav.scp").read_text().splitlines())
    ark, scp = out / "raw_mfcc.ark", out / "feats.scp"
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
        for utt in sorted(wav):
            samples, rate = sf.read(wav[utt], dtype="int16")
            opts = knf.MfccOptions()
            opts.frame_opts.samp_freq = rate
            opts.frame_opts.dither = 0.0
            mfcc = knf.OnlineMfcc(opts)
            mfcc.accept_waveform(rate, samples.astype(np.float32).tolist())
            mfcc.input_finished()
            X = np.array([mfcc.get_frame(i) for i in range(mfcc.num_frames_ready)], dtype=np.float32)
            writer(utt, X - X.mean(axis=0))  # CMN, as apply-cmvn would
    for name in ("utt2spk", "spk2utt"):
        (out / name).write_text((data_dir / name).read_text())
    return out


def test_kaldi_ark_features_train_enroll_score_without_extraction(small, tmp_path, monkeypatch, capsys):
    from speakergmm.features import store as store_module
    from speakergmm.verification.ubm import load_ubm

    kaldi = {name: _kaldi_mfcc_ark(small[name], tmp_path / f"k-{name}") for name in ("ubm", "enroll", "test")}

    def no_extraction(*args, **kwargs):
        raise AssertionError("features were extracted again")

    monkeypatch.setattr(store_module, "_extract_data_dir", no_extraction)
    exp = tmp_path / "exp"
    common = ["-j", "1", "-q"]
    assert main(["train-ubm", "--data", str(kaldi["ubm"]), "--out", str(exp / "ubm.npz"), "-k", "8",
                 "--final-iter", "3", "--iter-per-split", "2", *common]) == 0, capsys.readouterr().err
    ubm, meta = load_ubm(exp / "ubm.npz")
    assert ubm.n_features == 13 and meta.get("feature_config") is None
    assert main(["enroll", "--data", str(kaldi["enroll"]), "--ubm", str(exp / "ubm.npz"),
                 "--out", str(exp / "speakers.npz"), *common]) == 0, capsys.readouterr().err
    assert main(["score", "--data", str(kaldi["test"]), "--ubm", str(exp / "ubm.npz"),
                 "--models", str(exp / "speakers.npz"), "--trials", str(small["trials"]),
                 "--out", str(exp / "scores.txt"), *common]) == 0, capsys.readouterr().err
    lines = (exp / "scores.txt").read_text().splitlines()
    assert len(lines) == 2 * len((small["test"] / "utt2spk").read_text().splitlines()) and all(np.isfinite(float(line.split()[2])) for line in lines)
    assert not (exp / "features").exists()  # nothing cached: the ark was read as it is

    # audio for a UBM trained on features computed elsewhere: refused, saying what to give
    code = main(["enroll", "--data", str(small["enroll"]), "--ubm", str(exp / "ubm.npz"),
                 "--out", str(exp / "other.npz"), *common])
    err = capsys.readouterr().err
    assert code == 1 and "holds audio, but no feature configuration is known" in err and "feats.scp" in err


def test_npy_folder_and_cache_as_data(small, tmp_path, capsys):
    cache = tmp_path / "cache"
    extract_data_dir(small["ubm"], cache, FeatureConfig(n_mfcc=13, delta_order=1))
    npy = tmp_path / "npy"
    npy.mkdir()
    store = FeatureStore(cache)
    for utt in store.utterances:
        np.save(npy / f"{utt}.npy", store[utt])
    (npy / "utt2spk").write_text((cache / "utt2spk").read_text())
    data, opened = open_feature_dir(npy)
    assert isinstance(opened, NpyFeatures) and opened.config is None and data.speakers == sorted(SPEAKERS)
    data_c, opened_c = open_feature_dir(cache)
    assert isinstance(opened_c, FeatureStore) and data_c.utt2spk == data.utt2spk
    for source, name in ((npy, "npy"), (cache, "cache")):
        out = tmp_path / f"{name}.npz"
        code = main(["train-ubm", "--data", str(source), "--out", str(out), "-k", "4", "--final-iter", "2",
                     "--iter-per-split", "1", "-j", "1", "-q"])
        assert code == 0, capsys.readouterr().err
        assert not (tmp_path / "features").exists()
    from speakergmm.verification.ubm import load_ubm

    assert load_ubm(tmp_path / "cache.npz")[1]["feature_config"] == FeatureConfig(n_mfcc=13, delta_order=1).to_dict()
    assert load_ubm(tmp_path / "npy.npz")[0].n_features == 26


def test_a_users_cache_is_used_as_it_is_and_never_overwritten(small, tmp_path, capsys):
    """The reported failure: `--feats DIR` re-extracted a user's 13-coefficient features
    with the 60-dimensional defaults, silently."""
    feats = tmp_path / "mine"
    mine = FeatureConfig(n_mfcc=13, delta_order=0)
    extract_data_dir(small["ubm"], feats, mine)
    before = (feats / "index.json").read_text()
    out = tmp_path / "ubm.npz"
    code = main(["train-ubm", "--data", str(small["ubm"]), "--feats", str(feats), "--out", str(out),
                 "-k", "4", "--final-iter", "2", "--iter-per-split", "1", "-j", "1", "-q"])
    assert code == 0, capsys.readouterr().err
    from speakergmm.verification.ubm import load_ubm

    assert load_ubm(out)[0].n_features == 13 and (feats / "index.json").read_text() == before
    # asking for another configuration explicitly: refused, naming the settings
    code = main(["train-ubm", "--data", str(small["ubm"]), "--feats", str(feats), "--out", str(out),
                 "--sample-rate", "16000", "-j", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "another configuration" in err and "sample_rate 8000 in the cache, 16000 asked for" in err
    assert "n_mfcc 13 in the cache, 20 asked for" in err
    code = main(["features", str(small["ubm"]), str(feats)])
    err = capsys.readouterr().err
    assert code == 1 and "n_mfcc 13 in the cache, 20 asked for" in err
    assert (feats / "index.json").read_text() == before and FeatureStore(feats).config == mine


def test_verify_with_a_changed_configuration_keeps_both_caches(small, tmp_path, capsys):
    args = ["verify", "--ubm-data", str(small["ubm"]), "--enroll-data", str(small["enroll"]),
            "--test-data", str(small["test"]), "--trials", str(small["trials"]), "--out", str(tmp_path / "v"),
            "-k", "4", "--final-iter", "2", "--iter-per-split", "1", "-j", "1", "-q"]
    assert main(args) == 0, capsys.readouterr().err
    config = tmp_path / "c.json"
    FeatureConfig(n_mfcc=13).save(config)
    assert main(args + ["--feature-config", str(config)]) == 0, capsys.readouterr().err
    caches = sorted(p.name for p in (tmp_path / "v" / "features").iterdir())
    assert len(caches) == 6 and "ubm" in caches  # the first run's three, and three beside them
    assert FeatureStore(tmp_path / "v" / "features" / "ubm").config == FeatureConfig()


def test_verify_on_feats_scp_directories_equals_verify_on_audio(small, tmp_path, capsys):
    """Features written as Kaldi ark/scp and read back give the scores of the audio itself."""
    for name in ("ubm", "enroll", "test"):
        assert main(["features", str(small[name]), str(tmp_path / f"ark-{name}"), "--format", "kaldi",
                     "--n-mfcc", "13"]) == 0
    capsys.readouterr()
    config = tmp_path / "c.json"
    FeatureConfig(n_mfcc=13).save(config)
    common = ["--trials", str(small["trials"]), "-k", "8", "--final-iter", "3", "--iter-per-split", "2",
              "-j", "1", "-q"]
    assert main(["verify", "--ubm-data", str(small["ubm"]), "--enroll-data", str(small["enroll"]),
                 "--test-data", str(small["test"]), "--out", str(tmp_path / "audio"),
                 "--feature-config", str(config), *common]) == 0, capsys.readouterr().err
    assert main(["verify", "--ubm-data", str(tmp_path / "ark-ubm"), "--enroll-data", str(tmp_path / "ark-enroll"),
                 "--test-data", str(tmp_path / "ark-test"), "--out", str(tmp_path / "ark"), *common]) == 0, \
        capsys.readouterr().err
    assert not (tmp_path / "ark" / "features").exists()
    read = lambda run: [float(line.split()[2]) for line in (tmp_path / run / "scores.txt").read_text().splitlines()]  # noqa: E731
    np.testing.assert_allclose(read("ark"), read("audio"), atol=1e-6)


def test_kaldi_preset_on_the_command_line_equals_kaldi_native_fbank(small, tmp_path, monkeypatch, capsys):
    """`--preset kaldi --format kaldi` written with a relative ark path, read from elsewhere."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_kaldi_mfcc import kaldi_mfcc

    monkeypatch.chdir(tmp_path)
    assert main(["features", str(small["test"]), "mfcc", "--preset", "kaldi", "--format", "kaldi"]) == 0
    capsys.readouterr()
    scp = (tmp_path / "mfcc" / "feats.scp").read_text().splitlines()
    offsets = [(line.split()[0], line.rsplit(":", 1)[1]) for line in scp]
    # as a Kaldi recipe has it: ark paths relative to the recipe's directory (the working one)
    (tmp_path / "mfcc" / "feats.scp").write_text("".join(f"{u} mfcc/feats.ark:{o}\n" for u, o in offsets))
    data, store = open_feature_dir(tmp_path / "mfcc")
    first = data.utterances[0]
    assert data.feats[first] == f"{tmp_path / 'mfcc' / 'feats.ark'}:{dict(offsets)[first]}"
    # relative to the data directory, read from elsewhere
    (tmp_path / "mfcc" / "feats.scp").write_text("".join(f"{u} feats.ark:{o}\n" for u, o in offsets))
    monkeypatch.chdir(tmp_path.parent)
    data, store = open_feature_dir(tmp_path / "mfcc")
    from speakergmm.corpus import read_data_dir

    audio = read_data_dir(small["test"])
    assert store.config == FeatureConfig.kaldi(sample_rate=8000)
    for utt in audio.utterances:
        ref = kaldi_mfcc(Path(audio.wav[utt]))
        assert store[utt].shape == ref.shape
        assert np.abs(store[utt] - ref).max() < 1e-3


def test_a_kaldi_or_npy_folder_is_never_written_into_as_a_cache(small, tmp_path):
    from speakergmm.features import FeatureStoreError, cache_beside

    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "u.npy", np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(FeatureStoreError, match="not a feature cache"):
        extract_data_dir(small["test"], folder)
    assert sorted(p.name for p in folder.iterdir()) == ["u.npy"]
    assert cache_beside(folder, FeatureConfig()) != folder
