"""Running ``pyrovae`` as a user does, and reading what a run left behind.

``run_cli`` starts ``python -m pyrovae.cli`` in a fresh process with one CPU thread and a private
cache, so a test sees the real exit code, stdout and stderr (a traceback included). ``refusal``
calls :func:`pyrovae.cli.main` in this process for the many checks that only need the message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyrovae.cli import main

REPO = Path(__file__).resolve().parents[2]
#: Generous: a loaded machine may run a short training many times slower than usual.
TIMEOUT = 300
#: Options of a short run: no importance sampling, no plots, no progress bars.
QUICK = ("--nll-samples", "0", "--no-plots", "--quiet")


def cli_env(cache_dir, **extra) -> dict:
    data_dir = os.environ.get("PYROVAE_DATA_DIR") or str(REPO.parent / "shared" / "data")
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
            "PYROVAE_CACHE_DIR": str(cache_dir), "PYROVAE_DATA_DIR": data_dir, **extra}


def cli_command(*args) -> list[str]:
    return [sys.executable, "-m", "pyrovae.cli", *map(str, args)]


def run_python(*args, env: dict, cwd=None, umask: int | None = None) -> subprocess.CompletedProcess:
    """``python ARGS`` in a new process; ``umask`` is set in the child before it starts."""
    preexec = None if umask is None else (lambda: os.umask(umask))
    return subprocess.run([sys.executable, *map(str, args)], env=env, cwd=cwd, preexec_fn=preexec,
                          capture_output=True, text=True, timeout=TIMEOUT)


def run_cli(*args, env: dict, cwd=None, umask: int | None = None) -> subprocess.CompletedProcess:
    """``pyrovae ARGS`` in a new process."""
    return run_python("-m", "pyrovae.cli", *args, env=env, cwd=cwd, umask=umask)


def assert_one_line_error(completed: subprocess.CompletedProcess, command: str) -> str:
    """The process failed with a single ``pyrovae <command>: ...`` line on stderr and no traceback."""
    assert completed.returncode != 0, completed.stdout
    assert "Traceback" not in completed.stderr, completed.stderr
    errors = [line for line in completed.stderr.splitlines() if line.startswith(f"pyrovae {command}:")]
    assert len(errors) == 1, completed.stderr
    return errors[0]


def run_main(*argv) -> None:
    """``pyrovae ARGV`` in this process (paths may be given as ``Path``)."""
    main([str(a) for a in argv])


def refusal(argv: list, capsys) -> str:
    """Call ``main(argv)`` in this process, expect it to exit with an error, return the one-line message.

    Any other exception propagates (it would be a traceback for the user) and fails the test.
    """
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    code = info.value.code
    assert code not in (0, None), "main exited successfully"
    if isinstance(code, str):  # sys.exit(message): what the user sees on stderr
        assert "\n" not in code, code
        return code
    # argparse (pyrovae.arguments.Parser): exit status 2 and one line, with no usage block
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1, lines
    return lines[0]


def checkpoint(run_dir, name: str = "checkpoint.pt") -> dict:
    return torch.load(Path(run_dir) / name, map_location="cpu", weights_only=True)


def assert_same_weights(first: dict, second: dict) -> None:
    """Every tensor of the model and the guide is exactly equal."""
    for owner in ("model", "guide"):
        assert first[owner].keys() == second[owner].keys(), owner
        for key, value in first[owner].items():
            assert torch.equal(value, second[owner][key]), f"{owner} tensor {key} differs"


def metric_rows(run_dir, ignore=("seconds",)) -> list[dict]:
    """The rows of ``metrics.jsonl`` without the keys that legitimately differ between runs."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in ignore} for line in lines if line.strip()]


def file_bytes(run_dir) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(Path(run_dir).iterdir()) if path.is_file()}
