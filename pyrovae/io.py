"""Atomic writes: a file is written to a temporary name beside it, then renamed over the target,
so a crash leaves either the old file or the new one, never a torn one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, data) -> None:
    """Write ``data`` as indented JSON, atomically."""
    _atomic_write(path, lambda h: h.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode()))


def write_jsonl(path, rows) -> None:
    """Write one JSON object per line, atomically (the whole file is replaced)."""
    _atomic_write(path, lambda h: h.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()))


def read_jsonl(path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_torch(path, obj) -> None:
    """``torch.save`` atomically."""
    _atomic_write(path, lambda h: torch.save(obj, h))
