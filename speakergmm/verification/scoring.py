"""Verification scores: average per-frame log-likelihood ratio of speaker model vs UBM.

For a test utterance ``X = x_1..x_T`` and speaker model ``s`` (MAP-adapted from the UBM),

    score(s, X) = 1/T * sum_t [ log p(x_t | s) - log p(x_t | UBM) ].

**Top-C fast scoring** (Reynolds et al. 2000): for every frame only the C components that
score best under the UBM are evaluated (C = 5 by default); both likelihoods are summed over
those components. Because MAP-adapted models keep a one-to-one correspondence with the UBM's
components, this loses next to nothing and makes scoring C/K as costly.

**Vectorised over trials.** Trials are grouped by test utterance; the UBM's top-C
selection is computed once per utterance (batched over several utterances), then every
speaker model a trial needs is evaluated at once. For diagonal models the log-likelihood
*difference* to the UBM at component ``k`` is

    log w'_sk - log w_k + [x*x, x] . [-(P'_sk - P_k)/2 ; P'_sk mu'_sk - P_k mu_k] - const

so with frames grouped by selected component a single matrix product per component gives
all speakers' terms (``x . P (mu'_s - mu)`` for mean-only models: the speakers' means are
stacked). Full-covariance models are evaluated per speaker with :meth:`GMM.log_joint_at`.
``exact=True`` uses all components (C = K).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from speakergmm.mixture import GMM
from speakergmm.cluster import as_executor, executor_workers
from speakergmm.utils import effective_jobs, parallel_map, progress
from speakergmm.verification.enroll import SpeakerModels
from speakergmm.verification.sources import (FeatureSource, VerificationError, as_source,
                                              check_cluster_source, check_utterance)

__all__ = [
    "score_trials",
    "score_matrix",
    "frame_llr",
    "top_components",
    "normalize_scores",
    "cohort_scores",
    "NORMALIZATIONS",
]

_LOG_2PI = float(np.log(2.0 * np.pi))
# Elements of the per-batch (frames x C x speakers) working array.
_WORK_ELEMENTS = 1 << 22
NORMALIZATIONS = ("none", "znorm", "tnorm", "ztnorm", "snorm")


# --------------------------------------------------------------------------- UBM side
def top_components(ubm: GMM, X: np.ndarray, top_c: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The UBM's ``top_c`` best components per frame and their log-joints.

    Returns
    -------
    idx : int array (N, C)
        Component indices (all K, in order, when ``top_c`` is None or >= K).
    log_joint : float64 array (N, C)
        ``log w_k + log N(x | k)`` under the UBM at those components.
    """
    lj = np.asarray(ubm.log_joint(X), dtype=np.float64)
    K = ubm.n_components
    if top_c is None or top_c >= K:
        return np.broadcast_to(np.arange(K), lj.shape).copy(), lj
    if top_c < 1:
        raise ValueError(f"top_c must be >= 1; got {top_c}")
    idx = np.argpartition(-lj, top_c - 1, axis=1)[:, :top_c]
    return idx, np.take_along_axis(lj, idx, axis=1)


# --------------------------------------------------------------------------- model side
@dataclass
class _DiagDelta:
    """Per-speaker differences to the UBM of diagonal models, in centred coordinates."""

    lin: np.ndarray          # (K, D, S): P'_s mu'_s - P mu   (mu centred)
    quad: np.ndarray | None  # (K, D, S): -(P'_s - P)/2, None when variances are shared
    const: np.ndarray        # (K, S)
    centre: np.ndarray       # (D,)


