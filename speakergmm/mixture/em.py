"""The EM driver: the one loop behind every estimator, trainer and recogniser of the package.

Every fit in speakergmm is the same loop (E-step -> :class:`SufficientStats` -> update)
with different pieces plugged in, the way scikit-learn's ``BaseMixture.fit_predict`` and
hmmlearn's ``ConvergenceMonitor`` drive their models. The driver owns what they share:
iteration, convergence (``tol`` on the change of the lower bound), history, ``n_init``
restarts keeping the best, the :class:`ConvergenceWarning`, verbose messages and progress
bars. The pieces are :class:`EMHooks`:

``accumulate(model) -> SufficientStats``
    The E-step pass. :func:`speakergmm.mixture.sources.accumulate` over an array or a chunk
    source; a corpus trainer's sharded, multi-process accumulation
    (:func:`speakergmm.verification.train_ubm`); this is where any other way of computing
    the statistics (on other machines, e.g. with ``dask.distributed``) plugs in.
``update(stats, model) -> model``
    :func:`ml_update` (EM), :func:`~speakergmm.mixture.bayesian.variational_update`
    (variational Bayes), MAP, ...
``lower_bound(stats, model, new_model) -> float``
    Default: the mean per-frame log-likelihood of the E-step (``stats``), i.e. that of
    ``model``; variational Bayes returns the ELBO of ``new_model``.
``on_iteration(IterationInfo)``
    Checkpoints, logging, callbacks.
``step(model) -> (model, lower_bound)``
    Instead of the first three, for a model whose E-step and update are one call (the
    GMM-HMM's Baum-Welch, whose statistics include transition counts).

:func:`iterate` runs the loop from one model; :func:`fit_best` runs it from ``n_init``
initialisations and keeps the best; :func:`split_fit` grows a mixture by binary splitting
(:mod:`speakergmm.mixture.split`) with an EM pass per step of the schedule, resumable
from any pass. :func:`run_em` and :func:`binary_split_fit` are the array / chunk-source
front ends of the last two.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

import numpy as np

from speakergmm.mixture.model import GMM
from speakergmm.mixture.sources import Chunk, ChunkSource, accumulate, iter_chunks
from speakergmm.mixture.split import (
    SPLIT_DIRECTION,
    SPLIT_DIRECTIONS,
    SPLIT_PERTURBATION,
    WIDEST_AXIS_PERTURBATION,
    SplitPass,
    frame_axes,
    full_covariance_view,
    split_components,
    split_schedule,
    split_sizes,
    trivial_gmm,
)
from speakergmm.mixture.stats import SufficientStats
from speakergmm.mixture.update import ml_update, variance_floor_vector
from speakergmm.utils import progress as progress_bar

__all__ = [
    "Chunk", "ChunkSource", "ConvergenceWarning", "EMHooks", "EMResult", "IterationInfo",
    "SPLIT_DIRECTION", "SPLIT_DIRECTIONS", "SPLIT_PERTURBATION", "SplitPass", "SplitState",
    "WIDEST_AXIS_PERTURBATION", "accumulate", "binary_split_fit", "fit_best", "frame_axes",
    "full_covariance_view", "iter_chunks", "iterate", "mean_log_likelihood", "run_em",
    "split_components", "split_fit", "split_schedule", "split_sizes", "trivial_gmm",
]

M = TypeVar("M")


class ConvergenceWarning(UserWarning):
    """EM (or variational inference) stopped at ``max_iter`` before converging."""


def mean_log_likelihood(stats: SufficientStats, model: Any = None, new_model: Any = None) -> float:
    """The default lower bound: mean per-frame log-likelihood of the E-step's statistics."""
    return stats.log_likelihood / stats.n_frames


@dataclass
class IterationInfo:
    """What :attr:`EMHooks.on_iteration` receives after every update."""

    iteration: int  # 1-based, counted from the start of this run (or split pass index)
    lower_bound: float
    previous_lower_bound: float
    model: Any  # the updated model
    stats: SufficientStats | None  # the statistics it was updated from (None: a fused step)
    elapsed: float  # seconds since the run started
    split_pass: SplitPass | None = None  # in split_fit: where in the schedule


