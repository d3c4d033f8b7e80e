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

import collections
import dataclasses
import hashlib
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from speakergmm.corpus import Trial
from speakergmm.exit_codes import EXIT_PARTIAL
from speakergmm.io import ModelFileError, atomic_write_json, atomic_write_text
from speakergmm.mixture import GMM
from speakergmm.verification.enroll import SpeakerModels, enroll_speakers
from speakergmm.verification.scoring import (
    NORMALIZATIONS,
    cohort_scores,
    normalize_scores,
    score_trials,
)
from speakergmm.verification.sources import FeatureSource, VerificationError, as_source
from speakergmm.verification.ubm import CheckpointMismatch, UBMConfig, load_ubm, save_ubm, train_ubm

__all__ = [
    "InvalidArgument",
    "Trial",
    "UNSCORABLE_SCORE",
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
    "evaluation_results",
    "fallback_features",
    "audio_rates",
    "supported_components",
    "verify",
    "check_cohort",
    "EXIT_PARTIAL",
]

logger = logging.getLogger(__name__)

Log = Callable[[str], None]

#: The score of a trial that cannot be scored at all (its test audio is missing or holds
#: no frame even without VAD, or its model was not enrolled): a log-likelihood ratio of 0,
#: no evidence either way (after score normalisation: the cohort's impostor mean). Such
#: trials are listed in ``results.json`` (``unscorable_trials``) and set exit status 3.
UNSCORABLE_SCORE = 0.0


def _log_info(line: str) -> None:
    """The default ``log`` of every stage: an INFO record of this module's logger."""
    logger.info(line)


class InvalidArgument(VerificationError):
    """A bad argument of a pipeline function; ``argument`` is the parameter's name (the
    command line maps it to its option)."""

    def __init__(self, argument: str, message: str):
        super().__init__(f"{argument} {message}")
        self.argument = argument
        self.detail = message


def _as_trial(trial: Any) -> Trial:
    """A :class:`~speakergmm.corpus.Trial` from a Trial or a ``(model, test, target)`` tuple
    whose target is a bool or the label ``"target"``/``"nontarget"``."""
    if isinstance(trial, Trial):
        return trial
    model, test, *rest = trial
    target = rest[0] if rest else None
    if isinstance(target, str):
        if target not in ("target", "nontarget"):
            raise VerificationError(f"trial {model} {test}: label must be target or nontarget, got {target!r}")
        target = target == "target"
    return Trial(str(model), str(test), None if target is None else bool(target))


