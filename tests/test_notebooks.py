"""Every notebook in ``notebooks/`` is committed with the outputs of a full-size run (what the
documentation site shows; ``notebooks/execute.py`` produces them): every code cell executed in order,
at least one figure, no error, no traceback on stderr, no progress bar or widget. And every notebook
runs top to bottom as a notebook (nbclient, a real kernel), with ``PYROVAE_SMOKE=1`` (few steps,
small subsets) and ``MPLBACKEND=Agg`` in the kernel's environment and a temporary working directory;
that smoke run executes a copy in memory and leaves the committed file as it was."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: Notebooks that read real data sets from $PYROVAE_DATA_DIR (the others use the bundled digits).
NEEDS_REAL_DATA = {"07_variance_loss.ipynb"}
#: The output type of a Jupyter widget (tqdm.auto's bar where ipywidgets is installed).
WIDGET = "application/vnd.jupyter.widget-view+json"
#: Seconds a single cell may take before the run fails (smoke runs take a few seconds per cell).
CELL_TIMEOUT = 300


def test_the_notebooks_are_found():
    # An empty glob would otherwise parametrize nothing and pass silently.
    assert NOTEBOOKS, "no notebooks found in notebooks/"


def output_problems(notebook) -> list[str]:
    """What is wrong with a notebook's committed outputs, one line each (empty when they are complete)."""
    problems = []
    if notebook.metadata.get("pyrovae", {}).get("executed") != "full size":
        problems.append("metadata.pyrovae.executed is not 'full size' (run notebooks/execute.py)")
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    counts = [cell.get("execution_count") for cell in code]
    if counts != list(range(1, len(code) + 1)):
        problems.append(f"code cells not executed once, top to bottom, in one kernel: execution counts {counts}")
    images = 0
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "error":
                problems.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
            elif kind == "stream" and output.get("name") == "stderr" and "Traceback" in output.get("text", ""):
                problems.append(f"cell {index}: a traceback on stderr")
            elif kind == "stream" and "\r" in output.get("text", ""):
                problems.append(f"cell {index}: a progress bar ({output.get('name')} holds carriage returns)")
            elif WIDGET in output.get("data", {}):
                problems.append(f"cell {index}: a widget (a progress bar?), which the documentation site cannot show")
            images += "image/png" in output.get("data", {})
    if not images:
        problems.append("no figure (image/png output)")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_with_the_outputs_of_a_full_run(path):
    problems = output_problems(nbformat.read(path, as_version=4))
    assert not problems, f"{path.name}: {'; '.join(problems)}\nre-run: nice -n 2 python notebooks/execute.py {path}"


def test_the_output_check_catches_stripped_outputs_and_errors():
    notebook = nbformat.read(NOTEBOOKS[0], as_version=4)
    assert output_problems(notebook) == []
    stripped = nbformat.from_dict(notebook)
    for cell in stripped.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    assert any("execution counts" in p for p in output_problems(stripped))
    assert any("no figure" in p for p in output_problems(stripped))
    last = [cell for cell in notebook.cells if cell.cell_type == "code"][-1]
    last.outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[]))
    last.outputs.append(nbformat.v4.new_output("stream", name="stderr", text="Traceback (most recent call last):\n"))
    last.outputs.append(nbformat.v4.new_output("stream", name="stderr", text="10%|#  |\r20%|## |"))
    last.outputs.append(nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "0"}, "text/plain": "0%"}))
    assert [p.split(": ", 1)[1] for p in output_problems(notebook)] == [
        "ValueError: bad", "a traceback on stderr", "a progress bar (stderr holds carriage returns)",
        "a widget (a progress bar?), which the documentation site cannot show"]


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
    committed = path.read_bytes()
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{path.name} failed in {_failed_cell(notebook, error)}\n\n{error}", pytrace=False)
    assert path.read_bytes() == committed, "the smoke run wrote to the committed notebook"
