"""GaussianMixture as an estimator: initialisations, restarts, warm starts, sampling,
online EM, and model files (round trips and refusals)."""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from speakergmm.io import ModelFileError, load_model_file, save_model_file
from speakergmm.mixture import GMM, GaussianMixture
from speakergmm.mixture.em import frame_axes, split_components

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
CENTRES = np.array([[0.0, 0.0], [10.0, 1.0], [3.0, 9.0]])
SCALES = np.array([[1.0, 0.6], [0.5, 1.2], [0.8, 0.8]])

pytestmark = pytest.mark.filterwarnings("ignore::speakergmm.mixture.ConvergenceWarning")


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """Tiny matrices: multi-threaded BLAS only adds overhead (30x on a loaded 2-core box)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """Three well separated 2-D clusters (200 frames each, different shapes), shuffled."""
    rng = np.random.default_rng(0)
    X = np.vstack([c + rng.normal(size=(200, 2)) * s for c, s in zip(CENTRES, SCALES)])
    rng.shuffle(X)
    return X


def _matched(est_means: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Fitted means reordered to the true centres (each centre's nearest mean, distinct)."""
    distance = np.linalg.norm(est_means[:, None] - centres[None], axis=2)
    order = distance.argmin(axis=0)
    assert len(set(order)) == len(centres), f"two centres share a component: {est_means}"
    return est_means[order]


def _assert_recovers(est: GaussianMixture, centres: np.ndarray = CENTRES, atol: float = 0.25):
    np.testing.assert_allclose(_matched(est.means_, centres), centres, atol=atol)


def _random_layout(seed: int, K: int, D: int):
    """K clusters at least 6 units apart in a 20-unit box, 300 frames each."""
    rng = np.random.default_rng(seed)
    while True:
        centres = rng.uniform(-10, 10, size=(K, D))
        if np.min(np.linalg.norm(centres[:, None] - centres[None], axis=2) + 100 * np.eye(K)) > 6:
            break
    labels = rng.integers(K, size=300 * K)
    scales = rng.uniform(0.5, 1.2, size=(K, D))
    return centres, centres[labels] + rng.normal(size=(300 * K, D)) * scales[labels]


# ---------------------------------------------------------------------------- initialisation
_INIT_OPTIONS = {
    "kmeans": {},
    "k-means++": {},
    # A single random start can land in a local optimum (as in scikit-learn); restarts fix it.
    "random_from_data": {"n_init": 5},
    # Random responsibilities start every component at the global mean; EM leaves that
    # saddle slowly, so the convergence threshold must be small.
    "random": {"tol": 1e-6, "max_iter": 500, "n_init": 3},
    "split": {},
}
_INIT_CASES = [
    pytest.param(init, cov, id=f"{init}-{cov}")
    for init in _INIT_OPTIONS for cov in COVARIANCE_TYPES
    # Tied covariances + random responsibilities: a practical fixed point of EM
    # (scikit-learn recovers these blobs from 0 of 10 seeds either).
    if not (init == "random" and cov == "tied")
]


@pytest.mark.parametrize("init_params, covariance_type", _INIT_CASES)
def test_every_init_method_recovers_well_separated_blobs(blobs, init_params, covariance_type):
    est = GaussianMixture(3, covariance_type=covariance_type, init_params=init_params,
                          random_state=0, **_INIT_OPTIONS[init_params]).fit(blobs)
    _assert_recovers(est)
    np.testing.assert_allclose(np.sort(est.weights_), [1 / 3] * 3, atol=0.02)
    assert est.converged_
    assert np.all(np.isfinite(est.covariances_))


def _recovered(est: GaussianMixture, centres: np.ndarray, atol: float = 0.3) -> bool:
    distance = np.linalg.norm(est.means_[:, None] - centres[None], axis=2)
    return bool(distance.min(axis=0).max() < atol)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_split_init_is_as_reliable_as_kmeans_in_random_layouts(covariance_type):
    """Splits of +-0.2 sd along (1, ..., 1) recovered 13-17 of these 20 layouts; along each
    component's widest axis by 0.8 sd (the centroids of a Gaussian's halves) they match k-means."""
    by_kmeans = by_split = 0
    for seed in range(10):
        for K, D in ((3, 2), (4, 3)):
            centres, X = _random_layout(seed + 1000 * K, K, D)
            by_kmeans += _recovered(GaussianMixture(K, covariance_type=covariance_type,
                                                    random_state=0).fit(X), centres)
            by_split += _recovered(GaussianMixture(K, covariance_type=covariance_type,
                                                   init_params="split").fit(X), centres)
    assert by_kmeans >= 18  # the layouts are easy
    assert by_split >= by_kmeans - 1, (by_split, by_kmeans)