@dataclass
class VerifySettings:
    """Settings of the verification chain (defaults suit 8 and 16 kHz speech alike).

    Parameters
    ----------
    n_components : int or None
        UBM size; None chooses it from the amount of UBM data (:func:`auto_components`).
    covariance_type : {"diag", "full"}
    iter_per_split, final_iter, variance_floor_ratio, frames_per_component, ubm_dtype
        UBM training (see :class:`~speakergmm.verification.UBMConfig`; ``variance_floor``
        is the deprecated name of ``variance_floor_ratio``).
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
    variance_floor_ratio: float = 0.001
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
    variance_floor: dataclasses.InitVar[float | None] = None  # deprecated: variance_floor_ratio

    def __post_init__(self, variance_floor: float | None) -> None:
        if variance_floor is not None:
            warnings.warn("VerifySettings(variance_floor=...) is deprecated: the relative floor "
                          "is called variance_floor_ratio", DeprecationWarning, stacklevel=3)
            self.variance_floor_ratio = float(variance_floor)
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
                         variance_floor_ratio=self.variance_floor_ratio, dtype=self.ubm_dtype,
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
    details: dict = dataclasses.field(default_factory=dict)


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


def default_feature_config(data_dir: str | os.PathLike | None = None, sample_rate: int | None = None,
                           log: Log | None = _log_info):
    """The front end's defaults at 8 kHz or 16 kHz.

    ``sample_rate=None`` decides from the recording rates of *every* audio file of
    ``data_dir`` (headers only): 16 kHz analysis when most files are recorded at 16 kHz or
    more (40 mel bands up to 8 kHz), else the 8 kHz telephone band (23 mel bands). Files of
    the minority are resampled at extraction and named on the log, with the choice. Both
    configurations use 20 MFCC (c0 included) + deltas + delta-deltas, utterance CMVN and
    the energy VAD.
    """
    from speakergmm.features import FeatureConfig

    if sample_rate is None:
        sample_rate = 8000
        if data_dir is not None:
            decision = audio_rates(data_dir)
            if decision is not None:
                sample_rate, message = decision
                if log:
                    log(message)
    return FeatureConfig(sample_rate=int(sample_rate))


# wav.scp commands are run only to read a rate: a few of them decide for the rest.
_COMMANDS_PROBED = 5


def audio_rates(data_dir: str | os.PathLike) -> tuple[int, str] | None:
    """The analysis rate (8000 or 16000) the majority of ``data_dir``'s audio calls for, and
    one line saying how it was decided and which files will be resampled (None when no
    file is readable: extraction will report them)."""
    from speakergmm.corpus import CorpusError, read_data_dir
    from speakergmm.features.audio import is_command, probe_sample_rate

    try:
        data = read_data_dir(data_dir)
    except CorpusError:
        return None
    rates: dict[str, int] = {}
    probed: dict[str, int | None] = {}  # per recording: segments share theirs
    commands_probed = 0
    for utt, path in data.wav.items():
        if path not in probed:
            if is_command(path):
                if commands_probed >= _COMMANDS_PROBED:
                    continue
                commands_probed += 1
            try:
                probed[path] = probe_sample_rate(path)
            except Exception:  # noqa: BLE001 - unreadable: feature extraction reports it
                probed[path] = None
        if probed[path] is not None:
            rates[utt] = probed[path]
    if not rates:
        return None
    wide = sum(rate >= 16000 for rate in rates.values())
    analysis = 16000 if wide > len(rates) - wide else 8000
    counts = collections.Counter(rates.values())
    minority = [u for u, r in rates.items() if (r >= 16000) != (analysis == 16000)]
    listed = ", ".join(f"{rate} Hz: {n}" for rate, n in sorted(counts.items()))
    message = (f"features: {analysis} Hz analysis chosen from {len(rates)} files of {data_dir} "
               f"({listed})")
    if minority:
        shown = ", ".join(f"{u} ({rates[u]} Hz)" for u in minority[:5]) + (" ..." if len(minority) > 5 else "")
        message += f"; {len(minority)} of another band resampled: {shown}"
    return analysis, message


# --------------------------------------------------------------------------- features
def prepare_features(data_dir: str | os.PathLike, feats_dir: str | os.PathLike, config: Any,
                     jobs: int = 0, log: Log | None = _log_info, show_progress: bool | None = None,
                     beside: bool = True, client: Any = None) -> StageResult:
    """Read a data directory and bring its feature cache up to date.

    ``client`` (a ``distributed.Client``, see :mod:`speakergmm.cluster`) extracts on a Dask
    cluster instead of ``jobs`` local processes; every ``run_*`` stage takes it the same way.

    ``data_dir`` may also hold features already (a Kaldi ``feats.scp``, a feature cache, a
    folder of ``.npy``; see :mod:`speakergmm.features.external`): they are used as they
    are, nothing is extracted, and ``config`` (when given) must match theirs when they
    record one. ``config=None`` asks for no particular configuration (audio then cannot be
    used). A cache in ``feats_dir`` made with another configuration is never overwritten:
    with ``beside`` the features go to a cache beside it (``<feats_dir>-<hash>``),
    otherwise it is refused naming the settings that differ.

    Returns a StageResult whose value is ``(DataDir, store)``; ``problems`` lists
    the skipped utterances (``"utt (path): reason"``).

    Raises
    ------
    VerificationError
        If the data directory is malformed or the cache cannot be written.
    """
    from speakergmm.corpus import CorpusError, read_data_dir
    from speakergmm.features import FeatureStore, FeatureStoreError, cache_beside, extract_data_dir
    from speakergmm.features.external import open_feature_dir

    t0 = time.perf_counter()
    if not Path(data_dir).is_dir():
        raise InvalidArgument("data_dir", f"{data_dir}: no such directory")
    try:
        opened = open_feature_dir(data_dir)
    except (CorpusError, FeatureStoreError) as exc:
        raise VerificationError(f"invalid feature directory {data_dir}: {exc}") from exc
    if opened is not None:
        data, store = opened
        if len(store) == 0:
            raise VerificationError(f"{data_dir} holds no features")
        if config is not None and store.config is not None:
            try:
                config.check_compatible(store.config, what=f"the features in {data_dir}",
                                        expected="model", given="those features")
            except ValueError as exc:
                raise VerificationError(str(exc)) from exc
        if log:
            log(f"features: using the features of {len(store)} utterances in {data_dir} as they are")
        return StageResult((data, store), time.perf_counter() - t0, reused=True)
    if config is None:
        raise VerificationError(
            f"{data_dir}: holds audio, but no feature configuration is known (the model was trained "
            "on features computed elsewhere): give this data's features too (a data directory "
            "with feats.scp, a feature cache or a folder of .npy files)")
    try:
        data = read_data_dir(data_dir)
    except CorpusError as exc:
        raise VerificationError(f"invalid data directory {data_dir}: {exc}") from exc
    if len(data) == 0:
        raise VerificationError(f"data directory {data_dir} holds no utterances")
    if beside:
        chosen = cache_beside(feats_dir, config)
        if chosen != Path(feats_dir) and log:
            log(f"features: {feats_dir} holds features of another configuration; using {chosen}")
        feats_dir = chosen
    try:
        report = extract_data_dir(data, feats_dir, config, jobs=jobs, show_progress=show_progress,
                                  client=client)
        store = FeatureStore(feats_dir)
    except (FeatureStoreError, OSError) as exc:
        raise VerificationError(f"cannot build the feature cache {feats_dir}: {exc}") from exc
    if log:
        log(f"features: {report.summary().splitlines()[0]}; configuration {config.hash()} "
            f"({config.sample_rate} Hz, {config.n_mfcc} MFCC, deltas {config.delta_order}, "
            f"CMVN {config.cmvn}, VAD {'on' if config.vad else 'off'})")
    problems = [str(s) for s in report.skipped]
    for line in problems:
        if log:
            log(f"features: skipped {line}")
    return StageResult((data, store), time.perf_counter() - t0, reused=report.n_extracted == 0,
                       problems=problems)


def _features_token(store: Any) -> str:
    """What identifies a store's features: its configuration, or where features computed
    elsewhere come from."""
    config = getattr(store, "config", None)
    if config is not None:
        return config.hash()
    digest = getattr(store, "source_digest", None)
    return digest() if callable(digest) else "external"


# --------------------------------------------------------------------------- UBM
def _data_fingerprint(store: Any, utterances: Sequence[str]) -> str:
    digest = hashlib.sha256(_features_token(store).encode())
    for utt in utterances:
        digest.update(utt.encode() + b"\0" + str(store.n_frames(utt)).encode() + b"\0")
    return digest.hexdigest()[:16]


#: Fewest training frames per Gaussian a UBM size needs; below it the size is reduced.
MIN_FRAMES_PER_COMPONENT = 10


def supported_components(n_components: int, n_frames: int,
                         min_frames: int = MIN_FRAMES_PER_COMPONENT) -> int:
    """``n_components``, or the largest power of two below it that leaves at least
    ``min_frames`` training frames per Gaussian (at least 1)."""
    if n_frames >= n_components * min_frames:
        return n_components
    k = 1
    while k * 2 <= n_components and n_frames >= k * 2 * min_frames:
        k *= 2
    return k


def run_train_ubm(store: Any, utterances: Sequence[str], out_path: str | os.PathLike,
                  settings: VerifySettings, log: Log | None = _log_info,
                  show_progress: bool | None = None, client: Any = None) -> StageResult:
    """Train (or reuse, or resume) the UBM on ``utterances`` of a feature store.

    The UBM file records its training configuration and a fingerprint of the data; a file
    that matches both is reused. Otherwise training resumes from its checkpoint
    ``<out>.<hash of settings and data>.ckpt`` when one is there (a run with other settings
    or data has its own checkpoint and never removes another's). A UBM size the data
    cannot support (under :data:`MIN_FRAMES_PER_COMPONENT` frames per Gaussian) is reduced
    to one it can, with one log line; components that receive no frames during training
    are summarised in one line too. Returns a StageResult whose value is the GMM.
    """
    t0 = time.perf_counter()
    out_path = Path(out_path)
    utts = [u for u in utterances if u in store]
    if not utts:
        raise VerificationError("no UBM training utterance has features")
    total_frames = sum(store.n_frames(u) for u in utts)
    requested = settings.n_components or auto_components(total_frames)
    n_components = supported_components(requested, total_frames)
    if n_components != requested and log:
        log(f"ubm: {requested} Gaussians need at least {requested * MIN_FRAMES_PER_COMPONENT} training "
            f"frames ({MIN_FRAMES_PER_COMPONENT} per Gaussian) and the data has {total_frames}; "
            f"training {n_components} instead")
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
    run_key = hashlib.sha256(f"{sorted(config.to_dict().items())}:{fingerprint}".encode()).hexdigest()[:12]
    checkpoint = out_path.with_name(f"{out_path.name}.{run_key}.ckpt")
    if log:
        log(f"ubm: training {n_components} {settings.covariance_type} Gaussians on {len(utts)} "
            f"utterances ({total_frames} frames)")
    kwargs = dict(config=config, utterances=utts, jobs=settings.jobs, checkpoint=checkpoint,
                  log=log, show_progress=show_progress, client=client)
    from speakergmm.mixture.update import EmptyComponentWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EmptyComponentWarning)
        try:
            result = train_ubm(store, **kwargs)
        except CheckpointMismatch as exc:
            # Unreadable or foreign: set aside (never deleted), then start afresh.
            stale = checkpoint.with_name(checkpoint.name + ".stale")
            if log:
                log(f"ubm: {exc}; kept as {stale.name}, starting afresh")
            checkpoint.replace(stale)
            result = train_ubm(store, **kwargs)
    empty = [w for w in caught if issubclass(w.category, EmptyComponentWarning)]
    for w in caught:
        if not issubclass(w.category, EmptyComponentWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if empty and log:
        log(f"ubm: {len(empty)} EM update(s) left some Gaussians without frames (they kept their "
            f"previous parameters; last: {str(empty[-1].message)[:160]})")
    save_ubm(out_path, result.gmm, feature_config=store.config, training={
        "config": config.to_dict(), "data_fingerprint": fingerprint, "n_utterances": len(utts),
        "n_frames": result.n_frames, "log_likelihood": result.history[-1],
        "seconds": round(result.seconds, 3), "requested_components": requested,
    })
    checkpoint.unlink(missing_ok=True)
    return StageResult(result.gmm, time.perf_counter() - t0)


def ubm_feature_config(meta: Mapping[str, Any], path: str | os.PathLike | None = None):
    """The FeatureConfig recorded in a UBM file's metadata (None when absent).

    Raises
    ------
    ModelFileError
        When the recorded configuration is not a valid FeatureConfig (naming ``path``).
    """
    from speakergmm.features import FeatureConfig

    fc = meta.get("feature_config")
    if not fc:
        return None
    where = f"{path}: " if path is not None else ""
    if not isinstance(fc, dict):
        raise ModelFileError(f"{where}invalid UBM file: expected a JSON object (field 'feature_config')")
    try:
        return FeatureConfig.from_dict(fc)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ModelFileError(f"{where}invalid UBM file: {exc} (field 'feature_config')") from exc


# --------------------------------------------------------------------------- enrolment
def run_enroll(ubm: GMM, store: Any, spk2utt: Mapping[str, Sequence[str]], out_path: str | os.PathLike,
               settings: VerifySettings, log: Log | None = _log_info,
               ubm_feature_config: Any = None, client: Any = None) -> StageResult:
    """MAP-enrol every speaker (or reuse ``out_path`` when it matches UBM, data and settings).

    ``ubm_feature_config`` (the configuration recorded in the UBM file) is checked against
    the store's: enrolment features of another configuration are refused.

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
    digest = hashlib.sha256(_features_token(store).encode())
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
                             adapt=settings.adapt, jobs=settings.jobs, client=client,
                             feature_config=ubm_feature_config if ubm_feature_config is not None
                             else store.config)
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


