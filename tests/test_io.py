"""Atomic writers: no partial files, and finished files get ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from speakergmm.io import atomic_path, atomic_write_json, atomic_write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_new_file_gets_the_mode_open_would_give(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "x")
    (tmp_path / "b.txt").write_text("x")
    assert _mode(tmp_path / "a.txt") == _mode(tmp_path / "b.txt") == 0o666 & ~_umask()


def test_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("{}")
    os.chmod(target, 0o640)
    atomic_write_json(target, {"eer": 0.05})
    assert _mode(target) == 0o640
    assert '"eer": 0.05' in target.read_text()


def test_failed_write_leaves_the_target_and_no_temporary_file(tmp_path):
    target = tmp_path / "model.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