def test_split_components_moves_along_the_widest_axis():
    diag = GMM([1.0], [[1.0, 2.0, 3.0]], [[1.0, 4.0, 0.25]], "diag")
    split = split_components(diag, 2, perturbation=0.8, direction="widest")
    np.testing.assert_allclose(split.means, [[1.0, 2.0 - 1.6, 3.0], [1.0, 2.0 + 1.6, 3.0]])
    np.testing.assert_allclose(split.weights, [0.5, 0.5])
    np.testing.assert_array_equal(split.covariances, [[1.0, 4.0, 0.25]] * 2)
    # The default (HTK-style mixing-up, as the GMM-HMM uses): every dimension by 0.2 sd.
    legacy = split_components(diag, 2)
    np.testing.assert_allclose(legacy.means[1] - legacy.means[0], 0.4 * np.sqrt([1.0, 4.0, 0.25]))
    rotation = np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    cov = rotation @ np.diag([9.0, 1.0]) @ rotation.T
    for covariance_type, covariances in (("full", cov[None]), ("tied", cov)):
        split = split_components(GMM([1.0], [[0.0, 0.0]], covariances, covariance_type), 2,
                                 perturbation=0.8, direction="widest")
        np.testing.assert_allclose(np.abs(split.means[1]), 0.8 * 3.0 * np.abs(rotation[:, 0]))
    spherical = split_components(GMM([1.0], [[0.0, 0.0]], [4.0], "spherical"), 2,
                                 perturbation=0.8, direction="widest")
    np.testing.assert_allclose(np.linalg.norm(spherical.means[1]), 0.8 * 2.0)
    # Given axes override the model's; three components from two: the heavier one is split.
    two = GMM([0.7, 0.3], [[0.0, 0.0], [5.0, 5.0]], [[1.0, 1.0], [1.0, 1.0]], "diag")
    three = split_components(two, 3, perturbation=1.0, axes=[[0.0, 2.0], [1.0, 0.0]])
    np.testing.assert_allclose(three.means, [[0.0, -2.0], [5.0, 5.0], [0.0, 2.0]])
    np.testing.assert_allclose(three.weights, [0.35, 0.3, 0.35])
    with pytest.raises(ValueError, match="direction must be one of widest, all; got 'up'"):
        split_components(two, 4, direction="up")
    with pytest.raises(ValueError, match=r"axes must be a finite array of shape \(2, 2\)"):
        split_components(two, 4, axes=np.zeros((3, 2)))


def test_frame_axes_are_the_principal_axes_of_each_components_frames():
    """Spherical components know no shape: the frames' scatter gives their widest axis."""
    rng = np.random.default_rng(0)
    rotation = np.array([[np.cos(1.0), -np.sin(1.0)], [np.sin(1.0), np.cos(1.0)]])
    elongated = (rng.normal(size=(4000, 2)) * [3.0, 0.5]) @ rotation.T
    X = np.vstack([elongated, rng.normal(size=(4000, 2)) * [0.5, 2.0] + [40.0, 0.0]])
    gmm = GMM([0.5, 0.5], [[0.0, 0.0], [40.0, 0.0]], [2.0, 2.0], "spherical")
    axes = frame_axes(gmm, X)
    np.testing.assert_allclose(np.abs(axes[0]), 3.0 * np.abs(rotation[:, 0]), rtol=0.05, atol=0.05)
    np.testing.assert_allclose(np.abs(axes[1]), [0.0, 2.0], rtol=0.05, atol=0.05)
    # The same through chunks.
    np.testing.assert_allclose(frame_axes(gmm, [X[:3000], X[3000:]]), axes, rtol=1e-9, atol=1e-12)