def _diag_delta(ubm: GMM, models: SpeakerModels, rows: np.ndarray) -> _DiagDelta:
    K, D = ubm.n_components, ubm.n_features
    centre = ubm.weights @ ubm.means
    var0 = ubm.covariances if ubm.covariance_type == "diag" else np.repeat(ubm.covariances[:, None], D, 1)
    P0 = 1.0 / var0                                          # (K, D)
    mu0 = ubm.means - centre                                 # (K, D)
    mu = models.means[rows] - centre                         # (S, K, D)
    with np.errstate(divide="ignore"):
        logw0 = np.log(ubm.weights)
        logw = logw0[None] if models.weights is None else np.log(models.weights[rows])
    const0 = logw0 + 0.5 * np.log(P0).sum(1) - 0.5 * np.sum(P0 * mu0 * mu0, 1)
    if models.covariances is None:
        P = P0[None]
        quad = None
    else:
        cov = models.covariances[rows]
        P = 1.0 / (cov if cov.ndim == 3 else np.repeat(cov[:, :, None], D, 2))
        quad = np.ascontiguousarray((-0.5 * (P - P0[None])).transpose(1, 2, 0))
    lin = P * mu - (P0 * mu0)[None]                          # (S, K, D)
    const = logw + 0.5 * np.log(P).sum(2) - 0.5 * np.sum(P * mu * mu, 2) - const0[None]
    const = np.broadcast_to(const, (len(rows), K))
    with np.errstate(invalid="ignore"):
        const = np.where(np.isfinite(const), const, -np.inf)  # zero-weight components
    return _DiagDelta(np.ascontiguousarray(lin.transpose(1, 2, 0)), quad,
                      np.ascontiguousarray(const.T), centre)


