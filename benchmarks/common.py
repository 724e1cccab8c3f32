"""Helpers shared by the benchmark scripts: the machine description and atomic result files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import pyro
import torch

from pyrovae.checkpoint import METRICS, Checkpointer
from pyrovae.io import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def machine(device: str = "cpu") -> dict:
    """The machine a benchmark ran on. ``device`` is where it computed: the benchmarks build their models
    on the CPU and pass no device to ``fit``, so the CPU unless a benchmark says otherwise."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


#: Arguments that only locate files or choose what to skip, not what a run computes: left out of the
#: recorded arguments, so that the printed command reproduces the numbers wherever the data lives.
LOCATING = frozenset({"data_dir", "runs_dir", "resume", "retry_diverged", "rerun", "force", "shard", "collect"})


def recorded_arguments(args) -> dict:
    """Every parsed argument that changed the run (``argparse.Namespace`` or dict), for the JSON:
    ``benchmarks/report.py`` prints ``python -m benchmarks.<name>`` with them as the result's command."""
    values = vars(args) if not isinstance(args, dict) else args
    return {key: value for key, value in sorted(values.items()) if key not in LOCATING}


def save_results(name: str, results: dict, args=None, directory: Path | None = None,
                 benchmark: str | None = None) -> Path:
    """Write ``<directory>/<name>.json`` atomically with the machine and, given ``args``, the arguments
    of the run (:func:`recorded_arguments`); ``benchmark`` names the module that wrote it, for a file
    whose name does not (``--output``)."""
    path = Path(RESULTS if directory is None else directory) / f"{name}.json"
    recorded = {"arguments": recorded_arguments(args)} if args is not None else {}
    if benchmark is not None:
        recorded["benchmark"] = benchmark
    write_json(path, {**results, **recorded, "machine": machine()})
    return path


def continuation(run_dir: Path, resume: bool, force: bool = False) -> tuple[bool, bool]:
    """``(resume, overwrite)`` for a benchmark run's :class:`pyrovae.callbacks.Checkpoint`.

    With ``--resume`` a run continues from its checkpoint; one stopped before its first epoch ended
    (its directory holds the config but neither a checkpoint nor a metrics row, so no work is lost)
    starts again instead of being refused. ``--force`` restarts any run."""
    started = Checkpointer(run_dir).exists() or (run_dir / METRICS).exists()
    return resume and Checkpointer(run_dir).exists(), force or (resume and not started)


def reached(done: int, budget: int, asked: int | None) -> bool:
    """Whether a run that trained ``done`` of its ``budget`` epochs needs no more for ``--epochs asked``
    (``None``: the budget)."""
    return done >= (budget if asked is None else min(asked, budget))


def reported_row(new: dict, old: dict | None) -> dict:
    """The row to report for a run that a benchmark records again: ``new``, unless it is unfinished
    (``complete`` false) while ``old``, recorded before, is complete or has more epochs. A run whose run
    directory was lost with its machine starts again from epoch 0; the JSON keeps the further row until
    the new run passes it, so that resuming never takes a reported run backwards."""
    if old is None or new.get("complete") is not False:
        return new
    if old.get("complete") or (old.get("epochs") or 0) > (new.get("epochs") or 0):
        return old
    return new


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).ljust(w) for c, w in zip(columns, widths)))


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def recorded_runs(name: str, key: str, directory: Path | None = None) -> list[dict]:
    """The runs in ``<directory>/<name>.json`` (default ``results/``) under ``key``; none without the file."""
    path = Path(RESULTS if directory is None else directory) / f"{name}.json"
    return json.loads(path.read_text())[key] if path.exists() else []


def finished_runs(name: str, key: str, retry=lambda run: False, directory: Path | None = None) -> list[dict]:
    """Every run already in ``<directory>/<name>.json`` (default ``results/``) under ``key`` (``--resume``),
    whatever the selection of this invocation, so that saving the file again loses none; runs for which
    ``retry(run)`` holds are left out, to be run again."""
    path = Path(RESULTS if directory is None else directory) / f"{name}.json"
    if not path.exists():
        return []
    runs = recorded_runs(name, key, directory)
    kept = [run for run in runs if not retry(run)]
    print(f"resuming: {len(kept)} runs already in {path.name}" + (f"; {len(runs) - len(kept)} to run again" if len(kept) < len(runs) else ""))
    return kept


def alternating_step_times(contenders: dict, batches: list, steps: int, warmup: int,
                           cpu_times: dict | None = None) -> dict[str, list[float]]:
    """Seconds of each of ``steps`` calls ``contenders[name](x)`` after ``warmup`` untimed ones, the
    contenders taking turns on each batch (cycling through ``batches``) so that machine load affects
    them alike; pyrovae's per-batch data checks are off, as in training after the first batch.
    ``cpu_times``, if given, receives each call's CPU seconds on the calling thread (all of a step's
    work at one torch thread), which other processes' load changes less than the wall clock."""
    times = {name: [] for name in contenders}
    if cpu_times is not None:
        cpu_times.update({name: [] for name in contenders})
    with pyro.settings.context(pyrovae_check_data=False):
        for i in range(warmup + steps):
            x = batches[i % len(batches)]
            for name, step in contenders.items():
                began, cpu_began = time.perf_counter(), time.thread_time()
                step(x)
                if i >= warmup:
                    times[name].append(time.perf_counter() - began)
                    if cpu_times is not None:
                        cpu_times[name].append(time.thread_time() - cpu_began)
    return times


def adam_step(parameters, loss, lr: float, compiled: bool = False):
    """``step(x) -> float``: one fused-Adam step of a hand-written PyTorch ``loss(x)`` (compiled with
    ``torch.compile`` when asked), the plain-PyTorch baseline the step benchmarks time pyrovae against."""
    optimizer = torch.optim.Adam(parameters, lr=lr, fused=True)
    loss_fn = torch.compile(loss) if compiled else loss

    def step(x):
        optimizer.zero_grad(set_to_none=True)
        value = loss_fn(x)
        value.backward()
        optimizer.step()
        return value.item()

    return step


def parse_setting(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with ``VALUE`` read as JSON when it parses (``false``, ``3``, ``[500, 500]``), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def setting_text(value) -> str:
    """``value`` as ``--set`` reads it back: JSON, except a string that is not JSON, as it is."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return value
    return json.dumps(value).replace(" ", "")


def settings_suffix(settings: dict) -> str:
    """A run directory name's part for ``--set`` settings: ``-<key>=<value>`` for each, sorted by key."""
    return "".join(f"-{key}={setting_text(value)}" for key, value in sorted(settings.items()))