class _WithFallback(FeatureSource):
    """A feature store plus the fallback features of some of its test utterances."""

    def __init__(self, store: Any, extra: Mapping[str, np.ndarray]):
        self.base = as_source(store)
        self.extra = dict(extra)

    def ids(self) -> list[str]:
        base = self.base.ids()
        known = set(base)
        return base + [u for u in self.extra if u not in known]

    def load(self, utt_id: str) -> np.ndarray:
        if utt_id in self.extra:
            return self.extra[utt_id]
        return self.base.load(utt_id)

    def feature_config(self) -> Any:
        return self.base.feature_config()


def fallback_features(path: str | os.PathLike | None, config: Any) -> tuple[np.ndarray | None, str]:
    """Features of a test recording the energy VAD kept nothing of: all its frames, VAD off.

    Returns ``(features, how)`` or ``(None, why not)`` (no audio path, unreadable audio,
    not even one frame).
    """
    if path is None or config is None:
        return None, "no audio to fall back to"
    from speakergmm.features.audio import FeatureError
    from speakergmm.features.extract import get_extractor

    try:
        extraction = get_extractor(config.replace(vad=False)).extract_full(path)
    except FeatureError as exc:
        return None, f"no fallback either ({exc.reason})"
    except Exception as exc:  # noqa: BLE001 - any unreadable audio ends the same way
        return None, f"no fallback either ({type(exc).__name__}: {exc})"
    n = int(extraction.features.shape[0])
    if n == 0:
        return None, "no fallback either (not one frame)"
    return np.asarray(extraction.features), f"scored on all {n} frames with the VAD off (fallback)"


