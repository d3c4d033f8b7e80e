"""The GMM-UBM verification chain on Kaldi-style data directories, stage by stage.

Each stage is a function the command line (``speakergmm train-ubm/enroll/score/evaluate/
verify``), the demo and the FSDD recipe share:

1. :func:`prepare_features` -- features of a data directory into a feature cache (reused);
2. :func:`run_train_ubm` -- the UBM (reused when the file matches; else resumed from its
   checkpoint, else trained);
3. :func:`run_enroll` -- one MAP model per speaker of ``utt2spk`` (reused when it matches);
4. :func:`run_score` -- every trial, optionally score-normalised with an impostor cohort;
5. :func:`evaluate_trials` -- EER, minDCF, actual DCF, Cllr, identification accuracy,
   ``results.json`` and the DET plot.

:func:`verify` runs them all into one output directory and is resumable: a rerun reuses the
feature caches, the UBM (or its checkpoint) and the speaker models already computed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from speakergmm.io import ModelFileError, atomic_write_json, atomic_write_text
from speakergmm.mixture import GMM
from speakergmm.verification.enroll import SpeakerModels, enroll_speakers
from speakergmm.verification.scoring import (
    NORMALIZATIONS,
    cohort_scores,
    normalize_scores,
    score_trials,
)
from speakergmm.verification.sources import VerificationError
from speakergmm.verification.ubm import CheckpointMismatch, UBMConfig, load_ubm, save_ubm, train_ubm

__all__ = [
    "VerifySettings",
    "StageResult",
    "auto_components",
    "default_feature_config",
    "prepare_features",
    "run_train_ubm",
    "run_enroll",
    "run_score",
    "write_scores",
    "read_scores",
    "evaluate_trials",
    "verify",
    "EXIT_PARTIAL",
]

#: Exit status when a batch finished but skipped some files or trials.
EXIT_PARTIAL = 3

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class VerifySettings:
    """Settings of the verification chain (defaults suit 8 and 16 kHz speech alike).

    Parameters
    ----------
    n_components : int or None
        UBM size; None chooses it from the amount of UBM data (:func:`auto_components`).
    covariance_type : {"diag", "full"}
    iter_per_split, final_iter, variance_floor, frames_per_component, ubm_dtype
        UBM training (see :class:`~speakergmm.verification.UBMConfig`).
    relevance_factor : float
        MAP relevance factor (Reynolds: 16).
    adapt : str
        MAP-adapted parameters: ``"m"`` (means; the classic and usually best choice).
    top_c : int
        Components per frame in fast scoring (Reynolds: 5); ``exact`` uses all.
    norm : {"none", "znorm", "tnorm", "ztnorm", "snorm"}
        Score normalisation (needs an impostor cohort).
    norm_top_n : int, optional
        Adaptive normalisation: only the ``top_n`` best cohort scores.
    cohort_max_utterances : int
        At most this many cohort utterances (evenly spread) for Z-norm statistics.
    jobs : int
        Worker processes for every stage (0: all cores).
    """

    n_components: int | None = None
    covariance_type: str = "diag"
    iter_per_split: int = 4
    final_iter: int = 16
    variance_floor: float = 0.001
    frames_per_component: int = 0
    ubm_dtype: str = "float32"
    relevance_factor: float = 16.0
    adapt: str = "m"
    top_c: int = 5
    exact: bool = False
    norm: str = "none"
    norm_top_n: int | None = None
    cohort_max_utterances: int = 400
    jobs: int = 0

    def __post_init__(self) -> None:
        if self.norm not in NORMALIZATIONS:
            raise ValueError(f"norm must be one of {', '.join(NORMALIZATIONS)}; got {self.norm!r}")
        if self.top_c < 1:
            raise ValueError(f"top_c must be >= 1; got {self.top_c}")
        if self.relevance_factor < 0:
            raise ValueError(f"relevance_factor must be >= 0; got {self.relevance_factor}")
        if not self.adapt or set(self.adapt) - set("wmv"):
            raise ValueError(f"adapt must be a combination of 'w', 'm', 'v'; got {self.adapt!r}")
        if self.n_components is not None and self.n_components < 1:
            raise ValueError(f"n_components must be >= 1; got {self.n_components}")

    def ubm_config(self, n_components: int) -> UBMConfig:
        return UBMConfig(n_components=n_components, covariance_type=self.covariance_type,
                         iter_per_split=self.iter_per_split, final_iter=self.final_iter,
                         variance_floor=self.variance_floor, dtype=self.ubm_dtype,
                         frames_per_component=self.frames_per_component)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class StageResult:
    """What a stage did: its output, whether it was reused, how long it took."""

    value: Any
    seconds: float
    reused: bool = False
    problems: list = dataclasses.field(default_factory=list)


# --------------------------------------------------------------------------- defaults
def auto_components(n_frames: int, frames_per_component: int = 300, low: int = 16, high: int = 512) -> int:
    """UBM size for ``n_frames`` training frames: the largest power of two leaving at least
    ``frames_per_component`` frames per Gaussian, within [``low``, ``high``].

    About 300 frames per component keeps every Gaussian well estimated; on the Free Spoken
    Digit Dataset (97k training frames) it gives 256, the best size measured there
    (docs/verification.md).
    """
    k = low
    while k * 2 <= high and n_frames / (k * 2) >= frames_per_component:
        k *= 2
    return k


def default_feature_config(data_dir: str | os.PathLike | None = None, sample_rate: int | None = None):
    """The front end's defaults at 8 kHz or 16 kHz.

    ``sample_rate=None`` looks at the first audio file of ``data_dir``: 16 kHz when it is
    recorded at 16 kHz or more (40 mel bands up to 8 kHz), else 8 kHz telephone band
    (23 mel bands); both with 20 MFCC (c0 included) + deltas + delta-deltas, utterance
    CMVN and the energy VAD.
    """
    from speakergmm.features import FeatureConfig

    if sample_rate is None:
        sample_rate = 8000
        if data_dir is not None:
            rate = _first_audio_rate(data_dir)
            if rate is not None and rate >= 16000:
                sample_rate = 16000
    return FeatureConfig(sample_rate=int(sample_rate))


def _first_audio_rate(data_dir: str | os.PathLike) -> int | None:
    import soundfile

    from speakergmm.corpus import CorpusError, read_data_dir

    try:
        data = read_data_dir(data_dir)
    except CorpusError:
        return None
    for path in list(data.wav.values())[:5]:
        try:
            return int(soundfile.info(path).samplerate)
        except Exception:  # unreadable: feature extraction will report it
            continue
    return None


# --------------------------------------------------------------------------- features
def prepare_features(data_dir: str | os.PathLike, feats_dir: str | os.PathLike, config: Any,
                     jobs: int = 0, log: Log | None = _stderr, show_progress: bool | None = None
                     ) -> StageResult:
    """Read a data directory and bring its feature cache up to date.

    Returns a StageResult whose value is ``(DataDir, FeatureStore)``; ``problems`` lists
    the skipped utterances (``"utt (path): reason"``).

    Raises
    ------
    VerificationError
        If the data directory is malformed or the cache cannot be written.
    """
    from speakergmm.corpus import CorpusError, read_data_dir
    from speakergmm.features import FeatureStore, FeatureStoreError, extract_data_dir

    t0 = time.perf_counter()
    try:
        data = read_data_dir(data_dir)
    except CorpusError as exc:
        raise VerificationError(f"invalid data directory {data_dir}: {exc}") from exc
    if len(data) == 0:
        raise VerificationError(f"data directory {data_dir} holds no utterances")
    try:
        report = extract_data_dir(data, feats_dir, config, jobs=jobs, progress=show_progress)
        store = FeatureStore(feats_dir)
    except (FeatureStoreError, OSError) as exc:
        raise VerificationError(f"cannot build the feature cache {feats_dir}: {exc}") from exc
    if log:
        log(f"features: {report.summary().splitlines()[0]}")
    problems = [str(s) for s in report.skipped]
    for line in problems:
        if log:
            log(f"features: skipped {line}")
    return StageResult((data, store), time.perf_counter() - t0, reused=report.n_extracted == 0,
                       problems=problems)


# --------------------------------------------------------------------------- UBM
def _data_fingerprint(store: Any, utterances: Sequence[str]) -> str:
    digest = hashlib.sha256(store.config.hash().encode())
    for utt in utterances:
        digest.update(utt.encode() + b"\0" + str(store.n_frames(utt)).encode() + b"\0")
    return digest.hexdigest()[:16]


def run_train_ubm(store: Any, utterances: Sequence[str], out_path: str | os.PathLike,
                  settings: VerifySettings, log: Log | None = _stderr,
                  show_progress: bool | None = None) -> StageResult:
    """Train (or reuse, or resume) the UBM on ``utterances`` of a feature store.

    The UBM file records its training configuration and a fingerprint of the data; a file
    that matches both is reused. Otherwise training resumes from ``<out>.ckpt`` if a
    compatible checkpoint is there. Returns a StageResult whose value is the GMM.
    """
    t0 = time.perf_counter()
    out_path = Path(out_path)
    utts = [u for u in utterances if u in store]
    if not utts:
        raise VerificationError("no UBM training utterance has features")
    total_frames = sum(store.n_frames(u) for u in utts)
    n_components = settings.n_components or auto_components(total_frames)
    config = settings.ubm_config(n_components)
    fingerprint = _data_fingerprint(store, utts)
    if out_path.is_file():
        try:
            gmm, meta = load_ubm(out_path)
            training = meta.get("training") or {}
            if training.get("config") == config.to_dict() and training.get("data_fingerprint") == fingerprint:
                if log:
                    log(f"ubm: reusing {out_path} ({gmm.n_components} components)")
                return StageResult(gmm, time.perf_counter() - t0, reused=True)
        except ModelFileError:
            pass  # unreadable: train again
        if log:
            log(f"ubm: {out_path} was trained with other settings or data; training again")
    checkpoint = out_path.with_name(out_path.name + ".ckpt")
    if log:
        log(f"ubm: training {n_components} {settings.covariance_type} Gaussians on {len(utts)} "
            f"utterances ({total_frames} frames)")
    kwargs = dict(utterances=utts, covariance_type=config.covariance_type,
                  iter_per_split=config.iter_per_split, final_iter=config.final_iter,
                  variance_floor=config.variance_floor, dtype=config.dtype,
                  frames_per_component=config.frames_per_component, jobs=settings.jobs,
                  checkpoint=checkpoint, log=log, show_progress=show_progress)
    try:
        result = train_ubm(store, n_components, **kwargs)
    except CheckpointMismatch as exc:
        if log:
            log(f"ubm: {exc}; starting afresh")
        checkpoint.unlink(missing_ok=True)
        result = train_ubm(store, n_components, **kwargs)
    save_ubm(out_path, result.gmm, feature_config=store.config, training={
        "config": config.to_dict(), "data_fingerprint": fingerprint, "n_utterances": len(utts),
        "n_frames": result.n_frames, "log_likelihood": result.history[-1],
        "seconds": round(result.seconds, 3),
    })
    checkpoint.unlink(missing_ok=True)
    return StageResult(result.gmm, time.perf_counter() - t0)


def ubm_feature_config(meta: Mapping[str, Any]):
    """The FeatureConfig recorded in a UBM file's metadata (None when absent)."""
    from speakergmm.features import FeatureConfig

    fc = meta.get("feature_config")
    return FeatureConfig.from_dict(fc) if fc else None


