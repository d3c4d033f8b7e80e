"""Features computed elsewhere, used as they are: Kaldi ``feats.scp``/ark (through kaldiio),
folders of ``.npy`` files, and our own caches; and writing our features as Kaldi ark/scp.

Every command that needs features accepts, where it takes a data directory, any of

- a Kaldi data directory holding ``feats.scp`` (and ``utt2spk``), with or without ``wav.scp``;
- a feature cache written by ``speakergmm features`` (it holds ``utt2spk``/``spk2utt``);
- a folder of ``<utterance-id>.npy`` files (``float32 (n_frames, n_features)``), with an
  optional ``utt2spk`` (without one, each utterance is its own speaker).

:func:`open_feature_dir` turns any of them into ``(DataDir, store)``; the store is a
read-only mapping ``utterance id -> array`` with ``config`` (the
:class:`~speakergmm.features.FeatureConfig` when the directory records one in
``config.json``, else ``None``), ``n_frames(utt)`` and ``utterances``. Stores hold paths,
not arrays, so they travel cheaply to worker processes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from speakergmm.corpus import CorpusError, DataDir, read_data_dir
from speakergmm.features.config import FeatureConfig, FeatureConfigError
from speakergmm.features.store import FeatureStore, FeatureStoreError
from speakergmm.io import atomic_path, atomic_write_text

__all__ = ["KaldiFeatures", "NpyFeatures", "open_feature_dir", "feature_dir_kind",
           "write_kaldi_features"]

_CONFIG = "config.json"


def _config_beside(folder: Path) -> FeatureConfig | None:
    """The FeatureConfig a directory records in config.json (None when it records none)."""
    if not (folder / _CONFIG).is_file():
        return None
    try:
        return FeatureConfig.load(folder / _CONFIG)
    except FeatureConfigError as exc:
        raise FeatureStoreError(f"{folder}: unusable {_CONFIG}: {exc}") from exc


class _ExternalStore(Mapping):
    """Shared parts of the stores of features computed elsewhere."""

    path: Path
    config: FeatureConfig | None
    _entries: dict[str, str]

    def __init__(self) -> None:
        self._n_frames: dict[str, int] = {}
        self._n_features: int | None = None

    def _load(self, utt: str) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, utt: str) -> np.ndarray:
        if utt not in self._entries:
            raise KeyError(f"utterance {utt!r} has no features in {self.path}")
        X = self._load(utt)
        if X.ndim != 2:
            raise FeatureStoreError(f"{self.path}: features of {utt!r} have shape {X.shape}, "
                                    "expected (n_frames, n_features)")
        X = np.ascontiguousarray(X, dtype=np.float32)
        self._n_frames[utt] = X.shape[0]
        return X

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, utt: object) -> bool:
        return utt in self._entries

    @property
    def utterances(self) -> list[str]:
        """Utterance ids, sorted."""
        return list(self._entries)

    def n_frames(self, utt: str) -> int:
        """Frames of an utterance (read once, then remembered)."""
        if utt not in self._n_frames:
            self[utt]
        return self._n_frames[utt]

    @property
    def n_features(self) -> int:
        """Dimension of the features (of the first utterance)."""
        if self._n_features is None:
            if self.config is not None:
                self._n_features = self.config.n_features
            else:
                first = next(iter(self._entries), None)
                if first is None:
                    raise FeatureStoreError(f"{self.path}: holds no features")
                self._n_features = int(self[first].shape[1])
        return self._n_features

    @property
    def total_frames(self) -> int:
        """Frames over all utterances."""
        return sum(self.n_frames(u) for u in self._entries)

    def source_digest(self) -> str:
        """Identifies the features (paths, offsets, file sizes and times) for resumption checks."""
        digest = hashlib.sha256(str(self.path).encode())
        for utt, where in self._entries.items():
            digest.update(f"{utt}\0{where}\0".encode())
        for file in sorted({_file_part(w) for w in self._entries.values()}):
            try:
                st = os.stat(file)
                digest.update(f"{file}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
            except OSError:
                digest.update(f"{file}\0missing\0".encode())
        return digest.hexdigest()[:16]

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _file_part(rxspecifier: str) -> str:
    """The file of ``path:offset[slice]`` (the whole text for commands and plain paths)."""
    head, sep, tail = rxspecifier.rpartition(":")
    return head if sep and tail[:1].isdigit() else rxspecifier


class KaldiFeatures(_ExternalStore):
    """Features of a Kaldi ``feats.scp`` (ark offsets, commands, slices), read by kaldiio.

    Parameters
    ----------
    path : path-like
        A data directory holding ``feats.scp``, or the ``.scp`` file itself.
    entries : dict, optional
        Utterance -> rxspecifier (as :attr:`speakergmm.corpus.DataDir.feats` holds them);
        read from the file when not given.
    """

    def __init__(self, path: str | os.PathLike, entries: Mapping[str, str] | None = None):
        super().__init__()
        path = Path(path)
        self.scp = path / "feats.scp" if path.is_dir() else path
        self.path = self.scp.parent
        if entries is None:
            if not self.scp.is_file():
                raise FeatureStoreError(f"{self.scp}: no such feats.scp")
            entries = {}
            for number, line in enumerate(self.scp.read_text(encoding="utf-8").splitlines(), 1):
                parts = line.split(None, 1)
                if not parts:
                    continue
                if len(parts) != 2:
                    raise FeatureStoreError(f"{self.scp}:{number}: expected 'utterance rxspecifier'")
                entries[parts[0]] = parts[1].strip()
        self._entries = dict(sorted(entries.items()))
        self._lines = {utt: i for i, utt in enumerate(self._entries, 1)}
        self.config = _config_beside(self.path)
        num_frames = self.path / "utt2num_frames"
        if num_frames.is_file():  # Kaldi writes it next to feats.scp: lengths without reading
            for line in num_frames.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0] in self._entries and parts[1].isdigit():
                    self._n_frames[parts[0]] = int(parts[1])

    def _load(self, utt: str) -> np.ndarray:
        import kaldiio

        spec = self._entries[utt]
        try:
            X = kaldiio.load_mat(spec)
        except Exception as exc:  # kaldiio raises many kinds for a bad offset or file
            raise FeatureStoreError(f"{self.scp}: features of {utt!r} ({spec}) cannot be read "
                                    f"({type(exc).__name__}: {exc})") from exc
        if isinstance(X, tuple):  # a wav ark gives (rate, samples): not features
            raise FeatureStoreError(f"{self.scp}: {utt!r} ({spec}) holds audio, not a feature matrix")
        return np.asarray(X)

    def __repr__(self) -> str:
        return f"KaldiFeatures({str(self.scp)!r}: {len(self)} utterances)"


class NpyFeatures(_ExternalStore):
    """A folder of ``<utterance-id>.npy`` feature matrices."""

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = Path(path)
        if not self.path.is_dir():
            raise FeatureStoreError(f"{self.path}: no such folder of .npy features")
        self._entries = {p.stem: str(p) for p in sorted(self.path.glob("*.npy"))}
        if not self._entries:
            raise FeatureStoreError(f"{self.path}: holds no .npy file")
        self.config = _config_beside(self.path)

    def _load(self, utt: str) -> np.ndarray:
        try:
            return np.load(self._entries[utt], mmap_mode=None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise FeatureStoreError(f"{self._entries[utt]}: cannot read features ({exc})") from exc

    def __repr__(self) -> str:
        return f"NpyFeatures({str(self.path)!r}: {len(self)} utterances)"


def feature_dir_kind(path: str | os.PathLike) -> str | None:
    """``"cache"``, ``"kaldi"`` (feats.scp), ``"npy"`` or None (a directory of audio, or nothing)."""
    root = Path(path)
    if not root.is_dir():
        return None
    if (root / "index.json").is_file() and (root / _CONFIG).is_file():
        return "cache"
    if (root / "feats.scp").is_file():
        return "kaldi"
    if not (root / "wav.scp").is_file() and any(root.glob("*.npy")):
        return "npy"
    return None


def _speakers(root: Path, utterances: list[str], fallback: Path | None = None) -> dict[str, str]:
    """utt2spk of a feature folder (its own, or ``fallback``'s), else each utterance its own speaker."""
    for folder in (root, fallback):
        if folder is not None and (folder / "utt2spk").is_file():
            pairs = {}
            for line in (folder / "utt2spk").read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2:
                    pairs[parts[0]] = parts[1]
            return {u: pairs.get(u, u) for u in utterances}
    return {u: u for u in utterances}


def open_feature_dir(path: str | os.PathLike) -> tuple[DataDir, Any] | None:
    """``(DataDir, store)`` of a directory of features, or None when it holds none.

    Raises
    ------
    CorpusError
        A Kaldi data directory whose files are malformed (naming file and line).
    FeatureStoreError
        A feature cache or folder that cannot be used.
    """
    root = Path(path)
    kind = feature_dir_kind(root)
    if kind is None:
        return None
    if kind == "kaldi":
        if (root / "utt2spk").is_file():
            data = read_data_dir(root)
            store = KaldiFeatures(root, data.feats)
            return data, store
        store = KaldiFeatures(root)
    elif kind == "cache":
        store = FeatureStore(root)
        fallback = Path(store.data_dir) if store.data_dir else None
        utt2spk = _speakers(root, store.utterances, fallback)
        data = DataDir(wav={}, utt2spk=utt2spk, feats={u: f"{root}#{u}" for u in utt2spk})
        data.path = root
        return data, store
    else:
        store = NpyFeatures(root)
    utt2spk = _speakers(root, store.utterances)
    try:
        data = DataDir(wav={}, utt2spk=utt2spk, feats=dict(store._entries))
    except CorpusError as exc:
        raise FeatureStoreError(f"{root}: {exc}") from exc
    data.path = root
    return data, store


def write_kaldi_features(store: Mapping[str, np.ndarray], out_dir: str | os.PathLike,
                         data: DataDir | None = None, config: FeatureConfig | None = None) -> Path:
    """Write features as Kaldi ``feats.ark`` + ``feats.scp`` (kaldiio), plus ``utt2num_frames``,
    ``utt2spk``/``spk2utt`` (from ``data``) and ``config.json`` (from ``config``).

    ``out_dir`` is then a Kaldi data directory every command reads as it is. The ark is
    written under a temporary name and renamed, the scp written atomically after it.
    """
    import kaldiio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ark = (out / "feats.ark").resolve()
    frames: dict[str, int] = {}
    with atomic_path(ark) as tmp_ark:
        tmp_scp = Path(str(tmp_ark) + ".scp")
        try:
            with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
                for utt in (data.utterances if data is not None else list(store)):
                    if utt not in store:
                        continue
                    X = np.ascontiguousarray(store[utt], dtype=np.float32)
                    writer(utt, X)
                    frames[utt] = int(X.shape[0])
            lines = []
            for line in tmp_scp.read_text(encoding="utf-8").splitlines():
                utt, spec = line.split(None, 1)
                offset = spec.rsplit(":", 1)[1]
                lines.append(f"{utt} {ark}:{offset}\n")
        finally:
            tmp_scp.unlink(missing_ok=True)
    atomic_write_text(out / "feats.scp", "".join(lines))
    atomic_write_text(out / "utt2num_frames", "".join(f"{u} {n}\n" for u, n in frames.items()))
    if data is not None:
        kept = data.subset(utterances=list(frames))
        atomic_write_text(out / "utt2spk", "".join(f"{u} {s}\n" for u, s in kept.utt2spk.items()))
        atomic_write_text(out / "spk2utt", "".join(f"{s} {' '.join(us)}\n" for s, us in kept.spk2utt.items()))
        if kept.spk2gender:
            atomic_write_text(out / "spk2gender", "".join(f"{s} {g}\n" for s, g in sorted(kept.spk2gender.items())))
    if config is not None:
        config.save(out / _CONFIG)
    return out
