"""Total-variability (i-vector) model on the UBM's Baum-Welch statistics.

Model (Dehak et al. 2011; the EM of Kenny 2005 / Kaldi's ``ivector-extractor``): the
mean supervector of an utterance's GMM is ``m + o + T w`` with ``m`` the UBM means, ``o`` a
learnt offset (from minimum-divergence re-estimation, zero at the start), ``T`` the
(K*D, R) total-variability matrix and the latent factor ``w ~ N(0, I)``; the covariances
are the UBM's. The frames' alignment to the components is the UBM's posterior, fixed.

Statistics (:class:`UtteranceStats`): each utterance's zeroth-order ``N_k`` and centred
first-order ``F_k = sum_t gamma_tk (x_t - m_k)`` come from the core's E-step
(:meth:`GMM.e_step` -> :class:`~speakergmm.mixture.SufficientStats`), the same statistics
MAP enrolment uses, so one pass over the features serves T training, extraction and
GMM-UBM enrolment.

Everything is computed in the space whitened by the UBM covariances
(``f_k = Sigma_k^{-1/2} (F_k - N_k o_k)``, ``T~_k = Sigma_k^{-1/2} T_k``), where

- the posterior of ``w`` is Gaussian with precision ``L = I + sum_k N_k T~_k^T T~_k`` and
  mean ``L^{-1} sum_k T~_k^T f_k`` (the i-vector);
- the EM update is ``T~_k = (sum_u f_uk E[w_u]^T) (sum_u N_uk E[w_u w_u^T])^{-1}``;
- minimum-divergence re-estimation (Kaldi, SIDEKIT) is the M-step of the prior's mean
  ``h`` and covariance ``P`` from the same posteriors, followed by the exact
  re-parametrisation ``o <- o + T h``, ``T <- T chol(P)`` that restores ``w ~ N(0, I)``;
  it is part of the EM step, so the likelihood still never decreases, and it speeds
  convergence considerably;
- the objective (:attr:`TotalVariability.history_`) is the marginal log-likelihood of the
  frames given their alignment, per frame: ``sum_u [-0.5 log|L_u| + 0.5 b_u^T L_u^{-1}
  b_u] + C`` where ``C`` depends on the second-order statistics (kept per utterance as
  one number, ``sum_k sum_d S_ukd / sigma_kd^2``) and the offset only.

The E-step runs in batches of utterances (bounded memory) with the per-component
products ``T~_k^T T~_k`` precomputed once per pass; ``dtype=float32`` runs it in single
precision (accumulators stay float64). Training writes a checkpoint after every pass and
resumes from it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from speakergmm.cluster import as_executor, executor_workers
from speakergmm.io import ModelFileError, load_model_file, save_model_file
from speakergmm.mixture import GMM, SufficientStats
from speakergmm.utils import effective_jobs, parallel_map, progress
from speakergmm.verification.sources import VerificationError, as_source, check_cluster_source, iter_buffered

__all__ = [
    "UtteranceStats",
    "TotalVariability",
    "utterance_stats",
    "IVECTOR_EXTRACTOR_FORMAT",
    "UTTERANCE_STATS_FORMAT",
]

IVECTOR_EXTRACTOR_FORMAT = "speakergmm.TotalVariability"
IVECTOR_EXTRACTOR_VERSION = 1
UTTERANCE_STATS_FORMAT = "speakergmm.UtteranceStats"
UTTERANCE_STATS_VERSION = 2
_LOG_2PI = float(np.log(2.0 * np.pi))


# --------------------------------------------------------------------------- statistics
@dataclass
class UtteranceStats:
    """Per-utterance Baum-Welch statistics under one diagonal UBM.

    Attributes
    ----------
    utterance_ids : list of str
    zeroth : array (U, K)
        ``N_uk = sum_t gamma_tk``.
    first : array (U, K, D)
        ``F_uk = sum_t gamma_tk (x_t - m_k)``, centred on the UBM means.
    quadratic : array (U,)
        ``sum_k sum_d sum_t gamma_tk (x_td - m_kd)^2 / sigma_kd^2``: the second-order
        statistics weighted by the UBM's precisions, all the objective needs of them.
    n_frames : array (U,)
    ubm_fingerprint : str
    """

    utterance_ids: list[str]
    zeroth: np.ndarray
    first: np.ndarray
    quadratic: np.ndarray
    n_frames: np.ndarray
    ubm_fingerprint: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.utterance_ids = [str(u) for u in self.utterance_ids]
        self.zeroth = np.asarray(self.zeroth, dtype=np.float64)
        self.first = np.asarray(self.first)
        if self.first.dtype not in (np.float32, np.float64):
            self.first = self.first.astype(np.float64)
        self.quadratic = np.asarray(self.quadratic, dtype=np.float64)
        self.n_frames = np.asarray(self.n_frames, dtype=np.float64)
        U = len(self.utterance_ids)
        if self.zeroth.ndim != 2 or self.zeroth.shape[0] != U:
            raise ValueError(f"zeroth must have shape ({U}, K); got {self.zeroth.shape}")
        K = self.zeroth.shape[1]
        if self.first.ndim != 3 or self.first.shape[:2] != (U, K):
            raise ValueError(f"first must have shape ({U}, {K}, D); got {self.first.shape}")
        if self.quadratic.shape != (U,):
            raise ValueError(f"quadratic must have shape ({U},); got {self.quadratic.shape}")
        if self.n_frames.shape != (U,):
            raise ValueError(f"n_frames must have shape ({U},); got {self.n_frames.shape}")
        self._index = {u: i for i, u in enumerate(self.utterance_ids)}

    def __len__(self) -> int:
        return len(self.utterance_ids)

    @property
    def n_components(self) -> int:
        return self.zeroth.shape[1]

    @property
    def n_features(self) -> int:
        return self.first.shape[2]

    def rows(self, utterances: Sequence[str]) -> np.ndarray:
        """Row indices of ``utterances``; :class:`VerificationError` naming a missing one."""
        try:
            return np.array([self._index[u] for u in utterances], dtype=int)
        except KeyError as exc:
            raise VerificationError(f"utterance {exc.args[0]!r}: no statistics for it") from None

    def __contains__(self, utt: object) -> bool:
        return utt in self._index

    def subset(self, utterances: Sequence[str]) -> "UtteranceStats":
        """The statistics of ``utterances``, in that order."""
        rows = self.rows(utterances)
        return UtteranceStats([self.utterance_ids[i] for i in rows], self.zeroth[rows], self.first[rows],
                              self.quadratic[rows], self.n_frames[rows], self.ubm_fingerprint, dict(self.info))

    def sufficient_stats(self, utterances: Sequence[str], ubm: GMM) -> SufficientStats:
        """The pooled :class:`SufficientStats` (zeroth, first order) of ``utterances``,
        about the UBM's means, for MAP enrolment of means without another pass over the frames.

        Second-order moments are not kept per utterance; they are zero here, so use the
        result for ``adapt="m"`` or ``"w"`` only.
        """
        rows = self.rows(utterances)
        K, D = self.n_components, self.n_features
        stats = SufficientStats("diag", np.zeros(K), np.zeros((K, D)), np.zeros((K, D)))
        N = self.zeroth[rows].sum(axis=0)
        F = self.first[rows].astype(np.float64).sum(axis=0) + N[:, None] * ubm.means
        stats.zeroth = N
        stats.centred_first = F
        stats.n_frames = float(self.n_frames[rows].sum())
        return stats

    def save(self, path: str | Path) -> None:
        save_model_file(path, UTTERANCE_STATS_FORMAT, UTTERANCE_STATS_VERSION, {
            "utterance_ids": np.array(self.utterance_ids, dtype=str), "zeroth": self.zeroth,
            "first": self.first, "quadratic": self.quadratic, "n_frames": self.n_frames,
        }, {"ubm_fingerprint": self.ubm_fingerprint, "info": self.info})

    @classmethod
    def load(cls, path: str | Path) -> "UtteranceStats":
        arrays, meta, _ = load_model_file(path, UTTERANCE_STATS_FORMAT, (UTTERANCE_STATS_VERSION,),
                                          required=("utterance_ids", "zeroth", "first", "quadratic", "n_frames"))
        try:
            return cls([str(u) for u in arrays["utterance_ids"]], arrays["zeroth"], arrays["first"],
                       arrays["quadratic"], arrays["n_frames"], str(meta.get("ubm_fingerprint", "")),
                       dict(meta.get("info") or {}))
        except ValueError as exc:
            raise ModelFileError(f"{path}: invalid utterance statistics ({exc})") from exc


def _stats_batch(payload: tuple) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float] | tuple[str, str]]:
    """Statistics of a batch of utterances (runs in a worker process)."""
    source, utterances, ubm_arrays, dtype = payload
    ubm = GMM.from_arrays(ubm_arrays, dtype=np.dtype(dtype))
    means = ubm_arrays["means"]
    out: list = []
    for utt in utterances:
        try:
            stats = SufficientStats.zeros(ubm.n_components, ubm.n_features, "diag")
            for X in iter_buffered(source, [utt], ubm.n_features):
                ubm.e_step(X, stats=stats)
        except VerificationError as exc:
            out.append((utt, str(exc)))
            continue
        if stats.n_frames <= 0:
            out.append((utt, "no frames"))
            continue
        first, second = stats.moments_about(stats.shift)
        # Moments about each component's own mean: F_k = sum g (x - m_k), S_k = sum g (x - m_k)^2.
        delta = stats.shift[None, :] - means
        F = first + stats.zeroth[:, None] * delta
        S = second + 2.0 * first * delta + stats.zeroth[:, None] * delta * delta
        out.append((utt, stats.zeroth.copy(), F, float((S / ubm_arrays["covariances"]).sum()), stats.n_frames))
    return out


def utterance_stats(ubm: GMM, source: Any, utterances: Sequence[str] | None = None, *, jobs: int = 1,
                    dtype: str = "float32", store_dtype: str = "float32", errors: dict[str, str] | None = None,
                    show_progress: bool | None = None, client: Any = None) -> UtteranceStats:
    """Baum-Welch statistics of every utterance under a diagonal UBM (one E-step pass).

    Parameters
    ----------
    ubm : GMM (diag)
    source : feature store, mapping, list of arrays or ``.npy`` paths
    utterances : sequence of str, optional
        Default: all of the source's.
    jobs : int
        Worker processes (0: all cores).
    client : distributed.Client, optional
        Compute on a Dask cluster instead (workers read the features from the source's
        paths; the statistics are those of a local run).
    dtype : {"float32", "float64"}
        E-step precision (statistics are accumulated in float64).
    store_dtype : {"float32", "float64"}
        Precision in which the first-order statistics are kept (halves memory).
    errors : dict, optional
        Receives ``{utterance: reason}`` for unreadable or empty utterances, which are left
        out; without it the first such utterance raises :class:`VerificationError`.
    """
    if ubm.covariance_type != "diag":
        raise VerificationError("the total-variability model needs a diagonal-covariance UBM")
    src = as_source(source)
    utts = list(src.ids() if utterances is None else utterances)
    if not utts:
        raise VerificationError("no utterances to compute statistics for")
    executor = as_executor(client)
    if executor is not None:
        check_cluster_source(src, "i-vector statistics")
    n_jobs = max(1, min(executor_workers(executor) if executor is not None else effective_jobs(jobs),
                        len(utts)))
    n_batches = (min(len(utts), n_jobs * 8) if (n_jobs > 1 or executor is not None)
                 else max(1, len(utts) // 16))
    bounds = np.linspace(0, len(utts), n_batches + 1).round().astype(int)
    ubm_arrays = ubm.to_arrays()
    payloads = [(src, utts[a:b], ubm_arrays, dtype) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    rows: list = []
    with threadpool_limits(limits=1) if (n_jobs == 1 and executor is None) else contextlib.nullcontext():
        for batch in parallel_map(_stats_batch, payloads, jobs=n_jobs, desc="Baum-Welch statistics",
                                  executor=executor):
            rows.extend(batch)
    good = [r for r in rows if len(r) == 5]
    bad = {r[0]: r[1] for r in rows if len(r) == 2}
    if bad:
        if errors is None:
            utt, reason = next(iter(bad.items()))
            raise VerificationError(f"utterance {utt!r}: {reason}")
        errors.update(bad)
    if not good:
        raise VerificationError("no utterance has frames")
    K, D = ubm.n_components, ubm.n_features
    return UtteranceStats(
        [r[0] for r in good], np.stack([r[1] for r in good]),
        np.stack([r[2] for r in good]).astype(np.dtype(store_dtype)), np.array([r[3] for r in good]),
        np.array([r[4] for r in good]), ubm.fingerprint(),
    )


# --------------------------------------------------------------------------- the model
class TotalVariability:
    """Total-variability matrix training (EM) and i-vector extraction; scikit-learn style.

    Parameters
    ----------
    ubm : GMM
        Diagonal-covariance UBM whose posteriors align the frames.
    n_components : int
        Rank ``R`` of ``T`` (the i-vector dimension).
    n_iter : int
        EM passes over the statistics.
    min_divergence : bool
        Minimum-divergence re-estimation in every pass (see the module docstring).
    init : {"pca", "random"}
        ``pca``: the leading principal directions of the utterances' whitened mean
        offsets (scaled by their occupancy); ``random``: Gaussian, 0.1 per entry.
    dtype : {"float64", "float32"}
        Precision of the E-step's products (accumulators are float64).
    batch_size : int
        Utterances per E-step batch (bounds memory: about ``batch_size * R^2`` numbers).
    random_state : int, optional
    threads : int or None
        BLAS threads during training and extraction (None: the library's default). One
        by default: the E-step's many small batched inverses ran about 20 times slower
        with oversubscribed BLAS threads on a loaded 2-core machine.
    checkpoint : path, optional
        Written after every pass; an existing compatible checkpoint is resumed.
    show_progress : bool, optional

    Attributes
    ----------
    T_ : array (K, D, R)
        ``T`` in the original (unwhitened) feature space.
    offset_ : array (K, D)
        The learnt mean offset ``o``.
    history_ : list of float
        Objective per frame before each M-step (it never decreases).
    """

    def __init__(self, ubm: GMM, n_components: int = 100, n_iter: int = 10, *, min_divergence: bool = True,
                 init: str = "pca", dtype: str = "float64", batch_size: int = 256,
                 random_state: int | None = 0, checkpoint: str | Path | None = None,
                 show_progress: bool | None = None, log: Callable[[str], None] | None = None,
                 threads: int | None = 1):
        if ubm.covariance_type != "diag":
            raise VerificationError("the total-variability model needs a diagonal-covariance UBM")
        if int(n_components) < 1:
            raise ValueError(f"n_components must be >= 1; got {n_components}")
        if int(n_iter) < 0:
            raise ValueError(f"n_iter must be >= 0; got {n_iter}")
        if init not in ("pca", "random"):
            raise ValueError(f"init must be 'pca' or 'random'; got {init!r}")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
        self.ubm = ubm
        self.n_components = int(n_components)
        self.n_iter = int(n_iter)
        self.min_divergence = bool(min_divergence)
        self.init = init
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self.random_state = random_state
        self.checkpoint = checkpoint
        self.show_progress = show_progress
        self.log = log
        self.threads = threads
        self._scale = np.sqrt(ubm.covariances)  # (K, D): Sigma_k^{1/2}
        self.info: dict[str, Any] = {}  # free JSON-able provenance, saved with the model

    # ------------------------------------------------------------------ parameters
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments (scikit-learn's estimator protocol)."""
        import inspect

        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        return {n: getattr(self, n) for n in names}

    def set_params(self, **params: Any) -> "TotalVariability":
        """Set constructor arguments (scikit-learn's estimator protocol); refit afterwards."""
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for TotalVariability; valid: {', '.join(valid)}")
            setattr(self, name, value)
        if "ubm" in params:
            self._scale = np.sqrt(self.ubm.covariances)
        return self

    @property
    def T_(self) -> np.ndarray:
        return self.Tw_ * self._scale[:, :, None]

    def _config(self) -> dict[str, Any]:
        return {"n_components": self.n_components, "min_divergence": self.min_divergence,
                "init": self.init, "dtype": self.dtype, "random_state": self.random_state,
                "ubm_fingerprint": self.ubm.fingerprint()}

    def _whitened(self, stats: UtteranceStats, rows: np.ndarray, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
        """(N (B, K), f (B, K*D)) in the whitened space, about ``m + o``."""
        N = stats.zeroth[rows]
        F = stats.first[rows].astype(np.float64)
        F = F - N[:, :, None] * self.offset_[None]
        F /= self._scale[None]
        return N.astype(dtype, copy=False), F.reshape(len(rows), -1).astype(dtype, copy=False)

    def _initial(self, stats: UtteranceStats) -> None:
        K, D, R = self.ubm.n_components, self.ubm.n_features, self.n_components
        rng = np.random.default_rng(self.random_state)
        self.offset_ = np.zeros((K, D))
        if self.init == "random":
            self.Tw_ = 0.1 * rng.standard_normal((K, D, R))
            return
        # Occupancy-weighted whitened mean offsets sqrt(N_k) * (F_k / N_k): their leading
        # directions are those of largest between-utterance variation.
        rows = np.arange(len(stats))
        N, F = self._whitened(stats, rows, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = F.reshape(len(rows), K, D) / np.sqrt(np.maximum(N, 1e-10))[:, :, None]
        scaled = scaled.reshape(len(rows), -1)
        if len(rows) >= R:
            # Leading right singular vectors from the (U x U) Gram matrix: cheaper than an SVD
            # of the (U x K*D) matrix when there are fewer utterances than dimensions.
            gram = scaled @ scaled.T
            vals, vecs = np.linalg.eigh(gram)
            order = np.argsort(vals)[::-1][:R]
            s = np.sqrt(np.maximum(vals[order], 1e-300))
            vt = (vecs[:, order].T @ scaled) / s[:, None]
            directions = vt.T * (s / np.sqrt(max(len(rows), 1)) / max(float(np.sqrt(N.sum(1).mean())), 1.0))
        else:
            directions = 0.1 * rng.standard_normal((K * D, R))
        self.Tw_ = directions.reshape(K, D, R) + 1e-3 * rng.standard_normal((K, D, R))

    # ------------------------------------------------------------------ E-step
    def _posteriors(self, N: np.ndarray, F: np.ndarray, TT: np.ndarray, Tflat: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Posterior means (B, R), covariances (B, R, R), log|L| (B,) and b^T w (B,), float64."""
        L, b = self._precision(N, F, TT, Tflat)
        chol = np.linalg.cholesky(L)
        logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        # (A single-precision inverse measured no faster here, so the inverse stays float64.)
        cov = np.linalg.inv(L)
        mean = np.matmul(cov, b[:, :, None])[:, :, 0]
        return mean, cov, logdet, np.einsum("bi,bi->b", b, mean)

    def _precision(self, N: np.ndarray, F: np.ndarray, TT: np.ndarray, Tflat: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior precisions ``L`` (B, R, R) and linear terms ``b`` (B, R), float64."""
        R = self.n_components
        L = (N @ TT).reshape(-1, R, R).astype(np.float64)
        L[:, np.arange(R), np.arange(R)] += 1.0
        return L, (F @ Tflat).astype(np.float64)

    def _products(self, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
        K, D, R = self.Tw_.shape
        TT = np.matmul(self.Tw_.transpose(0, 2, 1), self.Tw_).reshape(K, R * R)
        return TT.astype(dtype), self.Tw_.reshape(K * D, R).astype(dtype)

    def _batches(self, n: int) -> list[np.ndarray]:
        return [np.arange(a, min(a + self.batch_size, n)) for a in range(0, n, self.batch_size)]

    def _constant(self, stats: UtteranceStats) -> float:
        """The part of the log-likelihood that does not involve ``T``: the frames' Gaussian
        log-likelihood about ``m + o``: ``sum (x - m - o)^2 / sigma^2`` is the stored
        ``quadratic`` minus ``2 sum o F / sigma^2`` plus ``sum N o^2 / sigma^2``."""
        o = self.offset_
        var = self.ubm.covariances
        Ntot = stats.zeroth.sum(axis=0)
        Ftot = stats.first.sum(axis=0, dtype=np.float64)
        quad = stats.quadratic.sum() - 2.0 * (o * Ftot / var).sum() + (Ntot[:, None] * o * o / var).sum()
        D = self.ubm.n_features
        return float(-0.5 * (Ntot * (D * _LOG_2PI + np.log(var).sum(axis=1))).sum() - 0.5 * quad)

    # ------------------------------------------------------------------ training
    def _limits(self) -> Any:
        return threadpool_limits(limits=self.threads) if self.threads else contextlib.nullcontext()

    def fit(self, stats: UtteranceStats | Any, y: Any = None, **kwargs: Any) -> "TotalVariability":
        """Train ``T`` by EM on :class:`UtteranceStats` (or a feature source, whose
        statistics are computed first; ``kwargs`` go to :func:`utterance_stats`)."""
        if not isinstance(stats, UtteranceStats):
            stats = utterance_stats(self.ubm, stats, **kwargs)
        with self._limits():
            return self._fit(stats)

    def _fit(self, stats: UtteranceStats) -> "TotalVariability":
        self._check_stats(stats)
        if len(stats) < 2:
            raise VerificationError("training the total-variability matrix needs at least 2 utterances")
        started = time.perf_counter()
        done = 0
        self.history_: list[float] = []
        ckpt = Path(self.checkpoint) if self.checkpoint is not None else None
        fingerprint = _stats_fingerprint(stats)
        if ckpt is not None and ckpt.is_file():
            try:
                done = self._resume(ckpt, fingerprint)
                if self.log:
                    self.log(f"ivector: resuming from {ckpt} after pass {done}/{self.n_iter}")
            except ModelFileError as exc:
                if self.log:
                    self.log(f"ivector: {exc}; starting afresh")
                done = 0
        if done == 0:
            self._initial(stats)
        total_frames = float(stats.n_frames.sum())
        self._passes(stats, done, ckpt, fingerprint, total_frames)
        self.seconds_ = time.perf_counter() - started
        return self

    def _passes(self, stats: UtteranceStats, done: int, ckpt: Path | None, fingerprint: str,
                total_frames: float) -> None:
        for it in progress(range(done, self.n_iter), desc="T-matrix EM", total=self.n_iter - done,
                           enabled=self.show_progress, unit="pass"):
            t0 = time.perf_counter()
            objective = self._em_pass(stats)
            self.history_.append(objective / total_frames)
            if ckpt is not None:
                self._save(ckpt, {"pass": it + 1, "stats_fingerprint": fingerprint})
            if self.log:
                self.log(f"ivector: pass {it + 1}/{self.n_iter}: objective {self.history_[-1]:.4f} per frame "
                         f"({time.perf_counter() - t0:.2f} s)")

    def _em_pass(self, stats: UtteranceStats) -> float:
        K, D, R = self.Tw_.shape
        dt = np.dtype(self.dtype)
        TT, Tflat = self._products(dt)
        # sum_u N_uk E[w w'] is symmetric: accumulate its upper triangle only (half the work).
        upper = np.triu_indices(R)
        A = np.zeros((K, len(upper[0])))
        C = np.zeros((K * D, R))
        h = np.zeros(R)
        P = np.zeros((R, R))
        objective = 0.0
        for rows in self._batches(len(stats)):
            N, F = self._whitened(stats, rows, dt)
            mean, cov, logdet, bw = self._posteriors(N, F, TT, Tflat)
            second = cov + mean[:, :, None] * mean[:, None, :]
            A += N.astype(np.float64).T @ second[:, upper[0], upper[1]]
            C += F.T @ mean.astype(F.dtype)
            h += mean.sum(axis=0)
            P += second.sum(axis=0)
            objective += float(-0.5 * logdet.sum() + 0.5 * bw.sum())
        objective += self._constant(stats)
        # M-step of T (per component, one R x R solve each).
        full = np.zeros((K, R, R))
        full[:, upper[0], upper[1]] = A
        A = full + np.triu(full, 1).transpose(0, 2, 1)
        Ck = C.reshape(K, D, R)
        Tw = np.linalg.solve(A, Ck.transpose(0, 2, 1)).transpose(0, 2, 1)
        if self.min_divergence:
            U = len(stats)
            h /= U
            P = P / U - np.outer(h, h)
            P = 0.5 * (P + P.T)
            chol = np.linalg.cholesky(P)
            self.offset_ = self.offset_ + (Tw @ h) * self._scale
            Tw = Tw @ chol
        self.Tw_ = Tw
        return objective

    def objective(self, stats: UtteranceStats) -> float:
        """Marginal log-likelihood per frame of ``stats`` under the current model."""
        self._check_fitted()
        TT, Tflat = self._products(np.float64)
        total = 0.0
        for rows in self._batches(len(stats)):
            N, F = self._whitened(stats, rows, np.float64)
            _, _, logdet, bw = self._posteriors(N, F, TT, Tflat)
            total += float(-0.5 * logdet.sum() + 0.5 * bw.sum())
        return (total + self._constant(stats)) / float(stats.n_frames.sum())

    # ------------------------------------------------------------------ extraction
    def transform(self, stats: UtteranceStats | Any, **kwargs: Any) -> np.ndarray:
        """I-vectors (posterior means of ``w``), one row per utterance of ``stats`` (or of a
        feature source, whose statistics are computed first)."""
        self._check_fitted()
        if not isinstance(stats, UtteranceStats):
            stats = utterance_stats(self.ubm, stats, **kwargs)
        self._check_stats(stats)
        with self._limits():
            return self._transform(stats)

    def _transform(self, stats: UtteranceStats) -> np.ndarray:
        dt = np.dtype(self.dtype)
        TT, Tflat = self._products(dt)
        out = np.empty((len(stats), self.n_components))
        for rows in self._batches(len(stats)):
            N, F = self._whitened(stats, rows, dt)
            # Only the means: one batched solve, no inverse (a third of the work).
            L, b = self._precision(N, F, TT, Tflat)
            out[rows] = np.linalg.solve(L, b[:, :, None])[:, :, 0]
        return out

    def posterior(self, stats: UtteranceStats) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means (U, R) and covariances (U, R, R) of the latent factor."""
        self._check_fitted()
        TT, Tflat = self._products(np.float64)
        N, F = self._whitened(stats, np.arange(len(stats)), np.float64)
        mean, cov, _, _ = self._posteriors(N, F, TT, Tflat)
        return mean, cov

    def fit_transform(self, stats: UtteranceStats | Any, y: Any = None, **kwargs: Any) -> np.ndarray:
        return self.fit(stats, **kwargs).transform(stats if isinstance(stats, UtteranceStats) else
                                                   utterance_stats(self.ubm, stats, **kwargs))

    # ------------------------------------------------------------------ checks
    def _check_fitted(self) -> None:
        if not hasattr(self, "Tw_"):
            raise VerificationError("the total-variability model is not trained (call fit or load)")

    def _check_stats(self, stats: UtteranceStats) -> None:
        if stats.zeroth.shape[1] != self.ubm.n_components or stats.n_features != self.ubm.n_features:
            raise VerificationError(
                f"statistics of a {stats.n_components}x{stats.n_features} UBM do not fit this "
                f"{self.ubm.n_components}x{self.ubm.n_features} one")
        if stats.ubm_fingerprint and stats.ubm_fingerprint != self.ubm.fingerprint():
            raise VerificationError(f"statistics were computed with UBM {stats.ubm_fingerprint}, "
                                    f"not with this UBM ({self.ubm.fingerprint()})")

    # ------------------------------------------------------------------ files
    def _save(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> None:
        meta = {"config": self._config(), "n_iter": self.n_iter, "history": list(self.history_),
                "info": dict(self.info)}
        meta.update(extra or {})
        arrays = {"T": self.T_, "offset": self.offset_}
        arrays.update({f"ubm_{k}": v for k, v in self.ubm.to_arrays().items()})
        save_model_file(path, IVECTOR_EXTRACTOR_FORMAT, IVECTOR_EXTRACTOR_VERSION, arrays, meta)

    def save(self, path: str | Path) -> None:
        """Save ``T``, the offset and the UBM in one plain, versioned model file."""
        self._check_fitted()
        self._save(path)

    def _resume(self, path: Path, fingerprint: str) -> int:
        arrays, meta, _ = load_model_file(path, IVECTOR_EXTRACTOR_FORMAT, (IVECTOR_EXTRACTOR_VERSION,),
                                          required=("T", "offset"))
        if meta.get("config") != self._config() or meta.get("stats_fingerprint") != fingerprint:
            raise ModelFileError(f"{path}: checkpoint of another configuration or other data")
        self.offset_ = np.asarray(arrays["offset"], dtype=np.float64)
        self.Tw_ = np.asarray(arrays["T"], dtype=np.float64) / self._scale[:, :, None]
        self.history_ = [float(v) for v in meta.get("history", [])]
        return min(int(meta.get("pass", 0)), self.n_iter)

    @classmethod
    def load(cls, path: str | Path) -> "TotalVariability":
        """Load a model written by :meth:`save` (validated)."""
        arrays, meta, _ = load_model_file(path, IVECTOR_EXTRACTOR_FORMAT, (IVECTOR_EXTRACTOR_VERSION,),
                                          required=("T", "offset", "ubm_weights", "ubm_means",
                                                    "ubm_covariances"))
        try:
            ubm = GMM.from_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("ubm_")})
            config = dict(meta["config"])
            T = np.asarray(arrays["T"], dtype=np.float64)
            model = cls(ubm, n_components=int(config["n_components"]), n_iter=int(meta.get("n_iter", 0)),
                        min_divergence=bool(config["min_divergence"]), init=str(config["init"]),
                        dtype=str(config["dtype"]), random_state=config.get("random_state"))
            if T.shape != (ubm.n_components, ubm.n_features, model.n_components):
                raise ValueError(f"T has shape {T.shape}")
            model.offset_ = np.asarray(arrays["offset"], dtype=np.float64)
            if model.offset_.shape != T.shape[:2]:
                raise ValueError(f"offset has shape {model.offset_.shape}")
            model.Tw_ = T / model._scale[:, :, None]
            model.history_ = [float(v) for v in meta.get("history", [])]
            model.info = dict(meta.get("info") or {})
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelFileError(f"{path}: invalid total-variability model ({exc})") from exc
        return model


def _stats_fingerprint(stats: UtteranceStats) -> str:
    import hashlib

    digest = hashlib.sha256(stats.ubm_fingerprint.encode())
    for u in stats.utterance_ids:
        digest.update(u.encode() + b"\0")
    digest.update(np.ascontiguousarray(stats.zeroth).tobytes())
    return digest.hexdigest()[:16]
