"""The i-vector / PLDA verification chain on Kaldi-style data directories (resumable stages).

Stages (each reuses its output file when its inputs and settings did not change):

1. features of every data directory (the same caches as the GMM-UBM chain);
2. the UBM on ``--ubm-data`` (:func:`~speakergmm.verification.pipeline.run_train_ubm`);
3. Baum-Welch statistics of every utterance under the UBM, once
   (:func:`run_stats`, ``stats_<name>.npz``);
4. the total-variability matrix on the back-end data (``--backend-data``, by default the
   UBM data) (:func:`run_train_ivector`, ``ivector_extractor.npz``, checkpointed per pass);
5. the back end: whitening, length norm, optional LDA, two-covariance PLDA, trained
   on the back-end data's i-vectors with its ``utt2spk`` (:func:`run_train_backend`,
   ``backend.npz``);
6. enrolment (the mean of each speaker's transformed i-vectors, scored with the PLDA's
   multi-enrolment LLR), scoring, optional adaptive S-norm with the back-end speakers as
   cohort (off by default: with the cohort also the PLDA's training data it lost
   accuracy on speechocean762), evaluation (``scores.txt``, ``results.json``, ``det.png``).

``backend="fusion"`` also scores the GMM-UBM system on the same features and UBM (MAP models,
scores and their evaluation in ``OUT/gmm-ubm``) and averages the
two systems' scores, each first standardised over all trials of the list (mean 0,
standard deviation 1; no labels are used); calibrated fusion with labelled development trials is
:class:`~speakergmm.verification.calibration.LinearCalibration`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from speakergmm.io import ModelFileError, atomic_write_json, save_model_file, load_model_file
from speakergmm.verification.backend import LDA, PLDA, Chain, LengthNorm, Whitening
from speakergmm.verification.ivector import TotalVariability, UtteranceStats, utterance_stats
from speakergmm.verification.sources import VerificationError

__all__ = ["IvectorSettings", "run_stats", "run_train_ivector", "run_train_backend", "extract",
           "verify_ivector", "save_ivectors", "load_ivectors", "IVECTORS_FORMAT"]

IVECTORS_FORMAT = "speakergmm.Ivectors"
IVECTORS_VERSION = 1
Log = Callable[[str], None]


@dataclass
class IvectorSettings:
    """Settings of the i-vector chain (defaults tuned on speechocean762, docs/verification.md).

    Parameters
    ----------
    rank : int
        i-vector dimension (rank of T).
    t_iter : int
        EM passes of T (with minimum-divergence re-estimation).
    t_dtype : {"float32", "float64"}
        E-step precision of T training and extraction.
    lda_dim : int
        LDA output dimension (capped at the number of back-end speakers minus one); 0: no
        LDA (PLDA on the whitened, length-normalised i-vectors: the better choice with
        about a hundred back-end speakers on speechocean762).
    plda_iter : int
        EM iterations of the two-covariance PLDA.
    plda_shrinkage : float
        Shrinkage of the PLDA covariances towards multiples of I.
    norm_top_n : int
        Adaptive S-norm: cohort scores kept per side (used when ``snorm`` is on).
    snorm : bool
        Normalise the PLDA scores with adaptive S-norm against the back-end speakers.
    """

    rank: int = 150
    t_iter: int = 10
    t_dtype: str = "float32"
    lda_dim: int = 0
    plda_iter: int = 10
    plda_shrinkage: float = 0.1
    norm_top_n: int = 200
    snorm: bool = False

    def __post_init__(self) -> None:
        if self.lda_dim < 0:
            raise ValueError(f"lda_dim must be >= 0; got {self.lda_dim}")
        for name in ("rank", "norm_top_n"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.t_iter < 0 or self.plda_iter < 0:
            raise ValueError("t_iter and plda_iter must be >= 0")
        if not 0.0 <= self.plda_shrinkage < 1.0:
            raise ValueError(f"plda_shrinkage must be in [0, 1); got {self.plda_shrinkage}")
        if self.t_dtype not in ("float32", "float64"):
            raise ValueError(f"t_dtype must be float32 or float64; got {self.t_dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- i-vector files
def save_ivectors(path: str | os.PathLike, utterances: Sequence[str], ivectors: np.ndarray,
                  meta: Mapping[str, Any] | None = None) -> None:
    """Save i-vectors (one row per utterance) as a plain model file."""
    save_model_file(path, IVECTORS_FORMAT, IVECTORS_VERSION,
                    {"utterance_ids": np.array(list(utterances), dtype=str),
                     "ivectors": np.asarray(ivectors, dtype=np.float64)}, dict(meta or {}))


def load_ivectors(path: str | os.PathLike) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Inverse of :func:`save_ivectors`: ``(utterance ids, array (U, R), meta)``."""
    arrays, meta, _ = load_model_file(path, IVECTORS_FORMAT, (IVECTORS_VERSION,),
                                      required=("utterance_ids", "ivectors"))
    ids = [str(u) for u in arrays["utterance_ids"]]
    iv = np.asarray(arrays["ivectors"], dtype=np.float64)
    if iv.ndim != 2 or iv.shape[0] != len(ids):
        raise ModelFileError(f"{path}: {len(ids)} utterance ids but i-vectors of shape {iv.shape}")
    return ids, iv, meta


