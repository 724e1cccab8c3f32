"""Every notebook in ``notebooks/`` runs top to bottom as a notebook (nbclient, a real kernel), with
``PYROVAE_SMOKE=1`` (few steps, small subsets) and ``MPLBACKEND=Agg`` in the kernel's environment and
a temporary working directory."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: Notebooks that read real data sets from $PYROVAE_DATA_DIR (the others use the bundled digits).
NEEDS_REAL_DATA = {"07_variance_loss.ipynb"}
#: Seconds a single cell may take before the run fails (smoke runs take a few seconds per cell).
CELL_TIMEOUT = 300


def test_the_notebooks_are_found():
    # An empty glob would otherwise parametrize nothing and pass silently.
    assert NOTEBOOKS, "no notebooks found in notebooks/"


def _failed_cell(notebook, error: CellExecutionError) -> str:
    """The source of the cell that raised, found by its error output (nbclient stores it on the cell)."""
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and any(output.get("output_type") == "error" for output in cell.get("outputs", [])):
            return f"cell {index}:\n{cell.source}"
    return "(cell not found)"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch, request):
    if path.name in NEEDS_REAL_DATA:
        monkeypatch.setenv("PYROVAE_DATA_DIR", str(request.getfixturevalue("data_dir")))
    # The kernel inherits this process's environment.
    monkeypatch.setenv("PYROVAE_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{path.name} failed in {_failed_cell(notebook, error)}\n\n{error}", pytrace=False)