# --------------------------------------------------------------------------- enrolment
def run_enroll(ubm: GMM, store: Any, spk2utt: Mapping[str, Sequence[str]], out_path: str | os.PathLike,
               settings: VerifySettings, log: Log | None = _stderr) -> StageResult:
    """MAP-enrol every speaker (or reuse ``out_path`` when it matches UBM, data and settings).

    Utterances without features are left out (listed in ``problems``); a speaker left with
    none is not enrolled (listed too). Returns a StageResult whose value is SpeakerModels.
    """
    t0 = time.perf_counter()
    out_path = Path(out_path)
    problems: list[str] = []
    usable: dict[str, list[str]] = {}
    for speaker, utts in spk2utt.items():
        have = [u for u in utts if u in store]
        if len(have) < len(utts):
            problems.append(f"speaker {speaker}: {len(utts) - len(have)} enrolment utterance(s) without features")
        if have:
            usable[speaker] = have
        else:
            problems.append(f"speaker {speaker}: no enrolment utterance has features; not enrolled")
    if not usable:
        raise VerificationError("no speaker has enrolment features")
    digest = hashlib.sha256(store.config.hash().encode())
    for speaker, utts in usable.items():
        digest.update(f"{speaker}:{','.join(utts)};".encode())
    info = {"data_fingerprint": digest.hexdigest()[:16]}
    if out_path.is_file():
        try:
            old = SpeakerModels.load(out_path)
            if (old.ubm_fingerprint == ubm.fingerprint() and old.info.get("data_fingerprint") == info["data_fingerprint"]
                    and old.relevance_factor == settings.relevance_factor and old.adapt == settings.adapt):
                if log:
                    log(f"enroll: reusing {out_path} ({len(old)} speakers)")
                return StageResult(old, time.perf_counter() - t0, reused=True, problems=problems)
        except ModelFileError:
            pass
    models = enroll_speakers(ubm, store, usable, relevance_factor=settings.relevance_factor,
                             adapt=settings.adapt, jobs=settings.jobs, feature_config=store.config)
    models.info = info
    models.save(out_path)
    if log:
        log(f"enroll: {len(models)} speaker models -> {out_path} "
            f"({int(models.n_frames.min())}-{int(models.n_frames.max())} frames per speaker)")
    return StageResult(models, time.perf_counter() - t0, problems=problems)


