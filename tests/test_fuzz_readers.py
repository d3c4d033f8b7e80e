"""Fuzzing every reader: the only outcomes allowed are success or the documented error.

Readers and their documented error types:

============================================  ===========================================
model files (load_model_file, GMM.load,       ModelFileError (a ValueError)
load_ubm, SpeakerModels.load)
data directories (read_data_dir)              CorpusError
trial lists (read_trials)                     CorpusError
score files (read_scores)                     VerificationError
feature caches (FeatureStore, store[utt])     FeatureStoreError
audio (read_audio)                            FeatureError
============================================  ===========================================

CI runs a bounded number of examples per reader (about 30 s in all on a 2-core machine);
``scripts/fuzz_readers.py`` runs the same targets for longer
(``SPEAKERGMM_FUZZ_EXAMPLES``). Fuzzed text never holds ``|``: a Kaldi ``wav.scp`` line
ending in a pipe names a command, and a fuzzer must not write commands.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speakergmm.corpus import CorpusError, read_data_dir, read_trials
from speakergmm.features import FeatureConfig, FeatureStore, FeatureStoreError
from speakergmm.features.audio import FeatureError, read_audio
from speakergmm.io import ModelFileError, load_model_file
from speakergmm.mixture import GMM
from speakergmm.verification import SpeakerModels, VerificationError, load_ubm, save_ubm
from speakergmm.verification.pipeline import read_scores

EXAMPLES = int(os.environ.get("SPEAKERGMM_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="SPEAKERGMM_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="speakergmm-fuzz-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _expect(errors: type | tuple[type, ...], call, *args) -> None:
    """Run ``call``: success, or one of ``errors`` with a message; anything else fails."""
    try:
        call(*args)
    except errors as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None, insert: bytes) -> bytes:
    buf = bytearray(data)
    for position, value in edits:
        if buf:
            buf[position % len(buf)] = value
    if insert and buf:
        at = edits[0][0] % len(buf) if edits else 0
        buf[at:at] = insert
    if cut is not None and buf:
        del buf[cut % len(buf):]
    return bytes(buf)


MUTATIONS = st.tuples(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8),
                      st.none() | st.integers(0, 1 << 20), st.binary(max_size=16))


# ------------------------------------------------------------------ model files
def _gmm() -> GMM:
    return GMM(np.array([0.25, 0.75]), np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[1.0, 2.0], [0.5, 1.5]]))


@pytest.fixture(scope="module")
def model_bytes(workdir):
    save_ubm(workdir / "ubm.npz", _gmm())
    SpeakerModels(["a", "b"], np.zeros((2, 2, 2)), None, None, _gmm().fingerprint(), "diag").save(
        workdir / "spk.npz")
    return {"ubm": (workdir / "ubm.npz").read_bytes(), "spk": (workdir / "spk.npz").read_bytes()}


def _load_all_models(path: Path) -> None:
    _expect(ModelFileError, load_ubm, path)
    _expect(ModelFileError, SpeakerModels.load, path)
    _expect(ModelFileError, load_model_file, path, "speakergmm.GMM")


@FUZZ
@given(which=st.sampled_from(["ubm", "spk"]), mutation=MUTATIONS)
def test_model_files_with_mutated_bytes(model_bytes, workdir, which, mutation):
    path = workdir / "mutated.npz"
    path.write_bytes(_mutate(model_bytes[which], *mutation))
    _load_all_models(path)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=12)
ARRAYS = st.one_of(
    st.builds(lambda shape, fill: np.full(shape, fill), st.lists(st.integers(0, 3), max_size=4).map(tuple),
              st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 5)),
    st.sampled_from([np.array("diag"), np.array("full"), np.array("banana"), np.array(["diag", "x"]),
                     np.array(b"diag"), np.array([True, False]), np.zeros((2, 2), dtype=np.complex64)]),
)
NAMES = st.sampled_from(["covariance_type", "weights", "means", "covariances", "speaker_ids", "n_frames",
                         "variance_floor", "history", "other"])


@FUZZ
@given(header=st.fixed_dictionaries({}, optional={
           "format": st.sampled_from(["speakergmm.GMM", "speakergmm.SpeakerModels"]) | JSON,
           "version": st.just(1) | JSON, "meta": JSON | st.dictionaries(
               st.sampled_from(["ubm_fingerprint", "covariance_type", "feature_config", "info", "adapt",
                                "fingerprint", "role"]), JSON, max_size=4)}),
       arrays=st.dictionaries(NAMES, ARRAYS, max_size=6), raw_header=st.booleans())
def test_model_files_with_mutated_headers_and_arrays(workdir, header, arrays, raw_header):
    base = {**_gmm().to_arrays(), "speaker_ids": np.array(["a", "b"])}
    base.update(arrays)
    path = workdir / "structured.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in base.items():
            archive.writestr(f"{name}.npy", _npy(value))
        text = json.dumps(header)
        archive.writestr("__meta__.npy", _npy(np.array(text if not raw_header else text[: len(text) // 2])))
    _load_all_models(path)


# ------------------------------------------------------------------ data directories, trials, scores
TOKENS = st.sampled_from(list("ab12 \t\n-_.x/é\x00\r") + ["target", "nontarget", " 1.5", " nan", " inf",
                                                            "a1", "b1", "\n"])
TEXT = st.lists(TOKENS, max_size=40).map("".join)


@FUZZ
@given(wav=TEXT, utt2spk=TEXT, spk2utt=st.none() | TEXT, raw=st.none() | st.binary(max_size=64))
def test_data_directories(workdir, wav, utt2spk, spk2utt, raw):
    data = workdir / "data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    if raw is not None and b"|" not in raw:
        (data / "wav.scp").write_bytes(raw)
    else:
        (data / "wav.scp").write_text(wav, encoding="utf-8")
    (data / "utt2spk").write_text(utt2spk, encoding="utf-8")
    if spk2utt is not None:
        (data / "spk2utt").write_text(spk2utt, encoding="utf-8")
    _expect(CorpusError, read_data_dir, data)


@FUZZ
@given(text=TEXT, raw=st.none() | st.binary(max_size=64))
def test_trial_lists(workdir, text, raw):
    path = workdir / "trials"
    if raw is None:
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(raw)
    _expect(CorpusError, read_trials, path)
    _expect(CorpusError, read_trials, path, ["a", "b"], ["a1", "b1"])


@FUZZ
@given(text=TEXT, raw=st.none() | st.binary(max_size=64), trials=st.none() | TEXT)
def test_score_files(workdir, text, raw, trials):
    path = workdir / "scores"
    if raw is None:
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(raw)
    trials_path = None
    if trials is not None:
        trials_path = workdir / "score-trials"
        trials_path.write_text(trials, encoding="utf-8")
    _expect(VerificationError, read_scores, path, trials_path)


# ------------------------------------------------------------------ feature-store indexes
@pytest.fixture(scope="module")
def feature_cache(workdir):
    """A small valid cache written by hand in the layout extract_data_dir uses."""
    config = FeatureConfig()
    out = workdir / "cache"
    (out / "feats").mkdir(parents=True)
    config.save(out / "config.json")
    rng = np.random.default_rng(0)
    np.save(out / "feats" / "run-00000.npy", rng.normal(size=(30, config.n_features)).astype(np.float32))
    index = {"format": "speakergmm.FeatureCache", "version": 1, "config_hash": config.hash(),
             "n_features": config.n_features, "data_dir": None,
             "utterances": {"u1": {"shard": "run-00000.npy", "row": 0, "n_frames": 10},
                            "u2": {"shard": "run-00000.npy", "row": 10, "n_frames": 20}}}
    return out, index


def _read_store(path: Path) -> None:
    store = FeatureStore(path)
    for utt in list(store):
        store[utt]
    store.concatenate()


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(["format", "version", "config_hash", "utterances",
                                                   "u1", "u2", "shard", "row", "n_frames"]), JSON
                                  | st.sampled_from(["../../x.npy", "/etc/passwd", "run-00000.npy", -1,
                                                     10**12, "."])), max_size=4),
       raw=st.none() | st.binary(max_size=48),
       config_changes=st.dictionaries(st.sampled_from(["format", "version", "hash", "config", "sample_rate",
                                                       "n_mfcc", "vad", "cmvn"]), JSON, max_size=3))
def test_feature_store_indexes(feature_cache, workdir, changes, raw, config_changes):
    source, index = feature_cache
    path = workdir / "cache-copy"
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(source, path)
    index = json.loads(json.dumps(index))
    for key, value in changes:
        utterances = index.get("utterances")
        if key in ("u1", "u2"):
            if isinstance(utterances, dict):
                utterances[key] = value
        elif key in ("shard", "row", "n_frames"):
            if isinstance(utterances, dict) and isinstance(utterances.get("u1"), dict):
                utterances["u1"][key] = value
        else:
            index[key] = value
    text = json.dumps(index) if raw is None else raw
    (path / "index.json").write_bytes(text.encode() if isinstance(text, str) else text)
    if config_changes:
        config = json.loads((path / "config.json").read_text())
        for key, value in config_changes.items():
            target = config.get("config") if key not in ("format", "version", "hash", "config") else config
            if isinstance(target, dict):
                target[key] = value
        (path / "config.json").write_text(json.dumps(config))
    _expect(FeatureStoreError, _read_store, path)


@pytest.mark.parametrize("name", ["index.json", "config.json", "report.json"])
def test_feature_store_json_nested_too_deeply(feature_cache, workdir, name):
    source, index = feature_cache
    path = workdir / "cache-deep"
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(source, path)
    (path / "index.json").write_text(json.dumps(index))
    (path / name).write_text("[" * 100000 + "]" * 100000)
    _expect(FeatureStoreError, _read_store, path)
    _expect(FeatureStoreError, lambda p: FeatureStore(p).skipped, path)


@FUZZ
@given(mutation=MUTATIONS)
def test_feature_store_shards_with_mutated_bytes(feature_cache, workdir, mutation):
    source, index = feature_cache
    path = workdir / "cache-shard"
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(source, path)
    (path / "index.json").write_text(json.dumps(index))
    shard = path / "feats" / "run-00000.npy"
    shard.write_bytes(_mutate(shard.read_bytes(), *mutation))
    _expect(FeatureStoreError, _read_store, path)


# ------------------------------------------------------------------ audio headers
@pytest.fixture(scope="module")
def wav_bytes(workdir):
    import soundfile

    rng = np.random.default_rng(1)
    soundfile.write(workdir / "ok.wav", rng.normal(scale=0.2, size=800), 8000, subtype="PCM_16")
    return (workdir / "ok.wav").read_bytes()


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.none() | st.integers(0, 1700))
def test_audio_with_mutated_headers(wav_bytes, workdir, edits, cut):
    path = workdir / "mutated.wav"
    path.write_bytes(_mutate(wav_bytes, edits, cut, b""))
    _expect(FeatureError, read_audio, path, 8000)


@pytest.fixture(scope="module")
def estimator_files(workdir):
    from speakergmm import BayesianGaussianMixture, GaussianMixture
    from speakergmm.hmm import GMMHMM, WordRecognizer

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(60, 2)), rng.normal(loc=4.0, size=(60, 2))])
    GaussianMixture(2, covariance_type="diag", random_state=0).fit(X).save(workdir / "gm.npz")
    BayesianGaussianMixture(n_components=2, covariance_type="diag", random_state=0,
                            max_iter=20).fit(X).save(workdir / "bgm.npz")
    words = {w: [rng.normal(loc=3 * i, size=(12, 2)) for _ in range(3)] for i, w in enumerate("ab")}
    WordRecognizer(hmm=GMMHMM(n_states=2, n_components=1, n_iter=2)).fit(words).save(workdir / "rec.npz")
    return workdir


def _loaders():
    from speakergmm import BayesianGaussianMixture, GaussianMixture
    from speakergmm.hmm import WordRecognizer

    return {"gm.npz": GaussianMixture.load, "bgm.npz": BayesianGaussianMixture.load,
            "rec.npz": WordRecognizer.load}


@FUZZ
@given(which=st.sampled_from(["gm.npz", "bgm.npz", "rec.npz"]), data=st.data())
def test_estimator_files_with_fuzzed_metadata(estimator_files, workdir, which, data):
    """Every metadata field of a saved estimator replaced by arbitrary JSON: the loader
    succeeds or raises ModelFileError naming the file (no TypeError or AttributeError)."""
    with zipfile.ZipFile(estimator_files / which) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = json.loads(str(np.load(io.BytesIO(members["__meta__.npy"]), allow_pickle=False)))
    meta = header["meta"]
    fields = data.draw(st.lists(st.sampled_from(sorted(meta)), min_size=1, max_size=3, unique=True))
    for field in fields:
        meta[field] = data.draw(JSON)
    members["__meta__.npy"] = _npy(np.array(json.dumps(header)))
    path = workdir / f"fuzzed-{which}"
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in members.items():
            archive.writestr(name, value)
    try:
        _loaders()[which](path)
    except ModelFileError as exc:
        assert str(path) in str(exc)