def run_score(ubm: GMM, models: SpeakerModels, store: Any, trials: Sequence[Any],
              settings: VerifySettings, cohort: tuple[Any, Mapping[str, Sequence[str]]] | None = None,
              log: Log | None = _log_info, show_progress: bool | None = None,
              audio: Mapping[str, str] | None = None, client: Any = None) -> StageResult:
    """Score every trial; the value is the float array, one finite score per trial.

    A test utterance without features (e.g. one of which the energy VAD kept no frame) is
    scored on all its frames with the VAD off when ``audio`` (utterance -> audio path)
    names its recording; that is said on the log, in ``problems`` and in
    ``details["fallback"]``. A trial that cannot be scored at all (no audio, no frame even
    without VAD, or a model that was not enrolled) gets :data:`UNSCORABLE_SCORE`, listed in
    ``problems`` and ``details["unscorable"]``: evaluation rules need a score for every
    trial. With ``settings.norm != "none"``, ``cohort`` gives an impostor cohort
    ``(feature store, spk2utt)``: its speakers (those not enrolled) become T-norm models and
    its utterances (at most ``cohort_max_utterances``) Z-norm segments.
    """
    t0 = time.perf_counter()
    trials = [_as_trial(t) for t in trials]
    if settings.norm != "none" and cohort is None:
        raise InvalidArgument("cohort", f"is needed by score normalisation {settings.norm} "
                                        "(an impostor cohort)")
    models.check_ubm(ubm)
    problems: list[str] = []
    unscorable: dict[str, str] = {}
    known = set(models.speaker_ids)
    ok = np.array([t.enroll in known for t in trials], dtype=bool)
    for speaker in sorted({t.enroll for t in trials if t.enroll not in known}):
        unscorable[f"model {speaker}"] = "not enrolled"
    pairs = [(t.enroll, t.test) for t, good in zip(trials, ok) if good]
    errors: dict[str, str] = {}
    scores = np.full(len(trials), np.nan)
    scores[ok] = score_trials(ubm, models, store, pairs, top_c=settings.top_c, exact=settings.exact,
                              jobs=settings.jobs, errors=errors, show_progress=show_progress,
                              client=client)
    extra: dict[str, np.ndarray] = {}
    fallback: dict[str, str] = {}
    config = getattr(store, "config", None)
    for utt, reason in sorted(errors.items()):
        features, how = fallback_features((audio or {}).get(utt), config)
        if features is None:
            unscorable[f"test utterance {utt}"] = f"{reason}; {how}"
        else:
            extra[utt] = features
            fallback[utt] = f"{reason}; {how}"
    source: Any = store
    if extra:
        source = _WithFallback(store, extra)
        redo = np.array([good and t.test in extra for t, good in zip(trials, ok)], dtype=bool)
        scores[redo] = score_trials(ubm, models, extra, [(t.enroll, t.test) for t, r in zip(trials, redo) if r],
                                    top_c=settings.top_c, exact=settings.exact, jobs=1)
    if settings.norm != "none":
        cohort_store, cohort_spk2utt = cohort
        scores = _normalize(ubm, models, source, trials, scores, settings, cohort_store, cohort_spk2utt, log,
                            client=None if extra else client)
    bad = ~np.isfinite(scores)
    scores[bad] = UNSCORABLE_SCORE
    counts = collections.Counter(t.test for t in trials)
    model_counts = collections.Counter(t.enroll for t in trials)
    for utt, how in fallback.items():
        problems.append(f"test utterance {utt}: {how} ({counts[utt]} trial(s))")
    for what, why in unscorable.items():
        n = model_counts[what[6:]] if what.startswith("model ") else counts[what[len("test utterance "):]]
        problems.append(f"{what}: cannot be scored ({why}); its {n} trial(s) get the score "
                        f"{UNSCORABLE_SCORE}")
    if log:
        log(f"score: {len(trials)} trials scored"
            + (f" ({int(sum(counts[u] for u in fallback))} on fallback features)" if fallback else "")
            + (f", {int(bad.sum())} unscorable given {UNSCORABLE_SCORE}" if bad.any() else "")
            + (f", normalised with {settings.norm}" if settings.norm != "none" else "")
            + f" (top-{settings.top_c} of {ubm.n_components})" * (not settings.exact))
        for line in problems:
            log(f"score: {line}")
    return StageResult(scores, time.perf_counter() - t0, problems=problems,
                       details={"fallback": fallback, "unscorable": unscorable,
                                "unscorable_trials": [f"{t.enroll} {t.test}" for t, b in zip(trials, bad) if b]})


