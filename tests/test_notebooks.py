"""The notebooks in notebooks/ run from top to bottom, and are committed without outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    names = {p.stem for p in NOTEBOOKS}
    assert {"traffic_vs_budget", "solve_time_vs_size", "memory_map"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path


#: Notebooks run in the default run; the others (10-15 s each: a kernel, a sweep or a
#: picture) run in the slow job. What they call is tested directly too (test_runner's sweeps,
#: test_pictures' memory maps).
FAST_NOTEBOOKS = {"solve_time_vs_size"}


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, id=p.stem, marks=() if p.stem in FAST_NOTEBOOKS else pytest.mark.slow)
        for p in NOTEBOOKS
    ],
)
def test_notebook_runs(path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError with the cell and traceback on any error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # Every notebook draws at least one figure.
    assert any("image/png" in o.get("data", {}) for o in outputs), path
