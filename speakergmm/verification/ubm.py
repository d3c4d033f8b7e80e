"""Universal background model (UBM) training over a corpus, streaming and resumable.

The UBM is grown by the EM driver's binary-split schedule
(:func:`speakergmm.mixture.em.split_fit`: 1 -> 2 -> 4 -> ... components, a few EM
iterations at each size) with every EM iteration one *pass* over the corpus. This module
supplies the driver's hooks:

- **accumulate**: features are read utterance by utterance, gathered into bounded chunks
  and pushed through the core's E-step (:meth:`GMM.e_step`), so memory does not grow with
  the corpus. With ``jobs > 1`` the utterance list is cut into one shard per worker; each
  worker accumulates a :class:`~speakergmm.mixture.SufficientStats` over its shard and the
  statistics are summed (this hook is where other ways of accumulating plug in);
- **on_iteration**: after every pass a checkpoint (a plain model file holding the model,
  the pass number, the training configuration and a fingerprint of the data) is written
  atomically; calling :func:`train_ubm` again with the same checkpoint path, configuration
  and data resumes after the last finished pass, and gives the same model as an
  uninterrupted run.

Variances are floored at a fraction of the corpus' global variance
(``variance_floor_ratio``, HTK/Kaldi practice), so that no component collapses onto a
handful of identical frames.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
import warnings
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from threadpoolctl import threadpool_limits

from speakergmm.io import ModelFileError, atomic_path, atomic_write_json, load_model_file, save_model_file
from speakergmm.mixture import GMM, SufficientStats
from speakergmm.mixture.em import IterationInfo, SplitState, split_fit
from speakergmm.mixture.split import SPLIT_DIRECTIONS, UBM_SPLIT_DIRECTION, UBM_SPLIT_PERTURBATION, split_schedule
from speakergmm.mixture.model import GMM_FORMAT, GMM_VERSION
from speakergmm.mixture.distributed import sum_on_cluster, tree_sum
from speakergmm.utils import effective_jobs, worker_pool
from speakergmm.verification.sources import (FeatureSource, VerificationError, as_source,
                                              check_cluster_source, check_utterance, iter_buffered)

__all__ = [
    "CheckpointMismatch",
    "CorpusAccumulator",
    "UBMConfig",
    "UBMResult",
    "train_ubm",
    "save_ubm",
    "load_ubm",
    "CHECKPOINT_FORMAT",
]

CHECKPOINT_FORMAT = "speakergmm.UBMCheckpoint"
CHECKPOINT_VERSION = 1
UBM_ROLE = "ubm"


class CheckpointMismatch(VerificationError):
    """A UBM checkpoint is unreadable or comes from another configuration or other data."""


@dataclass(frozen=True)
class UBMConfig:
    """What a UBM training run does (saved in checkpoints and in the UBM file).

    Parameters
    ----------
    n_components : int
        Final number of Gaussians (need not be a power of two: the last split then splits
        only the heaviest components).
    covariance_type : {"diag", "full"}
    iter_per_split : int
        EM passes after each intermediate split.
    final_iter : int
        EM passes at the final size.
    variance_floor_ratio : float
        Variances are floored at this fraction of the corpus' global (per-dimension)
        variance. (Called ``variance_floor`` before; that name still works, with a
        DeprecationWarning: ``variance_floor`` means an absolute floor elsewhere.)
    reg_covar : float
        Added to every variance (as scikit-learn's ``reg_covar``).
    perturbation, split_direction : float, {"widest", "all"}
        Split offset in standard deviations, and its direction
        (:func:`~speakergmm.mixture.split_components`); the default is HTK's 0.2 sd along
        every dimension, the better split for speech UBMs (:mod:`speakergmm.mixture.split`).
    dtype : {"float32", "float64"}
        Precision of the E-step arithmetic (statistics are always accumulated in float64).
    frames_per_component : int
        Below the final size, each pass uses only every ``s``-th frame (of each shard),
        with ``s`` chosen so that about this many frames per component remain, as Kaldi's
        UBM initialisation subsamples: a 2-component mixture does not need the whole
        corpus to place its means. The final size always uses every frame. 0 (the
        default) disables subsampling, so that the model does not depend on ``jobs``; on
        FSDD neither choice was clearly more accurate (docs/verification.md). Turn it on
        (e.g. 2000) to save time on large corpora.
    """

    n_components: int = 64
    covariance_type: str = "diag"
    iter_per_split: int = 4
    final_iter: int = 16
    variance_floor_ratio: float = 0.001
    reg_covar: float = 1e-6
    perturbation: float = UBM_SPLIT_PERTURBATION
    split_direction: str = UBM_SPLIT_DIRECTION
    dtype: str = "float32"
    frames_per_component: int = 0
    variance_floor: InitVar[float | None] = None  # deprecated alias of variance_floor_ratio

    def __post_init__(self, variance_floor: float | None) -> None:
        if variance_floor is not None:
            warnings.warn("UBMConfig(variance_floor=...) is deprecated: the relative floor is "
                          "called variance_floor_ratio", DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "variance_floor_ratio", float(variance_floor))
        if int(self.n_components) < 1:
            raise ValueError(f"n_components must be >= 1; got {self.n_components}")
        if self.covariance_type not in ("diag", "full"):
            raise ValueError(f"covariance_type must be 'diag' or 'full'; got {self.covariance_type!r}")
        if self.iter_per_split < 1 or self.final_iter < 1:
            raise ValueError("iter_per_split and final_iter must be >= 1")
        if not 0.0 <= self.variance_floor_ratio < 1.0:
            raise ValueError(f"variance_floor_ratio is a fraction of the global variance in [0, 1); "
                             f"got {self.variance_floor_ratio}")
        if self.split_direction not in SPLIT_DIRECTIONS:
            raise ValueError(f"split_direction must be one of {', '.join(SPLIT_DIRECTIONS)}; "
                             f"got {self.split_direction!r}")
        if self.frames_per_component < 0:
            raise ValueError(f"frames_per_component must be >= 0; got {self.frames_per_component}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {self.dtype!r}")

    def schedule(self) -> list[tuple[int, int, int]]:
        """The passes over the data: ``(n_components, iteration, iterations at that size)``.

        Pass 0 estimates the one-component (global) model, which also gives the variance
        floor; every later pass is one EM iteration, the first at each size after a split
        (:func:`~speakergmm.mixture.split.split_schedule`).
        """
        return [(p.n_components, p.iteration, p.n_iter)
                for p in split_schedule(self.n_components, self.iter_per_split, self.final_iter)]

    def stride(self, size: int, total_frames: float) -> int:
        """Frame subsampling step of the passes at ``size`` components (1 at the final size)."""
        if size >= self.n_components or self.frames_per_component <= 0:
            return 1
        return max(1, int(total_frames // (self.frames_per_component * size)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class UBMResult:
    """Outcome of :func:`train_ubm`."""

    gmm: GMM
    config: UBMConfig
    history: list = field(default_factory=list)  # mean log-likelihood per frame, per pass
    n_frames: float = 0.0  # frames in the training data
    n_utterances: int = 0
    resumed_from: int | None = None  # passes already done when the run resumed
    variance_floor: np.ndarray | None = None
    seconds: float = 0.0


# --------------------------------------------------------------------------- accumulation
# The first pass reads every utterance (one small file each, the slow part of a pass) and
# writes each shard's frames, back to back, to one flat scratch file; every later pass
# reads that file sequentially in chunks of ``chunk_frames`` rows. Memory stays bounded by
# one chunk; disk use equals the features' size.
_PACK_SUFFIX = ".frames"


def _pack_info_path(pack: Path) -> Path:
    return pack.with_name(pack.name + ".json")


def _pack_is_valid(pack: Path, key: str) -> bool:
    try:
        info = json.loads(_pack_info_path(pack).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or info.get("key") != key or not pack.is_file():
        return False
    itemsize = np.dtype(info["dtype"]).itemsize
    return pack.stat().st_size == int(info["n_frames"]) * int(info["n_features"]) * itemsize


def _read_pack(pack: Path, chunk_frames: int, stride: int):
    info = json.loads(_pack_info_path(pack).read_text(encoding="utf-8"))
    dtype, n_features, n_frames = np.dtype(info["dtype"]), int(info["n_features"]), int(info["n_frames"])
    with open(pack, "rb") as fh:
        done = 0
        while done < n_frames:
            rows = min(chunk_frames, n_frames - done)
            X = np.fromfile(fh, dtype=dtype, count=rows * n_features).reshape(rows, n_features)
            if stride > 1:
                X = X[(-done) % stride::stride]  # every stride-th frame of the shard
            done += rows
            if X.shape[0]:
                yield X


@dataclass(frozen=True)
class ShardPass:
    """One E-step pass over one shard: what a worker process receives."""

    source: Any  # the feature source
    utterances: list  # the shard's utterance ids
    pack: str  # scratch file of the shard's frames
    key: str  # identifies the data the pack must hold
    model_arrays: dict  # GMM.to_arrays() of the model
    dtype: str  # E-step precision
    chunk_frames: int
    stride: int  # every stride-th frame (subsampled passes)


def _pass_shard(task: ShardPass) -> dict[str, np.ndarray]:
    """One E-step pass over one shard (runs in a worker process, or in-process)."""
    source, utterances, key = task.source, task.utterances, task.key
    chunk_frames, stride = task.chunk_frames, task.stride
    gmm = GMM.from_arrays(task.model_arrays, dtype=np.dtype(task.dtype))
    stats = SufficientStats.zeros(gmm.n_components, gmm.n_features, gmm.covariance_type)
    pack = Path(task.pack)
    if _pack_is_valid(pack, key):
        for X in _read_pack(pack, chunk_frames, stride):
            gmm.e_step(X, stats=stats)
        return stats.to_arrays()
    # First pass over this shard: read the utterances, write the pack, accumulate.
    n_frames = 0
    pack_dtype = None
    with atomic_path(pack) as tmp, open(tmp, "wb") as fh:
        for X in iter_buffered(source, utterances, gmm.n_features, chunk_frames):
            if pack_dtype is None:
                pack_dtype = np.float32 if X.dtype == np.float32 else np.float64
            X = np.ascontiguousarray(X, dtype=pack_dtype)
            X.tofile(fh)
            selected = X[(-n_frames) % stride::stride] if stride > 1 else X
            n_frames += X.shape[0]
            if selected.shape[0]:
                gmm.e_step(selected, stats=stats)
    info = {"key": key, "n_frames": n_frames, "n_features": gmm.n_features,
            "dtype": np.dtype(pack_dtype or np.float64).name}
    atomic_write_json(_pack_info_path(pack), info)
    return stats.to_arrays()


#: Utterances per shard of a UBM pass. Shards are fixed by the data, never by the number of
#: processes or machines, so that every way of running a pass adds the same per-shard
#: statistics in the same order and gives the same model, to the last bit. 256 utterances
#: make tasks of a few tenths of a second: with 64 (tasks of ~25 ms at K = 256) scheduling
#: took a quarter of a 2-worker Dask pass (efficiency 0.76 vs 0.83 at 256; docs/scaling.md).
SHARD_UTTERANCES = 256


def _pass_shard_task(source: FeatureSource, model_arrays: dict, dtype: str, chunk_frames: int,
                     stride: int, item: tuple) -> dict[str, np.ndarray]:
    """:func:`_pass_shard` as a Dask task: the shared parts arrive once per worker."""
    shard, pack, key = item
    return _pass_shard(ShardPass(source, shard, pack, key, model_arrays, dtype, chunk_frames, stride))


def _shards(utterances: Sequence[str], shard_utterances: int = SHARD_UTTERANCES) -> list[list[str]]:
    """Contiguous shards of ``shard_utterances`` consecutive utterances (the last may be shorter)."""
    return [list(utterances[a:a + shard_utterances]) for a in range(0, len(utterances), shard_utterances)]


class CorpusAccumulator:
    """Sum of the per-shard statistics of a model (the EM driver's accumulate hook for a
    corpus): in-process, over a local worker pool, or on a Dask cluster (``client``); the
    same shards and order, so the same bits, in every case."""

    def __init__(self, source: FeatureSource, utterances: Sequence[str], jobs: int,
                 dtype: str, chunk_frames: int, pack_dir: Path, fingerprint: str,
                 client: Any = None, shard_utterances: int = SHARD_UTTERANCES):
        self.source = source
        self.shards = _shards(utterances, shard_utterances)
        self.dtype = dtype
        self.chunk_frames = int(chunk_frames)
        pack_dir.mkdir(parents=True, exist_ok=True)
        n = len(self.shards)
        self.packs = [(str(pack_dir / f"shard-{i + 1}-of-{n}{_PACK_SUFFIX}"),
                       f"{fingerprint}:{i}:{n}:{len(shard)}") for i, shard in enumerate(self.shards)]
        self.client = client
        self._source_on_cluster: Any = None
        self.jobs = max(1, min(jobs, n))
        self.pool = None
        if client is None and self.jobs > 1:
            self.pool = worker_pool(self.jobs)

    def __call__(self, gmm: GMM, stride: int = 1) -> SufficientStats:
        arrays = gmm.to_arrays()
        if self.client is not None:
            # The model goes to each worker once a pass, the source once a run; the sum runs
            # on the workers.
            if self._source_on_cluster is None:
                self._source_on_cluster = self.client.scatter(self.source, broadcast=True, hash=False)
            items = [(shard, pack, key) for shard, (pack, key) in zip(self.shards, self.packs)]
            return sum_on_cluster(_pass_shard_task,
                                  (self._source_on_cluster, arrays, self.dtype, self.chunk_frames, stride),
                                  items, client=self.client)
        payloads = [ShardPass(self.source, shard, pack, key, arrays, self.dtype, self.chunk_frames,
                              stride) for shard, (pack, key) in zip(self.shards, self.packs)]
        if self.pool is None:
            with threadpool_limits(limits=1):  # jobs=1 means one core (and no BLAS thrashing)
                results = list(map(_pass_shard, payloads))
        else:
            results = list(self.pool.map(_pass_shard, payloads))
        # Added in the cluster's fixed tree, so that every way of running gives the same bits.
        return tree_sum([SufficientStats.from_arrays(a) for a in results])

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


# --------------------------------------------------------------------------- checkpoints
def _save_checkpoint(path: Path, state: SplitState, n_passes: int, config: UBMConfig,
                     data_fingerprint: str) -> None:
    assert state.gmm is not None
    arrays = dict(state.gmm.to_arrays())
    arrays["variance_floor"] = (np.zeros(0) if state.variance_floor is None
                                else np.asarray(state.variance_floor, dtype=np.float64))
    arrays["history"] = np.asarray(state.history, dtype=np.float64)
    meta = {
        "pass": state.passes_done - 1,
        "n_passes": n_passes,
        "config": config.to_dict(),
        "data_fingerprint": data_fingerprint,
        "n_frames": state.n_frames,
    }
    save_model_file(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, arrays, meta)


def _load_checkpoint(path: Path, config: UBMConfig, data_fingerprint: str) -> SplitState:
    arrays, meta, _ = load_model_file(
        path, CHECKPOINT_FORMAT, (CHECKPOINT_VERSION,),
        required=("covariance_type", "weights", "means", "covariances", "variance_floor", "history"),
    )
    if meta.get("config") != config.to_dict():
        differing = {k: (meta.get("config", {}).get(k), v) for k, v in config.to_dict().items()
                     if meta.get("config", {}).get(k) != v}
        raise CheckpointMismatch(
            f"{path}: checkpoint of a UBM training run with another configuration "
            f"({'; '.join(f'{k}: {a!r} in the checkpoint vs {b!r} now' for k, (a, b) in differing.items())}); "
            "delete it or choose another checkpoint path to start afresh")
    if meta.get("data_fingerprint") != data_fingerprint:
        raise CheckpointMismatch(
            f"{path}: checkpoint of a UBM training run on other data; delete it or choose "
            "another checkpoint path to start afresh")
    floor = np.asarray(arrays["variance_floor"], dtype=np.float64)
    return SplitState(gmm=GMM.from_arrays(arrays, dtype=np.dtype(config.dtype)),
                      passes_done=int(meta["pass"]) + 1,
                      history=[float(v) for v in arrays["history"]],
                      variance_floor=floor if floor.size else None,
                      n_frames=float(meta.get("n_frames", 0.0)))


# --------------------------------------------------------------------------- training
_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(UBMConfig)) + ("variance_floor",)


def train_ubm(
    source: Any,
    n_components: int | None = None,
    *,
    config: UBMConfig | None = None,
    utterances: Sequence[str] | None = None,
    jobs: int = 1,
    checkpoint: str | Path | None = None,
    chunk_frames: int = 8192,
    log: Callable[[str], None] | None = None,
    show_progress: bool | None = None,
    stop_after: int | None = None,
    client: Any = None,
    shard_utterances: int = SHARD_UTTERANCES,
    **config_fields: Any,
) -> UBMResult:
    """Train a UBM on a corpus by binary splitting and EM, streaming the features.

    The EM driver (:func:`speakergmm.mixture.em.split_fit`) runs the schedule; this
    function supplies its accumulate hook (sharded, multi-process passes over the corpus)
    and its on_iteration hook (checkpoints and log lines).

    Parameters
    ----------
    source : feature store, mapping, list of arrays or list of ``.npy`` paths
        See :mod:`speakergmm.verification.sources`.
    n_components : int, optional
        Gaussians in the final UBM (default: the config's, 64).
    config : UBMConfig, optional
        What the training does. Instead of a config, its fields may be given as keywords
        (``covariance_type``, ``iter_per_split``, ``final_iter``, ``variance_floor_ratio``,
        ``reg_covar``, ``perturbation``, ``split_direction``, ``dtype``,
        ``frames_per_component``; see :class:`UBMConfig`), but not both.
    utterances : sequence of str, optional
        The utterance ids to train on (repeats allowed); all of the source's by default.
    jobs : int
        Worker processes (``0``: all cores). The utterances are cut into fixed shards of
        ``SHARD_UTTERANCES`` (whatever ``jobs``); each task accumulates one shard, and the
        shards' statistics are added in order, so the UBM does not depend on ``jobs``.
    client : dask.distributed.Client, optional
        Run the passes' shard tasks on a cluster instead of local processes (see
        :mod:`speakergmm.cluster`): same shards, same order, same model. Workers read the
        features from the source's paths and, with a checkpoint, keep their scratch copies
        beside it (shared storage).
    shard_utterances : int
        Utterances per shard (one task of a pass). Results depend on it (by rounding only),
        never on ``jobs`` or the cluster. Larger shards mean fewer tasks and fewer
        statistics to add per pass; see docs/scaling.md for corpus-scale values.
    checkpoint : path, optional
        Checkpoint file written after every pass; when it exists, training resumes from it
        (it must come from the same configuration and data, else :class:`VerificationError`).
    chunk_frames : int
        Frames gathered per E-step call (bounds memory together with the largest utterance).
    log : callable, optional
        Receives one line per pass (size, iteration, log-likelihood per frame, time).
    show_progress : bool, optional
        Progress bar over the passes (default: when stderr is a terminal).
    stop_after : int, optional
        Stop after this many passes have been completed in total (the checkpoint is kept):
        to split long runs, and to test resumption.

    Returns
    -------
    UBMResult
        ``gmm`` is the trained UBM (float64 E-step precision regardless of ``dtype``).
    """
    started = time.perf_counter()
    config = _resolve_config(n_components, config, config_fields)
    src = as_source(source)
    utts = list(src.ids() if utterances is None else utterances)
    if not utts:
        raise VerificationError("no utterances to train the UBM on")
    if client is not None:
        check_cluster_source(src, "UBM training")
    if isinstance(shard_utterances, bool) or not isinstance(shard_utterances, (int, np.integer)) \
            or shard_utterances < 1:
        raise ValueError(f"shard_utterances must be a positive integer, got {shard_utterances!r}")
    n_passes = len(config.schedule())
    fingerprint = src.fingerprint(utts)
    checkpoint = Path(checkpoint) if checkpoint is not None else None

    state = SplitState()
    resumed_from = None
    if checkpoint is not None and checkpoint.exists():
        try:
            state = _load_checkpoint(checkpoint, config, fingerprint)
        except ModelFileError as exc:
            raise CheckpointMismatch(f"cannot resume UBM training: {exc}") from exc
        resumed_from = state.passes_done
        if log:
            log(f"ubm: resuming from {checkpoint} after pass {state.passes_done}/{n_passes}")

    centre = None
    if state.gmm is not None:
        n_features = state.gmm.n_features
    else:
        n_features, centre = _first_frames_summary(src, utts)
    end = n_passes if stop_after is None else min(n_passes, stop_after)
    # Scratch copies of the frames: next to the checkpoint (kept for a resumed run), else
    # in a temporary directory.
    if checkpoint is not None:
        pack_dir = checkpoint.with_name(checkpoint.name + _PACK_SUFFIX)
    else:
        pack_dir = Path(tempfile.mkdtemp(prefix="speakergmm-ubm-"))
    accumulator = CorpusAccumulator(src, utts, effective_jobs(jobs) if end > state.passes_done else 1,
                               config.dtype, chunk_frames, pack_dir, fingerprint, client=client,
                               shard_utterances=int(shard_utterances))

    def accumulate(gmm: GMM) -> SufficientStats:
        stats = accumulator(gmm, config.stride(gmm.n_components, state.n_frames))
        if stats.n_frames <= 0:
            raise VerificationError("the UBM training utterances hold no frames")
        return stats

    def on_iteration(info: IterationInfo, current: SplitState) -> None:
        if checkpoint is not None:
            _save_checkpoint(checkpoint, current, n_passes, config, fingerprint)
        if log:
            step = info.split_pass
            log(f"ubm: pass {step.index + 1}/{n_passes}: {step.n_components} components, "
                f"iteration {step.iteration}/{step.n_iter}, log-likelihood {info.lower_bound:.4f} "
                f"per frame over {int(info.stats.n_frames)} frames ({info.elapsed - elapsed[0]:.2f} s)")
        elapsed[0] = info.elapsed

    elapsed = [0.0]
    finished = False
    try:
        state = split_fit(accumulate, config.n_components, config.covariance_type, n_features,
                          iter_per_split=config.iter_per_split, final_iter=config.final_iter,
                          reg_covar=config.reg_covar, variance_floor_ratio=config.variance_floor_ratio,
                          perturbation=config.perturbation, direction=config.split_direction,
                          dtype=config.dtype, centre=centre, resume=state, stop_after=stop_after,
                          on_iteration=on_iteration, show_progress=show_progress,
                          desc="UBM training")
        finished = state.passes_done == n_passes
    finally:
        accumulator.close()
        if finished or checkpoint is None:
            shutil.rmtree(pack_dir, ignore_errors=True)
    assert state.gmm is not None
    return UBMResult(gmm=state.gmm.astype(np.float64), config=config, history=state.history,
                     n_frames=state.n_frames, n_utterances=len(utts), resumed_from=resumed_from,
                     variance_floor=state.variance_floor, seconds=time.perf_counter() - started)


def _resolve_config(n_components: int | None, config: UBMConfig | None,
                    fields: dict[str, Any]) -> UBMConfig:
    """The run's UBMConfig from ``config`` or from keyword fields (not both)."""
    unknown = sorted(set(fields) - set(_CONFIG_FIELDS))
    if unknown:
        raise TypeError(f"train_ubm() got unexpected keyword argument(s): {', '.join(unknown)}")
    if config is not None:
        if fields:
            raise TypeError(f"train_ubm(): pass either config or its fields "
                            f"({', '.join(sorted(fields))}), not both")
        if n_components is not None and int(n_components) != config.n_components:
            raise ValueError(f"n_components={n_components} disagrees with config.n_components="
                             f"{config.n_components}")
        return config
    if "variance_floor" in fields:
        warnings.warn("train_ubm(variance_floor=...) is deprecated: the relative floor is called "
                      "variance_floor_ratio", DeprecationWarning, stacklevel=3)
        fields["variance_floor_ratio"] = fields.pop("variance_floor")
    typed = {"iter_per_split": int, "final_iter": int, "variance_floor_ratio": float,
             "reg_covar": float, "perturbation": float, "frames_per_component": int,
             "dtype": lambda d: str(np.dtype(d))}
    fields = {k: typed.get(k, lambda v: v)(v) for k, v in fields.items()}
    if n_components is not None:
        fields["n_components"] = int(n_components)
    return UBMConfig(**fields)


def _first_frames_summary(src: FeatureSource, utterances: Sequence[str]) -> tuple[int, np.ndarray]:
    """The feature dimension, and the mean of the first utterance with frames (the point
    the global statistics are centred on, so that they lose nothing far from the origin)."""
    for utt in utterances:
        X = check_utterance(src.load(utt), utt, None)
        if X.shape[0]:
            return int(X.shape[1]), np.asarray(X, dtype=np.float64).mean(axis=0)
    raise VerificationError("the UBM training utterances hold no frames")


# --------------------------------------------------------------------------- files
def save_ubm(path: str | Path, gmm: GMM, feature_config: Any = None,
             training: dict[str, Any] | None = None) -> None:
    """Save a UBM as a plain ``speakergmm.GMM`` file with its feature configuration.

    The metadata holds ``role: "ubm"``, the UBM's fingerprint, the feature configuration
    (a :class:`~speakergmm.features.FeatureConfig` or its dict) and training details.
    """
    meta: dict[str, Any] = {"role": UBM_ROLE, "fingerprint": gmm.fingerprint()}
    if feature_config is not None:
        meta["feature_config"] = feature_config.to_dict() if hasattr(feature_config, "to_dict") else dict(feature_config)
    if training:
        meta["training"] = training
    gmm.save(path, meta=meta)


def load_ubm(path: str | Path) -> tuple[GMM, dict[str, Any]]:
    """Load a UBM saved by :func:`save_ubm`; returns ``(gmm, meta)``.

    Raises
    ------
    speakergmm.io.ModelFileError
        If the file is missing, corrupt, not a GMM, or altered since it was saved.
    """
    gmm = GMM.load(path)
    _, meta, _ = load_model_file(path, GMM_FORMAT, (GMM_VERSION,))
    if meta.get("fingerprint") not in (None, gmm.fingerprint()):
        raise ModelFileError(f"{path}: the UBM's parameters do not match its recorded fingerprint")
    return gmm, meta