# --------------------------------------------------------------------------- scoring
def _spread(items: Sequence[str], n: int) -> list[str]:
    if len(items) <= n:
        return list(items)
    picks = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in picks]


def run_score(ubm: GMM, models: SpeakerModels, store: Any, trials: Sequence[Any],
              settings: VerifySettings, cohort: tuple[Any, Mapping[str, Sequence[str]]] | None = None,
              log: Log | None = _stderr, show_progress: bool | None = None) -> StageResult:
    """Score trials (``(model, test_utt, ...)`` tuples); value is the float array.

    Trials whose test utterance has no features (or whose model was not enrolled) get NaN
    and are listed in ``problems``. With ``settings.norm != "none"``, ``cohort`` gives an
    impostor cohort ``(feature store, spk2utt)``: its speakers (those not enrolled) become
    T-norm models and its utterances (at most ``cohort_max_utterances``) Z-norm segments.
    """
    t0 = time.perf_counter()
    models.check_ubm(ubm)
    problems: list[str] = []
    known = set(models.speaker_ids)
    ok = np.array([t[0] in known for t in trials], dtype=bool)
    for speaker in sorted({t[0] for t in trials if t[0] not in known}):
        problems.append(f"model {speaker}: not enrolled; its trials are not scored")
    pairs = [(t[0], t[1]) for t, good in zip(trials, ok) if good]
    errors: dict[str, str] = {}
    scores = np.full(len(trials), np.nan)
    scored = score_trials(ubm, models, store, pairs, top_c=settings.top_c, exact=settings.exact,
                          jobs=settings.jobs, errors=errors, show_progress=show_progress)
    scores[ok] = scored
    problems.extend(f"test utterance {utt}: {reason}" for utt, reason in sorted(errors.items()))
    if settings.norm != "none":
        if cohort is None:
            raise VerificationError(f"score normalisation {settings.norm} needs an impostor cohort "
                                    "(--cohort-data)")
        cohort_store, cohort_spk2utt = cohort
        scores = _normalise(ubm, models, store, trials, scores, settings, cohort_store, cohort_spk2utt, log)
    if log:
        n_ok = int(np.isfinite(scores).sum())
        log(f"score: {n_ok} of {len(trials)} trials scored"
            + (f", normalised with {settings.norm}" if settings.norm != "none" else "")
            + f" (top-{settings.top_c} of {ubm.n_components})" * (not settings.exact))
    return StageResult(scores, time.perf_counter() - t0, problems=problems)


