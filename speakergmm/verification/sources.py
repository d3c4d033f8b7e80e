"""Where verification reads its features from: one small adapter per kind of source.

UBM training, enrolment and scoring read features *one utterance at a time*, by key, so
that memory does not grow with the corpus and so that worker processes can each read their
own share. A source is any of

- a feature store (an object with ``load(utt_id)`` or ``__getitem__(utt_id)`` and
  ``utterance_ids``/``keys()``), e.g. :class:`speakergmm.features.FeatureStore`;
- a mapping ``{utterance_id: array (n_frames, n_features)}``;
- a sequence of arrays (utterance ids are ``"0"``, ``"1"``, ...);
- a sequence of paths to ``.npy`` files (utterance ids are the paths).

:func:`as_source` turns any of them into a :class:`FeatureSource`. Sources are pickled to
worker processes, so a store should hold paths, not arrays.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from speakergmm.mixture.model import check_frames

__all__ = ["VerificationError", "FeatureSource", "as_source", "check_cluster_source", "check_utterance",
           "iter_buffered"]


class VerificationError(ValueError):
    """Bad input to verification: a mismatched model, an unknown speaker, a bad utterance..."""


class FeatureSource:
    """Uniform, picklable access to per-utterance feature matrices."""

    #: Whether the features live in this process's memory (not behind paths).
    in_memory = False

    def ids(self) -> list[str]:
        """All utterance ids, in a stable order."""
        raise NotImplementedError

    def load(self, utt_id: str) -> np.ndarray:
        """The (n_frames, n_features) features of one utterance."""
        raise NotImplementedError

    def fingerprint(self, utterances: Sequence[str]) -> str:
        """A digest identifying the data behind ``utterances`` (for checkpoint resumption)."""
        digest = hashlib.sha256()
        for utt in utterances:
            digest.update(utt.encode("utf-8") + b"\0")
        return digest.hexdigest()[:16]

    def feature_config(self) -> Any:
        """The :class:`~speakergmm.features.FeatureConfig` of the features, when known."""
        return None


class _MappingSource(FeatureSource):
    in_memory = True

    def __init__(self, mapping: Mapping[str, np.ndarray]):
        self._mapping = mapping

    def ids(self) -> list[str]:
        return [str(k) for k in self._mapping.keys()]

    def load(self, utt_id: str) -> np.ndarray:
        try:
            return np.asarray(self._mapping[utt_id])
        except KeyError:
            raise VerificationError(f"utterance {utt_id!r}: no features for it") from None

    def fingerprint(self, utterances: Sequence[str]) -> str:
        # In-memory data has no file to point at: hash the numbers themselves.
        digest = hashlib.sha256()
        for utt in utterances:
            arr = np.ascontiguousarray(self.load(utt), dtype=np.float64)
            digest.update(utt.encode("utf-8") + b"\0" + str(arr.shape).encode() + arr.tobytes())
        return digest.hexdigest()[:16]


class _ListSource(_MappingSource):
    def __init__(self, arrays: Sequence[np.ndarray]):
        super().__init__({str(i): a for i, a in enumerate(arrays)})


class _NpySource(FeatureSource):
    def __init__(self, paths: Sequence[str | os.PathLike]):
        self._paths = [str(p) for p in paths]

    def ids(self) -> list[str]:
        return list(self._paths)

    def load(self, utt_id: str) -> np.ndarray:
        try:
            return np.load(utt_id, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise VerificationError(f"{utt_id}: cannot read features ({exc})") from exc


class _StoreSource(FeatureSource):
    """Adapter around a feature store object (anything with ``load`` or ``__getitem__``)."""

    def __init__(self, store: Any):
        self.store = store

    def ids(self) -> list[str]:
        for name in ("utterances", "utterance_ids", "keys"):
            attr = getattr(self.store, name, None)
            if attr is not None:
                return [str(u) for u in (attr() if callable(attr) else attr)]
        return [str(u) for u in self.store]

    def load(self, utt_id: str) -> np.ndarray:
        loader = getattr(self.store, "load", None)
        try:
            return np.asarray(loader(utt_id) if loader is not None else self.store[utt_id])
        except KeyError as exc:
            detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) and " " in exc.args[0] else None
            raise VerificationError(detail or f"utterance {utt_id!r}: not in the feature store") from None
        except ValueError as exc:  # e.g. a corrupt feature file
            raise VerificationError(str(exc)) from exc

    def feature_config(self) -> Any:
        return getattr(self.store, "config", None)

    def fingerprint(self, utterances: Sequence[str]) -> str:
        digest = hashlib.sha256()
        base = getattr(self.store, "root", None) or getattr(self.store, "path", None)
        digest.update(str(base).encode() + b"\0")
        config = self.feature_config()
        if config is not None and hasattr(config, "hash"):
            digest.update(config.hash().encode() + b"\0")
        for utt in utterances:
            digest.update(utt.encode("utf-8") + b"\0")
        return digest.hexdigest()[:16]


def as_source(source: Any) -> FeatureSource:
    """Wrap any supported feature source in a :class:`FeatureSource` (see the module doc)."""
    if isinstance(source, FeatureSource):
        return source
    if ((getattr(source, "config", None) is not None or hasattr(source, "source_digest"))
            and (hasattr(source, "load") or isinstance(source, Mapping))):
        return _StoreSource(source)  # a feature store (ours, or of features computed elsewhere)
    if isinstance(source, Mapping):
        return _MappingSource(source)
    if isinstance(source, np.ndarray):
        raise TypeError("pass a list of per-utterance arrays (or a mapping), not one array")
    if isinstance(source, (list, tuple)):
        if not source:
            raise VerificationError("the feature source is empty (no utterances)")
        if all(isinstance(s, (str, os.PathLike)) for s in source):
            return _NpySource(source)
        if all(isinstance(s, np.ndarray) for s in source):
            return _ListSource(source)
        raise TypeError("a list source must hold only arrays or only paths to .npy files")
    if hasattr(source, "load") or hasattr(source, "__getitem__"):
        return _StoreSource(source)
    raise TypeError(f"unsupported feature source of type {type(source).__name__}")


def check_cluster_source(source: FeatureSource, what: str) -> None:
    """Refuse in-memory features for work on a cluster: tasks carry paths, never corpora."""
    if source.in_memory:
        raise VerificationError(
            f"{what}: on a cluster the features must be read from paths the workers can see "
            "(a feature store, a data directory's feats.scp, or .npy files), not arrays held "
            "in this process, which would travel through the scheduler")


def check_utterance(X: np.ndarray, utt_id: str, n_features: int | None) -> np.ndarray:
    """Validate one utterance's features, naming it in the error.

    The per-array rules are :func:`speakergmm.mixture.check_frames`'s (real numbers, the
    model's feature count, finite values); its errors become :class:`VerificationError`
    naming the utterance. Floating-point features keep their precision; an utterance may
    have no frames (callers skip it or report it).
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise VerificationError(f"utterance {utt_id!r}: features must be 2-D (frames, dims), got shape {X.shape}")
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    try:
        return check_frames(X, f"utterance {utt_id!r}", n_features, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise VerificationError(str(exc)) from None


def iter_buffered(source: FeatureSource, utterances: Sequence[str], n_features: int | None,
                  chunk_frames: int = 8192) -> Iterator[np.ndarray]:
    """Yield the frames of ``utterances`` in chunks of about ``chunk_frames`` rows.

    Gathering short utterances into one chunk makes each E-step call one large matrix
    product instead of many tiny ones; memory stays bounded by ``chunk_frames`` plus one
    utterance, whatever the corpus size.
    """
    buffer: list[np.ndarray] = []
    buffered = 0
    for utt in utterances:
        X = check_utterance(source.load(utt), utt, n_features)
        if X.shape[0] == 0:
            continue
        buffer.append(X)
        buffered += X.shape[0]
        if buffered >= chunk_frames:
            yield buffer[0] if len(buffer) == 1 else np.concatenate(buffer)
            buffer, buffered = [], 0
    if buffer:
        yield buffer[0] if len(buffer) == 1 else np.concatenate(buffer)