# --------------------------------------------------------------------------- stages
def run_stats(ubm: Any, store: Any, utterances: Sequence[str], out_path: str | os.PathLike, jobs: int = 0,
              log: Log | None = None, client: Any = None) -> tuple[UtteranceStats, list[str]]:
    """Baum-Welch statistics of ``utterances`` (reused from ``out_path`` when it holds them
    for this UBM). Returns the statistics and the problems (utterances left out)."""
    out_path = Path(out_path)
    utts = [u for u in utterances if u in store]
    problems = [f"utterance {u}: no features" for u in utterances if u not in store]
    if out_path.is_file():
        try:
            old = UtteranceStats.load(out_path)
            if old.ubm_fingerprint == ubm.fingerprint() and set(old.utterance_ids) >= set(utts):
                if log:
                    log(f"ivector: reusing statistics {out_path}")
                old.info["reused"] = True
                return old, problems
        except ModelFileError:
            pass
    errors: dict[str, str] = {}
    stats = utterance_stats(ubm, store, utts, jobs=jobs, errors=errors, client=client)
    problems.extend(f"utterance {u}: {r}" for u, r in sorted(errors.items()))
    stats.save(out_path)
    if log:
        log(f"ivector: Baum-Welch statistics of {len(stats)} utterances -> {out_path}")
    return stats, problems


def run_train_ivector(ubm: Any, stats: UtteranceStats, out_path: str | os.PathLike,
                      settings: IvectorSettings, log: Log | None = None,
                      show_progress: bool | None = None, feature_config: Any = None) -> TotalVariability:
    """Train T on ``stats`` (or reuse ``out_path``; resume ``<out>.ckpt``)."""
    out_path = Path(out_path)
    digest = hashlib.sha256(" ".join(stats.utterance_ids).encode()).hexdigest()[:16]
    if out_path.is_file():
        try:
            old = TotalVariability.load(out_path)
            if (old.ubm.fingerprint() == ubm.fingerprint() and old.n_components == settings.rank
                    and len(old.history_) == settings.t_iter and old.dtype == settings.t_dtype
                    and old.info.get("data_digest") == digest):
                if log:
                    log(f"ivector: reusing {out_path}")
                old.info["reused"] = True
                return old
        except ModelFileError:
            pass
    checkpoint = out_path.with_name(out_path.name + ".ckpt")
    tv = TotalVariability(ubm, settings.rank, settings.t_iter, dtype=settings.t_dtype, checkpoint=checkpoint,
                          log=log, show_progress=show_progress)
    tv.fit(stats)
    tv.info["data_digest"] = digest
    if feature_config is not None:
        tv.info["feature_config"] = (feature_config.to_dict() if hasattr(feature_config, "to_dict")
                                     else dict(feature_config))
    tv.save(out_path)
    checkpoint.unlink(missing_ok=True)
    return tv