def test_user_initial_parameters_are_used(blobs):
    """Only means_init given: EM starts there, so the components keep the given order."""
    start = CENTRES + 0.5
    for seed in range(3):
        est = GaussianMixture(3, covariance_type="diag", means_init=start, random_state=seed,
                              init_params="random", tol=1e-6, max_iter=200).fit(blobs)
        np.testing.assert_allclose(est.means_, CENTRES, atol=0.25)
    weights = np.array([0.2, 0.3, 0.5])
    est = GaussianMixture(3, covariance_type="spherical", weights_init=weights, means_init=start,
                          precisions_init=np.ones(3), max_iter=0).fit(blobs)
    np.testing.assert_array_equal(est.weights_, weights)
    np.testing.assert_array_equal(est.means_, start)
    np.testing.assert_array_equal(est.covariances_, np.ones(3))
    assert est.n_iter_ == 0


# ---------------------------------------------------------------------------- restarts
def test_n_init_keeps_the_best_lower_bound(capsys):
    centres, X = _random_layout(3, 4, 3)
    single = GaussianMixture(4, covariance_type="diag", init_params="random_from_data",
                             random_state=7, verbose=1).fit(X)
    capsys.readouterr()
    best = GaussianMixture(4, covariance_type="diag", init_params="random_from_data",
                           random_state=7, n_init=6, verbose=1).fit(X)
    printed = [float(b) for b in re.findall(r"lower bound (-?[0-9.]+)", capsys.readouterr().out)]
    assert len(printed) == 6
    assert len({round(b, 3) for b in printed}) > 1  # the restarts do differ
    assert best.lower_bound_ == pytest.approx(max(printed), abs=1e-5)
    # The first restart is the single fit (same random stream), so restarts never hurt.
    assert printed[0] == pytest.approx(single.lower_bound_, abs=1e-5)
    assert best.lower_bound_ >= single.lower_bound_
    # lower_bound_ belongs to the parameters kept: it is the score of the model before
    # its last M-step, so it is within tol of the final model's score.
    assert best.score(X) == pytest.approx(best.lower_bound_, abs=best.tol)


def test_warm_start_skips_initialisation_and_continues(blobs, capsys):
    est = GaussianMixture(3, covariance_type="full", random_state=0, warm_start=True,
                          max_iter=2, tol=0, n_init=4, verbose=1)
    est.fit(blobs)
    assert capsys.readouterr().out.count("Initialization 3") == 1  # 4 restarts
    first_bound = est.lower_bound_
    est.fit(blobs)
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Initialization 1" not in out  # one, from the last fit
    assert est.lower_bound_ >= first_bound - 1e-12
    assert est.n_iter_ == 2

    cold = GaussianMixture(3, covariance_type="full", random_state=0, max_iter=2, tol=0)
    a = cold.fit(blobs).means_.copy()
    b = cold.fit(blobs).means_  # warm_start=False: a fresh start, the same result
    np.testing.assert_array_equal(a, b)


def test_verbose_2_reports_iterations(blobs, capsys):
    GaussianMixture(3, random_state=0, verbose=2, verbose_interval=1, tol=0, max_iter=3).fit(blobs)
    out = capsys.readouterr().out
    assert len(re.findall(r"Iteration \d+", out)) == 3
    assert "did not converge" in out


# ---------------------------------------------------------------------------- inference
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_predict_equals_predict_after_fit(blobs, covariance_type):
    est = GaussianMixture(3, covariance_type=covariance_type, random_state=1)
    labels = est.fit_predict(blobs)
    np.testing.assert_array_equal(labels, est.predict(blobs))
    np.testing.assert_array_equal(labels, est.predict_proba(blobs).argmax(axis=1))
    again = GaussianMixture(3, covariance_type=covariance_type, random_state=1).fit(blobs)
    np.testing.assert_array_equal(labels, again.predict(blobs))
    # Well separated: the labelling is the true clustering up to renaming.
    truth = np.linalg.norm(blobs[:, None] - CENTRES[None], axis=2).argmin(axis=1)
    assert len(set(zip(labels, truth))) == 3


