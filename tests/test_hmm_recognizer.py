"""WordRecognizer: API, priors, errors, model files; end to end on a subset of FSDD."""

from __future__ import annotations

import numpy as np
import pytest

from speakergmm.hmm import GMMHMM, NoPathError, Topology, WordRecognizer
from speakergmm.hmm.recognizer import DEFAULT_HMM_PARAMS
from speakergmm.io import ModelFileError, load_model_file, save_model_file
from speakergmm.mixture import GMM

WORDS = ("alpha", "bravo", "charlie")


def _hmm(**params) -> GMMHMM:
    """The recogniser's default word model with some parameters changed."""
    return GMMHMM(**{**DEFAULT_HMM_PARAMS, **params})


def _word_hmm(offset: float) -> GMMHMM:
    topo = Topology.left_to_right(3)
    trans = np.array([[0.8, 0.2, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(int(offset * 10) + 1)
    states = [GMM([1.0], rng.normal(size=(1, 3)) * 2 + offset, np.ones((1, 3)) * 0.5) for _ in range(3)]
    return GMMHMM.from_parameters(states, topo.startprob, trans, topology=topo)


@pytest.fixture(scope="module")
def corpus():
    generators = {w: _word_hmm(float(i)) for i, w in enumerate(WORDS)}
    rng = np.random.default_rng(0)

    def draw(word, n):
        return [generators[word].sample(int(rng.integers(12, 30)), random_state=int(rng.integers(2**31)))[0]
                for _ in range(n)]

    train = {w: draw(w, 25) for w in WORDS}
    test_X, test_y = [], []
    for w in WORDS:
        seqs = draw(w, 10)
        test_X += seqs
        test_y += [w] * len(seqs)
    return train, test_X, test_y


@pytest.fixture(scope="module")
def recognizer(corpus):
    train, _, _ = corpus
    return WordRecognizer(hmm=_hmm(n_states=3, n_components=1, n_iter=5)).fit(train)


def test_recognises_synthetic_words(recognizer, corpus):
    _, X, y = corpus
    assert recognizer.words_ == list(WORDS)
    assert recognizer.score(X, y) >= 0.95
    log_post = recognizer.predict_log_proba(X)
    assert log_post.shape == (len(X), len(WORDS))
    np.testing.assert_allclose(np.exp(log_post).sum(axis=1), 1.0)
    ll = recognizer.log_likelihoods(X)
    np.testing.assert_allclose(ll[0], [recognizer.models_[w].score(X[0]) for w in WORDS])
    assert list(recognizer.predict(X)) == [WORDS[i] for i in np.argmax(ll, axis=1)]


def test_viterbi_scoring_and_alignment(corpus, recognizer):
    train, X, y = corpus
    rec = WordRecognizer(hmm=_hmm(n_states=3, n_components=1, n_iter=5), scoring="viterbi").fit(train)
    assert rec.score(X, y) >= 0.95
    # The best path never scores above the total likelihood.
    assert np.all(rec.log_likelihoods(X) <= recognizer.log_likelihoods(X) + 1e-9)
    score, path = recognizer.align(X[0], y[0])
    assert path[0] == 0 and path[-1] == 2 and np.all(np.diff(path) >= 0)


def test_priors(corpus):
    train, X, y = corpus
    only_alpha = WordRecognizer(hmm=_hmm(n_states=3, n_components=1, n_iter=2),
                                priors={"alpha": 1.0, "bravo": 0.0, "charlie": 0.0}).fit(train)
    assert set(only_alpha.predict(X)) == {"alpha"}
    unbalanced = dict(train, alpha=train["alpha"][:5])
    empirical = WordRecognizer(hmm=_hmm(n_states=3, n_components=1, n_iter=2), priors="empirical").fit(unbalanced)
    np.testing.assert_allclose(np.exp(empirical.log_priors_), np.array([5, 25, 25]) / 55)
    with pytest.raises(ValueError, match="unknown word"):
        WordRecognizer(hmm=_hmm(n_states=3, n_iter=1), priors={"zulu": 1.0}).fit(train)
    with pytest.raises(ValueError, match="no prior given"):
        WordRecognizer(hmm=_hmm(n_states=3, n_iter=1), priors={"alpha": 1.0}).fit(train)


def test_bad_input(corpus, recognizer):
    train, X, y = corpus
    with pytest.raises(ValueError, match="unknown word label"):
        recognizer.score(X[:2], ["alpha", "delta"])
    with pytest.raises(ValueError, match="unknown word"):
        recognizer.align(X[0], "delta")
    with pytest.raises(ValueError, match="sequence 1 has 2 features, but the model expects 3"):
        recognizer.predict([X[0], np.zeros((10, 2))])
    with pytest.raises(ValueError, match="sequence 0: empty"):
        recognizer.predict([np.zeros((0, 3))], unexplained="raise")
    with pytest.raises(NoPathError, match="sequence 1: no word model can explain it"):
        recognizer.predict([X[0], X[0][:2]], unexplained="raise")  # 2 frames < 3 states
    with pytest.raises(ValueError, match="word 'bravo': no training sequences"):
        WordRecognizer(hmm=_hmm(n_states=3)).fit(dict(train, bravo=[]))
    with pytest.raises(ValueError, match="word 'charlie': sequence 0 has 4 features"):
        WordRecognizer(hmm=_hmm(n_states=3)).fit(dict(train, charlie=[np.zeros((10, 4))]))
    with pytest.raises(ValueError, match="no words"):
        WordRecognizer().fit({})
    with pytest.raises(RuntimeError, match="not trained"):
        WordRecognizer().predict(X)


def test_parallel_training_gives_the_same_models(corpus, recognizer):
    train, X, _ = corpus
    parallel = WordRecognizer(hmm=_hmm(n_states=3, n_components=1, n_iter=5), jobs=2).fit(train)
    np.testing.assert_allclose(parallel.log_likelihoods(X), recognizer.log_likelihoods(X))


def test_save_load(tmp_path, corpus, recognizer):
    _, X, _ = corpus
    path = tmp_path / "words.model"
    recognizer.save(path, meta={"note": "test"})
    loaded = WordRecognizer.load(path)
    assert loaded.words_ == recognizer.words_
    assert loaded.hmm.get_params() == recognizer.hmm.get_params()
    np.testing.assert_array_equal(loaded.log_likelihoods(X), recognizer.log_likelihoods(X))
    arrays, meta, _ = load_model_file(path, "speakergmm.WordRecognizer", (2,))
    save_model_file(tmp_path / "v9.model", "speakergmm.WordRecognizer", 9, arrays, meta)
    with pytest.raises(ModelFileError, match="version 9"):
        WordRecognizer.load(tmp_path / "v9.model")
    recognizer.models_["alpha"].save(tmp_path / "hmm.model")
    with pytest.raises(ModelFileError, match="expected a 'speakergmm.WordRecognizer'"):
        WordRecognizer.load(tmp_path / "hmm.model")
    broken = {k: v for k, v in arrays.items() if not k.startswith("w1.state0.")}
    save_model_file(tmp_path / "broken.model", "speakergmm.WordRecognizer", 2, broken, meta)
    with pytest.raises(ModelFileError, match="corrupt"):
        WordRecognizer.load(tmp_path / "broken.model")
    (tmp_path / "garbage.model").write_bytes(b"not a zip file at all")
    with pytest.raises(ModelFileError):
        WordRecognizer.load(tmp_path / "garbage.model")


def test_word_model_is_copied_per_word(corpus, recognizer):
    train, X, _ = corpus
    template = _hmm(n_states=3, n_components=1, n_iter=5)
    rec = WordRecognizer(hmm=template).fit(train)
    assert not template.__sklearn_is_fitted__()  # the template itself is never fitted
    models = list(rec.models_.values())
    assert len({id(m) for m in models}) == len(WORDS) and all(m is not template for m in models)
    assert all(m.get_params()["n_states"] == 3 for m in models)
    np.testing.assert_array_equal(rec.log_likelihoods(X), recognizer.log_likelihoods(X))
    assert rec.get_params()["hmm__n_states"] == 3  # nested parameters, scikit-learn style
    rec.set_params(hmm__n_iter=2, scoring="viterbi")
    assert template.n_iter == 2 and rec.scoring == "viterbi"
    sklearn_base = pytest.importorskip("sklearn.base")
    copy = sklearn_base.clone(rec)
    assert copy.hmm is not template and copy.hmm.get_params() == template.get_params()
    assert copy.models_ is None and copy.scoring == "viterbi"


def test_deprecated_keywords_still_work(corpus, recognizer):
    train, X, _ = corpus
    with pytest.warns(FutureWarning, match=r"hmm=GMMHMM"):
        old = WordRecognizer(n_states=3, n_components=1, n_iter=5)
    assert old.hmm.get_params() == _hmm(n_states=3, n_components=1, n_iter=5).get_params()
    old.fit(train)
    np.testing.assert_array_equal(old.log_likelihoods(X), recognizer.log_likelihoods(X))
    with pytest.warns(FutureWarning, match="variance_floor_ratio"):
        ratio = WordRecognizer(variance_floor=0.01)
    assert ratio.variance_floor_ratio == 0.01
    with pytest.raises(TypeError, match="n_mixtures"):
        WordRecognizer(n_mixtures=3)


def test_variance_floor_ratio_floors_every_word_model(corpus):
    train, _, _ = corpus
    rec = WordRecognizer(hmm=_hmm(n_states=3, n_components=1, n_iter=3), variance_floor_ratio=0.5).fit(train)
    frames = np.concatenate([x for seqs in train.values() for x in seqs])
    floor = 0.5 * frames.var(axis=0)
    for model in rec.models_.values():
        np.testing.assert_allclose(model.variance_floor, floor)
        assert np.all(model.covars_ >= floor - 1e-9)


def test_loads_version_1_files(tmp_path, corpus, recognizer):
    """Files written before the word model became a parameter (flat keyword settings)."""
    _, X, _ = corpus
    recognizer.save(tmp_path / "new.model")
    arrays, meta, _ = load_model_file(tmp_path / "new.model", "speakergmm.WordRecognizer", (2,))
    flat = dict(meta["params"]["hmm"], variance_floor=None, scoring="forward", priors=None)
    save_model_file(tmp_path / "old.model", "speakergmm.WordRecognizer", 1, arrays, dict(meta, params=flat))
    old = WordRecognizer.load(tmp_path / "old.model")
    assert old.hmm.n_states == 3
    np.testing.assert_array_equal(old.log_likelihoods(X), recognizer.log_likelihoods(X))


# ---------------------------------------------------------------------- FSDD end to end
FSDD_DIGITS = ("0", "1", "2", "3", "4")


@pytest.mark.slow
@pytest.mark.fsdd
def test_fsdd_subset_end_to_end(fsdd, tmp_path):
    """Five digits, all six speakers, recordings 5-19 to train and 0-4 to test, small models.

    Measured: 147/150 correct (98.0%) with these settings (about 7 s); the bound (144/150)
    leaves room for three more errors, since BLAS and platform rounding can move a
    borderline decision."""
    from speakergmm.features import FeatureConfig, extract_features

    config = FeatureConfig()
    train: dict[str, list[np.ndarray]] = {d: [] for d in FSDD_DIGITS}
    test_X, test_y = [], []
    for path in sorted(fsdd.glob("*.wav")):
        digit, _, index = path.stem.split("_")
        if digit not in FSDD_DIGITS or int(index) >= 20:
            continue
        X = extract_features(path, config)
        if int(index) < 5:
            test_X.append(X)
            test_y.append(digit)
        else:
            train[digit].append(X)
    assert len(test_X) == 150 and all(len(v) == 90 for v in train.values())
    rec = WordRecognizer(hmm=_hmm(n_states=5, n_components=2, grow_mixtures=True, iter_per_split=3,
                                  n_iter=4)).fit(train)
    accuracy = rec.score(test_X, test_y)
    assert accuracy >= 0.96
    rec.save(tmp_path / "digits.model")
    assert WordRecognizer.load(tmp_path / "digits.model").score(test_X, test_y) == accuracy
