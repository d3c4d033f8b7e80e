"""Score normalisation against direct per-trial loops, plus its defining properties."""

from __future__ import annotations

import numpy as np
import pytest

from speakergmm.verification.normalization import (
    cohort_statistics,
    snorm,
    tnorm,
    znorm,
    ztnorm,
)

N_MODELS, N_TESTS, N_Z, N_COHORT = 5, 7, 11, 9


@pytest.fixture()
def data():
    rng = np.random.default_rng(42)
    # Each model and test gets its own offset/scale so the normalisations actually matter.
    model_shift = rng.normal(0, 3, (N_MODELS, 1))
    test_shift = rng.normal(0, 2, (1, N_TESTS))
    return {
        "scores": rng.normal(0, 1, (N_MODELS, N_TESTS)) + model_shift + test_shift,
        "z_scores": rng.normal(0, 1, (N_MODELS, N_Z)) * rng.uniform(0.5, 2, (N_MODELS, 1))
        + model_shift,
        "t_scores": rng.normal(0, 1, (N_COHORT, N_TESTS)) * rng.uniform(0.5, 2, (1, N_TESTS))
        + test_shift,
        "cohort_z_scores": rng.normal(0, 1, (N_COHORT, N_Z)) + rng.normal(0, 3, (N_COHORT, 1)),
    }


# ---------------------------------------------------------- per-trial references


def mean_std(values, top_n=None):
    values = sorted(values, reverse=True)[:top_n] if top_n else list(values)
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


def loop_znorm(d, m, t, top_n=None):
    mean, std = mean_std(d["z_scores"][m], top_n)
    return (d["scores"][m, t] - mean) / std


def loop_tnorm(d, m, t, top_n=None):
    mean, std = mean_std([d["t_scores"][c, t] for c in range(N_COHORT)], top_n)
    return (d["scores"][m, t] - mean) / std


def loop_ztnorm(d, m, t):
    z_mean, z_std = mean_std(d["z_scores"][m])
    s_z = (d["scores"][m, t] - z_mean) / z_std
    normed_cohort = []
    for c in range(N_COHORT):
        c_mean, c_std = mean_std(d["cohort_z_scores"][c])
        normed_cohort.append((d["t_scores"][c, t] - c_mean) / c_std)
    t_mean, t_std = mean_std(normed_cohort)
    return (s_z - t_mean) / t_std


def loop_snorm(d, m, t, top_n=None):
    return 0.5 * (loop_znorm(d, m, t, top_n) + loop_tnorm(d, m, t, top_n))


def loop_matrix(func, d, **kw):
    return np.array([[func(d, m, t, **kw) for t in range(N_TESTS)] for m in range(N_MODELS)])


# ---------------------------------------------------------------- vs the loops


@pytest.mark.parametrize("top_n", [None, 4])
def test_znorm_matches_loop(data, top_n):
    out = znorm(data["scores"], data["z_scores"], top_n=top_n)
    np.testing.assert_allclose(out, loop_matrix(loop_znorm, data, top_n=top_n), rtol=1e-12)


@pytest.mark.parametrize("top_n", [None, 3])
def test_tnorm_matches_loop(data, top_n):
    out = tnorm(data["scores"], data["t_scores"], top_n=top_n)
    np.testing.assert_allclose(out, loop_matrix(loop_tnorm, data, top_n=top_n), rtol=1e-12)


def test_ztnorm_matches_loop(data):
    out = ztnorm(data["scores"], data["z_scores"], data["t_scores"], data["cohort_z_scores"])
    np.testing.assert_allclose(out, loop_matrix(loop_ztnorm, data), rtol=1e-12)


@pytest.mark.parametrize("top_n", [None, 5, 100])
def test_snorm_matches_loop(data, top_n):
    out = snorm(data["scores"], data["z_scores"], data["t_scores"], top_n=top_n)
    np.testing.assert_allclose(out, loop_matrix(loop_snorm, data, top_n=top_n), rtol=1e-12)


def test_trial_layout_equals_matrix_layout(data):
    rng = np.random.default_rng(0)
    model_index = rng.integers(0, N_MODELS, 30)
    test_index = rng.integers(0, N_TESTS, 30)
    trials = (model_index, test_index)
    trial_scores = data["scores"][model_index, test_index]
    cases = [
        (znorm, (data["z_scores"],), {"top_n": 3}),
        (tnorm, (data["t_scores"],), {}),
        (ztnorm, (data["z_scores"], data["t_scores"], data["cohort_z_scores"]), {}),
        (snorm, (data["z_scores"], data["t_scores"]), {"top_n": 4}),
    ]
    for func, args, kw in cases:
        matrix = func(data["scores"], *args, **kw)
        per_trial = func(trial_scores, *args, trials=trials, **kw)
        np.testing.assert_allclose(per_trial, matrix[model_index, test_index], rtol=1e-12,
                                   err_msg=func.__name__)


