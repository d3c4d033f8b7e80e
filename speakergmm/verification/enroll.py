"""MAP enrolment of speakers from a UBM (Reynolds, Quatieri & Dunn 2000).

Each speaker's enrolment frames are pushed through the UBM's E-step to give sufficient
statistics, and the core's :func:`~speakergmm.mixture.map_update` adapts the UBM's means
(optionally weights and variances) towards them with relevance factor ``r`` (16 by default).

All speakers of an enrolment live in one :class:`SpeakerModels` file: the stacked adapted
parameters (only those that were adapted; the rest are the UBM's), the speaker ids, the
fingerprint of the UBM they were adapted from and the feature configuration. Scoring with
another UBM or with features of another configuration is refused.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from speakergmm.io import ModelFileError, load_model_file, save_model_file
from speakergmm.mixture import GMM, SufficientStats, map_update
from speakergmm.cluster import as_executor, executor_workers
from speakergmm.utils import effective_jobs, parallel_map
from speakergmm.verification.sources import (FeatureSource, VerificationError, as_source,
                                              check_cluster_source, iter_buffered)

__all__ = ["SpeakerModels", "enroll_speakers", "speaker_stats", "SPEAKER_MODELS_FORMAT"]

SPEAKER_MODELS_FORMAT = "speakergmm.SpeakerModels"
SPEAKER_MODELS_VERSION = 1


@dataclass
class SpeakerModels:
    """MAP-adapted speaker models sharing one UBM.

    Attributes
    ----------
    speaker_ids : list of str
    means : array (S, K, D)
        Adapted means (the UBM's when ``"m"`` is not in ``adapt``).
    weights : array (S, K) or None
        Adapted weights, or None when the UBM's are shared.
    covariances : array (S, K, D) or (S, K, D, D), or None
        Adapted covariances, or None when the UBM's are shared.
    ubm_fingerprint : str
        :meth:`GMM.fingerprint` of the UBM the models were adapted from.
    covariance_type : str
    relevance_factor : float
    adapt : str
    n_frames : array (S,)
        Enrolment frames per speaker.
    feature_config : dict or None
        The feature configuration (as a dict) of the enrolment features.
    info : dict
        Free JSON-able provenance (e.g. a fingerprint of the enrolment data), saved too.
    """

    speaker_ids: list[str]
    means: np.ndarray
    weights: np.ndarray | None
    covariances: np.ndarray | None
    ubm_fingerprint: str
    covariance_type: str
    relevance_factor: float = 16.0
    adapt: str = "m"
    n_frames: np.ndarray = field(default_factory=lambda: np.zeros(0))
    feature_config: dict | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.speaker_ids = [str(s) for s in self.speaker_ids]
        self.means = np.asarray(self.means, dtype=np.float64)
        S = len(self.speaker_ids)
        if self.means.ndim != 3 or self.means.shape[0] != S:
            raise ValueError(f"means must have shape ({S}, K, D); got {self.means.shape}")
        if len(set(self.speaker_ids)) != S:
            raise ValueError("speaker ids must be unique")
        if self.weights is not None:
            self.weights = np.asarray(self.weights, dtype=np.float64)
            if self.weights.shape != self.means.shape[:2]:
                raise ValueError(f"weights must have shape {self.means.shape[:2]}; got {self.weights.shape}")
        if self.covariances is not None:
            self.covariances = np.asarray(self.covariances, dtype=np.float64)
            if self.covariances.shape[0] != S:
                raise ValueError("covariances must have one entry per speaker")
        self.n_frames = np.asarray(self.n_frames, dtype=np.float64)
        if self.n_frames.shape != (S,):
            self.n_frames = np.zeros(S)
        self._index = {s: i for i, s in enumerate(self.speaker_ids)}

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.speaker_ids)

    @property
    def n_components(self) -> int:
        return self.means.shape[1]

    @property
    def n_features(self) -> int:
        return self.means.shape[2]

    def index(self, speaker: str) -> int:
        """Row of ``speaker``; :class:`VerificationError` naming it when unknown."""
        try:
            return self._index[speaker]
        except KeyError:
            known = ", ".join(self.speaker_ids[:5]) + (", ..." if len(self) > 5 else "")
            raise VerificationError(f"unknown speaker {speaker!r} (enrolled: {known})") from None

    def model(self, speaker: str | int, ubm: GMM) -> GMM:
        """The full GMM of one speaker (shared parameters taken from ``ubm``)."""
        self.check_ubm(ubm)
        i = speaker if isinstance(speaker, (int, np.integer)) else self.index(speaker)
        return GMM(
            ubm.weights if self.weights is None else self.weights[i],
            self.means[i],
            ubm.covariances if self.covariances is None else self.covariances[i],
            ubm.covariance_type, dtype=ubm.dtype,
        )

    def subset(self, speakers: Sequence[str]) -> "SpeakerModels":
        """The models of ``speakers`` only, in that order."""
        rows = [self.index(s) for s in speakers]
        return SpeakerModels(
            [self.speaker_ids[i] for i in rows], self.means[rows],
            None if self.weights is None else self.weights[rows],
            None if self.covariances is None else self.covariances[rows],
            self.ubm_fingerprint, self.covariance_type, self.relevance_factor, self.adapt,
            self.n_frames[rows], self.feature_config, dict(self.info),
        )

    # ------------------------------------------------------------------ compatibility
    def check_ubm(self, ubm: GMM, what: str = "speaker models") -> None:
        """Refuse a UBM other than the one the models were adapted from."""
        fp = ubm.fingerprint()
        if fp != self.ubm_fingerprint:
            raise VerificationError(
                f"{what} were adapted from UBM {self.ubm_fingerprint}, not from this UBM ({fp}): "
                "score with the UBM used at enrolment, or enrol again")

    def check_feature_config(self, config: Any, what: str = "test features") -> None:
        """Refuse features computed with another configuration than the enrolment's."""
        if self.feature_config is None or config is None:
            return
        from speakergmm.features import FeatureConfig

        mine = FeatureConfig.from_dict(self.feature_config)
        theirs = config if isinstance(config, FeatureConfig) else FeatureConfig.from_dict(config)
        try:
            mine.check_compatible(theirs, what=what, expected="speaker models", given="test features")
        except ValueError as exc:
            raise VerificationError(str(exc)) from exc

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        """Save all speakers in one plain, versioned model file (atomic)."""
        arrays: dict[str, np.ndarray] = {
            "speaker_ids": np.array(self.speaker_ids, dtype=str),
            "means": self.means,
            "n_frames": self.n_frames,
        }
        if self.weights is not None:
            arrays["weights"] = self.weights
        if self.covariances is not None:
            arrays["covariances"] = self.covariances
        meta = {
            "ubm_fingerprint": self.ubm_fingerprint,
            "covariance_type": self.covariance_type,
            "relevance_factor": self.relevance_factor,
            "adapt": self.adapt,
            "feature_config": self.feature_config,
            "info": self.info,
        }
        save_model_file(path, SPEAKER_MODELS_FORMAT, SPEAKER_MODELS_VERSION, arrays, meta)

    @classmethod
    def load(cls, path: str | Path) -> "SpeakerModels":
        """Load and validate a file written by :meth:`save`."""
        arrays, meta, _ = load_model_file(path, SPEAKER_MODELS_FORMAT, (SPEAKER_MODELS_VERSION,),
                                          required=("speaker_ids", "means"), validate=_validate_file)
        try:
            return cls(
                [str(s) for s in arrays["speaker_ids"]], arrays["means"], arrays.get("weights"),
                arrays.get("covariances"), str(meta["ubm_fingerprint"]), str(meta["covariance_type"]),
                float(meta.get("relevance_factor", 16.0)), str(meta.get("adapt", "m")),
                arrays.get("n_frames", np.zeros(0)), meta.get("feature_config"),
                dict(meta.get("info") or {}),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelFileError(f"{path}: invalid speaker models ({exc})") from exc


def _validate_file(path: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    """Field-by-field checks of a speaker-model file (see :func:`speakergmm.io.load_model_file`)."""
    def fail(field: str, problem: str) -> ModelFileError:
        return ModelFileError(f"{path}: invalid speaker models: {problem} (field {field!r})")

    ids = arrays["speaker_ids"]
    if ids.ndim != 1 or ids.dtype.kind not in "US":
        raise fail("speaker_ids", f"expected a list of strings, got {ids.dtype} {ids.shape}")
    S = ids.shape[0]
    for name in ("means", "weights", "covariances", "n_frames"):
        if name in arrays:
            arr = arrays[name]
            if arr.dtype.kind not in "biuf":
                raise fail(name, f"expected real numbers, got dtype {arr.dtype}")
            if not np.all(np.isfinite(arr)):
                raise fail(name, "holds non-finite values")
    means = arrays["means"]
    if means.ndim != 3 or means.shape[0] != S or 0 in means.shape:
        raise fail("means", f"expected shape ({S}, n_components, n_features), got {means.shape}")
    _, K, D = means.shape
    if "weights" in arrays:
        w = arrays["weights"]
        if w.shape != (S, K) or np.any(w < 0) or not np.allclose(w.sum(axis=1), 1.0, atol=1e-6):
            raise fail("weights", f"expected non-negative rows summing to 1 of shape {(S, K)}")
    if "covariances" in arrays:
        c = arrays["covariances"]
        if c.shape not in ((S, K, D), (S, K, D, D)):
            raise fail("covariances", f"expected shape {(S, K, D)} or {(S, K, D, D)}, got {c.shape}")
        if c.ndim == 3 and np.any(c <= 0):
            raise fail("covariances", "variances must be positive")
    if not isinstance(meta.get("ubm_fingerprint"), str):
        raise fail("ubm_fingerprint", "expected a string")
    if meta.get("covariance_type") not in ("diag", "full", "tied", "spherical"):
        raise fail("covariance_type", f"{str(meta.get('covariance_type'))[:40]!r} is not a covariance type")
    if meta.get("feature_config") is not None:
        if not isinstance(meta["feature_config"], dict):
            raise fail("feature_config", "expected a JSON object")
        from speakergmm.features import FeatureConfig

        try:
            FeatureConfig.from_dict(meta["feature_config"])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise fail("feature_config", str(exc)) from exc
    if not isinstance(meta.get("info", {}) or {}, dict):
        raise fail("info", "expected a JSON object")
    if not isinstance(meta.get("adapt", "m"), str) or set(meta.get("adapt", "m")) - set("wmv"):
        raise fail("adapt", "expected a combination of 'w', 'm', 'v'")


# --------------------------------------------------------------------------- enrolment
def _check_same_config(expected: Any, given: Any) -> None:
    """Refuse enrolment features of another configuration than the UBM's."""
    from speakergmm.features import FeatureConfig

    def as_config(c: Any) -> Any:
        return c if isinstance(c, FeatureConfig) else FeatureConfig.from_dict(dict(c))

    try:
        as_config(expected).check_compatible(as_config(given), what="enrolment features",
                                             expected="UBM", given="enrolment features")
    except ValueError as exc:
        raise VerificationError(str(exc)) from exc


def speaker_stats(ubm: GMM, source: FeatureSource, utterances: Sequence[str],
                  chunk_frames: int = 8192) -> SufficientStats:
    """Sufficient statistics of a speaker's utterances under the UBM."""
    stats = SufficientStats.zeros(ubm.n_components, ubm.n_features, ubm.covariance_type)
    for X in iter_buffered(source, utterances, ubm.n_features, chunk_frames):
        ubm.e_step(X, stats=stats)
    return stats


@dataclass(frozen=True)
class EnrolmentBatch:
    """Speakers to MAP-adapt from the UBM: what a worker process receives."""

    source: FeatureSource
    speakers: list  # (speaker id, enrolment utterance ids) per speaker
    ubm_arrays: dict  # GMM.to_arrays() of the UBM
    relevance_factor: float
    adapt: str  # any of "w", "m", "v"


def _adapt_speakers(task: EnrolmentBatch) -> list[tuple[str, dict[str, np.ndarray], float]]:
    """Adapt a batch of speakers (runs in a worker process, or in-process)."""
    ubm = GMM.from_arrays(task.ubm_arrays)
    out = []
    for speaker, utterances in task.speakers:
        stats = speaker_stats(ubm, task.source, utterances)
        if stats.n_frames <= 0:
            raise VerificationError(f"speaker {speaker!r}: the enrolment utterances hold no frames")
        model = map_update(stats, prior=ubm, relevance_factor=task.relevance_factor, adapt=task.adapt)
        out.append((speaker, {"weights": model.weights, "means": model.means,
                              "covariances": model.covariances}, stats.n_frames))
    return out


def enroll_speakers(ubm: GMM, source: Any, spk2utt: Mapping[str, Sequence[str]], *,
                    relevance_factor: float = 16.0, adapt: str = "m", jobs: int = 1,
                    feature_config: Any = None, show_progress: bool | None = None,
                    client: Any = None) -> SpeakerModels:
    """MAP-adapt one model per speaker from the UBM.

    Parameters
    ----------
    ubm : GMM
    source : feature store, mapping, list of arrays or paths
        Where the enrolment features are read from.
    spk2utt : mapping of speaker id to utterance ids
    relevance_factor : float
        Reynolds' ``r`` (16): larger trusts the UBM more.
    adapt : str
        Parameters to adapt: ``"m"`` (means, the classic choice), ``"mw"``, ``"mv"``, ``"mwv"``.
    jobs : int
        Worker processes (``0``: all cores); speakers are shared out in batches.
    client : dask.distributed.Client or concurrent.futures.Executor, optional
        Run the batches on a cluster instead (see :mod:`speakergmm.cluster`); workers read
        the features from the source's paths. The models do not depend on where they ran.
    feature_config : FeatureConfig or dict, optional
        The feature configuration the UBM was trained with (``load_ubm``'s metadata holds
        it). When the source knows its own configuration (a feature store does), the two
        must agree, as ``speakergmm enroll`` requires: a :class:`VerificationError` names
        the differing fields otherwise. Recorded with the models (defaults to the source's
        own configuration, if it has one).

    Returns
    -------
    SpeakerModels
    """
    if not spk2utt:
        raise VerificationError("no speakers to enrol")
    if not adapt or set(adapt) - set("wmv"):
        raise ValueError(f"adapt must be a non-empty combination of 'w', 'm', 'v'; got {adapt!r}")
    src = as_source(source)
    for speaker, utts in spk2utt.items():
        if not utts:
            raise VerificationError(f"speaker {speaker!r} has no enrolment utterances")
    own_config = src.feature_config()
    if feature_config is None:
        feature_config = own_config
    elif own_config is not None:
        _check_same_config(feature_config, own_config)
    items = [(str(s), list(u)) for s, u in spk2utt.items()]
    executor = as_executor(client)
    if executor is not None:
        check_cluster_source(src, "enrolment")
    n_workers = max(1, min(executor_workers(executor) if executor is not None else effective_jobs(jobs),
                           len(items)))
    # In-process: one speaker per step (a fine progress bar). In workers: a few batches per
    # worker, which balances the load without shipping the UBM once per speaker.
    n_batches = min(len(items), n_workers * 4) if (n_workers > 1 or executor is not None) else len(items)
    bounds = np.linspace(0, len(items), n_batches + 1).round().astype(int)
    ubm_arrays = ubm.to_arrays()
    tasks = [EnrolmentBatch(src, items[a:b], ubm_arrays, float(relevance_factor), adapt)
             for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    results: list = []
    # jobs=1 means one core: pin BLAS in-process too (oversubscribed BLAS threads were
    # several times slower on shared machines); workers are pinned by worker_pool.
    local_serial = n_workers == 1 and executor is None
    with threadpool_limits(limits=1) if local_serial else contextlib.nullcontext():
        for batch in parallel_map(_adapt_speakers, tasks, jobs=n_workers, desc="enrolment",
                                  executor=executor):
            results.extend(batch)
    S = len(results)
    return SpeakerModels(
        speaker_ids=[r[0] for r in results],
        means=np.stack([r[1]["means"] for r in results]),
        weights=np.stack([r[1]["weights"] for r in results]) if "w" in adapt else None,
        covariances=np.stack([r[1]["covariances"] for r in results]) if "v" in adapt else None,
        ubm_fingerprint=ubm.fingerprint(),
        covariance_type=ubm.covariance_type,
        relevance_factor=float(relevance_factor),
        adapt=adapt,
        n_frames=np.array([r[2] for r in results]) if S else np.zeros(0),
        feature_config=(feature_config.to_dict() if hasattr(feature_config, "to_dict")
                        else (dict(feature_config) if feature_config is not None else None)),
    )