def _normalise(ubm: GMM, models: SpeakerModels, store: Any, trials: Sequence[Any], scores: np.ndarray,
               settings: VerifySettings, cohort_store: Any, cohort_spk2utt: Mapping[str, Sequence[str]],
               log: Log | None) -> np.ndarray:
    enrolled = set(models.speaker_ids)
    cohort_speakers = {s: [u for u in utts if u in cohort_store] for s, utts in cohort_spk2utt.items()
                       if s not in enrolled}
    cohort_speakers = {s: u for s, u in cohort_speakers.items() if u}
    z_utts = _spread([u for utts in cohort_speakers.values() for u in utts], settings.cohort_max_utterances)
    need_t = settings.norm in ("tnorm", "ztnorm", "snorm")
    if (need_t and len(cohort_speakers) < 2) or (settings.norm != "tnorm" and len(z_utts) < 2):
        raise VerificationError(
            f"{settings.norm}: the cohort needs at least 2 speakers not enrolled (and their "
            f"utterances); it has {len(cohort_speakers)} speaker(s) and {len(z_utts)} utterance(s)")
    cohort_models = None
    if need_t:
        cohort_models = enroll_speakers(ubm, cohort_store, cohort_speakers,
                                        relevance_factor=settings.relevance_factor, adapt=settings.adapt,
                                        jobs=settings.jobs, feature_config=cohort_store.config)
    finite = np.isfinite(scores)
    test_utts = sorted({t[1] for t, good in zip(trials, finite) if good})
    col = {u: j for j, u in enumerate(test_utts)}
    matrices = cohort_scores(ubm, models, cohort_models,
                             cohort_store if settings.norm != "tnorm" else None, z_utts,
                             store, test_utts, top_c=settings.top_c, exact=settings.exact,
                             jobs=settings.jobs)
    if log:
        log(f"score: {settings.norm} with a cohort of {len(cohort_speakers)} speakers / {len(z_utts)} utterances")
    out = np.full(len(trials), np.nan)
    idx = np.flatnonzero(finite)
    model_index = np.array([models.index(trials[i][0]) for i in idx], dtype=int)
    test_index = np.array([col[trials[i][1]] for i in idx], dtype=int)
    out[idx] = normalize_scores(settings.norm, scores[idx], model_index, test_index, matrices,
                                top_n=settings.norm_top_n)
    return out


