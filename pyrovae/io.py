"""Atomic writes: a file is written to a temporary name beside it, then renamed over the target,
so a crash leaves either the old file or the new one, never a torn one.

Files get the usual permissions (``0666`` minus the process umask, as ``open`` would give), not the
``0600`` of the temporary file they start as.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path, data) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return atomic_write(path, lambda h: h.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode()))


def write_jsonl(path, rows) -> Path:
    """Write one JSON object per line, atomically (the whole file is replaced)."""
    return atomic_write(path, lambda h: h.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()))


def read_jsonl(path) -> list[dict]:
    """The rows of a JSON-lines file (``[]`` if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_torch(path, obj) -> Path:
    """``torch.save`` atomically."""
    return atomic_write(path, lambda h: torch.save(obj, h))
