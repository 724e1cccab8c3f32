"""A run's records: per-epoch metrics and checkpoints that a crash cannot corrupt.

A run directory holds ``config.json`` (every setting), ``metrics.jsonl`` (one row per epoch) and
the two newest checkpoints, ``checkpoint.pt`` and ``checkpoint.prev.pt``. Each file is replaced
atomically (:mod:`pyrovae.io`), and the previous checkpoint is kept, so a file truncated by a full
disk or a killed process never costs more than one epoch. Checkpoints are read with
``torch.load(weights_only=True)``: loading one can never run code.

A checkpoint stores the weights, the optimizer state, every random state (torch's, Python's,
NumPy's, and the data order's generator) and the state of each callback of the run
(:meth:`pyrovae.callbacks.Callback.state_dict`), so a resumed run continues exactly as the
uninterrupted run would have. :class:`pyrovae.callbacks.Checkpoint` writes and reads them.

Checkpoints are device-independent: every tensor is saved from the CPU and read with
``map_location="cpu"``, and loading copies it onto the device of the module or optimizer it goes
into, so a run trained on a GPU resumes and evaluates on a CPU, and back.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pyrovae.devices import to_cpu
from pyrovae.io import read_jsonl, save_torch, write_json, write_jsonl

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
NEW_CHECKPOINT = "checkpoint.pt.new"  # written in full before it becomes checkpoint.pt
METRICS = "metrics.jsonl"
CONFIG = "config.json"
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, PREVIOUS_CHECKPOINT, NEW_CHECKPOINT)
#: Where a sentence ends: a full stop, question or exclamation mark, then space and a capital letter.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


class TrainingDivergedError(RuntimeError):
    """The loss or a parameter became NaN or infinite; the last good checkpoint is left in place."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


class RunExistsError(FileExistsError):
    """A run directory already holds a run, and overwriting it was not asked for."""


@dataclass
class History:
    """Per-epoch metrics of a run (the rows of ``metrics.jsonl``)."""

    rows: list[dict] = field(default_factory=list)

    def column(self, key: str) -> list:
        """The values of ``key`` in epoch order, from the rows that have it."""
        return [row[key] for row in self.rows if key in row]

    @property
    def epochs_done(self) -> int:
        """The number of the last epoch recorded, 0 before the first."""
        return self.rows[-1]["epoch"] if self.rows else 0


def holds_run(run_dir) -> bool:
    """Whether ``run_dir`` already holds any of a run's files."""
    run_dir = Path(run_dir)
    return any((run_dir / name).exists() for name in RUN_FILES)


def rng_state() -> dict:
    """torch's, Python's and NumPy's random states, as tensors and plain types (``weights_only``-loadable)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states saved by :func:`rng_state` (the GPUs' only on a machine with as many GPUs)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))


def check_finite(epoch: int, **modules) -> None:
    """Raise :class:`TrainingDivergedError` if any floating-point tensor of the modules is not finite."""
    for owner, module in modules.items():
        for name, value in module.state_dict().items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise TrainingDivergedError(
                    f"{owner} tensor {name!r} is not finite after epoch {epoch}; the previous checkpoint is kept")


class Checkpointer:
    """Writes and reads the records of one run directory."""

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)

    @property
    def path(self) -> Path:
        """The newest checkpoint's file in the run directory."""
        return self.run_dir / CHECKPOINT

    def exists(self) -> bool:
        """Whether the run directory holds a checkpoint."""
        return self.path.exists()

    def write_config(self, config: dict) -> None:
        """Write the run's settings as ``config.json`` (atomically)."""
        write_json(self.run_dir / CONFIG, config)

    def save(self, state: dict, history: History) -> None:
        """Write the metrics, then ``state`` as the newest checkpoint (the one it replaces becomes the previous).

        In this order a crash between the two writes leaves metrics one epoch ahead of the
        checkpoint, which :meth:`history` drops on resume; the other order would leave the
        checkpoint's epoch without its row, and a resumed run would train that epoch twice.
        The new checkpoint is written in full under another name first, and ``checkpoint.pt``
        always exists: it is hard-linked to ``checkpoint.prev.pt``, then replaced by the new file.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(self.run_dir / METRICS, history.rows)
        staged = self.run_dir / NEW_CHECKPOINT
        save_torch(staged, to_cpu(state))
        if self.path.exists():
            _keep_as(self.path, self.run_dir / PREVIOUS_CHECKPOINT)
        os.replace(staged, self.path)

    def load(self) -> dict:
        """The newest checkpoint; a :class:`CheckpointError` says which file failed and what to do."""
        return load_checkpoint_file(self.path)

    def history(self, epoch: int) -> History:
        """The metrics rows of the epochs up to ``epoch`` (later rows belong to an epoch whose checkpoint was lost)."""
        return History([row for row in read_jsonl(self.run_dir / METRICS) if row["epoch"] <= epoch])


def _keep_as(source: Path, target: Path) -> None:
    """Make ``target`` a copy of ``source`` (a hard link where the file system has them), atomically."""
    tmp = target.with_name(f".{target.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _loads(path: Path) -> bool:
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # any failure means it cannot stand in
        return False
    return True


def load_checkpoint_file(path) -> dict:
    """``torch.load(path, weights_only=True)`` with a one-line :class:`CheckpointError` on failure."""
    path = Path(path)
    previous = path.with_name(PREVIOUS_CHECKPOINT)

    def hint() -> str:
        if previous != path and previous.exists() and _loads(previous):
            return f"the previous checkpoint {previous} loads: move it to {path.name} to continue from it"
        return "train again, or restore it from a backup"

    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}" + (f"; {hint()}" if previous.exists() else ""))
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); {hint()}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise CheckpointError(f"checkpoint {path} cannot be read ({first_sentence(error)}); {hint()}") from None
    if not isinstance(checkpoint, dict) or not {"epoch", "model", "guide"} <= set(checkpoint):
        raise CheckpointError(f"{path} is not a pyrovae checkpoint; {hint()}")
    return checkpoint


def load_weights(checkpoint: dict, model, guide, path="checkpoint") -> None:
    """Copy a checkpoint's weights into ``model`` and ``guide``; a mismatch is a :class:`CheckpointError`."""
    for owner, module in (("model", model), ("guide", guide)):
        try:
            module.load_state_dict(checkpoint[owner])
        except RuntimeError as error:
            # torch's first line only says which module failed; the second names the tensor and the shapes.
            lines = [line for line in str(error).splitlines() if line.strip()]
            detail = first_sentence(lines[1] if len(lines) > 1 else error)
            raise CheckpointError(f"the {owner} in {path} does not fit the settings ({detail})") from None


def first_sentence(error) -> str:
    """The first sentence of an error's message, whole and without its full stop (or the error's type name).

    A message is shortened at a sentence's end, never inside a word: torch's zip reader adds advice
    meant for its own developers after its first sentence ("This is an internal miniz error. If you ...").
    """
    text = str(error).strip()
    if not text:
        return type(error).__name__
    line = text.splitlines()[0].strip()
    return SENTENCE_END.split(line, maxsplit=1)[0].rstrip(".")
