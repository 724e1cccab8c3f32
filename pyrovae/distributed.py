"""Data-parallel training across the processes ``torchrun`` starts: the process group, which rank
this is, and the few collectives a run needs.

``torchrun --nproc_per_node=N -m pyrovae.cli train ...`` starts ``N`` processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`init_from_env`
joins them into one process group (gloo on the CPU, NCCL on GPUs). Then each rank

* trains on its shard of every global batch (:meth:`pyrovae.data.Dataset.batches` with ``shard``):
  one seeded permutation per epoch, shared by all ranks, cut into global batches of ``batch_size``,
  each split evenly across the ranks;
* steps the objective module ``elbo(model, guide)`` wrapped in
  :class:`~torch.nn.parallel.DistributedDataParallel`, which averages the gradients over the ranks;
* reduces its losses and metrics with the others (:func:`all_reduce`) so every rank sees the same
  numbers, and leaves the files to rank 0 (:func:`is_main`).

Why the data plate keeps ``num_data = N`` (the whole data set) on every rank: a rank's batch of
``b = B / W`` examples contributes ``(N / b) * sum_i log w_i``; DDP averages the ``W`` ranks'
gradients, ``(1 / W) * sum_r (N / b) * sum_{i in r} g_i = (N / B) * sum_i g_i``, which is the
gradient of the single-process loss on the global batch of ``B``. Terms outside the plate
(global latents) are counted once per rank and averaged, so once. Hence ``B`` must be divisible by
``W``, and a last, smaller global batch is cut to a multiple of ``W`` (under ``W`` examples an epoch
are left out).

Outside ``torchrun`` (or with one process) nothing here does anything: :func:`rank` is 0,
:func:`world_size` 1, and :func:`all_reduce` returns its input.
"""

from __future__ import annotations

import datetime
import os
import re

import torch
import torch.distributed as dist

#: Seconds a collective waits for a rank that does not answer, unless ``$PYROVAE_DDP_TIMEOUT`` says otherwise.
DEFAULT_TIMEOUT = 600


class DistributedError(RuntimeError):
    """The process group could not be set up, or another rank stopped or stopped answering."""


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher) as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _timeout() -> datetime.timedelta:
    text = os.environ.get("PYROVAE_DDP_TIMEOUT", str(DEFAULT_TIMEOUT))
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise DistributedError(f"PYROVAE_DDP_TIMEOUT must be a positive number of seconds, got {text!r}")
    return datetime.timedelta(seconds=seconds)


def init_from_env(device: torch.device) -> bool:
    """Join the process group that ``torchrun``'s environment describes; ``False`` for a single process.

    The backend is NCCL when ``device`` is a GPU, else gloo. Collectives give up after
    ``$PYROVAE_DDP_TIMEOUT`` seconds (default :data:`DEFAULT_TIMEOUT`) when a rank does not answer.
    """
    if not launched():
        return False
    if dist.is_initialized():
        return True
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise DistributedError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} "
                               "not set: start the ranks with torchrun")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=_timeout(),
                                device_id=device if device.type == "cuda" else None)
    except (RuntimeError, ValueError) as error:
        raise DistributedError(f"cannot join the {backend} process group: {_first_line(error)}") from None
    return True


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """Whether this process is one of several ranks of an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the process group, 0 when not running under ``torchrun``."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes in the process group, 1 when not running under ``torchrun``."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes the run's files (rank 0, or the only process)."""
    return rank() == 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def is_communication_error(error: BaseException) -> bool:
    """Whether ``error`` came from the process group (a rank that stopped, a timeout), not from the model."""
    if isinstance(error, DistributedError) or isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error)
    return any(mark in text for mark in ("gloo", "Gloo", "NCCL", "Connection closed", "Connection reset",
                                         "Broken pipe", "timed out", "Timed out"))


def lost_rank_error(error: BaseException, where: str) -> DistributedError:
    """The one-line error of a run whose collective failed: ``where`` says what is left (the last checkpoint)."""
    # gloo's messages start with the C++ source location: "[.../gloo/transport/tcp/pair.cc:545] Read error ..."
    detail = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", _first_line(error)).split(". This is typically")[0]
    return DistributedError(f"rank {rank()} of {world_size()}: another rank stopped or did not answer within "
                            f"the timeout ({detail}); {where}")


def all_reduce(tensor: torch.Tensor, op: str = "mean") -> torch.Tensor:
    """``tensor`` reduced over the ranks (``"sum"``, ``"mean"`` or ``"max"``), on every rank; a new tensor."""
    if not active():
        return tensor.clone()
    # NCCL reduces GPU tensors only, gloo CPU tensors best.
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    reduced = tensor.detach().to(device, copy=True)
    dist.all_reduce(reduced, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    if op == "mean":
        reduced /= world_size()
    return reduced.to(tensor.device)


def run_on_main(function, *args, **kwargs):
    """``function(*args, **kwargs)`` run by rank 0 only; every rank returns its result, or raises its exception.

    For what must happen once (choosing and preparing a run directory, reading a checkpoint) and
    may fail: a failure on rank 0 then stops every rank with the same message instead of leaving
    the others waiting for a collective.
    """
    if not active():
        return function(*args, **kwargs)
    outcome = [None]
    if is_main():
        try:
            outcome[0] = ("result", function(*args, **kwargs))
        except Exception as error:  # re-raised below, on every rank
            outcome[0] = ("error", error)
    dist.broadcast_object_list(outcome, src=0)
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


def wrap(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` (on its device), or itself for one process.

    ``static_graph``: a model or guide may hold parameters its loss never uses (a head a subclass
    ignores); DDP finds them in the first step, instead of failing in the second or searching the
    graph at every step as ``find_unused_parameters`` would. The objectives' graphs do not change
    between steps.
    """
    if not active():
        return module
    device = next(module.parameters()).device
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                                     static_graph=True)


def average_gradients(parameters) -> None:
    """Average the gradients of ``parameters`` over the ranks in one flat all-reduce (what DDP does,
    for a loss computed outside the DDP module: the compiled engine's captured graph)."""
    if not active():
        return
    parameters = [p for p in parameters if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world_size()
    for parameter, grad in zip(parameters, torch._utils._unflatten_dense_tensors(flat, grads)):
        parameter.grad = grad
