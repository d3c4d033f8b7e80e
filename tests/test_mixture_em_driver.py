"""The EM driver (speakergmm.mixture.em): one loop, pluggable hooks, one split schedule."""

from __future__ import annotations

import numpy as np
import pytest

from speakergmm.mixture import GMM, ConvergenceWarning, ml_update
from speakergmm.mixture.em import (
    EMHooks,
    SplitState,
    accumulate,
    binary_split_fit,
    fit_best,
    iterate,
    run_em,
    split_fit,
)
from speakergmm.mixture.split import split_schedule


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [6.0, 1.0], [2.0, 7.0], [8.0, 8.0]])
    labels = rng.integers(4, size=1200)
    return centres[labels] + rng.normal(size=(1200, 2)) * 0.7


def _start(X: np.ndarray, K: int = 4) -> GMM:
    return GMM(np.full(K, 1 / K), X[:K], np.tile(X.var(axis=0), (K, 1)), "diag")


def _ml_hooks(X, **kw):
    return EMHooks(lambda gmm: accumulate(gmm, X),
                   lambda stats, gmm: ml_update(stats, previous=gmm), **kw)


def test_iterate_is_run_em_and_reports_every_iteration(data):
    seen = []
    hooks = _ml_hooks(data, on_iteration=lambda info: seen.append(
        (info.iteration, info.lower_bound, info.previous_lower_bound, info.stats.n_frames)))
    ours = iterate(_start(data), hooks, max_iter=50, tol=1e-6)
    ref = run_em(_start(data), data, max_iter=50, tol=1e-6)
    assert ours.converged and ours.n_iter == ref.n_iter < 50
    np.testing.assert_array_equal(ours.history, ref.history)
    np.testing.assert_array_equal(ours.model.means, ref.gmm.means)
    assert [s[0] for s in seen] == list(range(1, ours.n_iter + 1))
    assert all(s[3] == data.shape[0] for s in seen)
    assert [s[2] for s in seen[1:]] == [s[1] for s in seen[:-1]]
    # tol=None runs exactly max_iter iterations.
    assert iterate(_start(data), hooks, max_iter=4, tol=None).n_iter == 4


def test_fit_best_keeps_the_best_start_and_warns_when_it_did_not_converge(data):
    rng = np.random.default_rng(0)
    starts = []

    def initialise():
        gmm = GMM(np.full(4, 0.25), data[rng.choice(len(data), 4, replace=False)],
                  np.tile(data.var(axis=0), (4, 1)), "diag")
        starts.append(gmm)
        return gmm

    with pytest.warns(ConvergenceWarning, match="Best of 5 initialisation"):
        best = fit_best(initialise, _ml_hooks(data), n_init=5, max_iter=2, tol=1e-12)
    bounds = [iterate(g, _ml_hooks(data), max_iter=2, tol=1e-12).lower_bound for g in starts]
    assert len(starts) == 5 and best.lower_bound == max(bounds)
    # max_iter=0: the starts are only evaluated.
    scored = fit_best(lambda: _start(data), _ml_hooks(data), max_iter=0,
                      evaluate=lambda g: float(g.score_samples(data).mean()))
    assert scored.n_iter == 0 and not scored.converged
    assert scored.lower_bound == pytest.approx(_start(data).score_samples(data).mean())


def test_fused_step_and_hmmlearns_stopping_rule():
    bounds = iter([-10.0, -5.0, -4.0, -4.5, -3.0])
    hooks = EMHooks(step=lambda model: (model + 1, next(bounds)))
    # scikit-learn's rule: |change| < tol; hmmlearn's: gain < tol (a decrease stops too).
    gain = iterate(0, hooks, max_iter=10, tol=0.5, stop_when="small_gain")
    assert gain.converged and gain.n_iter == 4 and gain.model == 4
    assert gain.history == [-10.0, -5.0, -4.0, -4.5]
    with pytest.raises(TypeError, match="accumulate and update, or step"):
        EMHooks(accumulate=lambda m: None)
    with pytest.raises(ValueError, match="stop_when"):
        iterate(0, EMHooks(step=lambda m: (m, 0.0)), stop_when="never")


def test_split_schedule_and_resumption_give_the_uninterrupted_model(data):
    assert [(p.n_components, p.iteration, p.n_iter) for p in split_schedule(3, 2, 3)] == [
        (1, 1, 1), (2, 1, 2), (2, 2, 2), (3, 1, 3), (3, 2, 3), (3, 3, 3)]
    assert [p.n_components for p in split_schedule(1, 2, 3)] == [1, 1, 1, 1]

    def acc(gmm):
        return accumulate(gmm, data)

    kw = dict(iter_per_split=2, final_iter=3, variance_floor_ratio=0.01,
              centre=data[:100].mean(axis=0))
    whole = split_fit(acc, 4, "diag", 2, **kw)
    saved = []
    first = split_fit(acc, 4, "diag", 2, stop_after=4, on_iteration=lambda info, state: saved.append(
        SplitState(state.gmm, state.passes_done, list(state.history), state.variance_floor,
                   state.n_frames)), **kw)
    assert first.passes_done == 4 and len(saved) == 4
    resumed = split_fit(acc, 4, "diag", 2, resume=saved[-1], **kw)
    assert whole.passes_done == resumed.passes_done == len(split_schedule(4, 2, 3))
    np.testing.assert_array_equal(resumed.gmm.means, whole.gmm.means)
    np.testing.assert_array_equal(resumed.history, whole.history)
    # The relative floor is resolved from the global variances of pass 0.
    np.testing.assert_allclose(whole.variance_floor, 0.01 * (data.var(axis=0) + 1e-6))
    # binary_split_fit is split_fit over an array with iter_per_split at every size.
    np.testing.assert_allclose(
        binary_split_fit(data, 4, "diag", iter_per_split=3).means,
        split_fit(acc, 4, "diag", 2, iter_per_split=3, centre=data.mean(axis=0)).gmm.means)
    # The four clusters are found.
    centres = np.array([[0.0, 0.0], [6.0, 1.0], [2.0, 7.0], [8.0, 8.0]])
    distance = np.linalg.norm(whole.gmm.means[:, None] - centres[None], axis=2)
    assert distance.min(axis=0).max() < 0.3


@pytest.mark.parametrize("n_components, iter_per_split, final_iter", [(1, 2, 3), (8, 4, 16), (6, 1, 2)])
def test_split_schedule_numbers_its_passes_in_order(n_components, iter_per_split, final_iter):
    from speakergmm.mixture.split import split_schedule

    passes = split_schedule(n_components, iter_per_split, final_iter)
    assert [p.index for p in passes] == list(range(len(passes)))
    assert passes[-1].n_components == n_components and passes[-1].iteration == final_iter