@dataclass
class EMHooks(Generic[M]):
    """The pieces plugged into the driver (see the module docstring): ``accumulate`` and
    ``update``, or a fused ``step``."""

    accumulate: Callable[[M], SufficientStats] | None = None
    update: Callable[[SufficientStats, M], M] | None = None
    lower_bound: Callable[[SufficientStats, M, M], float] = mean_log_likelihood
    on_iteration: Callable[[IterationInfo], None] | None = None
    step: Callable[[M], tuple[M, float]] | None = None

    def __post_init__(self) -> None:
        if self.step is None and (self.accumulate is None or self.update is None):
            raise TypeError("EMHooks needs accumulate and update, or step")


@dataclass
class EMResult:
    """Outcome of :func:`iterate`, :func:`fit_best` and :func:`run_em`."""

    model: Any
    converged: bool
    n_iter: int
    lower_bound: float  # the bound of the last iteration (see EMHooks.lower_bound)
    history: list = field(default_factory=list)  # the bound of every iteration

    @property
    def gmm(self) -> Any:
        """The model (a :class:`GMM` for EM; the name predates other models)."""
        return self.model


def _step(model: M, hooks: EMHooks[M]) -> tuple[M, float, SufficientStats | None]:
    """One iteration: E-step pass, bound, update."""
    if hooks.step is not None:
        new_model, bound = hooks.step(model)
        return new_model, float(bound), None
    stats = hooks.accumulate(model)
    if stats.n_frames <= 0:
        raise ValueError("the data source yielded no frames")
    new_model = hooks.update(stats, model)
    return new_model, float(hooks.lower_bound(stats, model, new_model)), stats


def iterate(model: M, hooks: EMHooks[M], *, max_iter: int = 100, tol: float | None = 1e-3,
            initial_lower_bound: float = -np.inf, show_progress: bool | None = False,
            desc: str = "EM", verbose: int = 0, verbose_interval: int = 10,
            report_change: bool = False, stop_when: str = "small_change") -> EMResult:
    """Run the EM loop from ``model`` until the lower bound changes by less than ``tol``.

    Iteration ``i`` computes the statistics under the current parameters, then updates
    them; with the default bound (the E-step's mean log-likelihood, that of the parameters
    before the update) this is scikit-learn's convention, so ``n_iter`` and ``lower_bound``
    compare directly. ``tol=None`` runs exactly ``max_iter`` iterations.

    ``stop_when``: ``"small_change"`` (scikit-learn) converges when ``|bound - previous| <
    tol``; ``"small_gain"`` (hmmlearn's ``ConvergenceMonitor``) when ``bound - previous <
    tol``, so a decrease stops it too. The first iteration never converges.

    ``initial_lower_bound`` is the bound the starting parameters were reached with (a warm
    start continues from it, so an already converged model stops after one iteration).
    ``verbose >= 2`` prints every ``verbose_interval``-th iteration (scikit-learn's format;
    ``report_change`` prints the change of the bound instead of the bound).
    """
    if stop_when not in ("small_change", "small_gain"):
        raise ValueError(f"stop_when must be 'small_change' or 'small_gain'; got {stop_when!r}")
    lower_bound = initial_lower_bound
    history: list[float] = []
    converged = False
    n_iter = 0
    start = time.perf_counter()
    for n_iter in progress_bar(range(1, max_iter + 1), desc=desc, total=max_iter,
                               enabled=show_progress, unit="iteration"):
        previous_bound = lower_bound
        model, lower_bound, stats = _step(model, hooks)
        history.append(lower_bound)
        if verbose >= 2 and n_iter % verbose_interval == 0:
            shown = (f"ll change {lower_bound - previous_bound:.5f}" if report_change
                     else f"log-likelihood {lower_bound:.5f}")
            print(f"  Iteration {n_iter}\t time lapse {time.perf_counter() - start:.5f}s\t {shown}")
        if hooks.on_iteration is not None:
            hooks.on_iteration(IterationInfo(n_iter, lower_bound, previous_bound, model, stats,
                                             time.perf_counter() - start))
        gain = lower_bound - previous_bound
        if tol is not None and (abs(gain) if stop_when == "small_change" else gain) < tol:
            converged = True
            break
    return EMResult(model, converged, n_iter, float(lower_bound), history)