# ------------------------------------------------------------------ properties


def test_znormed_impostor_scores_are_standardised(data):
    # Z-norming the impostor scores themselves gives zero mean, unit std per model.
    normed = znorm(data["z_scores"], data["z_scores"])
    np.testing.assert_allclose(normed.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(normed.std(axis=1), 1, rtol=1e-12)


def test_tnormed_cohort_scores_are_standardised(data):
    normed = tnorm(data["t_scores"], data["t_scores"])
    np.testing.assert_allclose(normed.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(normed.std(axis=0), 1, rtol=1e-12)


def test_normalisation_removes_model_and_test_offsets(data):
    # An affine change of one model's scores (trial and impostor alike) cancels in Z-norm;
    # an affine change of one test segment's scores cancels in T-norm.
    scores, z = data["scores"].copy(), data["z_scores"].copy()
    scores[2] = 3 * scores[2] + 10
    z[2] = 3 * z[2] + 10
    np.testing.assert_allclose(znorm(scores, z), znorm(data["scores"], data["z_scores"]),
                               rtol=1e-10)
    scores, t = data["scores"].copy(), data["t_scores"].copy()
    scores[:, 4] = 0.5 * scores[:, 4] - 7
    t[:, 4] = 0.5 * t[:, 4] - 7
    np.testing.assert_allclose(tnorm(scores, t), tnorm(data["scores"], data["t_scores"]),
                               rtol=1e-10)


def test_snorm_is_symmetric():
    # Swapping the roles of models and tests (transposing everything) gives the transpose.
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(4, 6))
    enroll_cohort = rng.normal(size=(4, 8))   # models vs cohort
    test_cohort = rng.normal(size=(8, 6))     # cohort vs tests
    forward = snorm(scores, enroll_cohort, test_cohort)
    backward = snorm(scores.T, test_cohort.T, enroll_cohort.T)
    np.testing.assert_allclose(forward, backward.T, rtol=1e-12)


def test_adaptive_top_n_uses_the_closest_impostors():
    z = np.array([[0.0, 1.0, 2.0, 10.0, 12.0]])
    mean, std = cohort_statistics(z, axis=1, top_n=2)
    np.testing.assert_allclose(mean, [11.0])
    np.testing.assert_allclose(std, [1.0])
    full_mean, _ = cohort_statistics(z, axis=1, top_n=5)
    np.testing.assert_allclose(full_mean, [5.0])


def test_normalisation_improves_separation_with_per_model_offsets():
    # Models with different score offsets: raw scores mix up, Z-normed ones separate.
    from speakergmm.metrics import eer

    rng = np.random.default_rng(3)
    n_models, n_tests = 20, 40
    offset = rng.normal(0, 4, (n_models, 1))
    is_target = rng.random((n_models, n_tests)) < 0.2
    scores = rng.normal(0, 1, (n_models, n_tests)) + 2.5 * is_target + offset
    z_scores = rng.normal(0, 1, (n_models, 200)) + offset
    raw = eer(scores[is_target], scores[~is_target])
    normed = znorm(scores, z_scores)
    assert eer(normed[is_target], normed[~is_target]) < raw - 0.1


# ---------------------------------------------------------------------- errors


def test_zero_std_raises_or_is_floored():
    scores = np.ones((2, 3))
    z = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    with pytest.raises(ValueError, match=r"z_scores.*row 1.*min_std"):
        znorm(scores, z)
    out = znorm(scores, z, min_std=0.5)
    np.testing.assert_allclose(out[1], (1 - 5) / 0.5)
    with pytest.raises(ValueError, match="t_scores.*column"):
        tnorm(scores, np.full((4, 3), 2.0))


def test_shape_errors_name_the_argument(data):
    with pytest.raises(ValueError, match="rows"):
        znorm(data["scores"], data["z_scores"][:3])
    with pytest.raises(ValueError, match="columns"):
        tnorm(data["scores"], data["t_scores"][:, :2])
    with pytest.raises(ValueError, match="cohort_z_scores"):
        ztnorm(data["scores"], data["z_scores"], data["t_scores"], data["cohort_z_scores"][:2])
    with pytest.raises(ValueError, match="trials"):
        znorm(data["scores"][0], data["z_scores"])
    with pytest.raises(ValueError, match="model_index out of range"):
        znorm(np.zeros(2), data["z_scores"], trials=([0, 99], [0, 0]))
    with pytest.raises(ValueError, match="non-finite"):
        znorm(data["scores"], np.full((N_MODELS, N_Z), np.nan))
    with pytest.raises(ValueError, match="at least 2"):
        znorm(data["scores"], data["z_scores"][:, :1])
    with pytest.raises(ValueError, match="top_n"):
        snorm(data["scores"], data["z_scores"], data["t_scores"], top_n=1)
