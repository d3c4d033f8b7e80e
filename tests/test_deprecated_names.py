"""Former parameter names (the glossary in docs/architecture.md) keep working, with a warning,
and mean exactly what the current names mean."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from speakergmm.hmm import GMMHMM, WordRecognizer
from speakergmm.mixture import GaussianMixture, clone, select_mixture


def _sequences(seed: int, n: int = 6, length: int = 30, shift: float = 0.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        # three segments with different means: something for a 3-state left-to-right model
        parts = [rng.normal(loc=m + shift, size=(length // 3, 2)) for m in (-3.0, 0.0, 3.0)]
        out.append(np.concatenate(parts))
    return out


def test_gmmhmm_grow_iter_is_a_deprecated_alias_of_iter_per_split():
    seqs = _sequences(0)
    params = dict(n_states=3, n_components=2, grow_mixtures=True, n_iter=2, random_state=0)
    new = GMMHMM(iter_per_split=2, **params).fit(seqs)
    with pytest.warns(DeprecationWarning, match="use iter_per_split"):
        old = GMMHMM(grow_iter=2, **params).fit(seqs)
    np.testing.assert_array_equal(old.means_, new.means_)
    assert old.split_points_ == new.split_points_ == [2]
    # different from another number of iterations per split: the alias is really used
    other = GMMHMM(iter_per_split=1, **params).fit(seqs)
    assert other.split_points_ == [1]
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="grow_iter must be"):
        GMMHMM(grow_iter=-1, **params).fit(seqs)
    with pytest.raises(ValueError, match="iter_per_split must be"):
        GMMHMM(iter_per_split=1.5, **params).fit(seqs)
    # set_params reaches the former name too (scikit-learn's convention for renamed parameters)
    model = GMMHMM(**params).set_params(grow_iter=2)
    with pytest.warns(DeprecationWarning):
        model.fit(seqs)
    assert model.split_points_ == [2]


def test_gmmhmm_files_saved_with_grow_iter_load_as_iter_per_split(tmp_path):
    model = GMMHMM(n_states=3, n_components=2, grow_mixtures=True, iter_per_split=3, n_iter=1).fit(_sequences(1))
    arrays, meta = model.to_arrays()
    meta["params"].pop("iter_per_split")
    meta["params"]["grow_iter"] = 3  # as written before the rename
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = GMMHMM.from_arrays(arrays, meta)
    assert loaded.iter_per_split == 3 and loaded.grow_iter is None


def test_word_recognizer_n_jobs_is_a_deprecated_alias_of_jobs():
    data = {"a": _sequences(2, n=3), "b": _sequences(3, n=3, shift=1.0)}
    hmm = GMMHMM(n_states=3, n_components=1, n_iter=2)
    with pytest.warns(FutureWarning, match="use jobs"):
        old = WordRecognizer(hmm=hmm, n_jobs=1)
    assert old.jobs == 1 and "n_jobs" not in old.get_params()
    new = WordRecognizer(hmm=hmm, jobs=1).fit(data)
    old.fit(data)
    test = _sequences(4, n=2)
    np.testing.assert_array_equal(old.log_likelihoods(test), new.log_likelihoods(test))
    with pytest.raises(TypeError, match="not also its deprecated alias n_jobs"):
        WordRecognizer(hmm=hmm, jobs=2, n_jobs=2)


def test_word_recognizer_files_saved_with_n_jobs_load(tmp_path):
    data = {"a": _sequences(5, n=3), "b": _sequences(6, n=3, shift=1.0)}
    rec = WordRecognizer(hmm=GMMHMM(n_states=3, n_components=1, n_iter=1), jobs=1).fit(data)
    path = tmp_path / "words.npz"
    rec.save(path)
    from speakergmm.hmm.recognizer import FORMAT, VERSION
    from speakergmm.io import load_model_file, save_model_file

    arrays, meta, _ = load_model_file(path, FORMAT, (VERSION,))
    meta["params"]["n_jobs"] = 2  # a former name among the saved parameters
    meta["params"]["hmm"]["grow_iter"] = meta["params"]["hmm"].pop("iter_per_split")
    save_model_file(path, FORMAT, VERSION, arrays, meta)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = WordRecognizer.load(path)
    assert loaded.jobs == 2 and loaded.hmm.iter_per_split == 4 and loaded.hmm.grow_iter is None


def test_unfitted_copy_is_a_deprecated_alias_of_clone():
    from speakergmm.hmm.recognizer import unfitted_copy

    hmm = GMMHMM(n_states=4, n_components=2, n_iter=3)
    with pytest.warns(DeprecationWarning, match="speakergmm.mixture.clone"):
        copy = unfitted_copy(hmm, n_iter=7)
    assert copy.get_params() == clone(hmm, n_iter=7).get_params() == {**hmm.get_params(), "n_iter": 7}


def test_select_mixture_progress_is_a_deprecated_alias_of_show_progress(capsys):
    X = np.random.default_rng(0).normal(size=(200, 2))
    with pytest.warns(DeprecationWarning, match="use show_progress"):
        old = select_mixture(X, [1, 2], "diag", random_state=0, progress=False)
    new = select_mixture(X, [1, 2], "diag", random_state=0, show_progress=False)
    assert [r["bic"] for r in old.rows] == [r["bic"] for r in new.rows]


def test_extract_data_dir_progress_is_a_deprecated_alias_of_show_progress(tmp_path):
    from speakergmm.features.store import extract_data_dir

    with pytest.warns(DeprecationWarning, match="extract_data_dir\\(progress=...\\) is deprecated"):
        # the warning comes before anything is read: a missing data directory still raises
        with pytest.raises(Exception):
            extract_data_dir(tmp_path / "missing", tmp_path / "feats", progress=False)


def test_random_state_accepts_every_convention():
    """GMMHMM.sample and DensityAnomalyDetector go through check_random_state: an int, a
    Generator and a RandomState all work, and the same int gives the same draws."""
    from speakergmm.mixture import DensityAnomalyDetector

    model = GMMHMM(n_states=3, n_components=1, n_iter=1).fit(_sequences(7))
    a, _ = model.sample(20, random_state=3)
    b, _ = model.sample(20, random_state=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    c, _ = model.sample(20, random_state=np.random.RandomState(3))
    assert c.shape == a.shape
    X = np.random.default_rng(1).normal(size=(300, 2))
    for seed in (0, np.random.default_rng(0), np.random.RandomState(0)):
        detector = DensityAnomalyDetector(GaussianMixture(1, random_state=0), random_state=seed).fit(X)
        assert np.isfinite(detector.threshold_)


def test_hmm_train_grow_iterations_flag_is_iter_per_split():
    from speakergmm.cli import build_parser

    parser = build_parser()
    base = ["hmm", "train", "--data", "d", "--out", "m"]
    assert parser.parse_args(base + ["--grow-iterations", "3"]).iter_per_split == 3
    assert parser.parse_args(base + ["--iter-per-split", "2"]).iter_per_split == 2
    assert parser.parse_args(base).iter_per_split == 4