def fit_best(initialise: Callable[[], M], hooks: EMHooks[M], *, n_init: int = 1,
             max_iter: int = 100, tol: float | None = 1e-3, initial_lower_bound: float = -np.inf,
             evaluate: Callable[[M], float] | None = None, verbose: int = 0,
             verbose_interval: int = 10, report_change: bool = False,
             warn_stacklevel: int = 2) -> EMResult:
    """:func:`iterate` from ``n_init`` models made by ``initialise()``; keeps the best bound.

    With ``max_iter=0`` no iteration runs and a start's bound is ``evaluate(model)`` (or
    ``initial_lower_bound`` without it). Warns with :class:`ConvergenceWarning` when the
    kept run did not converge (and ``max_iter > 0``). ``verbose >= 1`` prints one line per
    initialisation, as scikit-learn does.
    """
    best: EMResult | None = None
    for init in range(n_init):
        if verbose:
            print(f"Initialization {init}")
        start = time.perf_counter()
        model = initialise()
        if max_iter == 0:
            bound = initial_lower_bound if evaluate is None else float(evaluate(model))
            result = EMResult(model, False, 0, bound, [])
        else:
            result = iterate(model, hooks, max_iter=max_iter, tol=tol,
                             initial_lower_bound=initial_lower_bound, verbose=verbose,
                             verbose_interval=verbose_interval, report_change=report_change)
        if verbose:
            status = "converged" if result.converged else "did not converge"
            print(f"Initialization {status}. time lapse {time.perf_counter() - start:.5f}s\t "
                  f"lower bound {result.lower_bound:.5f}")
        if best is None or result.lower_bound > best.lower_bound:
            best = result
    assert best is not None, "n_init must be >= 1"
    if not best.converged and max_iter > 0:
        warnings.warn(
            f"Best of {n_init} initialisation(s) did not converge within max_iter="
            f"{max_iter} iterations; try a larger max_iter or tol, or check the data",
            ConvergenceWarning, stacklevel=warn_stacklevel + 1,
        )
    return best


# ---------------------------------------------------------------------------- splitting
@dataclass
class SplitState:
    """Where a :func:`split_fit` run stands: what a checkpoint holds, and its result.

    ``passes_done`` passes of the schedule are finished; ``gmm`` is the model after the last
    of them; ``history`` holds one bound per pass (pass 0: the global Gaussian's own mean
    log-likelihood); ``variance_floor`` is the absolute floor in force (resolved after pass
    0); ``n_frames`` the (weighted) number of frames in the data.
    """

    gmm: GMM | None = None
    passes_done: int = 0
    history: list = field(default_factory=list)
    variance_floor: np.ndarray | None = None
    n_frames: float = 0.0


def _gaussian_ml_loglik(gmm: GMM) -> float:
    """Mean log-likelihood per frame of data under its own one-Gaussian ML fit."""
    D, cov = gmm.n_features, gmm.covariances
    logdet = {"full": lambda: np.linalg.slogdet(cov[0])[1], "tied": lambda: np.linalg.slogdet(cov)[1],
              "diag": lambda: float(np.sum(np.log(cov[0]))),
              "spherical": lambda: D * float(np.log(cov[0]))}[gmm.covariance_type]()
    return float(-0.5 * (D * np.log(2 * np.pi) + logdet + D))


def _global_variances(gmm: GMM) -> np.ndarray:
    cov = gmm.covariances
    return {"full": lambda: np.diag(cov[0]), "tied": lambda: np.diag(cov),
            "diag": lambda: cov[0], "spherical": lambda: np.full(gmm.n_features, cov[0])
            }[gmm.covariance_type]()


