"""Which device a run computes on: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``, checked where the name enters.

``auto`` is the first GPU when CUDA is available, else the CPU. Under ``torchrun`` a bare ``cuda``
means the GPU of this process's ``LOCAL_RANK``, so every rank of a node gets its own GPU. A device
that does not exist here is a one-line ``ValueError`` (``device cuda: CUDA is not available on this
machine``), not torch's lazy error at the first tensor moved.
"""

from __future__ import annotations

import os

import torch

DEVICES = ("cpu", "cuda", "cuda:N", "auto")


def resolve_device(device: str | torch.device | None = None, name: str = "device") -> torch.device:
    """The ``torch.device`` that ``device`` names on this machine (``None`` is the CPU).

    ``name`` is how the setting is called in the error message (the CLI passes ``--device``).
    """
    if device is None:
        return torch.device("cpu")
    text = str(device).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = text.partition(":")
    if kind == "cpu" and not index:
        return torch.device("cpu")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"{name} {device}: expected one of {', '.join(DEVICES)}")
    if not torch.cuda.is_available():
        raise ValueError(f"{name} {device}: CUDA is not available on this machine")
    count = torch.cuda.device_count()
    number = int(index) if index else int(os.environ.get("LOCAL_RANK", 0))
    if number >= count:
        raise ValueError(f"{name} {device}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
                         f"(cuda:0 to cuda:{count - 1})" + ("" if index else f" and LOCAL_RANK is {number}"))
    return torch.device("cuda", number)


def module_device(*modules: torch.nn.Module) -> torch.device:
    """The device of the first parameter or buffer of ``modules`` (the CPU for modules without any, and
    for plain functions)."""
    for module in modules:
        if not isinstance(module, torch.nn.Module):
            continue
        for tensor in (*module.parameters(), *module.buffers()):
            return tensor.device
    return torch.device("cpu")


def to_cpu(value):
    """``value`` (a tensor, or dicts, lists and tuples of them) with every tensor on the CPU: a checkpoint
    written from a GPU run then loads on a machine without one."""
    if torch.is_tensor(value):
        return value.cpu()
    if isinstance(value, dict):
        return {key: to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(item) for item in value)
    return value