def _normalize(ubm: GMM, models: SpeakerModels, store: Any, trials: Sequence[Any], scores: np.ndarray,
               settings: VerifySettings, cohort_store: Any, cohort_spk2utt: Mapping[str, Sequence[str]],
               log: Log | None, client: Any = None) -> np.ndarray:
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
                                        jobs=settings.jobs, feature_config=cohort_store.config,
                                        client=client)
    finite = np.isfinite(scores)
    test_utts = sorted({t.test for t, good in zip(trials, finite) if good})
    col = {u: j for j, u in enumerate(test_utts)}
    matrices = cohort_scores(ubm, models, cohort_models,
                             cohort_store if settings.norm != "tnorm" else None, z_utts,
                             store, test_utts, top_c=settings.top_c, exact=settings.exact,
                             jobs=settings.jobs, client=client)
    if log:
        log(f"score: {settings.norm} with a cohort of {len(cohort_speakers)} speakers / {len(z_utts)} utterances")
    out = np.full(len(trials), np.nan)
    idx = np.flatnonzero(finite)
    model_index = np.array([models.index(trials[i].enroll) for i in idx], dtype=int)
    test_index = np.array([col[trials[i].test] for i in idx], dtype=int)
    out[idx] = normalize_scores(settings.norm, scores[idx], model_index, test_index, matrices,
                                top_n=settings.norm_top_n)
    return out