def write_scores(path: str | os.PathLike, trials: Sequence[Any], scores: np.ndarray) -> None:
    """Write ``model test-utt score [target|nontarget]`` lines (NaN for unscored trials)."""
    lines = []
    for trial, score in zip(trials, scores):
        label = ""
        if len(trial) > 2 and trial[2] is not None:
            label = " target" if trial[2] is True or trial[2] == "target" else " nontarget"
        lines.append(f"{trial[0]} {trial[1]} {score:.6f}{label}" if np.isfinite(score)
                     else f"{trial[0]} {trial[1]} nan{label}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_scores(path: str | os.PathLike, trials_path: str | os.PathLike | None = None
                ) -> tuple[list[tuple[str, str, bool]], np.ndarray]:
    """Read a score file; labels from its 4th column or from a trial list.

    Raises
    ------
    VerificationError
        Naming the file and line of a malformed line, an unknown label, a trial with no
        label, or a duplicate.
    """
    path = Path(path)
    if not path.is_file():
        raise VerificationError(f"{path}: no such score file")
    labels: dict[tuple[str, str], bool] = {}
    if trials_path is not None:
        from speakergmm.corpus import CorpusError, read_trials

        try:
            labels = {(t.enroll, t.test): t.target for t in read_trials(trials_path)}
        except CorpusError as exc:
            raise VerificationError(str(exc)) from exc
    problems: list[str] = []
    trials: list[tuple[str, str, bool]] = []
    values: list[float] = []
    seen: set[tuple[str, str]] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (3, 4):
            problems.append(f"{path}:{number}: expected 'model test-utt score [target|nontarget]', "
                            f"got {len(parts)} fields")
            continue
        try:
            value = float(parts[2])
        except ValueError:
            problems.append(f"{path}:{number}: score {parts[2]!r} is not a number")
            continue
        key = (parts[0], parts[1])
        if key in seen:
            problems.append(f"{path}:{number}: duplicate trial {parts[0]} {parts[1]}")
            continue
        seen.add(key)
        if len(parts) == 4:
            if parts[3] not in ("target", "nontarget"):
                problems.append(f"{path}:{number}: label must be target or nontarget, got {parts[3]!r}")
                continue
            target = parts[3] == "target"
        elif key in labels:
            target = labels[key]
        else:
            problems.append(f"{path}:{number}: trial {parts[0]} {parts[1]} has no label "
                            "(give --trials, or a 4th column)")
            continue
        trials.append((parts[0], parts[1], target))
        values.append(value)
        if len(problems) > 20:
            break
    if problems:
        raise VerificationError("\n".join(problems))
    return trials, np.array(values, dtype=np.float64)


