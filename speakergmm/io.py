"""Plain, versioned, validated files: the only way speakergmm writes models and results.

Every model file is a NumPy ``.npz`` archive (read with ``allow_pickle=False``, so loading
never executes code) holding the model's arrays plus one ``__meta__`` entry: a JSON document
with the file's ``format`` (for example ``"speakergmm.GaussianMixture"``), its ``version`` and
any scalar metadata. :func:`load_model_file` refuses a file that is missing, corrupt, of
another format or of an unsupported version, and says which.

All writers are atomic: they write a temporary file in the target directory and rename it
over the target, so an interrupted job never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

__all__ = [
    "ModelFileError",
    "atomic_path",
    "atomic_write_text",
    "atomic_write_json",
    "save_model_file",
    "load_model_file",
]

_META_KEY = "__meta__"

# mkstemp creates files readable by their owner only; a finished file should get the mode an
# ordinary open() would have given it (or keep the one of the file it replaces), so that
# models and features in a shared experiment directory stay readable by the group.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class ModelFileError(ValueError):
    """A model file is missing, corrupt, of another format or of an unsupported version."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched. The new
    file gets the permissions of the file it replaces, or those ``open()`` would give.
    ``suffix`` defaults to the target's own suffix (some writers, such as ``np.savez``
    and matplotlib, choose the format from it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=(path.suffix if suffix is None else suffix) + ".tmp",
        dir=path.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_UMASK
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def save_model_file(
    path: str | os.PathLike,
    format: str,
    version: int,
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Save ``arrays`` and JSON-able ``meta`` as a plain ``.npz`` model file, atomically.

    Parameters
    ----------
    path : path-like
        Target file. It is written as given (no ``.npz`` is appended).
    format : str
        Name of the file format, checked on load (e.g. ``"speakergmm.GaussianMixture"``).
    version : int
        Version of that format, checked on load.
    arrays : mapping of str to ndarray
        Numeric (or fixed-width string) arrays. Object arrays are refused.
    meta : mapping, optional
        Extra JSON-serialisable metadata.
    """
    if _META_KEY in arrays:
        raise ValueError(f"array name {_META_KEY!r} is reserved")
    payload: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"array {name!r} has dtype object; model files hold plain arrays only")
        payload[name] = arr
    header = {"format": format, "version": int(version), "meta": dict(meta or {})}
    payload[_META_KEY] = np.array(json.dumps(header, default=_json_default))
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **payload)


def load_model_file(
    path: str | os.PathLike,
    format: str,
    supported_versions: tuple[int, ...] = (1,),
    required: tuple[str, ...] = (),
) -> tuple[dict[str, np.ndarray], dict[str, Any], int]:
    """Load and validate a file written by :func:`save_model_file`.

    Returns
    -------
    arrays : dict of str to ndarray
    meta : dict
    version : int

    Raises
    ------
    ModelFileError
        If the file is missing, not a valid archive, of another format, of an unsupported
        version, or lacks one of the ``required`` arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        # np.load would try to unpickle it and suggest allow_pickle: never the right advice.
        raise ModelFileError(f"{path}: corrupt or unreadable model file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if _META_KEY not in archive.files:
                raise ModelFileError(f"{path}: not a speakergmm model file (no {_META_KEY} entry)")
            header = json.loads(str(archive[_META_KEY]))
            arrays = {name: archive[name] for name in archive.files if name != _META_KEY}
    except ModelFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as exc:
        raise ModelFileError(f"{path}: corrupt or unreadable model file ({exc})") from exc
    if not isinstance(header, dict) or "format" not in header or "version" not in header:
        raise ModelFileError(f"{path}: corrupt model file header")
    if header["format"] != format:
        raise ModelFileError(f"{path}: holds a {header['format']!r}, expected a {format!r}")
    version = int(header["version"])
    if version not in supported_versions:
        raise ModelFileError(
            f"{path}: {format} file version {version} is not supported "
            f"(this speakergmm reads version {', '.join(map(str, supported_versions))})"
        )
    missing = [name for name in required if name not in arrays]
    if missing:
        raise ModelFileError(f"{path}: corrupt {format} file, missing array(s) {', '.join(missing)}")
    return arrays, dict(header.get("meta", {})), version