def run_train_backend(ivectors: np.ndarray, labels: Sequence[str], out_path: str | os.PathLike,
                      settings: IvectorSettings, log: Log | None = None) -> Chain:
    """Fit whitening, length norm, (LDA,) and PLDA; save to ``out_path``."""
    labels = np.asarray(labels)
    n_speakers = len(np.unique(labels))
    if n_speakers < 2:
        raise VerificationError(f"the back-end data holds {n_speakers} speaker(s); LDA and PLDA need several")
    lda_dim = min(settings.lda_dim, n_speakers - 1, ivectors.shape[1])
    steps = [Whitening(), LengthNorm()] + ([LDA(lda_dim)] if lda_dim > 0 else [])
    chain = Chain(steps + [PLDA(n_iter=settings.plda_iter, shrinkage=settings.plda_shrinkage)]).fit(ivectors, labels)
    chain.save(out_path)
    if log:
        log(f"ivector: back end ({f'LDA {lda_dim}, ' if lda_dim else ''}PLDA) on {len(labels)} i-vectors of {n_speakers} speakers "
            f"-> {out_path}")
    return chain


def extract(tv: TotalVariability, stats: UtteranceStats) -> dict[str, np.ndarray]:
    """I-vectors of every utterance of ``stats``, by utterance id."""
    return dict(zip(stats.utterance_ids, tv.transform(stats)))


