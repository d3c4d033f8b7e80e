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
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

__all__ = [
    "ModelFileError",
    "atomic_path",
    "atomic_write_text",
    "atomic_write_json",
    "save_model_file",
    "load_model_file",
    "validate_mixture_arrays",
    "COVARIANCE_TYPES",
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


# Limits on what a model file may claim before anything is allocated.
_MAX_META_CHARS = 16 * 2**20          # the JSON header
_MAX_META_DEPTH = 32                  # nesting of the JSON header
_MAX_ARRAY_BYTES = 2**34              # 16 GiB: no speakergmm model is near this
_ALLOWED_KINDS = set("biufcUSb?")     # numbers, booleans and fixed-width strings

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
_MIXTURE_ARRAYS = ("covariance_type", "weights", "means", "covariances")


def _json_depth(obj: Any) -> int:
    """Nesting depth of parsed JSON, computed without recursion."""
    depth, stack = 0, [(obj, 1)]
    while stack:
        item, level = stack.pop()
        depth = max(depth, level)
        if depth > _MAX_META_DEPTH:
            return depth
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return depth


def _read_member_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple, np.dtype, int]:
    """Shape, dtype and header length of one ``.npy`` member, read without its data."""
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=10000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=10000)
        else:  # pragma: no cover - read_magic refuses other versions already
            raise ValueError(f"unsupported npy version {version}")
        return tuple(shape), np.dtype(dtype), fh.tell()


def _check_members(path: Path, archive: zipfile.ZipFile) -> None:
    """Every member is an ``.npy`` array of plain dtype whose header agrees with its size."""
    for info in archive.infolist():
        name = info.filename
        field = name[:-4] if name.endswith(".npy") else name
        if not name.endswith(".npy"):
            raise ModelFileError(f"{path}: entry {name!r} is not an array")
        try:
            shape, dtype, header_len = _read_member_header(archive, info)
        except ModelFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - any malformed header is the file's fault
            raise ModelFileError(f"{path}: corrupt or unreadable model file: array {field!r} has a "
                                 f"malformed header ({exc})") from exc
        if dtype.hasobject or dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None:
            raise ModelFileError(f"{path}: array {field!r} has dtype {dtype}; model files hold "
                                 "plain numeric or string arrays only")
        if any(int(n) < 0 for n in shape):
            raise ModelFileError(f"{path}: array {field!r} has a negative dimension {shape}")
        n_bytes = int(np.prod([int(n) for n in shape], dtype=object)) * dtype.itemsize
        if n_bytes > _MAX_ARRAY_BYTES or n_bytes != info.file_size - header_len:
            raise ModelFileError(
                f"{path}: corrupt or unreadable model file: array {field!r} claims shape {shape} of {dtype} ({n_bytes} bytes) but "
                f"holds {info.file_size - header_len} bytes")


def _fail_field(path: Path, field: str, problem: str, what: str = "model") -> ModelFileError:
    return ModelFileError(f"{path}: invalid {what} file: {problem} (field {field!r})")


def validate_mixture_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                            prefix: str = "", what: str = "GMM") -> None:
    """Check the arrays of a Gaussian mixture (``covariance_type``, ``weights``, ``means``,
    ``covariances``, each name after ``prefix``) before any model is built from them.

    Raises
    ------
    ModelFileError
        Naming the file and the field: an unknown covariance type, shapes that disagree,
        non-finite values, negative or non-normalised weights, non-positive variances or a
        covariance matrix that is not symmetric positive definite.
    """
    path = Path(path)
    names = {key: prefix + key for key in _MIXTURE_ARRAYS}

    def fail(key: str, problem: str) -> ModelFileError:
        return _fail_field(path, names[key], problem, what)

    cov_type_arr = np.asarray(arrays[names["covariance_type"]])
    if cov_type_arr.ndim != 0 or cov_type_arr.dtype.kind not in "US":
        raise fail("covariance_type", "expected one string")
    cov_type = str(cov_type_arr)
    if cov_type not in COVARIANCE_TYPES:
        raise fail("covariance_type", f"{cov_type[:40]!r} is not one of {', '.join(COVARIANCE_TYPES)}")
    numeric = {}
    for key in ("weights", "means", "covariances"):
        arr = np.asarray(arrays[names[key]])
        if arr.dtype.kind not in "biuf":
            raise fail(key, f"expected real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64, copy=False)
        if not np.all(np.isfinite(arr)):
            raise fail(key, "holds non-finite values")
        numeric[key] = arr
    means = numeric["means"]
    if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
        raise fail("means", f"expected shape (n_components, n_features), got {means.shape}")
    K, D = means.shape
    weights = numeric["weights"]
    if weights.shape != (K,):
        raise fail("weights", f"expected shape ({K},) to match the means, got {weights.shape}")
    if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-6):
        raise fail("weights", f"weights must be non-negative and sum to 1 (they sum to {weights.sum():.6g})")
    cov = numeric["covariances"]
    expected = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[cov_type]
    if cov.shape != expected:
        raise fail("covariances", f"expected shape {expected} for {cov_type!r} covariances, got {cov.shape}")
    if cov_type in ("diag", "spherical"):
        bad = np.argwhere(~(cov > 0))
        if bad.size:
            raise fail("covariances", f"component {int(bad[0][0])}: variances must be positive")
    else:
        mats = cov.reshape(-1, D, D)
        if not np.allclose(mats, mats.transpose(0, 2, 1), rtol=1e-6, atol=1e-12):
            raise fail("covariances", "covariance matrices must be symmetric")
        try:
            np.linalg.cholesky(mats)
        except np.linalg.LinAlgError:
            raise fail("covariances", "covariance matrices must be positive definite") from None