def test_score_and_sample_weight(blobs):
    est = GaussianMixture(3, covariance_type="diag", random_state=0).fit(blobs)
    log_prob = est.score_samples(blobs)
    assert est.score(blobs) == pytest.approx(log_prob.mean(), rel=1e-12)
    w = np.linspace(0, 2, blobs.shape[0])
    assert est.score(blobs, sample_weight=w) == pytest.approx(np.average(log_prob, weights=w),
                                                              rel=1e-12)
    proba = est.predict_proba(blobs)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_shapes_labels_and_distribution(blobs, covariance_type):
    est = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(blobs)
    X, y = est.sample(6000)
    assert X.shape == (6000, 2) and y.shape == (6000,)
    assert np.all(np.diff(y) >= 0)  # grouped by component, as scikit-learn does
    assert set(np.unique(y)) <= set(range(3))
    counts = np.bincount(y, minlength=3)
    expected = 6000 * est.weights_
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    covariances = {
        "full": lambda k: est.covariances_[k], "tied": lambda k: est.covariances_,
        "diag": lambda k: np.diag(est.covariances_[k]),
        "spherical": lambda k: est.covariances_[k] * np.eye(2),
    }[covariance_type]
    for k in range(3):
        part = X[y == k]
        sd = np.sqrt(np.diag(covariances(k)))
        assert np.all(np.abs(part.mean(axis=0) - est.means_[k]) < 5 * sd / np.sqrt(len(part)))
        np.testing.assert_allclose(np.cov(part.T), covariances(k), atol=0.15 * sd.max() ** 2)
    one, label = est.sample()
    assert one.shape == (1, 2) and label.shape == (1,)
    # An integer random_state makes sampling reproducible.
    np.testing.assert_array_equal(est.sample(10)[0], est.sample(10)[0])


