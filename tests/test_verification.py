"""GMM-UBM verification on synthetic arrays: UBM training, MAP enrolment, scoring."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from speakergmm.io import ModelFileError
from speakergmm.mixture import GMM
from speakergmm.verification import (
    SpeakerModels,
    VerificationError,
    enroll_speakers,
    frame_llr,
    load_ubm,
    normalize_scores,
    save_ubm,
    score_matrix,
    score_trials,
    train_ubm,
)


# --------------------------------------------------------------------------- fixtures
def _corpus(n_utts: int = 40, dim: int = 4, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(6, dim))
    utts = []
    for _ in range(n_utts):
        n = int(rng.integers(40, 120))
        labels = rng.integers(0, len(centres), size=n)
        utts.append(centres[labels] + rng.normal(size=(n, dim)))
    return utts


def _separated_ubm(dim: int = 3) -> GMM:
    means = np.array([[0.0] * dim, [40.0] * dim, [-40.0] * dim, [0.0, 80.0, 0.0][:dim] + [0.0] * (dim - 3)])
    return GMM(np.full(4, 0.25), means, np.ones((4, dim)), "diag")


def _speaker_data(ubm: GMM, n_speakers: int, frames: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = {}
    for s in range(n_speakers):
        shift = rng.normal(scale=0.7, size=ubm.means.shape)
        X, labels = ubm.sample(frames, random_state=seed * 100 + s)
        data[f"spk{s}"] = X + shift[labels]
    return data


# --------------------------------------------------------------------------- UBM training
def test_ubm_training_increases_likelihood_and_floors_variance():
    utts = _corpus()
    result = train_ubm(utts, 8, iter_per_split=3, final_iter=4, variance_floor_ratio=0.05)
    gmm = result.gmm
    assert gmm.n_components == 8 and gmm.covariance_type == "diag"
    assert result.n_frames == sum(u.shape[0] for u in utts)
    # EM never decreases the likelihood within a size; splitting and EM beat one Gaussian.
    assert result.history[-1] > result.history[0] + 0.5
    assert np.all(np.diff(result.history[-4:]) >= -1e-9)
    all_frames = np.concatenate(utts)
    assert np.all(gmm.covariances >= 0.05 * all_frames.var(axis=0) - 1e-12)
    # EM's last step improved on the likelihood reported for the last pass.
    assert gmm.score_samples(all_frames).mean() >= result.history[-1] - 1e-9
    # Streaming utterance by utterance (in small chunks) equals training on one big array.
    kw = dict(iter_per_split=3, final_iter=4, variance_floor_ratio=0.05, dtype="float64")
    batch = train_ubm([all_frames], 8, **kw)
    streamed = train_ubm(utts, 8, chunk_frames=100, **kw)
    np.testing.assert_allclose(streamed.gmm.means, batch.gmm.means, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(streamed.history, batch.history, rtol=1e-10)


def test_ubm_non_power_of_two_and_full_covariance():
    utts = _corpus(20, dim=3)
    gmm = train_ubm(utts, 6, covariance_type="full", iter_per_split=2, final_iter=2).gmm
    assert gmm.n_components == 6 and gmm.covariances.shape == (6, 3, 3)
    assert np.isclose(gmm.weights.sum(), 1.0)


class _Interrupt(Exception):
    pass


def test_ubm_resume_after_interrupt_gives_the_uninterrupted_result(tmp_path):
    utts = _corpus(30)
    kwargs = dict(iter_per_split=2, final_iter=3)
    reference = train_ubm(utts, 8, **kwargs)

    ckpt = tmp_path / "ubm.ckpt"
    passes = []

    def interrupt_after_five(line: str) -> None:
        passes.append(line)
        if len(passes) == 5:
            raise _Interrupt  # as if killed right after the 5th checkpoint was written

    with pytest.raises(_Interrupt):
        train_ubm(utts, 8, checkpoint=ckpt, log=interrupt_after_five, **kwargs)
    assert ckpt.is_file()
    lines: list[str] = []
    resumed = train_ubm(utts, 8, checkpoint=ckpt, log=lines.append, **kwargs)
    assert resumed.resumed_from == 5
    assert "resuming" in lines[0]
    assert len(lines) == 1 + len(reference.history) - 5
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(resumed.gmm, name), getattr(reference.gmm, name))
    np.testing.assert_array_equal(resumed.history, reference.history)

    # stop_after splits a run in two as well; a finished checkpoint returns at once.
    ckpt2 = tmp_path / "two.ckpt"
    train_ubm(utts, 8, checkpoint=ckpt2, stop_after=3, **kwargs)
    second = train_ubm(utts, 8, checkpoint=ckpt2, **kwargs)
    np.testing.assert_array_equal(second.gmm.means, reference.gmm.means)
    again = train_ubm(utts, 8, checkpoint=ckpt2, **kwargs)
    np.testing.assert_array_equal(again.gmm.means, reference.gmm.means)


def test_ubm_checkpoint_of_other_config_or_data_is_refused(tmp_path):
    utts = _corpus(10)
    ckpt = tmp_path / "ubm.ckpt"
    train_ubm(utts, 4, checkpoint=ckpt, stop_after=2, iter_per_split=1, final_iter=1)
    with pytest.raises(VerificationError, match="another configuration.*n_components"):
        train_ubm(utts, 8, checkpoint=ckpt, iter_per_split=1, final_iter=1)
    with pytest.raises(VerificationError, match="other data"):
        train_ubm(utts[:5], 4, checkpoint=ckpt, iter_per_split=1, final_iter=1)
    ckpt.write_bytes(b"not a model")
    with pytest.raises(VerificationError, match="cannot resume"):
        train_ubm(utts, 4, checkpoint=ckpt, iter_per_split=1, final_iter=1)


def test_ubm_does_not_depend_on_the_number_of_processes():
    # More utterances than one shard holds, the float32 E-step and subsampled passes: the
    # cases where per-process sharding used to change the model (2e-3 in the means).
    utts = _corpus(150)
    kw = dict(iter_per_split=2, final_iter=2, dtype="float32", frames_per_component=20)
    kw["shard_utterances"] = 32  # several shards
    serial = train_ubm(utts, 8, jobs=1, **kw).gmm
    parallel = train_ubm(utts, 8, jobs=2, **kw).gmm
    for name in ("weights", "means", "covariances"):
        assert np.array_equal(getattr(parallel, name), getattr(serial, name)), name


def test_ubm_memory_does_not_grow_with_the_corpus():
    utts = _corpus(60)

    def peak(source: list[np.ndarray]) -> int:
        tracemalloc.start()
        train_ubm(source, 4, iter_per_split=1, final_iter=1, chunk_frames=512)
        peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak_bytes

    once = peak(utts)
    four_times = peak(utts * 4)  # the same arrays listed 4 times: 4x the frames streamed
    assert four_times < 1.5 * once + 256 * 1024, (once, four_times)


def test_ubm_bad_utterance_is_named():
    utts = _corpus(5)
    utts[3] = utts[3].copy()
    utts[3][2, 1] = np.nan
    with pytest.raises(VerificationError, match="utterance '3'.*NaN"):
        train_ubm(utts, 2, iter_per_split=1, final_iter=1)
    with pytest.raises(VerificationError, match="'1' has 3 features, but the model expects 4"):
        train_ubm([np.ones((5, 4)), np.ones((5, 3))], 2)


def test_ubm_file_round_trip_and_tamper_detection(tmp_path):
    gmm = train_ubm(_corpus(10), 4, iter_per_split=1, final_iter=1).gmm
    path = tmp_path / "ubm.npz"
    save_ubm(path, gmm, feature_config={"sample_rate": 8000}, training={"n": 1})
    loaded, meta = load_ubm(path)
    assert loaded.fingerprint() == gmm.fingerprint()
    assert meta["role"] == "ubm" and meta["feature_config"] == {"sample_rate": 8000}
    with pytest.raises(ModelFileError):
        load_ubm(tmp_path / "missing.npz")


# --------------------------------------------------------------------------- MAP
def test_map_means_match_a_hand_computed_example():
    # UBM: two unit-variance Gaussians at -1 and +1 with equal weights; frames x = 1 and 3.
    ubm = GMM([0.5, 0.5], [[-1.0], [1.0]], [[1.0], [1.0]], "diag")
    # Responsibilities of component 1: at x=1 the densities are e^-2 : e^0, at x=3 e^-8 : e^-2.
    g1 = np.array([1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-6))])
    g0 = 1 - g1
    x = np.array([1.0, 3.0])
    n0, n1 = g0.sum(), g1.sum()
    ex0, ex1 = (g0 * x).sum() / n0, (g1 * x).sum() / n1
    for r in (16.0, 2.0):
        a0, a1 = n0 / (n0 + r), n1 / (n1 + r)
        expected_means = [a0 * ex0 + (1 - a0) * -1.0, a1 * ex1 + (1 - a1) * 1.0]
        models = enroll_speakers(ubm, {"u1": x[:, None]}, {"alice": ["u1"]}, relevance_factor=r)
        np.testing.assert_allclose(models.means[0, :, 0], expected_means, rtol=1e-12)
        assert models.weights is None and models.covariances is None
        # weights: alpha n_k / T + (1 - alpha) w_k, renormalised
        mw = enroll_speakers(ubm, {"u1": x[:, None]}, {"alice": ["u1"]}, relevance_factor=r, adapt="mw")
        w = np.array([a0 * n0 / 2 + (1 - a0) * 0.5, a1 * n1 / 2 + (1 - a1) * 0.5])
        np.testing.assert_allclose(mw.weights[0], w / w.sum(), rtol=1e-12)


def test_enrolment_uses_all_utterances_of_a_speaker_and_parallel_matches():
    ubm = _separated_ubm()
    data = _speaker_data(ubm, 4, 300, seed=1)
    source = {f"{s}-{i}": X[i::3] for s, X in data.items() for i in range(3)}
    spk2utt = {s: [f"{s}-{i}" for i in range(3)] for s in data}
    models = enroll_speakers(ubm, source, spk2utt)
    whole = enroll_speakers(ubm, {s: X for s, X in data.items()}, {s: [s] for s in data})
    np.testing.assert_allclose(models.means, whole.means, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(models.n_frames, [300] * 4)
    parallel = enroll_speakers(ubm, source, spk2utt, jobs=2)
    assert parallel.speaker_ids == models.speaker_ids
    np.testing.assert_allclose(parallel.means, models.means, rtol=1e-12)


def test_enrolment_errors():
    ubm = _separated_ubm()
    with pytest.raises(VerificationError, match="no enrolment utterances"):
        enroll_speakers(ubm, {"a": np.zeros((3, 3))}, {"bob": []})
    with pytest.raises(VerificationError, match="'nope'"):
        enroll_speakers(ubm, {"a": np.zeros((3, 3))}, {"bob": ["nope"]})
    with pytest.raises(ValueError, match="adapt"):
        enroll_speakers(ubm, {"a": np.zeros((3, 3))}, {"bob": ["a"]}, adapt="x")


def test_speaker_models_file_round_trip(tmp_path):
    ubm = _separated_ubm()
    data = _speaker_data(ubm, 3, 100, seed=2)
    models = enroll_speakers(ubm, data, {s: [s] for s in data}, adapt="mwv",
                             feature_config={"sample_rate": 8000})
    path = tmp_path / "speakers.npz"
    models.save(path)
    loaded = SpeakerModels.load(path)
    assert loaded.speaker_ids == models.speaker_ids and loaded.adapt == "mwv"
    np.testing.assert_array_equal(loaded.covariances, models.covariances)
    assert loaded.feature_config == {"sample_rate": 8000}
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(ModelFileError):
        SpeakerModels.load(tmp_path / "bad.npz")
    ubm.save(tmp_path / "ubm.npz")
    with pytest.raises(ModelFileError, match="expected a 'speakergmm.SpeakerModels'"):
        SpeakerModels.load(tmp_path / "ubm.npz")


# --------------------------------------------------------------------------- scoring
def _brute_force_llr(ubm: GMM, models: SpeakerModels, X: np.ndarray) -> np.ndarray:
    return np.stack([models.model(i, ubm).score_samples(X) - ubm.score_samples(X)
                     for i in range(len(models))], axis=1)


@pytest.mark.parametrize("adapt", ["m", "mw", "mwv"])
def test_scoring_with_all_components_equals_brute_force(adapt):
    utts = _corpus(20, dim=3, seed=3)
    ubm = train_ubm(utts, 8, iter_per_split=2, final_iter=2).gmm
    data = {f"s{i}": utts[i] for i in range(5)}
    models = enroll_speakers(ubm, data, {s: [s] for s in data}, adapt=adapt, relevance_factor=4)
    X = utts[10]
    expected = _brute_force_llr(ubm, models, X)
    np.testing.assert_allclose(frame_llr(ubm, models, X, top_c=None), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(frame_llr(ubm, models, X, top_c=8), expected, rtol=1e-9, atol=1e-9)
    # Trial scores are the frame averages.
    scores = score_trials(ubm, models, {"t": X}, [(s, "t") for s in data], exact=True)
    np.testing.assert_allclose(scores, expected.mean(axis=0), rtol=1e-9)


def test_top_c_agrees_with_exact_on_well_separated_components():
    ubm = _separated_ubm()
    data = _speaker_data(ubm, 4, 400, seed=4)
    models = enroll_speakers(ubm, {s: X for s, X in data.items()}, {s: [s] for s in data})
    tests = _speaker_data(ubm, 4, 200, seed=5)
    trials = [(s, t) for t in tests for s in models.speaker_ids]
    exact = score_trials(ubm, models, tests, trials, exact=True)
    top1 = score_trials(ubm, models, tests, trials, top_c=1)
    top5 = score_trials(ubm, models, tests, trials)  # C=5 >= K: exact
    np.testing.assert_allclose(top1, exact, atol=1e-8)
    np.testing.assert_allclose(top5, exact, rtol=1e-12)


def test_top_c_matches_log_joint_at_reference():
    # Independent reference: the core's log_joint_at on each speaker model.
    utts = _corpus(20, dim=3, seed=6)
    ubm = train_ubm(utts, 16, iter_per_split=2, final_iter=2).gmm
    data = {f"s{i}": utts[i] for i in range(4)}
    models = enroll_speakers(ubm, data, {s: [s] for s in data}, adapt="mwv")
    X = np.concatenate(utts[5:8])
    lj = ubm.log_joint(X)
    idx = np.argsort(-lj, axis=1)[:, :3]
    ubm_top = np.logaddexp.reduce(np.take_along_axis(lj, idx, axis=1), axis=1)
    expected = np.stack([
        np.logaddexp.reduce(models.model(i, ubm).log_joint_at(X, idx), axis=1) - ubm_top
        for i in range(len(models))], axis=1)
    np.testing.assert_allclose(frame_llr(ubm, models, X, top_c=3), expected, rtol=1e-9, atol=1e-9)


def test_full_covariance_scoring_matches_brute_force():
    utts = _corpus(12, dim=3, seed=7)
    ubm = train_ubm(utts, 4, covariance_type="full", iter_per_split=2, final_iter=2).gmm
    data = {f"s{i}": utts[i] for i in range(3)}
    models = enroll_speakers(ubm, data, {s: [s] for s in data})
    X = utts[9]
    np.testing.assert_allclose(frame_llr(ubm, models, X, top_c=None), _brute_force_llr(ubm, models, X),
                               rtol=1e-9, atol=1e-9)


def test_scores_separate_speakers_and_batching_is_invisible():
    ubm = _separated_ubm()
    data = _speaker_data(ubm, 5, 400, seed=8)
    models = enroll_speakers(ubm, data, {s: [s] for s in data})
    rng = np.random.default_rng(9)
    # Test utterances drawn from the same speakers (new frames).
    tests = {}
    for s, X in _speaker_data(ubm, 5, 1000, seed=8).items():
        for j in range(4):
            tests[f"{s}-t{j}"] = X[rng.permutation(len(X))[:150]]
    matrix = score_matrix(ubm, models, tests)
    truth = np.array([models.index(u.split("-")[0]) for u in tests])
    assert np.mean(np.argmax(matrix, axis=0) == truth) == 1.0
    # Sparse trial lists give the same numbers as the full matrix.
    trials = [(u.split("-")[0], u) for u in tests] + [("spk0", u) for u in tests]
    sparse = score_trials(ubm, models, tests, trials)
    cols = {u: j for j, u in enumerate(tests)}
    expected = [matrix[models.index(s), cols[u]] for s, u in trials]
    np.testing.assert_allclose(sparse, expected, rtol=1e-12)
    parallel = score_trials(ubm, models, tests, trials, jobs=2)
    np.testing.assert_allclose(parallel, expected, rtol=1e-12)


def test_scoring_refuses_other_ubm_unknown_speaker_and_bad_utterances():
    ubm = _separated_ubm()
    data = _speaker_data(ubm, 2, 100, seed=10)
    models = enroll_speakers(ubm, data, {s: [s] for s in data})
    other = GMM(ubm.weights, ubm.means + 0.1, ubm.covariances, "diag")
    tests = {"t1": data["spk0"][:10], "empty": np.zeros((0, 3)), "nan": np.full((4, 3), np.nan)}
    with pytest.raises(VerificationError, match="adapted from UBM .* not from this UBM"):
        score_trials(other, models, tests, [("spk0", "t1")])
    with pytest.raises(VerificationError, match="unknown speaker 'carol'"):
        score_trials(ubm, models, tests, [("carol", "t1")])
    with pytest.raises(VerificationError, match="'empty': no frames"):
        score_trials(ubm, models, tests, [("spk0", "empty")])
    errors: dict[str, str] = {}
    scores = score_trials(ubm, models, tests, [("spk0", "t1"), ("spk0", "empty"), ("spk1", "nan"),
                                              ("spk1", "missing")], errors=errors)
    assert np.isfinite(scores[0]) and np.isnan(scores[1:]).all()
    assert set(errors) == {"empty", "nan", "missing"}


def test_scoring_refuses_a_mismatched_feature_config():
    from speakergmm.features import FeatureConfig

    ubm = _separated_ubm()
    data = _speaker_data(ubm, 2, 50, seed=11)
    models = enroll_speakers(ubm, data, {s: [s] for s in data},
                             feature_config=FeatureConfig(sample_rate=8000))

    class Store(dict):
        config = FeatureConfig(sample_rate=16000)

        def load(self, utt):
            return self[utt]

    with pytest.raises(VerificationError, match="feature configuration mismatch.*sample_rate"):
        score_trials(ubm, models, Store(t=data["spk0"]), [("spk0", "t")])
    same = Store(t=data["spk0"])
    same.config = FeatureConfig(sample_rate=8000)
    assert np.isfinite(score_trials(ubm, models, same, [("spk0", "t")])).all()


def test_normalize_scores_dispatches_to_normalization():
    rng = np.random.default_rng(12)
    scores = rng.normal(size=6)
    model_index = np.array([0, 0, 1, 1, 2, 2])
    test_index = np.array([0, 1, 0, 1, 0, 1])
    cohort = {"z_scores": rng.normal(size=(3, 20)), "t_scores": rng.normal(size=(7, 2))}
    z = normalize_scores("znorm", scores, model_index, test_index, cohort)
    mean, std = cohort["z_scores"].mean(1), cohort["z_scores"].std(1)
    np.testing.assert_allclose(z, (scores - mean[model_index]) / std[model_index])
    s = normalize_scores("snorm", scores, model_index, test_index, cohort)
    t = (scores - cohort["t_scores"].mean(0)[test_index]) / cohort["t_scores"].std(0)[test_index]
    np.testing.assert_allclose(s, 0.5 * (z + t))
    np.testing.assert_array_equal(normalize_scores("none", scores, model_index, test_index, {}), scores)
    with pytest.raises(VerificationError, match="ztnorm needs cohort scores cohort_z_scores"):
        normalize_scores("ztnorm", scores, model_index, test_index, cohort)


def test_ubm_subsamples_frames_below_the_final_size_only():
    from speakergmm.verification import UBMConfig

    config = UBMConfig(n_components=8, frames_per_component=100)
    assert config.stride(2, 5000) == 25 and config.stride(4, 5000) == 12
    assert config.stride(8, 5000) == 1 and UBMConfig(frames_per_component=0).stride(2, 5000) == 1
    utts = _corpus(30)
    total = sum(u.shape[0] for u in utts)
    lines: list[str] = []
    train_ubm(utts, 8, iter_per_split=1, final_iter=1, frames_per_component=100, log=lines.append)
    used = [int(line.split(" over ")[1].split()[0]) for line in lines]
    assert used[0] == total and used[-1] == total  # global statistics and the final size
    assert used[1] == pytest.approx(total / config.stride(2, total), abs=2)


def test_relative_variance_floor_has_one_name_and_the_old_one_still_works(tmp_path):
    """``variance_floor`` is an absolute floor in the core; the UBM's relative floor is
    ``variance_floor_ratio``, and its former name warns and means the same."""
    from speakergmm.verification.pipeline import VerifySettings
    from speakergmm.verification.ubm import UBMConfig

    with pytest.warns(DeprecationWarning, match="variance_floor_ratio"):
        assert UBMConfig(variance_floor=0.01) == UBMConfig(variance_floor_ratio=0.01)
    with pytest.warns(DeprecationWarning, match="variance_floor_ratio"):
        settings = VerifySettings(variance_floor=0.02)
    assert settings.ubm_config(8).variance_floor_ratio == 0.02
    rng = np.random.default_rng(0)
    utts = [rng.normal(size=(50, 3)) * [1.0, 2.0, 3.0] for _ in range(6)]
    config = UBMConfig(n_components=2, iter_per_split=1, final_iter=2, variance_floor_ratio=0.5,
                       dtype="float64")
    by_config = train_ubm(utts, config=config)
    with pytest.warns(DeprecationWarning):
        by_keywords = train_ubm(utts, 2, iter_per_split=1, final_iter=2, variance_floor=0.5,
                                dtype="float64")
    np.testing.assert_array_equal(by_config.gmm.means, by_keywords.gmm.means)
    # The global variances include reg_covar (1e-6), as every estimated variance does.
    np.testing.assert_allclose(by_config.variance_floor, 0.5 * (np.var(np.vstack(utts), axis=0) + 1e-6))
    assert np.all(by_config.gmm.covariances >= by_config.variance_floor * (1 - 1e-12))
    with pytest.raises(TypeError, match="not both"):
        train_ubm(utts, config=config, final_iter=3)


def test_check_utterance_applies_check_frames_rules_naming_the_utterance():
    from speakergmm.verification.sources import check_utterance

    with pytest.raises(VerificationError, match="utterance 'u1' must hold real numbers"):
        check_utterance(np.zeros((3, 2), dtype=complex), "u1", 2)
    with pytest.raises(VerificationError, match="utterance 'u2' has 3 features, but the model expects 2"):
        check_utterance(np.zeros((3, 3)), "u2", 2)
    with pytest.raises(VerificationError, match="utterance 'u3': features must be 2-D"):
        check_utterance(np.zeros(3), "u3", 1)
    X32 = check_utterance(np.zeros((5, 2), dtype=np.float32), "u4", 2)
    assert X32.dtype == np.float32  # the store's precision is kept
    assert check_utterance(np.zeros((0, 2)), "u5", 2).shape == (0, 2)  # callers skip empty ones