def write_scores(path: str | os.PathLike, trials: Sequence[Any], scores: np.ndarray) -> None:
    """Write ``model test-utt score [target|nontarget]`` lines (``nan`` for a non-finite score)."""
    lines = []
    for trial, score in zip(map(_as_trial, trials), scores):
        label = "" if trial.target is None else (" target" if trial.target else " nontarget")
        value = f"{score:.6f}" if np.isfinite(score) else "nan"
        lines.append(f"{trial.enroll} {trial.test} {value}{label}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_scores(path: str | os.PathLike, trials_path: str | os.PathLike | None = None
                ) -> tuple[list[Trial], np.ndarray]:
    """Read a score file; labels from its 4th column or from a trial list.

    Raises
    ------
    VerificationError
        Naming the file and line of a malformed line, a score that is not a finite number,
        an unknown label, a trial with no label, or a duplicate.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument("scores", f"{path}: no such score file")
    labels: dict[tuple[str, str], bool] = {}
    if trials_path is not None:
        from speakergmm.corpus import CorpusError, read_trials

        try:
            labels = {(t.enroll, t.test): t.target for t in read_trials(trials_path)}
        except CorpusError as exc:
            raise VerificationError(str(exc)) from exc
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise VerificationError(f"{path}: not a text score file ({exc.reason} at byte {exc.start})") from exc
    problems: list[str] = []
    trials: list[Trial] = []
    values: list[float] = []
    seen: set[tuple[str, str]] = set()
    for number, line in enumerate(text.splitlines(), 1):
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
            problems.append(f"{path}:{number}: score {parts[2][:40]!r} is not a number")
            continue
        if not np.isfinite(value):
            problems.append(f"{path}:{number}: score {parts[2][:40]!r} of trial {parts[0]} {parts[1]} "
                            "is not a finite number (every trial needs a score)")
            continue
        key = (parts[0], parts[1])
        if key in seen:
            problems.append(f"{path}:{number}: duplicate trial {parts[0]} {parts[1]}")
            continue
        seen.add(key)
        if len(parts) == 4:
            if parts[3] not in ("target", "nontarget"):
                problems.append(f"{path}:{number}: label must be target or nontarget, got {parts[3][:40]!r}")
                continue
            target = parts[3] == "target"
        elif key in labels:
            target = labels[key]
        else:
            problems.append(f"{path}:{number}: trial {parts[0]} {parts[1]} has no label "
                            "(give a trial list, or a 4th column)")
            continue
        trials.append(Trial(parts[0], parts[1], target))
        values.append(value)
        if len(problems) > 20:
            break
    if problems:
        raise VerificationError("\n".join(problems))
    return trials, np.array(values, dtype=np.float64)


# --------------------------------------------------------------------------- evaluation
def _identification(trials: Sequence[Trial], scores: np.ndarray) -> dict[str, Any] | None:
    """Closed-set identification, when every test utterance is scored against every model
    and has exactly one target model."""
    from speakergmm import metrics

    models = sorted({t.enroll for t in trials})
    utts = sorted({t.test for t in trials})
    if len(models) < 2 or len(trials) != len(models) * len(utts):
        return None
    m_index = {m: i for i, m in enumerate(models)}
    u_index = {u: j for j, u in enumerate(utts)}
    matrix = np.full((len(utts), len(models)), np.nan)
    truth = np.full(len(utts), -1)
    for trial, score in zip(trials, scores):
        matrix[u_index[trial.test], m_index[trial.enroll]] = score
        if trial.target:
            if truth[u_index[trial.test]] >= 0:
                return None  # two target models for one utterance: not closed-set
            truth[u_index[trial.test]] = m_index[trial.enroll]
    if np.any(truth < 0) or not np.all(np.isfinite(matrix)):
        return None
    return {"identification_accuracy": metrics.identification_accuracy(matrix, truth),
            "n_identification_tests": len(utts)}


def evaluation_results(trials: Sequence[Any], scores: np.ndarray, out_dir: str | os.PathLike | None = None,
                       title: str | None = None, plot: bool = True,
                       operating_points: Any = None) -> dict[str, Any]:
    """Metrics of scored trials (and ``out_dir/det.png``), without writing ``results.json``.

    Every trial needs a finite score: a NaN or infinite one is a :class:`VerificationError`
    naming the trials (a trial without a score must never silently leave the evaluation).
    """
    from speakergmm import metrics

    trials = [_as_trial(t) for t in trials]
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(trials),):
        raise InvalidArgument("scores", f"has shape {scores.shape}, expected one score per trial ({len(trials)})")
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        shown = ", ".join(f"{trials[i].enroll} {trials[i].test} ({scores[i]})" for i in bad[:5])
        raise VerificationError(f"{bad.size} trial(s) have no finite score: {shown}"
                                + (" ..." if bad.size > 5 else ""))
    unlabelled = [t for t in trials if t.target is None]
    if unlabelled:
        raise VerificationError(f"trial {unlabelled[0].enroll} {unlabelled[0].test} has no target/nontarget label")
    labels = np.array([t.target for t in trials], dtype=bool)
    tar, non = scores[labels], scores[~labels]
    if tar.size == 0 or non.size == 0:
        raise VerificationError(f"cannot evaluate: {tar.size} target and {non.size} non-target "
                                "trials (both kinds are needed)")
    results: dict[str, Any] = (metrics.evaluate_scores(tar, non) if operating_points is None
                               else metrics.evaluate_scores(tar, non, operating_points))
    ident = _identification(trials, scores)
    results["identification_accuracy"] = None if ident is None else ident["identification_accuracy"]
    results["n_identification_tests"] = None if ident is None else ident["n_identification_tests"]
    results["det_plot"] = None
    if plot and out_dir is not None:
        try:
            from speakergmm.plotting import plot_det

            Path(out_dir).mkdir(parents=True, exist_ok=True)
            results["det_plot"] = str(plot_det({"GMM-UBM": (tar, non)}, Path(out_dir) / "det.png",
                                               title=title or "DET curve"))
        except ImportError as exc:  # matplotlib is optional
            results["det_plot_error"] = f"no DET plot: {exc}"
    return results


def evaluate_trials(trials: Sequence[Any], scores: np.ndarray, out_dir: str | os.PathLike,
                    title: str | None = None, extra: Mapping[str, Any] | None = None,
                    plot: bool = True, operating_points: Any = None) -> dict[str, Any]:
    """Metrics of scored trials, written to ``out_dir/results.json`` (+ ``det.png``).

    ``trials`` are :class:`~speakergmm.corpus.Trial` (or ``(model, test, target)`` tuples);
    every one needs a finite score (:class:`VerificationError` otherwise). The keys are
    those of :func:`speakergmm.metrics.evaluate_scores` (``eer`` and ``min_dcf`` as
    fractions, ``n_target``, ``n_nontarget``, minDCF/actual DCF at SRE08 and SRE10,
    ``cllr``), plus ``identification_accuracy`` (closed-set; None unless every test
    utterance was scored against every model), ``det_plot`` and whatever ``extra`` holds.
    ``operating_points`` (names or a mapping name -> DCFOperatingPoint, the first reported
    as ``min_dcf``) replaces the default SRE08 and SRE10.
    """
    results = evaluation_results(trials, scores, out_dir, title=title, plot=plot,
                                 operating_points=operating_points)
    if extra:
        results.update(extra)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(out_dir) / "results.json", results)
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


def check_cohort(settings: VerifySettings, cohort_data: Any) -> None:
    """Score normalisation needs an impostor cohort: :class:`InvalidArgument` otherwise."""
    if settings.norm != "none" and cohort_data is None:
        raise InvalidArgument("cohort_data", f"is needed by norm={settings.norm!r} (impostor speakers)")


def verify(ubm_data: str | os.PathLike, enroll_data: str | os.PathLike, test_data: str | os.PathLike,
           trials_path: str | os.PathLike, out_dir: str | os.PathLike,
           settings: VerifySettings | None = None, feature_config: Any = None,
           cohort_data: str | os.PathLike | None = None, log: Log | None = _log_info,
           show_progress: bool | None = None, title: str | None = None,
           extra: Mapping[str, Any] | None = None, client: Any = None) -> dict[str, Any]:
    """The whole chain: features, UBM, enrolment, scoring, evaluation (resumable).

    Writes into ``out_dir``: ``features/<ubm|enroll|test|cohort>/`` (feature caches),
    ``ubm.npz``, ``speakers.npz``, ``scores.txt``, ``results.json`` (once, at the end) and
    ``det.png``. Returns the results dict, which also holds ``timings`` (seconds per
    stage), ``reused`` (stages taken from a previous run), ``problems`` (skipped files,
    models and trials), ``fallback_utterances`` / ``unscorable_trials`` (see :func:`run_score`)
    and ``exit_status`` (:data:`~speakergmm.exit_codes.EXIT_PARTIAL` when there are
    problems).

    ``client`` (a ``distributed.Client``) runs every stage's tasks on a Dask cluster
    (docs/scaling.md); the results are those of a local run.

    Raises
    ------
    InvalidArgument
        A missing directory or file, or ``norm`` without ``cohort_data``; ``argument``
        names the parameter.
    VerificationError
        On bad inputs (malformed data directories, trial lines naming unknown speakers or
        utterances, ...), with a message naming the file and what is wrong.
    """
    from speakergmm.corpus import CorpusError, read_data_dir, read_trials

    settings = settings or VerifySettings()
    out = Path(out_dir)
    dirs = {"ubm": Path(ubm_data), "enroll": Path(enroll_data), "test": Path(test_data)}
    if cohort_data is not None:
        dirs["cohort"] = Path(cohort_data)
    for name, d in dirs.items():
        if not d.is_dir():
            raise InvalidArgument(f"{name}_data", f"{d}: no such directory")
    if not Path(trials_path).is_file():
        raise InvalidArgument("trials_path", f"{trials_path}: no such file")
    check_cohort(settings, cohort_data)
    out.mkdir(parents=True, exist_ok=True)
    from speakergmm.features.external import feature_dir_kind

    config = feature_config
    if config is None and feature_dir_kind(ubm_data) is None:
        config = default_feature_config(ubm_data, log=log)
    caches = _feature_dirs(out, dirs)
    timings: dict[str, float] = {}
    reused: list[str] = []
    problems: list[str] = []

    # 1. features (the trial list is checked first: a bad one fails in a second, not after minutes)
    try:
        from speakergmm.features import FeatureStoreError
        from speakergmm.features.external import open_feature_dir

        def read_any(d: Path):
            opened = open_feature_dir(d)
            return opened[0] if opened is not None else read_data_dir(d)

        enroll_dir, test_dir = read_any(dirs["enroll"]), read_any(dirs["test"])
        trials = read_trials(trials_path, enroll=enroll_dir, test=test_dir)
    except (CorpusError, FeatureStoreError) as exc:
        raise VerificationError(str(exc)) from exc
    if not trials:
        raise VerificationError(f"{trials_path}: no trials")
    stores = {}
    t_features = 0.0
    for name in dirs:
        stage = prepare_features(dirs[name], caches[name], config, jobs=settings.jobs, log=log,
                                 show_progress=show_progress, client=client)
        stores[name] = stage.value
        if config is None:  # the UBM's features say how the others must be computed
            config = getattr(stage.value[1], "config", None)
        t_features += stage.seconds
        problems.extend(f"{name} data: {p}" for p in stage.problems)
    timings["features"] = t_features

    # 2. UBM
    ubm_dir, ubm_store = stores["ubm"]
    stage = run_train_ubm(ubm_store, ubm_dir.utterances, out / "ubm.npz", settings, log=log,
                          show_progress=show_progress, client=client)
    ubm = stage.value
    timings["ubm"] = stage.seconds
    if stage.reused:
        reused.append("ubm")

    # 3. enrolment
    enroll_data_dir, enroll_store = stores["enroll"]
    stage = run_enroll(ubm, enroll_store, enroll_data_dir.spk2utt, out / "speakers.npz", settings, log=log,
                       ubm_feature_config=ubm_store.config, client=client)
    models = stage.value
    timings["enroll"] = stage.seconds
    problems.extend(stage.problems)
    if stage.reused:
        reused.append("enroll")

    # 4. scoring (every trial gets a score: fallback features, or UNSCORABLE_SCORE)
    cohort = None
    if "cohort" in stores:
        cohort_dir, cohort_store = stores["cohort"]
        cohort = (cohort_store, cohort_dir.spk2utt)
    test_data_dir, test_store = stores["test"]
    scored = run_score(ubm, models, test_store, trials, settings, cohort=cohort, log=log,
                       show_progress=show_progress, audio=test_data_dir.wav, client=client)
    scores = scored.value
    timings["score"] = scored.seconds
    problems.extend(scored.problems)
    write_scores(out / "scores.txt", trials, scores)

    # 5. evaluation, and results.json written once
    t0 = time.perf_counter()
    results = evaluation_results(trials, scores, out, title=title)
    timings["evaluate"] = time.perf_counter() - t0
    timings["total"] = sum(timings.values())
    results.update({
        "ubm_components": ubm.n_components,
        "n_speakers": len(models),
        "n_trials": len(trials),
        "settings": settings.to_dict(),
        "feature_config": None if config is None else config.to_dict(),
        "ubm_data": str(dirs["ubm"]), "enroll_data": str(dirs["enroll"]),
        "test_data": str(dirs["test"]), "trials": str(trials_path),
        "scores": str(out / "scores.txt"),
        "reused": reused,
        "problems": problems,
        "fallback_utterances": {utt: how for utt, how in scored.details["fallback"].items()},
        "unscorable_trials": scored.details["unscorable_trials"],
        "unscorable_score": UNSCORABLE_SCORE,
        "exit_status": EXIT_PARTIAL if problems else 0,
        "timings": {k: round(v, 3) for k, v in timings.items()},
    })
    results.update(extra or {})
    atomic_write_json(out / "results.json", results)
    if log:
        log(f"results: EER {100 * results['eer']:.2f}%, minDCF(SRE08) {results['min_dcf']:.4f}"
            + (f", identification accuracy {100 * results['identification_accuracy']:.2f}%"
               if results.get("identification_accuracy") is not None else "")
            + f" -> {out / 'results.json'}")
    return results