def test_gmm_sample_is_reproducible_and_validated():
    gmm = GMM([0.3, 0.7], [[0.0], [5.0]], [1.0, 0.5], "spherical")
    a, la = gmm.sample(50, random_state=3)
    b, lb = gmm.sample(50, random_state=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        gmm.sample(0)


# ---------------------------------------------------------------------------- online EM
def _stream(truth: GMM, n_batches: int, batch: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(n_batches):
        X = truth.sample(batch, random_state=rng)[0]
        rng.shuffle(X)  # sample() groups frames by component; a stream does not
        yield X


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_partial_fit_on_a_stationary_stream_approaches_the_full_fit(covariance_type):
    cov = {"full": np.array([np.eye(2), [[1.0, 0.5], [0.5, 1.0]], np.eye(2) * 0.5]),
           "tied": np.array([[1.0, 0.3], [0.3, 0.6]]),
           "diag": SCALES**2, "spherical": np.array([1.0, 0.5, 0.7])}[covariance_type]
    truth = GMM([0.5, 0.3, 0.2], CENTRES, cov, covariance_type)
    batches = list(_stream(truth, 80, 100, seed=1))
    held_out = truth.sample(4000, random_state=2)[0]
    full = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(np.vstack(batches))
    online = GaussianMixture(3, covariance_type=covariance_type, random_state=0)
    errors = []
    for i, X in enumerate(batches):
        online.partial_fit(X)
        if i in (4, 79):
            errors.append(np.abs(_matched(online.means_, CENTRES) - _matched(full.means_, CENTRES)).max())
    assert online.n_iter_ == 80 and len(online.lower_bounds_) == 80
    assert errors[1] < 0.15 and errors[1] <= errors[0]
    np.testing.assert_allclose(np.sort(online.weights_), np.sort(full.weights_), atol=0.04)
    assert online.score(held_out) == pytest.approx(full.score(held_out), abs=0.03)


def test_partial_fit_validates_its_input(blobs):
    est = GaussianMixture(3, random_state=0)
    with pytest.raises(ValueError, match="decay must lie in"):
        est.partial_fit(blobs, decay=0.4)
    with pytest.raises(ValueError, match="n_samples >= n_components=3"):
        est.partial_fit(blobs[:2])
    est.partial_fit(blobs[:100])
    with pytest.raises(ValueError, match="3 features, but GaussianMixture is expecting 2"):
        est.partial_fit(np.ones((10, 3)))


# ---------------------------------------------------------------------------- model files
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_save_load_round_trip(blobs, tmp_path, covariance_type, dtype):
    est = GaussianMixture(3, covariance_type=covariance_type, random_state=0, tol=1e-4,
                          reg_covar=1e-5, dtype=dtype).fit(blobs)
    path = tmp_path / "model.gm"
    est.save(path)
    with np.load(path, allow_pickle=False) as archive:  # plain data, no pickle
        header = json.loads(str(archive["__meta__"]))
    assert header["format"] == "speakergmm.GaussianMixture" and header["version"] == 1
    loaded = GaussianMixture.load(path)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(est, name))
    np.testing.assert_array_equal(loaded.predict_proba(blobs), est.predict_proba(blobs))
    np.testing.assert_array_equal(loaded.score_samples(blobs), est.score_samples(blobs))
    np.testing.assert_array_equal(loaded.predict(blobs), est.predict(blobs))
    assert loaded.bic(blobs) == est.bic(blobs)
    assert (loaded.n_iter_, loaded.converged_, loaded.lower_bound_) == (
        est.n_iter_, est.converged_, est.lower_bound_)
    for name in ("n_components", "covariance_type", "tol", "reg_covar", "random_state"):
        assert getattr(loaded, name) == getattr(est, name)
    assert np.dtype(loaded.dtype) == np.dtype(dtype) and loaded.gmm_.dtype == np.dtype(dtype)
    assert loaded.n_features_in_ == 2
    # A loaded model can be trained further.
    loaded.set_params(warm_start=True, max_iter=2).fit(blobs)


@pytest.mark.parametrize("floor", [None, 0.05, [0.02, 0.3]])
def test_save_load_keeps_the_variance_floor(blobs, tmp_path, floor):
    est = GaussianMixture(3, covariance_type="diag", random_state=0, variance_floor=floor).fit(blobs)
    est.save(tmp_path / "model.gm")
    loaded = GaussianMixture.load(tmp_path / "model.gm")
    if floor is None:
        assert loaded.variance_floor is None
        return
    np.testing.assert_array_equal(loaded.variance_floor, floor)
    # Training the loaded model further still honours the floor: frames that sit almost
    # exactly on the means would otherwise shrink the variances far below it.
    rng = np.random.default_rng(1)
    tight = np.repeat(loaded.means_, 50, axis=0) + 1e-4 * rng.standard_normal((150, 2))
    loaded.set_params(warm_start=True, max_iter=3).fit(tight)
    assert np.all(loaded.covariances_ >= np.broadcast_to(floor, (2,)) * (1 - 1e-9))


def test_load_refuses_an_invalid_variance_floor(saved, tmp_path):
    _, path = saved
    arrays, meta, _ = load_model_file(path, "speakergmm.GaussianMixture")
    meta["variance_floor"] = [0.1, 0.2, 0.3]  # 3 values for 2 features
    bad = tmp_path / "bad.gm"
    save_model_file(bad, "speakergmm.GaussianMixture", 1, arrays, meta)
    with pytest.raises(ValueError, match="invalid GaussianMixture file"):
        GaussianMixture.load(bad)


def test_gmm_save_load_round_trip(tmp_path):
    gmm = GMM([0.25, 0.75], [[0.0, 1.0], [3.0, -1.0]],
              [[[1.0, 0.2], [0.2, 0.5]], [[0.7, -0.1], [-0.1, 0.9]]], "full")
    path = tmp_path / "ubm.gmm"
    gmm.save(path, meta={"note": "test", "n_frames": 123})
    loaded = GMM.load(path)
    assert loaded.fingerprint() == gmm.fingerprint()
    X = np.random.default_rng(0).normal(size=(20, 2))
    np.testing.assert_array_equal(loaded.log_joint(X), gmm.log_joint(X))
    _, meta, version = load_model_file(path, "speakergmm.GMM")
    assert meta == {"note": "test", "n_frames": 123} and version == 1
    assert GMM.load(path, dtype=np.float32).dtype == np.float32


@pytest.fixture()
def saved(blobs, tmp_path):
    est = GaussianMixture(3, covariance_type="diag", random_state=0).fit(blobs)
    path = tmp_path / "model.gm"
    est.save(path)
    return est, path


def test_load_refuses_a_corrupt_file(saved, tmp_path):
    _, path = saved
    truncated = tmp_path / "truncated.gm"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelFileError, match=r"truncated\.gm: corrupt or unreadable model file"):
        GaussianMixture.load(truncated)
    garbage = tmp_path / "garbage.gm"
    garbage.write_bytes(b"this is not a model file at all")
    with pytest.raises(ModelFileError, match=r"garbage\.gm: corrupt or unreadable"):
        GaussianMixture.load(garbage)
    with pytest.raises(ModelFileError, match=r"missing\.gm: no such model file"):
        GaussianMixture.load(tmp_path / "missing.gm")
    plain = tmp_path / "plain.npz"
    np.savez(plain, weights=np.ones(3) / 3)
    with pytest.raises(ModelFileError, match="not a speakergmm model file"):
        GaussianMixture.load(plain)


