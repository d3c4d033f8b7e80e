"""Every tutorial in docs/tutorials runs from top to bottom (their cells assert their claims)."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbclient
import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "docs" / "tutorials").glob("[0-9][0-9]_*.md"))


def test_tutorials_are_found():
    assert [p.name[:2] for p in TUTORIALS] == ["01", "02", "03", "04"]


@pytest.mark.fsdd
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, fsdd, monkeypatch):
    monkeypatch.setenv("SPEAKERGMM_FSDD", str(fsdd))  # the kernel inherits the environment
    monkeypatch.setenv("SPEAKERGMM_PROGRESS", "0")
    notebook = jupytext.read(path)
    assert notebook.cells and any(c.cell_type == "code" for c in notebook.cells)
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    images = sum("image/png" in out.get("data", {}) for c in notebook.cells
                 for out in c.get("outputs", []))
    assert images >= 1, "a tutorial shows its figures"