# --------------------------------------------------------------------------- evaluation
def _identification(trials: Sequence[tuple[str, str, bool]], scores: np.ndarray) -> dict[str, Any] | None:
    """Closed-set identification, when every test utterance is scored against every model
    and has exactly one target model."""
    from speakergmm import metrics

    models = sorted({t[0] for t in trials})
    utts = sorted({t[1] for t in trials})
    if len(models) < 2 or len(trials) != len(models) * len(utts):
        return None
    m_index = {m: i for i, m in enumerate(models)}
    u_index = {u: j for j, u in enumerate(utts)}
    matrix = np.full((len(utts), len(models)), np.nan)
    truth = np.full(len(utts), -1)
    for (model, utt, target), score in zip(trials, scores):
        matrix[u_index[utt], m_index[model]] = score
        if target:
            if truth[u_index[utt]] >= 0:
                return None  # two target models for one utterance: not closed-set
            truth[u_index[utt]] = m_index[model]
    if np.any(truth < 0) or not np.all(np.isfinite(matrix)):
        return None
    return {"identification_accuracy": metrics.identification_accuracy(matrix, truth),
            "n_identification_tests": len(utts)}


def evaluate_trials(trials: Sequence[tuple[str, str, bool]], scores: np.ndarray, out_dir: str | os.PathLike,
                    title: str | None = None, extra: Mapping[str, Any] | None = None,
                    plot: bool = True, operating_points: Any = None) -> dict[str, Any]:
    """Metrics of scored trials, written to ``out_dir/results.json`` (+ ``det.png``).

    Unscored (NaN) trials are left out and counted in ``n_unscored``. The keys are those of
    :func:`speakergmm.metrics.evaluate_scores` (``eer`` and ``min_dcf`` as fractions,
    ``n_target``, ``n_nontarget``, minDCF/actual DCF at SRE08 and SRE10, ``cllr``), plus
    ``identification_accuracy`` (closed-set; None unless every test utterance was scored
    against every model), ``det_plot`` and whatever ``extra`` holds. ``operating_points``
    (names or a mapping name -> DCFOperatingPoint, the first reported as ``min_dcf``)
    replaces the default SRE08 and SRE10.
    """
    from speakergmm import metrics

    out_dir = Path(out_dir)
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    labels = np.array([bool(t[2]) for t in trials], dtype=bool)
    tar, non = scores[finite & labels], scores[finite & ~labels]
    if tar.size == 0 or non.size == 0:
        raise VerificationError(f"cannot evaluate: {tar.size} target and {non.size} non-target "
                                "scored trials (both kinds are needed)")
    results: dict[str, Any] = (metrics.evaluate_scores(tar, non) if operating_points is None
                               else metrics.evaluate_scores(tar, non, operating_points))
    results["n_unscored"] = int((~finite).sum())
    ident = _identification([t for t, f in zip(trials, finite) if f], scores[finite])
    results["identification_accuracy"] = None if ident is None else ident["identification_accuracy"]
    results["n_identification_tests"] = None if ident is None else ident["n_identification_tests"]
    results["det_plot"] = None
    if plot:
        try:
            from speakergmm.plotting import plot_det

            results["det_plot"] = str(plot_det({"GMM-UBM": (tar, non)}, out_dir / "det.png",
                                               title=title or "DET curve"))
        except ImportError as exc:  # matplotlib is optional
            results["det_plot_error"] = f"no DET plot: {exc}"
    if extra:
        results.update(extra)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "results.json", results)
    return results