def load_model_file(
    path: str | os.PathLike,
    format: str,
    supported_versions: tuple[int, ...] = (1,),
    required: tuple[str, ...] = (),
    validate: Callable[[Path, dict[str, np.ndarray], dict[str, Any]], None] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any], int]:
    """Load and validate a file written by :func:`save_model_file`.

    This is the one reader of every speakergmm model file. Before any array is allocated
    each member's ``.npy`` header is read and its claimed size compared with the bytes the
    archive holds; the JSON header must be a small, shallow object whose ``format`` is a
    string and ``version`` an integer. Files holding a Gaussian mixture
    (``covariance_type``, ``weights``, ``means``, ``covariances``) are checked by
    :func:`validate_mixture_arrays`; ``validate(path, arrays, meta)`` may check the rest
    (it should raise :class:`ModelFileError`).

    Returns
    -------
    arrays : dict of str to ndarray
    meta : dict
    version : int

    Raises
    ------
    ModelFileError
        If the file is missing, not a valid archive, of another format, of an unsupported
        version, lacks one of the ``required`` arrays, or holds malformed content; the
        message names the file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        # np.load would try to unpickle it and suggest allow_pickle: never the right advice.
        raise ModelFileError(f"{path}: corrupt or unreadable model file (not an .npz archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(path, archive)
            meta_info = archive.getinfo(_META_KEY + ".npy") if (_META_KEY + ".npy") in archive.namelist() else None
            if meta_info is not None and meta_info.file_size > _MAX_META_CHARS * 4 + 256:
                raise _fail_field(path, _META_KEY, "header too large")
        with np.load(path, allow_pickle=False) as archive:
            if _META_KEY not in archive.files:
                raise ModelFileError(f"{path}: not a speakergmm model file (no {_META_KEY} entry)")
            raw = archive[_META_KEY]
            if raw.ndim != 0 or raw.dtype.kind not in "US":
                raise _fail_field(path, _META_KEY, "expected one JSON string", format)
            header = json.loads(str(raw))
            arrays = {name: archive[name] for name in archive.files if name != _META_KEY}
    except ModelFileError:
        raise
    except RecursionError as exc:
        raise _fail_field(path, _META_KEY, "JSON nested too deeply") from exc
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, MemoryError,
            NotImplementedError, RuntimeError, UnicodeError, zlib.error) as exc:
        raise ModelFileError(f"{path}: corrupt or unreadable model file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(header, dict) or "format" not in header or "version" not in header:
        raise ModelFileError(f"{path}: corrupt model file header (no format or version)")
    if _json_depth(header) > _MAX_META_DEPTH:
        raise _fail_field(path, _META_KEY, f"JSON nested deeper than {_MAX_META_DEPTH} levels")
    if not isinstance(header["format"], str):
        raise _fail_field(path, "format", f"expected a string, got {type(header['format']).__name__}")
    if header["format"] != format:
        raise ModelFileError(f"{path}: holds a {header['format'][:80]!r}, expected a {format!r}")
    version = header["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise _fail_field(path, "version", f"expected an integer, got {str(version)[:80]!r}")
    if version not in supported_versions:
        raise ModelFileError(
            f"{path}: {format} file version {version} is not supported "
            f"(this speakergmm reads version {', '.join(map(str, supported_versions))})"
        )
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise _fail_field(path, "meta", f"expected a JSON object, got {type(meta).__name__}")
    missing = [name for name in required if name not in arrays]
    if missing:
        raise ModelFileError(f"{path}: corrupt {format} file, missing array(s) {', '.join(missing)}")
    if all(name in arrays for name in _MIXTURE_ARRAYS):
        validate_mixture_arrays(path, arrays, what=format.rsplit(".", 1)[-1])
    if validate is not None:
        validate(path, arrays, meta)
    return arrays, dict(meta), version