def resolve_variance_floor(global_variances: np.ndarray, variance_floor: Any = None,
                           variance_floor_ratio: float = 0.0) -> np.ndarray | None:
    """The absolute floor: the larger of ``variance_floor`` (absolute, per feature or
    scalar) and ``variance_floor_ratio`` times the data's global variances; None when
    neither is set."""
    ratio = float(variance_floor_ratio or 0.0)
    if variance_floor is None and ratio == 0.0:
        return None
    relative = ratio * np.asarray(global_variances, dtype=np.float64)
    absolute = variance_floor_vector(variance_floor, relative.shape[0])
    return relative if absolute is None else np.maximum(absolute, relative)


def split_fit(accumulate_fn: Callable[[GMM], SufficientStats], n_components: int,
              covariance_type: str, n_features: int, *, iter_per_split: int = 5,
              final_iter: int | None = None, reg_covar: float = 1e-6,
              variance_floor: Any = None, variance_floor_ratio: float = 0.0,
              perturbation: float = SPLIT_PERTURBATION, direction: str = SPLIT_DIRECTION,
              dtype: Any = np.float64, centre: Any = None, resume: SplitState | None = None,
              stop_after: int | None = None,
              on_iteration: Callable[[IterationInfo, SplitState], None] | None = None,
              show_progress: bool | None = False, desc: str = "splitting") -> SplitState:
    """Grow a mixture 1 -> 2 -> 4 -> ... -> ``n_components`` by splitting, with EM between.

    Runs :func:`split_schedule` pass by pass, each pass one call of ``accumulate_fn``
    (the driver's accumulate hook): pass 0 gathers the global statistics (under a trivial
    one-component model centred at ``centre``, e.g. the mean of some of the data) and
    estimates the global Gaussian, which also resolves the variance floor (the larger of
    the absolute ``variance_floor`` and ``variance_floor_ratio`` times the global
    variances); every later pass is one EM iteration (:func:`ml_update`), the first at
    each size after a split (:func:`split_components` with ``perturbation`` and
    ``direction``; spherical components split along ``"widest"`` use the principal axes of
    their frames, :func:`frame_axes`, one extra pass). When ``n_components`` is not a power
    of two the last split splits only the heaviest components.

    ``resume`` continues a run from the state an ``on_iteration`` hook saved (a
    checkpoint): the result equals that of an uninterrupted run. ``stop_after`` stops once
    that many passes are done in total. ``on_iteration(info, state)`` runs after every
    pass, with the state to save.
    """
    if direction not in SPLIT_DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(SPLIT_DIRECTIONS)}; got {direction!r}")
    schedule = split_schedule(n_components, iter_per_split, final_iter)
    state = SplitState() if resume is None else resume
    end = len(schedule) if stop_after is None else min(len(schedule), stop_after)
    dtype = np.dtype(dtype)

    def grow(gmm: GMM, size: int) -> GMM:
        # One binary split at a time, so that sizes given no EM pass still split like
        # successive doublings.
        while gmm.n_components < size:
            axes = (frame_axes(gmm, stats_fn=accumulate_fn)
                    if covariance_type == "spherical" and direction == "widest" else None)
            gmm = split_components(gmm, min(2 * gmm.n_components, size), perturbation,
                                   direction, axes)
        return gmm

    def update(stats: SufficientStats, gmm: GMM) -> GMM:
        return ml_update(stats, reg_covar=reg_covar, variance_floor=state.variance_floor,
                         previous=gmm, dtype=dtype)

    hooks = EMHooks(accumulate_fn, update)
    start = time.perf_counter()
    for p in progress_bar(range(state.passes_done, end), desc=desc,
                          total=max(0, end - state.passes_done), enabled=show_progress, unit="pass"):
        step = schedule[p]
        previous_bound = state.history[-1] if state.history else -np.inf
        if p == 0:
            stats = accumulate_fn(trivial_gmm(n_features, covariance_type, centre))
            if stats.n_frames <= 0:
                raise ValueError("the data source yielded no frames")
            global_gmm = ml_update(stats, reg_covar=reg_covar)
            state.variance_floor = resolve_variance_floor(_global_variances(global_gmm),
                                                          variance_floor, variance_floor_ratio)
            state.gmm = ml_update(stats, reg_covar=reg_covar, variance_floor=state.variance_floor,
                                  dtype=dtype)
            state.n_frames = stats.n_frames
            # Pass 0's statistics were taken under a placeholder model: the bound is the
            # global Gaussian's own log-likelihood (closed form at the ML estimate).
            bound = _gaussian_ml_loglik(state.gmm)
        else:
            assert state.gmm is not None, "resume needs the model of the last pass"
            state.gmm, bound, stats = _step(grow(state.gmm, step.n_components), hooks)
        state.history.append(bound)
        state.passes_done = p + 1
        if on_iteration is not None:
            on_iteration(IterationInfo(p, bound, previous_bound, state.gmm, stats,
                                       time.perf_counter() - start, step), state)
    if state.passes_done == len(schedule) and state.gmm is not None:
        state.gmm = grow(state.gmm, n_components)  # sizes given no EM pass at the end
    return state


