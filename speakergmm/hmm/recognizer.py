"""Isolated-word recognition: one GMM-HMM per word, decide by the largest posterior.

For an utterance X and words w with priors P(w), the recogniser picks
``argmax_w log p(X | HMM_w) + log P(w)``, where ``log p(X | HMM_w)`` is the forward
(total) likelihood — or the best-path (Viterbi) score with ``scoring="viterbi"``.
Scoring is batched: for each word the emission log-likelihoods of *all* test frames are
one matrix product, and one kernel call runs the forward recursion over all utterances.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from speakergmm.hmm.model import FORMAT as HMM_FORMAT
from speakergmm.hmm.model import BLAS_THREADS, GMMHMM, GaussianHMM, NoPathError, _renamed_params, check_sequences
from speakergmm.io import ModelFileError, load_model_file, save_model_file
from speakergmm.mixture import ParamsMixin, clone
from speakergmm.utils import effective_jobs, parallel_map

logger = logging.getLogger(__name__)

__all__ = ["WordRecognizer"]

FORMAT = "speakergmm.WordRecognizer"
#: 2: settings saved as the word-model template's parameters (1: flat keyword arguments).
VERSION = 2

#: The word model used when none is given (the settings of the original keyword arguments).
DEFAULT_HMM_PARAMS: dict[str, Any] = dict(n_states=6, n_components=2, viterbi_iter=3, reg_covar=1e-3)

_HMM_CLASSES = {"GMMHMM": GMMHMM, "GaussianHMM": GaussianHMM}


def unfitted_copy(hmm: GMMHMM, **overrides: Any) -> GMMHMM:
    """Deprecated: :func:`speakergmm.mixture.clone` (the package's one clone helper)."""
    warnings.warn("speakergmm.hmm.recognizer.unfitted_copy is deprecated: use speakergmm.mixture.clone",
                  DeprecationWarning, stacklevel=2)
    return clone(hmm, **overrides)


@dataclass(frozen=True)
class WordTraining:
    """One word model to train: what a worker process receives."""

    word: str
    model: GMMHMM  # unfitted: a clone of the word-model template
    sequences: list  # the word's training sequences, (T, D) arrays


def _fit_word(task: WordTraining) -> tuple[str, GMMHMM]:
    word, model, sequences = task.word, task.model, task.sequences
    try:
        return word, model.fit(sequences)
    except NoPathError as exc:
        raise NoPathError(f"word {word!r}: {exc}") from exc
    except ValueError as exc:  # name the word whose data or model is at fault
        raise ValueError(f"word {word!r}: {exc}") from exc


class WordRecognizer(ParamsMixin):
    """Isolated-word recogniser: one left-to-right GMM-HMM per word.

    Parameters
    ----------
    hmm : GMMHMM, optional
        The word model: each word gets an unfitted copy of it (its constructor
        parameters), as scikit-learn's ``clone``. Default:
        ``GMMHMM(n_states=6, n_components=2, viterbi_iter=3, reg_covar=1e-3)``.
    variance_floor_ratio : float or None
        HTK-style variance floor as a *fraction of the global variance* of all training
        frames (HCompV ``-f``; e.g. 0.01); it replaces the word model's absolute
        ``variance_floor``. None: the word model's own.
    priors : None, "empirical" or mapping word -> probability
        Word priors: uniform (None), proportional to the training counts, or given.
    scoring : {"forward", "viterbi"}
        Total likelihood or best-path score.
    jobs : int or None
        Word models trained in this many processes (pinned BLAS threads each); 0 or None:
        all cores, negative: all but ``-jobs - 1`` (``utils.effective_jobs``, as ``--jobs``).
    **deprecated :
        The word model's parameters as keyword arguments (``n_states=8, n_components=8,
        ...``), ``variance_floor`` (the relative floor) and ``n_jobs``: deprecated, use
        ``hmm=GMMHMM(...)``, ``variance_floor_ratio`` and ``jobs``. They still work, with a
        ``FutureWarning``; the word model's are applied to a copy of ``hmm`` (or of the
        default).
    """

    def __init__(self, hmm: GMMHMM | None = None, variance_floor_ratio: float | None = None,
                 priors: None | str | Mapping[str, float] = None, scoring: str = "forward",
                 jobs: int | None = 1, **deprecated: Any) -> None:
        if deprecated:
            hmm, variance_floor_ratio, jobs = _apply_deprecated(hmm, variance_floor_ratio, jobs, deprecated)
        self.hmm = hmm
        self.variance_floor_ratio = variance_floor_ratio
        self.priors = priors
        self.scoring = scoring
        self.jobs = jobs
        self.models_: dict[str, GMMHMM] | None = None

    def word_model(self) -> GMMHMM:
        """The (unfitted) word model each word copies: ``hmm``, or the default."""
        if self.hmm is None:
            return GMMHMM(**DEFAULT_HMM_PARAMS)
        if not isinstance(self.hmm, GMMHMM):
            raise TypeError(f"hmm must be a GMMHMM (or GaussianHMM), got {type(self.hmm).__name__}")
        return self.hmm

    # ================================================================== training
    def fit(self, data: Mapping[str, Sequence[np.ndarray]]) -> "WordRecognizer":
        """Train one HMM per word from ``{word: [sequence (T, D), ...]}``.

        Raises
        ------
        ValueError
            No words, a word with no sequences, empty sequences, mismatched dimensions,
            bad priors. The message names the word and the sequence.
        """
        if self.scoring not in ("forward", "viterbi"):
            raise ValueError(f"scoring must be 'forward' or 'viterbi', got {self.scoring!r}")
        if not data:
            raise ValueError("no words to train")
        words = [str(w) for w in data]
        n_features = None
        counts = {}
        for word in data:
            seqs = list(data[word])
            if not seqs:
                raise ValueError(f"word {word!r}: no training sequences")
            try:
                X, _ = check_sequences(seqs, n_features)
            except ValueError as exc:
                raise ValueError(f"word {word!r}: {exc}") from exc
            n_features = X.shape[1]
            counts[str(word)] = len(seqs)
        template = self.word_model()
        overrides = {}
        if self.variance_floor_ratio is not None:
            overrides["variance_floor"] = self.variance_floor_ratio * _global_variance(data)
        tasks = [WordTraining(str(w), clone(template, **overrides), list(data[w])) for w in data]
        self.models_ = dict(parallel_map(_fit_word, tasks, jobs=min(effective_jobs(self.jobs), len(tasks)),
                                         desc="training word HMMs"))
        self.words_ = words
        self.n_features_ = n_features
        self.log_priors_ = self._log_priors(counts)
        self.train_counts_ = counts
        return self

    def _log_priors(self, counts: Mapping[str, int]) -> np.ndarray:
        words = self.words_
        if self.priors is None:
            p = np.full(len(words), 1.0 / len(words))
        elif isinstance(self.priors, str):
            if self.priors != "empirical":
                raise ValueError(f"priors must be None, 'empirical' or a mapping, got {self.priors!r}")
            p = np.array([counts[w] for w in words], dtype=float)
            p /= p.sum()
        else:
            unknown = set(map(str, self.priors)) - set(words)
            if unknown:
                raise ValueError(f"priors given for unknown word(s): {sorted(unknown)}")
            missing = [w for w in words if w not in self.priors]
            if missing:
                raise ValueError(f"no prior given for word(s): {missing}")
            p = np.array([float(self.priors[w]) for w in words])
            if np.any(p < 0) or not np.isfinite(p).all() or p.sum() <= 0:
                raise ValueError("priors must be finite, non-negative and not all zero")
            p /= p.sum()
        with np.errstate(divide="ignore"):
            return np.log(p)

    # ================================================================== scoring
    def _check_fitted(self) -> None:
        if self.models_ is None:
            raise RuntimeError("this WordRecognizer is not trained: call fit() or load()")

    def log_likelihoods(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """``log p(X_n | HMM_w)`` for every sequence and word, (n_seq, n_words), in ``words_`` order."""
        self._check_fitted()
        X, offsets = check_sequences(sequences, self.n_features_)
        out = np.empty((offsets.size - 1, len(self.words_)))
        with threadpool_limits(limits=BLAS_THREADS):
            for j, word in enumerate(self.words_):
                out[:, j] = self.models_[word].score_batch(X, offsets, viterbi=self.scoring == "viterbi")
        return out

    def predict_log_proba(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """Log posterior ``log P(w | X_n)`` (priors included), (n_seq, n_words).

        Raises
        ------
        NoPathError
            If a sequence cannot be explained by any word model (too short).
        """
        joint = self.log_likelihoods(sequences) + self.log_priors_
        best = joint.max(axis=1)
        if np.any(best == -np.inf):
            bad = int(np.flatnonzero(best == -np.inf)[0])
            raise NoPathError(f"sequence {bad}: no word model can explain it (too short for "
                              f"the topology, which needs at least "
                              f"{int(self._min_frames())} frames)")
        joint -= best[:, None]
        return joint - np.log(np.exp(joint).sum(axis=1, keepdims=True))

    def predict(self, sequences: Sequence[np.ndarray], unexplained: str = "label") -> np.ndarray:
        """Most probable word of each sequence (array of str).

        A sequence that is empty or that no word model can explain (too short for the
        topology) gets the empty label ``""`` and a warning on the ``speakergmm`` logger
        naming it, so that one such sequence does not abort the whole batch (the default,
        ``unexplained="label"``); ``"raise"`` refuses the batch instead, naming the sequence.
        Sequences of the wrong shape are refused either way.
        """
        if unexplained == "raise":
            log_proba = self.predict_log_proba(sequences)
            return np.asarray(self.words_)[log_proba.argmax(axis=1)]
        if unexplained != "label":
            raise ValueError(f"unexplained must be 'raise' or 'label', got {unexplained!r}")
        self._check_fitted()
        if isinstance(sequences, np.ndarray) and sequences.ndim == 2:
            sequences = [sequences]
        seqs = list(sequences)
        labels = np.full(len(seqs), "", dtype=object)
        usable = [n for n, seq in enumerate(seqs) if np.ndim(seq) != 2 or np.shape(seq)[0] > 0]
        if usable:
            joint = self.log_likelihoods([seqs[n] for n in usable]) + self.log_priors_
            best = joint.argmax(axis=1)
            explained = np.isfinite(joint.max(axis=1))
            for row, n in enumerate(usable):
                if explained[row]:
                    labels[n] = self.words_[best[row]]
        unlabelled = [n for n in range(len(seqs)) if labels[n] == ""]
        if unlabelled:
            shown = ", ".join(str(n) for n in unlabelled[:10]) + (" ..." if len(unlabelled) > 10 else "")
            logger.warning(f"predict: {len(unlabelled)} of {len(seqs)} sequence(s) labelled '' "
                           f"(empty, or too short for every word model, which need at least "
                           f"{int(self._min_frames())} frames): {shown}")
        return labels.astype(str)

    def score(self, sequences: Sequence[np.ndarray], labels: Sequence[str]) -> float:
        """Accuracy of :meth:`predict` against ``labels`` (words seen in training)."""
        self._check_fitted()
        labels = [str(x) for x in labels]
        unknown = sorted(set(labels) - set(self.words_))
        if unknown:
            raise ValueError(f"unknown word label(s) {unknown}; this recogniser knows {self.words_}")
        if len(labels) != len(sequences):
            raise ValueError(f"{len(sequences)} sequences but {len(labels)} labels")
        return float(np.mean(self.predict(sequences) == np.asarray(labels)))

    def adapt(self, sequences: Sequence[np.ndarray], labels: Sequence[str] | None = None,
              method: str = "mllr+map", iterations: int = 2, relevance_factor: float = 16.0,
              min_posterior: float = 0.0) -> "WordRecognizer":
        """A copy adapted to one speaker's recordings (see :mod:`speakergmm.hmm.adaptation`).

        Parameters
        ----------
        sequences : the speaker's utterances, (T, D) arrays
        labels : their words, or None for *unsupervised* adaptation: the recogniser's own
            answers are the labels, and each of ``iterations`` rounds recognises again with
            the models of the previous round.
        method : {"mllr", "map", "mllr+map"}
            One shared mean transform (MLLR) for every Gaussian of every word; per-Gaussian
            MAP; or MAP on top of MLLR.
        relevance_factor : MAP's relevance factor
        min_posterior : float
            Unsupervised: only utterances recognised with at least this posterior adapt.

        Returns
        -------
        WordRecognizer sharing this one's settings, with adapted ``models_``; statistics are
        always accumulated under the unadapted models first, so rounds do not drift.
        """
        from speakergmm.hmm.adaptation import apply_mllr, estimate_mllr

        self._check_fitted()
        if method not in ("mllr", "map", "mllr+map"):
            raise ValueError(f"method must be 'mllr', 'map' or 'mllr+map', got {method!r}")
        if int(iterations) != iterations or iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
        seqs = list(sequences)
        if labels is not None:
            labels = [str(w) for w in labels]
            if len(labels) != len(seqs):
                raise ValueError(f"{len(seqs)} sequences but {len(labels)} labels")
            unknown = sorted(set(labels) - set(self.words_))
            if unknown:
                raise ValueError(f"unknown word label(s) {unknown}; this recogniser knows {self.words_}")
            iterations = 1
        X, offsets = check_sequences(seqs, self.n_features_)
        lengths = np.diff(offsets)
        adapted = copy.copy(self)
        adapted.models_ = dict(self.models_)
        for _ in range(int(iterations)):
            if labels is None:
                joint = adapted.log_likelihoods(seqs) + adapted.log_priors_
                best = joint.max(axis=1)
                ok = np.isfinite(best)  # utterances no word can explain (too short) stay out
                # Posterior of the recognised word: 1 / sum_w exp(joint_w - best).
                posterior = np.zeros(len(seqs))
                posterior[ok] = 1.0 / np.exp(joint[ok] - best[ok, None]).sum(axis=1)
                words = np.asarray(self.words_)[joint.argmax(axis=1)]
                use = ok & (posterior >= min_posterior)
            else:
                words = np.asarray(labels)
                use = np.ones(len(seqs), dtype=bool)
            groups = {w: [seqs[n] for n in np.flatnonzero(use & (words == w))
                          if lengths[n] >= self.models_[w].topology_.min_frames] for w in self.words_}
            models = dict(self.models_)
            if "mllr" in method:
                stats = [models[w].accumulate(groups[w]) if groups[w] else None for w in self.words_]
                transform = estimate_mllr([models[w] for w in self.words_], stats)
                models = {w: apply_mllr(m, transform) for w, m in models.items()}
            if "map" in method:
                models = {w: m.adapt_map(groups[w], relevance_factor=relevance_factor) if groups[w] else m
                          for w, m in models.items()}
            adapted.models_ = models
        return adapted

    def align(self, X: np.ndarray, word: str) -> tuple[float, np.ndarray]:
        """Forced alignment of one utterance to a known word: Viterbi path of that word's HMM.

        Returns ``(log p(X, best path), state path (T,))``.
        """
        self._check_fitted()
        if str(word) not in self.models_:
            raise ValueError(f"unknown word {word!r}; this recogniser knows {self.words_}")
        return self.models_[str(word)].decode(X)

    def _min_frames(self) -> float:
        return min(m.topology_.min_frames for m in self.models_.values())

    # ================================================================== persistence
    def save(self, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> None:
        """Save as a plain model file (format ``speakergmm.WordRecognizer`` v1), atomically."""
        self._check_fitted()
        arrays: dict[str, np.ndarray] = {"log_priors": self.log_priors_}
        hmm_meta = {}
        for j, word in enumerate(self.words_):
            word_arrays, word_meta = self.models_[word].to_arrays(prefix=f"w{j}.")
            arrays.update(word_arrays)
            hmm_meta[str(j)] = word_meta
        template = self.word_model()
        params = {"hmm": template.json_params(), "hmm_class": type(template).__name__,
                  "variance_floor_ratio": self.variance_floor_ratio, "scoring": self.scoring,
                  "priors": self.priors if (self.priors is None or isinstance(self.priors, str))
                  else {str(k): float(v) for k, v in self.priors.items()}}
        save_model_file(path, FORMAT, VERSION, arrays, {
            "words": self.words_, "n_features": self.n_features_, "hmm": hmm_meta,
            "params": params, "train_counts": self.train_counts_, "hmm_format": HMM_FORMAT,
            "user": dict(meta or {}),
        })

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WordRecognizer":
        """Load a file written by :meth:`save`; refuses corrupt or other-format/version files."""
        arrays, meta, version = load_model_file(path, FORMAT, (1, VERSION), required=("log_priors",))
        try:
            params = dict(meta["params"])
            if "n_jobs" in params:  # files saved before the rename to jobs
                params["jobs"] = params.pop("n_jobs")
            if version == 1:  # flat keyword arguments: the deprecated spelling, same meaning
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    rec = cls(**_renamed_params(params))
            else:
                hmm_class = _HMM_CLASSES[str(params.pop("hmm_class", "GMMHMM"))]
                hmm_params = dict(params.pop("hmm"))
                rec = cls(hmm=None, **params)
                rec._saved_hmm = (hmm_class, hmm_params)
            rec.words_ = [str(w) for w in meta["words"]]
            rec.meta_ = dict(meta.get("user", {}))
            rec.n_features_ = int(meta["n_features"])
            rec.train_counts_ = {str(k): int(v) for k, v in meta.get("train_counts", {}).items()}
            rec.log_priors_ = np.asarray(arrays["log_priors"], dtype=float)
            if rec.log_priors_.shape != (len(rec.words_),):
                raise ValueError("log_priors does not match the word list")
            rec.models_ = {
                word: GMMHMM.from_arrays(arrays, meta["hmm"][str(j)], prefix=f"w{j}.")
                for j, word in enumerate(rec.words_)
            }
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ModelFileError(f"{path}: corrupt {FORMAT} file ({exc})") from exc
        if any(m.n_features != rec.n_features_ for m in rec.models_.values()):
            raise ModelFileError(f"{path}: corrupt {FORMAT} file (word models of another dimension)")
        saved = rec.__dict__.pop("_saved_hmm", None)
        if saved is not None:
            hmm_class, hmm_params = saved
            hmm_params = _renamed_params(hmm_params)
            names = set(hmm_class._get_param_names())
            if not isinstance(hmm_params.get("topology"), str) or hmm_params["topology"] not in (
                    "left-to-right", "left_to_right", "bakis", "ergodic"):
                # A custom Topology was saved by name: its arrays are in every word model.
                hmm_params["topology"] = next(iter(rec.models_.values())).topology_
            rec.hmm = hmm_class(**{k: v for k, v in hmm_params.items() if k in names})
        return rec

    def __sklearn_is_fitted__(self) -> bool:
        return getattr(self, "models_", None) is not None


def _global_variance(data: Mapping[str, Sequence[np.ndarray]]) -> np.ndarray:
    """Per-dimension variance of all training frames (float64, streaming sums)."""
    n = 0
    s1 = 0.0
    s2 = 0.0
    for seqs in data.values():
        for seq in seqs:
            arr = np.asarray(seq, dtype=np.float64)
            n += arr.shape[0]
            s1 = s1 + arr.sum(axis=0)
            s2 = s2 + (arr * arr).sum(axis=0)
    mean = s1 / n
    return np.maximum(s2 / n - mean * mean, 0.0)


#: The keyword arguments WordRecognizer took before ``hmm=`` (deprecated aliases).
_DEPRECATED_HMM_KEYWORDS = ("n_states", "n_components", "covariance_type", "topology", "n_skips", "init",
                            "n_iter", "viterbi_iter", "tol", "reg_covar", "transition_floor",
                            "fixed_topology", "init_max_iter", "mixture_init", "grow_mixtures",
                            "grow_iter", "iter_per_split", "occupancy_threshold", "random_state")


def _apply_deprecated(hmm: GMMHMM | None, variance_floor_ratio: float | None, jobs: int | None,
                      deprecated: dict[str, Any]) -> tuple[GMMHMM | None, float | None, int | None]:
    """Fold the old keyword arguments into a copy of the word model, ``variance_floor_ratio``
    and ``jobs`` (with a FutureWarning)."""
    unknown = sorted(set(deprecated) - set(_DEPRECATED_HMM_KEYWORDS) - {"variance_floor", "n_jobs"})
    if unknown:
        raise TypeError(f"WordRecognizer got unexpected keyword argument(s) {', '.join(unknown)}")
    deprecated = dict(deprecated)
    if "n_jobs" in deprecated:
        if jobs != 1:
            raise TypeError("give jobs, not also its deprecated alias n_jobs")
        jobs = deprecated.pop("n_jobs")
        warnings.warn("WordRecognizer(n_jobs=...) is deprecated: use jobs (the package's name for "
                      "worker processes)", FutureWarning, stacklevel=3)
    if not deprecated:
        return hmm, variance_floor_ratio, jobs
    if "variance_floor" in deprecated:
        ratio = deprecated.pop("variance_floor")
        if variance_floor_ratio is not None and ratio is not None:
            raise TypeError("give variance_floor_ratio, not also its deprecated alias variance_floor")
        if ratio is not None:
            variance_floor_ratio = ratio
        warnings.warn("WordRecognizer(variance_floor=...) is deprecated: it is a fraction of the "
                      "global variance, now named variance_floor_ratio", FutureWarning, stacklevel=3)
    if deprecated:
        warnings.warn(f"WordRecognizer({', '.join(f'{k}=' for k in deprecated)}...) is deprecated: pass "
                      "the word model instead, WordRecognizer(hmm=GMMHMM(...))", FutureWarning,
                      stacklevel=3)
    base = GMMHMM(**DEFAULT_HMM_PARAMS) if hmm is None else clone(hmm)
    base.set_params(**deprecated)
    return base, variance_floor_ratio, jobs