def test_load_refuses_a_file_of_another_format(saved, tmp_path):
    est, path = saved
    gmm_path = tmp_path / "plain.gmm"
    est.gmm_.save(gmm_path)
    with pytest.raises(ModelFileError,
                       match="holds a 'speakergmm.GMM', expected a 'speakergmm.GaussianMixture'"):
        GaussianMixture.load(gmm_path)
    with pytest.raises(ModelFileError,
                       match="holds a 'speakergmm.GaussianMixture', expected a 'speakergmm.GMM'"):
        GMM.load(path)


def test_load_refuses_an_unsupported_version(saved, tmp_path):
    est, _ = saved
    future = tmp_path / "future.gm"
    save_model_file(future, "speakergmm.GaussianMixture", 2, est.gmm_.to_arrays(),
                    {"n_components": 3})
    with pytest.raises(ModelFileError, match=r"future\.gm: speakergmm.GaussianMixture file version "
                                             r"2 is not supported \(this speakergmm reads version 1\)"):
        GaussianMixture.load(future)
    future_gmm = tmp_path / "future.gmm"
    save_model_file(future_gmm, "speakergmm.GMM", 7, est.gmm_.to_arrays())
    with pytest.raises(ModelFileError, match="version 7 is not supported"):
        GMM.load(future_gmm)


def test_load_refuses_invalid_contents(saved, tmp_path):
    est, path = saved
    arrays = est.gmm_.to_arrays()
    meta = {"n_components": 3, "covariance_type": "diag"}

    def write(name, **changes):
        target = tmp_path / name
        save_model_file(target, "speakergmm.GaussianMixture", 1,
                        {k: v for k, v in {**arrays, **changes}.items() if v is not None}, meta)
        return target

    with pytest.raises(ModelFileError, match="missing array.*means"):
        GaussianMixture.load(write("nomeans.gm", means=None))
    negative = arrays["covariances"].copy()
    negative[1, 0] = -1.0
    with pytest.raises(ValueError, match=r"negative\.gm: invalid GaussianMixture file: component 1"):
        GaussianMixture.load(write("negative.gm", covariances=negative))
    with pytest.raises(ValueError, match=r"nan\.gm: invalid GaussianMixture file.*weights"):
        GaussianMixture.load(write("nan.gm", weights=np.array([np.nan, 0.5, 0.5])))
    with pytest.raises(ValueError, match="header says 3 components, arrays hold 2"):
        GaussianMixture.load(write("short.gm", weights=np.array([0.5, 0.5]),
                                   means=arrays["means"][:2], covariances=arrays["covariances"][:2]))
    with pytest.raises(ValueError, match=r"badgmm\.gmm: invalid GMM"):
        bad = tmp_path / "badgmm.gmm"
        save_model_file(bad, "speakergmm.GMM", 1, {**arrays, "covariances": negative})
        GMM.load(bad)
    # A damaged archive member (not just a truncated file) is refused as well.
    damaged = tmp_path / "damaged.gm"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[: len(data) // 2] if item.filename == "means.npy" else data)
    with pytest.raises(ModelFileError, match="corrupt or unreadable"):
        GaussianMixture.load(damaged)


def test_get_and_set_params(blobs):
    est = GaussianMixture(2, covariance_type="tied", tol=1e-4)
    params = est.get_params()
    assert params["n_components"] == 2 and params["covariance_type"] == "tied"
    clone = GaussianMixture(**params)
    assert clone.get_params() == params
    assert est.set_params(n_components=3) is est and est.n_components == 3
    with pytest.raises(ValueError, match="invalid parameter 'n_component'"):
        est.set_params(n_component=3)
    assert "n_components=3" in repr(est)


def test_fit_chunks_with_a_small_initialisation_sample(blobs):
    """k-means on a 150-frame reservoir sample, EM over all 600 frames in 6 chunks."""
    est = GaussianMixture(3, covariance_type="full", random_state=0, max_init_samples=150)
    est.fit_chunks(np.array_split(blobs, 6))
    _assert_recovers(est)
    assert est.n_features_in_ == 2


def test_split_iter_is_a_deprecated_alias_of_iter_per_split(blobs):
    new = GaussianMixture(3, init_params="split", iter_per_split=2, random_state=0).fit(blobs)
    with pytest.warns(DeprecationWarning, match="use iter_per_split"):
        old = GaussianMixture(3, init_params="split", split_iter=2, random_state=0).fit(blobs)
    np.testing.assert_array_equal(old.means_, new.means_)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="split_iter must be"):
        GaussianMixture(3, init_params="split", split_iter=-1).fit(blobs)