# --------------------------------------------------------------------------- the chain
def verify_ivector(ubm_data: str | os.PathLike, enroll_data: str | os.PathLike, test_data: str | os.PathLike,
                   trials_path: str | os.PathLike, out_dir: str | os.PathLike, settings: Any = None,
                   ivector_settings: IvectorSettings | None = None, backend_data: str | os.PathLike | None = None,
                   feature_config: Any = None, backend: str = "ivector-plda", log: Log | None = None,
                   show_progress: bool | None = None, client: Any = None) -> dict[str, Any]:
    """The i-vector / PLDA chain end to end (see the module docstring); returns the results
    dict also written to ``OUT/results.json`` (the GMM-UBM chain's fields plus ``backend``).

    Raises
    ------
    VerificationError
        On bad inputs, naming the file or option.
    """
    from speakergmm.corpus import CorpusError, read_data_dir, read_trials
    from speakergmm.verification.normalization import snorm
    from speakergmm.verification.pipeline import (EXIT_PARTIAL, UNSCORABLE_SCORE, VerifySettings, _feature_dirs,
                                                  default_feature_config, evaluate_trials, evaluation_results,
                                                  prepare_features, run_enroll, run_score, run_train_ubm,
                                                  write_scores)

    if backend not in ("ivector-plda", "fusion"):
        raise VerificationError(f"unknown back end {backend!r} (ivector-plda, fusion)")
    settings = settings or VerifySettings()
    ivs = ivector_settings or IvectorSettings()
    if settings.norm not in ("none", "snorm"):
        raise VerificationError(f"--norm {settings.norm}: the i-vector back end supports adaptive S-norm "
                                "(--norm snorm, cohort: the back-end speakers) or none")
    if settings.norm == "snorm":
        ivs = dataclasses.replace(ivs, snorm=True, norm_top_n=settings.norm_top_n or ivs.norm_top_n)
    reused: list[str] = []
    out = Path(out_dir)
    dirs = {"ubm": Path(ubm_data), "enroll": Path(enroll_data), "test": Path(test_data),
            "backend": Path(backend_data) if backend_data is not None else Path(ubm_data)}
    for name, d in dirs.items():
        if not d.is_dir():
            raise VerificationError(f"--{name}-data {d}: no such directory")
    if not Path(trials_path).is_file():
        raise VerificationError(f"--trials {trials_path}: no such file")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    problems: list[str] = []
    config = feature_config if feature_config is not None else default_feature_config(ubm_data)
    try:
        enroll_dir, test_dir = read_data_dir(dirs["enroll"]), read_data_dir(dirs["test"])
        trials = read_trials(trials_path, enroll=enroll_dir, test=test_dir)
    except CorpusError as exc:
        raise VerificationError(str(exc)) from exc
    if not trials:
        raise VerificationError(f"{trials_path}: no trials")

    t0 = time.perf_counter()
    caches = _feature_dirs(out, dirs)
    stores = {}
    for name in dirs:
        stage = prepare_features(dirs[name], caches[name], config, jobs=settings.jobs, log=log,
                                 show_progress=show_progress, client=client)
        stores[name] = stage.value
        problems.extend(f"{name} data: {p}" for p in stage.problems)
    timings["features"] = time.perf_counter() - t0
    ubm_dir, ubm_store = stores["ubm"]
    stage = run_train_ubm(ubm_store, ubm_dir.utterances, out / "ubm.npz", settings, log=log,
                          show_progress=show_progress, client=client)
    ubm = stage.value
    timings["ubm"] = stage.seconds
    if stage.reused:
        reused.append("ubm")

    gmm_scores = None
    if backend == "fusion":
        # The GMM-UBM half of the fusion on the same features and UBM: MAP models, scores and
        # their own evaluation in OUT/gmm-ubm/.
        t0 = time.perf_counter()
        enroll_data_dir, enroll_store = stores["enroll"]
        enrolled = run_enroll(ubm, enroll_store, enroll_data_dir.spk2utt, out / "gmm-ubm" / "speakers.npz",
                              settings, log=log, ubm_feature_config=ubm_store.config, client=client)
        cohort = (stores["backend"][1], stores["backend"][0].spk2utt) if settings.norm != "none" else None
        test_data_dir, test_store = stores["test"]
        scored = run_score(ubm, enrolled.value, test_store, trials, settings, cohort=cohort, log=log,
                           show_progress=show_progress, audio=test_data_dir.wav, client=client)
        gmm_scores = scored.value
        write_scores(out / "gmm-ubm" / "scores.txt", trials, gmm_scores)
        evaluate_trials(trials, gmm_scores, out / "gmm-ubm", title="GMM-UBM verification",
                        extra={"backend": "gmm-ubm", "problems": enrolled.problems + scored.problems})
        problems.extend(f"gmm-ubm: {p}" for p in enrolled.problems + scored.problems)
        timings["gmm_ubm"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    all_stats: dict[str, UtteranceStats] = {}
    for name in ("backend", "enroll", "test"):
        data_dir, store = stores[name]
        stats, more = run_stats(ubm, store, data_dir.utterances, out / f"stats_{name}.npz", jobs=settings.jobs,
                                log=log, client=client)
        all_stats[name] = stats
        if stats.info.pop("reused", False):
            reused.append(f"stats_{name}")
        problems.extend(f"{name} data: {p}" for p in more)
    timings["stats"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    backend_dir = stores["backend"][0]
    tv = run_train_ivector(ubm, all_stats["backend"], out / "ivector_extractor.npz", ivs, log=log,
                           show_progress=show_progress, feature_config=config)
    if tv.info.pop("reused", False):
        reused.append("ivector_extractor")
    timings["t_matrix"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    vectors = {name: extract(tv, s) for name, s in all_stats.items()}
    for name, v in vectors.items():
        save_ivectors(out / f"ivectors_{name}.npz", list(v), np.stack(list(v.values())))
    timings["extract"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    bg_utts = list(vectors["backend"])
    bg_labels = np.array([backend_dir.utt2spk[u] for u in bg_utts])
    X_bg = np.stack([vectors["backend"][u] for u in bg_utts])
    chain = run_train_backend(X_bg, bg_labels, out / "backend.npz", ivs, log=log)
    plda = chain.plda
    assert plda is not None
    timings["backend"] = time.perf_counter() - t0

    # Enrolment and scoring.
    t0 = time.perf_counter()
    enroll_vectors = vectors["enroll"]
    speakers = [s for s, utts in enroll_dir.spk2utt.items() if any(u in enroll_vectors for u in utts)]
    for s, utts in enroll_dir.spk2utt.items():
        if s not in speakers:
            problems.append(f"speaker {s}: no enrolment utterance has statistics; not enrolled")
    if not speakers:
        raise VerificationError("no speaker has enrolment statistics")
    models = np.stack([chain.transform(np.stack([enroll_vectors[u] for u in enroll_dir.spk2utt[s]
                                                 if u in enroll_vectors])).mean(0) for s in speakers])
    n_enroll = np.array([sum(u in enroll_vectors for u in enroll_dir.spk2utt[s]) for s in speakers])
    test_vectors = vectors["test"]
    test_utts = sorted({t.test for t in trials if t.test in test_vectors})
    T = chain.transform(np.stack([test_vectors[u] for u in test_utts])) if test_utts else np.zeros((0, plda.dim))
    matrix = plda.score(models, T, n_enroll) if test_utts else np.zeros((len(speakers), 0))
    if ivs.snorm:
        Z = chain.transform(X_bg)
        cohort_rows = [np.flatnonzero(bg_labels == s)[: max(1, int(np.median(n_enroll)))] for s in np.unique(bg_labels)]
        C = np.stack([Z[r].mean(0) for r in cohort_rows])
        n_c = np.array([len(r) for r in cohort_rows])
        top = min(ivs.norm_top_n, Z.shape[0], C.shape[0])
        matrix = snorm(matrix, plda.score(models, Z, n_enroll), plda.score(C, T, n_c), top_n=top, min_std=1e-6)
    row = {s: i for i, s in enumerate(speakers)}
    col = {u: j for j, u in enumerate(test_utts)}
    scores = np.full(len(trials), np.nan)
    for i, t in enumerate(trials):
        if t.enroll in row and t.test in col:
            scores[i] = matrix[row[t.enroll], col[t.test]]
    missing_tests = sorted({t.test for t in trials if t.test not in test_vectors})
    problems.extend(f"test utterance {u}: no statistics; its trials get the score {UNSCORABLE_SCORE}"
                    for u in missing_tests)
    timings["score"] = time.perf_counter() - t0
    plda_scores = scores
    if gmm_scores is not None:
        scores = 0.5 * (_standardised(gmm_scores) + _standardised(plda_scores))
        write_scores(out / "scores_ivector_plda.txt", trials, plda_scores)
    # Evaluation rules need a score for every trial: the documented one where none can be had.
    unscorable = ~np.isfinite(scores)
    scores = np.where(unscorable, UNSCORABLE_SCORE, scores)
    write_scores(out / "scores.txt", trials, scores)

    t0 = time.perf_counter()
    info = {
        "backend": backend, "ubm_components": ubm.n_components, "n_speakers": len(speakers),
        "n_trials": len(trials), "settings": settings.to_dict(), "ivector_settings": ivs.to_dict(),
        "feature_config": config.to_dict(), "ubm_data": str(dirs["ubm"]), "backend_data": str(dirs["backend"]),
        "enroll_data": str(dirs["enroll"]), "test_data": str(dirs["test"]), "trials": str(trials_path),
        "scores": str(out / "scores.txt"), "t_matrix_history": tv.history_, "reused": reused, "problems": problems,
        "unscorable_trials": [f"{t.enroll} {t.test}" for t, bad in zip(trials, unscorable) if bad],
        "unscorable_score": UNSCORABLE_SCORE,
        "exit_status": EXIT_PARTIAL if problems else 0,
    }
    if gmm_scores is not None:
        info["gmm_ubm_results"] = str(out / "gmm-ubm" / "results.json")
    results = evaluation_results(trials, scores, out, title=f"{backend} verification")
    results.update(info)
    timings["evaluate"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    results["timings"] = {k: round(v, 3) for k, v in timings.items()}
    atomic_write_json(out / "results.json", results)
    if log:
        log(f"results ({backend}): EER {100 * results['eer']:.2f}%, minDCF {results['min_dcf']:.4f} "
            f"-> {out / 'results.json'}")
    return results


def _standardised(scores: np.ndarray) -> np.ndarray:
    """Scores minus their mean over the finite ones, divided by their standard deviation."""
    finite = np.isfinite(scores)
    if finite.sum() < 2:
        return scores
    values = scores[finite]
    spread = values.std()
    return (scores - values.mean()) / (spread if spread > 0 else 1.0)