# --------------------------------------------------------------------------- the chain
def _feature_dirs(out: Path, dirs: Mapping[str, Path]) -> dict[str, Path]:
    """One cache per distinct data directory (the same directory twice shares its cache)."""
    caches: dict[Path, Path] = {}
    result = {}
    for name, data_dir in dirs.items():
        key = data_dir.resolve()
        if key not in caches:
            caches[key] = out / "features" / name
        result[name] = caches[key]
    return result


def verify(ubm_data: str | os.PathLike, enroll_data: str | os.PathLike, test_data: str | os.PathLike,
           trials_path: str | os.PathLike, out_dir: str | os.PathLike,
           settings: VerifySettings | None = None, feature_config: Any = None,
           cohort_data: str | os.PathLike | None = None, log: Log | None = _stderr,
           show_progress: bool | None = None, title: str | None = None,
           extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The whole chain: features, UBM, enrolment, scoring, evaluation (resumable).

    Writes into ``out_dir``: ``features/<ubm|enroll|test|cohort>/`` (feature caches),
    ``ubm.npz``, ``speakers.npz``, ``scores.txt``, ``results.json`` and ``det.png``.
    Returns the results dict, which also holds ``timings`` (seconds per stage),
    ``reused`` (stages taken from a previous run) and ``problems`` (skipped files, models
    and trials; ``exit_status`` is 3 when there are any).

    Raises
    ------
    VerificationError
        On bad inputs (missing or malformed data directories, trial lines naming unknown
        speakers or utterances, ...), with a message naming the file and what is wrong.
    """
    from speakergmm.corpus import CorpusError, read_trials

    settings = settings or VerifySettings()
    out = Path(out_dir)
    dirs = {"ubm": Path(ubm_data), "enroll": Path(enroll_data), "test": Path(test_data)}
    if cohort_data is not None:
        dirs["cohort"] = Path(cohort_data)
    for name, d in dirs.items():
        if not d.is_dir():
            raise VerificationError(f"--{name}-data {d}: no such directory")
    if not Path(trials_path).is_file():
        raise VerificationError(f"--trials {trials_path}: no such file")
    if settings.norm != "none" and cohort_data is None:
        raise VerificationError(f"--norm {settings.norm} needs --cohort-data (impostor speakers)")
    out.mkdir(parents=True, exist_ok=True)
    config = feature_config if feature_config is not None else default_feature_config(ubm_data)
    caches = _feature_dirs(out, dirs)
    timings: dict[str, float] = {}
    reused: list[str] = []
    problems: list[str] = []

    # 1. features (the trial list is checked first: a bad one fails in a second, not after minutes)
    from speakergmm.corpus import read_data_dir

    try:
        enroll_dir, test_dir = read_data_dir(dirs["enroll"]), read_data_dir(dirs["test"])
        trials = read_trials(trials_path, enroll=enroll_dir, test=test_dir)
    except CorpusError as exc:
        raise VerificationError(str(exc)) from exc
    if not trials:
        raise VerificationError(f"{trials_path}: no trials")
    stores = {}
    t_features = 0.0
    for name in dirs:
        stage = prepare_features(dirs[name], caches[name], config, jobs=settings.jobs, log=log,
                                 show_progress=show_progress)
        stores[name] = stage.value
        t_features += stage.seconds
        problems.extend(f"{name} data: {p}" for p in stage.problems)
    timings["features"] = t_features

    # 2. UBM
    ubm_dir, ubm_store = stores["ubm"]
    stage = run_train_ubm(ubm_store, ubm_dir.utterances, out / "ubm.npz", settings, log=log,
                          show_progress=show_progress)
    ubm = stage.value
    timings["ubm"] = stage.seconds
    if stage.reused:
        reused.append("ubm")

    # 3. enrolment
    enroll_data_dir, enroll_store = stores["enroll"]
    stage = run_enroll(ubm, enroll_store, enroll_data_dir.spk2utt, out / "speakers.npz", settings, log=log)
    models = stage.value
    timings["enroll"] = stage.seconds
    problems.extend(stage.problems)
    if stage.reused:
        reused.append("enroll")

    # 4. scoring
    cohort = None
    if "cohort" in stores:
        cohort_dir, cohort_store = stores["cohort"]
        cohort = (cohort_store, cohort_dir.spk2utt)
    _, test_store = stores["test"]
    stage = run_score(ubm, models, test_store, trials, settings, cohort=cohort, log=log,
                      show_progress=show_progress)
    scores = stage.value
    timings["score"] = stage.seconds
    problems.extend(stage.problems)
    write_scores(out / "scores.txt", trials, scores)

    # 5. evaluation
    t0 = time.perf_counter()
    info = {
        "ubm_components": ubm.n_components,
        "n_speakers": len(models),
        "n_trials": len(trials),
        "settings": settings.to_dict(),
        "feature_config": config.to_dict(),
        "ubm_data": str(dirs["ubm"]), "enroll_data": str(dirs["enroll"]),
        "test_data": str(dirs["test"]), "trials": str(trials_path),
        "scores": str(out / "scores.txt"),
        "reused": reused,
        "problems": problems,
        "exit_status": EXIT_PARTIAL if problems else 0,
    }
    info.update(extra or {})
    results = evaluate_trials([(t.enroll, t.test, t.target) for t in trials], scores, out, title=title,
                              extra=info)
    timings["evaluate"] = time.perf_counter() - t0
    timings["total"] = sum(timings.values())
    results["timings"] = {k: round(v, 3) for k, v in timings.items()}
    atomic_write_json(out / "results.json", results)
    if log:
        log(f"results: EER {100 * results['eer']:.2f}%, minDCF(SRE08) {results['min_dcf']:.4f}"
            + (f", identification accuracy {100 * results['identification_accuracy']:.2f}%"
               if results.get("identification_accuracy") is not None else "")
            + f" -> {out / 'results.json'}")
    return results


def format_seconds(seconds: float) -> str:
    """``1.23 s`` / ``2 min 03 s``."""
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes = math.floor(seconds / 60)
    return f"{minutes} min {seconds - 60 * minutes:02.0f} s"
