"""Shared fixtures: the location of the Free Spoken Digit Dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_DEFAULT_FSDD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd" / "recordings"


def fsdd_dir() -> Path | None:
    """FSDD recordings directory ($SPEAKERGMM_FSDD or ../shared/data/fsdd/recordings), or None."""
    path = Path(os.environ.get("SPEAKERGMM_FSDD", _DEFAULT_FSDD))
    return path if path.is_dir() and any(path.glob("*.wav")) else None


@pytest.fixture(scope="session")
def fsdd() -> Path:
    path = fsdd_dir()
    if path is None:
        pytest.skip(f"FSDD not found at {_DEFAULT_FSDD} and $SPEAKERGMM_FSDD is not set")
    return path