# ---------------------------------------------------------------------------- front ends
def run_em(gmm: GMM, source: ChunkSource, max_iter: int = 100, tol: float = 1e-3,
           reg_covar: float = 1e-6, variance_floor: Any = None,
           callback: Callable[[int, float, GMM], None] | None = None,
           stats_fn: Callable[[GMM], SufficientStats] | None = None,
           initial_lower_bound: float = -np.inf) -> EMResult:
    """EM (ML updates) from ``gmm`` over an array or chunk source: :func:`iterate` with
    :func:`accumulate` (or ``stats_fn``, e.g. a parallel accumulation over a corpus) and
    :func:`ml_update`. ``callback(n_iter, lower_bound, gmm)`` runs after every update."""
    def update(stats: SufficientStats, model: GMM) -> GMM:
        return ml_update(stats, reg_covar=reg_covar, variance_floor=variance_floor, previous=model)

    on_iteration = (None if callback is None
                    else lambda info: callback(info.iteration, info.lower_bound, info.model))
    hooks = EMHooks(stats_fn or (lambda model: accumulate(model, source)), update,
                    on_iteration=on_iteration)
    return iterate(gmm, hooks, max_iter=max_iter, tol=tol, initial_lower_bound=initial_lower_bound)


def binary_split_fit(source: ChunkSource, n_components: int, covariance_type: str = "diag",
                     n_features: int | None = None, iter_per_split: int = 5,
                     reg_covar: float = 1e-6, variance_floor: Any = None,
                     perturbation: float = SPLIT_PERTURBATION, dtype: type = np.float64,
                     stats_fn: Callable[[GMM], SufficientStats] | None = None,
                     callback: Callable[[int, float, GMM], None] | None = None,
                     direction: str = SPLIT_DIRECTION, variance_floor_ratio: float = 0.0) -> GMM:
    """Grow a mixture 1 -> 2 -> 4 -> ... -> ``n_components`` over an array or chunk source.

    :func:`split_fit` with ``iter_per_split`` EM iterations at every size (the final one
    included); run more with :func:`run_em`. Splits default to the package's one split
    schedule, 0.8 standard deviations along each component's widest axis (see
    :mod:`speakergmm.mixture.split` for why). ``callback(pass, lower_bound, gmm)`` runs
    after every EM pass.
    """
    first_X = next(iter_chunks(source, n_features), (None,))[0]
    if first_X is None:
        raise ValueError("the data source yielded no frames")
    def on_iteration(info: IterationInfo, _state: SplitState) -> None:
        if callback is not None and info.iteration > 0:  # pass 0 is no EM iteration
            callback(info.iteration, info.lower_bound, info.model)

    state = split_fit(stats_fn or (lambda model: accumulate(model, source)), n_components,
                      covariance_type, first_X.shape[1], iter_per_split=iter_per_split,
                      reg_covar=reg_covar, variance_floor=variance_floor,
                      variance_floor_ratio=variance_floor_ratio, perturbation=perturbation,
                      direction=direction, dtype=dtype,
                      # Global statistics centred near the data (the first chunk's mean).
                      centre=first_X.mean(axis=0) if first_X.shape[0] else None,
                      on_iteration=on_iteration)
    assert state.gmm is not None
    return state.gmm