def _diag_differences(delta: _DiagDelta, X: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``log p_s(x_t, k) - log p_ubm(x_t, k)`` at the selected components: (N, C, S)."""
    N, C = idx.shape
    S = delta.const.shape[1]
    Xc = X - delta.centre
    Xc2 = Xc * Xc if delta.quad is not None else None
    flat = idx.ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(flat, minlength=delta.const.shape[0]))])
    out = np.empty((N * C, S))
    for k in np.flatnonzero(np.diff(bounds)):
        pairs = order[bounds[k]:bounds[k + 1]]
        frames = pairs // C
        block = Xc[frames] @ delta.lin[k]
        if Xc2 is not None:
            block += Xc2[frames] @ delta.quad[k]
        block += delta.const[k]
        out[pairs] = block
    return out.reshape(N, C, S)


def _combine(ubm_top: np.ndarray, diffs: np.ndarray) -> np.ndarray:
    """Per-frame LLR from the UBM's top-C log-joints and the speakers' differences.

    ``log sum_c p_s(x, c) - log sum_c p_ubm(x, c) = logsumexp_c(log post_c + diff_c)`` with
    ``post`` the UBM's posteriors within the top C, all in the log domain: a component whose
    UBM posterior underflows (features far from the UBM, e.g. of another normalisation) can
    still carry a large difference, and the frame's LLR stays finite.
    """
    m = ubm_top.max(axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        log_post = ubm_top - (np.log(np.exp(ubm_top - m).sum(axis=1, keepdims=True)) + m)
    z = diffs + log_post[:, :, None]                              # (N, C, S)
    zmax = z.max(axis=1)                                          # (N, S)
    zmax = np.where(np.isfinite(zmax), zmax, 0.0)
    np.subtract(z, zmax[:, None, :], out=z)
    np.exp(z, out=z)
    with np.errstate(divide="ignore"):
        return np.log(z.sum(axis=1)) + zmax


def frame_llr(ubm: GMM, models: SpeakerModels, X: np.ndarray, rows: Sequence[int] | None = None,
              top_c: int | None = 5) -> np.ndarray:
    """Per-frame log-likelihood ratios of speaker models vs the UBM.

    Parameters
    ----------
    ubm : GMM
    models : SpeakerModels
    X : array (N, D)
    rows : sequence of int, optional
        Which models (rows of ``models``); all by default.
    top_c : int or None
        Components per frame (None: exact scoring over all K).

    Returns
    -------
    array (N, len(rows))
    """
    rows = np.arange(len(models)) if rows is None else np.asarray(rows, dtype=int)
    X = np.asarray(X, dtype=np.float64)
    idx, ubm_top = top_components(ubm, X, top_c)
    return _frame_llr_at(ubm, models, X, rows, idx, ubm_top, None)


def _frame_llr_at(ubm: GMM, models: SpeakerModels, X: np.ndarray, rows: np.ndarray,
                  idx: np.ndarray, ubm_top: np.ndarray, delta: _DiagDelta | None) -> np.ndarray:
    if ubm.covariance_type in ("diag", "spherical"):
        if delta is None:
            delta = _diag_delta(ubm, models, rows)
        return _combine(ubm_top, _diag_differences(delta, X, idx))
    ubm_ll = _logsumexp(ubm_top)
    out = np.empty((X.shape[0], len(rows)))
    for j, r in enumerate(rows):
        model = models.model(int(r), ubm)
        out[:, j] = _logsumexp(np.asarray(model.log_joint_at(X, idx), dtype=np.float64)) - ubm_ll
    return out


def _logsumexp(a: np.ndarray) -> np.ndarray:
    m = a.max(axis=1)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - m[:, None]).sum(axis=1)) + m


# --------------------------------------------------------------------------- trials
def _check_pair(ubm: GMM, models: SpeakerModels, src: FeatureSource) -> None:
    models.check_ubm(ubm)
    if models.n_features != ubm.n_features or models.n_components != ubm.n_components:
        raise VerificationError("speaker models and UBM differ in size")
    models.check_feature_config(src.feature_config())


@dataclass(frozen=True)
class ScoringShard:
    """The trials of some test utterances to score: what a worker process receives."""

    ubm: Any  # the GMM in-process; GMM.to_arrays() for a worker
    models: SpeakerModels
    source: FeatureSource
    groups: list  # (test utterance id, trial indices, model rows) per utterance
    top_c: int | None  # components per frame; None: all
    on_error: str  # "raise", or "nan": record the utterance's error and go on
    show_progress: bool | None


def _score_shard(task: ScoringShard) -> tuple[list[tuple[int, float]], dict[str, str]]:
    """Score the trials of a list of test utterances (in-process or in a worker)."""
    ubm = GMM.from_arrays(task.ubm) if isinstance(task.ubm, dict) else task.ubm
    models, src, groups, top_c, on_error = task.models, task.source, task.groups, task.top_c, task.on_error
    S_all = len(models)
    C = ubm.n_components if top_c is None else min(top_c, ubm.n_components)
    results: list[tuple[int, float]] = []
    errors: dict[str, str] = {}
    # Group utterances into batches whose working array stays bounded.
    batch: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    batch_frames = 0
    batch_rows: set[int] = set()
    full_delta = None
    if ubm.covariance_type in ("diag", "spherical") and S_all * ubm.n_components * ubm.n_features <= 1 << 24:
        full_delta = _diag_delta(ubm, models, np.arange(S_all))  # reused by every batch

    def flush() -> None:
        nonlocal batch, batch_frames, batch_rows
        if not batch:
            return
        rows = np.arange(S_all) if full_delta is not None else np.array(sorted(batch_rows))
        X = np.concatenate([b[1] for b in batch])
        idx, ubm_top = top_components(ubm, X, top_c)
        llr = _frame_llr_at(ubm, models, X, rows, idx, ubm_top, full_delta)
        lengths = np.array([b[1].shape[0] for b in batch])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        means = np.add.reduceat(llr, starts, axis=0) / lengths[:, None]
        position = {int(r): j for j, r in enumerate(rows)}
        for u, (_, _, trial_ids, model_rows) in enumerate(batch):
            for t, r in zip(trial_ids, model_rows):
                results.append((int(t), float(means[u, position[int(r)]])))
        batch, batch_frames, batch_rows = [], 0, set()

    for utt, trial_ids, model_rows in progress(groups, desc="scoring", unit="utt", enabled=task.show_progress):
        try:
            X = check_utterance(np.asarray(src.load(utt), dtype=np.float64), utt, ubm.n_features)
            if X.shape[0] == 0:
                raise VerificationError(f"utterance {utt!r}: no frames to score (all removed by VAD?)")
        except VerificationError as exc:
            if on_error == "raise":
                raise
            errors[utt] = str(exc)
            continue
        n_rows = len(batch_rows | set(map(int, model_rows))) if full_delta is None else S_all
        if batch and (batch_frames + X.shape[0]) * C * max(n_rows, 1) > _WORK_ELEMENTS:
            flush()
        batch.append((utt, X, trial_ids, model_rows))
        batch_frames += X.shape[0]
        batch_rows.update(map(int, model_rows))
    flush()
    return results, errors


def score_trials(ubm: GMM, models: SpeakerModels, source: Any,
                 trials: Sequence[tuple[str, str]], *, top_c: int | None = 5, exact: bool = False,
                 jobs: int = 1, errors: dict[str, str] | None = None,
                 show_progress: bool | None = None, client: Any = None) -> np.ndarray:
    """Score trials ``(speaker_id, test_utterance_id)``: average per-frame LLR.

    Parameters
    ----------
    ubm : GMM
        The UBM the models were adapted from (checked by fingerprint).
    models : SpeakerModels
    source : feature store, mapping, list of arrays or paths
        Test features (their configuration, when known, is checked against the models').
    trials : sequence of (speaker_id, utterance_id)
    top_c : int
        Components per frame for fast scoring (default 5).
    exact : bool
        Evaluate all components (overrides ``top_c``).
    jobs : int
        Worker processes (``0``: all cores); test utterances are shared out.
    client : dask.distributed.Client or concurrent.futures.Executor, optional
        Score on a cluster instead (see :mod:`speakergmm.cluster`); workers read the test
        features from the source's paths. Scores do not depend on where they ran.
    errors : dict, optional
        When given, an unreadable or empty test utterance does not abort scoring: its trials
        get NaN and ``errors[utt] = reason``. Otherwise the first such error is raised.

    Returns
    -------
    array (n_trials,)
    """
    src = as_source(source)
    _check_pair(ubm, models, src)
    top = None if exact else top_c
    if top is not None and top < 1:
        raise ValueError(f"top_c must be >= 1; got {top_c}")
    by_utt: dict[str, tuple[list[int], list[int]]] = {}
    for t, pair in enumerate(trials):
        speaker, utt = pair[0], pair[1]
        row = models.index(str(speaker))
        ids, rows = by_utt.setdefault(str(utt), ([], []))
        ids.append(t)
        rows.append(row)
    groups = [(utt, np.array(ids), np.array(rows)) for utt, (ids, rows) in by_utt.items()]
    scores = np.full(len(trials), np.nan)
    executor = as_executor(client)
    if executor is not None:
        check_cluster_source(src, "scoring")
    n_workers = max(1, min(executor_workers(executor) if executor is not None else effective_jobs(jobs),
                           len(groups)))
    on_error = "raise" if errors is None else "nan"
    if n_workers == 1 and executor is None:
        tasks = [ScoringShard(ubm, models, src, groups, top, on_error, show_progress)]
    else:
        bounds = np.linspace(0, len(groups), n_workers * 2 + 1).round().astype(int)
        arrays = ubm.to_arrays()
        tasks = [ScoringShard(arrays, models, src, groups[a:b], top, on_error, False)
                 for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    with threadpool_limits(limits=1) if (n_workers == 1 and executor is None) else contextlib.nullcontext():
        for results, errs in parallel_map(_score_shard, tasks, jobs=n_workers, desc="scoring",
                                          executor=executor):
            for t, value in results:
                scores[t] = value
            if errors is not None:
                errors.update(errs)
    return scores


def score_matrix(ubm: GMM, models: SpeakerModels, source: Any,
                 utterances: Sequence[str] | None = None, *, top_c: int | None = 5,
                 exact: bool = False, jobs: int = 1, show_progress: bool | None = None,
                 client: Any = None) -> np.ndarray:
    """Every model against every utterance: array (n_models, n_utterances).

    Models in rows, test segments in columns (the layout of
    :mod:`speakergmm.verification.normalization`).
    """
    src = as_source(source)
    utts = list(src.ids() if utterances is None else utterances)
    trials = [(s, u) for u in utts for s in models.speaker_ids]
    flat = score_trials(ubm, models, src, trials, top_c=top_c, exact=exact, jobs=jobs,
                        show_progress=show_progress, client=client)
    return flat.reshape(len(utts), len(models)).T


# --------------------------------------------------------------------------- normalisation
def cohort_scores(ubm: GMM, models: SpeakerModels, cohort_models: SpeakerModels | None,
                  z_source: Any | None, z_utterances: Sequence[str] | None,
                  test_source: Any, test_utterances: Sequence[str], *, top_c: int | None = 5,
                  exact: bool = False, jobs: int = 1, client: Any = None) -> dict[str, np.ndarray]:
    """The cohort score matrices score normalisation needs.

    Returns a dict with ``z_scores`` (models vs Z impostor utterances), ``t_scores``
    (cohort models vs test utterances) and ``cohort_z_scores`` (cohort models vs Z
    impostor utterances), each present when its inputs are given.
    """
    out: dict[str, np.ndarray] = {}
    kw = dict(top_c=top_c, exact=exact, jobs=jobs, client=client)
    if z_source is not None:
        out["z_scores"] = score_matrix(ubm, models, z_source, z_utterances, **kw)
    if cohort_models is not None:
        out["t_scores"] = score_matrix(ubm, cohort_models, test_source, test_utterances, **kw)
        if z_source is not None:
            out["cohort_z_scores"] = score_matrix(ubm, cohort_models, z_source, z_utterances, **kw)
    return out


def normalize_scores(method: str, scores: np.ndarray, model_index: np.ndarray,
                     test_index: np.ndarray, cohort: Mapping[str, np.ndarray], *,
                     top_n: int | None = None, min_std: float | None = 1e-6) -> np.ndarray:
    """Apply Z-, T-, ZT- or S-norm to trial scores (via :mod:`.normalization`).

    Parameters
    ----------
    method : {"none", "znorm", "tnorm", "ztnorm", "snorm"}
    scores : array (n_trials,)
    model_index, test_index : int arrays (n_trials,)
        Row of each trial's model in ``z_scores`` and column of its test utterance in
        ``t_scores``.
    cohort : mapping
        From :func:`cohort_scores`.
    top_n : int, optional
        Adaptive normalisation: only the ``top_n`` highest cohort scores (AS-norm).
    """
    from speakergmm.verification import normalization as norm

    if method not in NORMALIZATIONS:
        raise ValueError(f"unknown score normalisation {method!r} (choose from {', '.join(NORMALIZATIONS)})")
    if method == "none":
        return np.asarray(scores, dtype=np.float64)
    trials = (np.asarray(model_index), np.asarray(test_index))
    need = {"znorm": ("z_scores",), "tnorm": ("t_scores",),
            "ztnorm": ("z_scores", "t_scores", "cohort_z_scores"),
            "snorm": ("z_scores", "t_scores")}[method]
    missing = [n for n in need if n not in cohort]
    if missing:
        raise VerificationError(f"{method} needs cohort scores {', '.join(missing)}: give an impostor cohort")
    if method == "znorm":
        return norm.znorm(scores, cohort["z_scores"], trials=trials, top_n=top_n, min_std=min_std)
    if method == "tnorm":
        return norm.tnorm(scores, cohort["t_scores"], trials=trials, top_n=top_n, min_std=min_std)
    if method == "ztnorm":
        return norm.ztnorm(scores, cohort["z_scores"], cohort["t_scores"], cohort["cohort_z_scores"],
                           trials=trials, min_std=min_std)
    return norm.snorm(scores, cohort["z_scores"], cohort["t_scores"], trials=trials, top_n=top_n,
                      min_std=min_std)
