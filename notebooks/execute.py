"""Execute notebooks at full size and save them with their outputs, as the documentation site shows them.

    nice -n 2 python notebooks/execute.py notebooks/04_gmvae.ipynb [more.ipynb ...]

Each notebook runs top to bottom in a fresh kernel of this Python (nbclient) with ``PYROVAE_SMOKE``
unset (the full-size run its text describes), ``MPLBACKEND=Agg`` and a temporary working directory
(what a notebook writes, such as ``runs/``, is thrown away). A notebook draws no progress bar (a
widget the static site cannot show, or hundreds of carriage-returned lines); ``tests/test_notebooks.py``
rejects saved outputs that hold one. The notebook is written back
only when every cell ran without an error, with ``metadata.pyrovae`` recording how it was executed
(the command, the wall time, the versions of Python, torch and Pyro). ``tests/test_notebooks.py``
checks the committed outputs; CI's smoke run executes a copy and writes nothing back.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

#: The command recorded in each notebook's metadata (docs/testing.md documents it).
COMMAND = "nice -n 2 python notebooks/execute.py notebooks/{name}"


def _versions() -> dict:
    import pyro
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "pyro": pyro.__version__}


def _merge_streams(outputs: list) -> list:
    """Consecutive writes to one stream as one output, as Jupyter shows them (a loop that prints
    each epoch otherwise leaves one output per flush)."""
    merged = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.output_type == "stream" and previous is not None and previous.output_type == "stream"
                and previous.name == output.name):
            previous.text += output.text
        else:
            merged.append(output)
    return merged


def execute(path: Path, timeout: int | None = None) -> float:
    """Run ``path`` at full size in a fresh kernel, write it back with its outputs; return the seconds taken."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    environment = {"MPLBACKEND": "Agg"}
    saved = {name: os.environ.get(name) for name in [*environment, "PYROVAE_SMOKE"]}
    os.environ.update(environment)
    os.environ.pop("PYROVAE_SMOKE", None)
    try:  # the kernel inherits this process's environment
        with tempfile.TemporaryDirectory() as workdir:
            client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                                    store_widget_state=False, resources={"metadata": {"path": workdir}})
            start = time.perf_counter()
            client.execute()  # raises CellExecutionError on the first failing cell; nothing is written
            seconds = time.perf_counter() - start
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = _merge_streams(cell.outputs)
    notebook.metadata["pyrovae"] = {
        "executed": "full size",
        "command": COMMAND.format(name=path.name),
        "seconds": round(seconds),
        "threads": os.environ.get("OMP_NUM_THREADS", "all"),
        **_versions(),
    }
    nbformat.write(notebook, path)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=None, help="seconds a cell may take (default: no limit)")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if path.suffix != ".ipynb" or not path.is_file():
            sys.exit(f"error: {path} is not a notebook file")
    for path in args.notebooks:
        seconds = execute(path, args.timeout)
        print(f"{path.name}: {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
