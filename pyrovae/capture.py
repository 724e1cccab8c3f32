"""An objective's loss captured once as a graph of tensor operations, then (optionally) compiled.

Pyro builds a loss by running the model and guide under effect handlers: on a small VAE this
Python costs about as much as the tensor work of a step. The tensor work is the same at every step
for a given input shape, so :class:`CapturedLoss` records it once with
:func:`torch.fx.experimental.proxy_tensor.make_fx` (the loss as a function of the parameters,
buffers and inputs, through :func:`torch.func.functional_call`) and then calls the recorded graph,
which holds only tensor operations (traced with ``pre_dispatch=True``, which keeps ``detach``: the
stop-gradients of surrogate losses and of the variance loss's samples). The noise draws are operations of the graph, so every call
draws fresh noise from torch's generator: run uncompiled, the graph gives exactly the eager loss
and gradients under the same seed. :func:`torch.compile` then fuses the graph (the compiled graph
draws from its own random stream, reproducibly under a seed).

An objective whose gradient relies on autograd hooks (DReG) says so in ``capture_blocker`` and is
not captured: a graph replays the forward operations, not hooks on intermediate tensors.

Capture needs a loss without host synchronisation: no ``.item()`` and no Python branch on a
tensor's value. pyrovae's objectives check values only when Pyro's validation is on, which
:func:`pyrovae.train.fit` keeps for the first batch only. Pyro's ``Trace_ELBO`` family reads
``.item()`` of the surrogate loss to subtract its value, and checks it for NaN; during capture,
:func:`_host_sync_free` makes those reads a ``detach()`` and the check a no-op, which gives the same
value and gradients (the training loop checks the loss after every step).
"""

from __future__ import annotations

import contextlib
import importlib
import time
import traceback

import pyro
import torch
from torch.func import functional_call

#: Pyro modules whose ``torch_item``/``warn_if_nan`` run inside a differentiable loss.
_PYRO_LOSS_MODULES = (
    "pyro.infer.trace_elbo",
    "pyro.infer.trace_mean_field_elbo",
    "pyro.infer.traceenum_elbo",
    "pyro.infer.tracegraph_elbo",
)


def _detached_item(value):
    return value.detach() if torch.is_tensor(value) else value


def _no_nan_warning(value, msg="", **kwargs):
    return value


@contextlib.contextmanager
def _host_sync_free():
    """Pyro's losses with ``.item()`` reads as ``detach()`` and no NaN check, for the duration of a capture."""
    saved = []
    for name in _PYRO_LOSS_MODULES:
        module = importlib.import_module(name)
        for attribute, replacement in (("torch_item", _detached_item), ("warn_if_nan", _no_nan_warning)):
            if hasattr(module, attribute):
                saved.append((module, attribute, getattr(module, attribute)))
                setattr(module, attribute, replacement)
    try:
        yield
    finally:
        for module, attribute, original in saved:
            setattr(module, attribute, original)


def _where(error: BaseException) -> str:
    """``file:line (function)`` of the innermost frame of Pyro's or pyrovae's code in the traceback."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/pyro/" in f.filename or "/pyrovae/" in f.filename or "/models/" in f.filename
            or "/guides/" in f.filename]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return "an unknown place"
    parts = frame.filename.replace("\\", "/").split("/")
    return f"{'/'.join(parts[-3:])}:{frame.lineno} ({frame.name})"


class CaptureError(RuntimeError):
    """The objective's loss could not be captured as a graph (the message says where)."""


class ObjectiveModule(torch.nn.Module):
    """``forward(*args, num_data) -> (loss, metrics)``: the objective's differentiable loss for
    ``model`` and ``guide`` (and the objective's metrics, for objectives with ``loss_and_metrics``)."""

    def __init__(self, elbo, model, guide):
        super().__init__()
        self.elbo, self.model, self.guide = elbo, model, guide

    def forward(self, *args, num_data: int | None = None):
        if hasattr(self.elbo, "loss_and_metrics"):
            return self.elbo.loss_and_metrics(self.model, self.guide, *args, num_data=num_data)
        return self.elbo.differentiable_loss(self.model, self.guide, *args, num_data=num_data), {}


class CapturedLoss:
    """``loss(args, num_data) -> (loss, metrics)`` from one captured graph per input signature.

    Args:
        elbo: the objective (a ``pyro.infer.ELBO``), through :class:`ObjectiveModule`.
        model, guide: the ``nn.Module``\\ s; their parameters and buffers are the graph's inputs, so
            an optimizer updating them in place is seen by the next call.
        compile: pass each captured graph through :func:`torch.compile`.

    Raises :class:`CaptureError` at the first call if the loss cannot be captured.
    """

    def __init__(self, elbo, model, guide, compile: bool = True):
        self.elbo, self.model, self.guide, self.compile = elbo, model, guide, compile
        self.module = ObjectiveModule(elbo, model, guide)
        named = dict(self.module.named_parameters())
        named.update(self.module.named_buffers())
        self.names = list(named)
        self.tensors = list(named.values())
        self.graphs: dict = {}
        #: Seconds spent capturing and compiling so far (reported by the engine's users).
        self.capture_seconds = 0.0

    def _capture(self, args, num_data):
        from torch.fx.experimental.proxy_tensor import make_fx

        blocker = getattr(self.elbo, "capture_blocker", None)
        if blocker:
            raise CaptureError(f"{type(self.elbo).__name__} cannot be captured: {blocker}")

        def loss(tensors, *inputs):
            return functional_call(self.module, dict(zip(self.names, tensors)), inputs, {"num_data": num_data})

        # Tracing runs the loss once on real tensors; fork_rng keeps that run's noise draws out of
        # the run's random stream, so the graph's first call draws what an eager step would.
        devices = [a.device for a in args if torch.is_tensor(a) and a.device.type == "cuda"]
        with _host_sync_free(), pyro.validation_enabled(False), pyro.poutine.block(), \
                pyro.settings.context(pyrovae_check_data=False, pyrovae_register_modules=False), \
                torch.random.fork_rng(devices=devices):
            try:
                graph = make_fx(loss, pre_dispatch=True)(self.tensors, *args)
            except Exception as error:  # make_fx raises many types; the message names the cause and the line
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise CaptureError(f"{type(self.elbo).__name__} could not be captured at {_where(error)}: "
                                   f"{first[:160]}") from error
        return torch.compile(graph, dynamic=False) if self.compile else graph

    def __call__(self, args: tuple, num_data: int):
        key = (num_data, tuple((tuple(a.shape), a.dtype, a.device) if torch.is_tensor(a) else a for a in args))
        graph = self.graphs.get(key)
        if graph is not None:
            return graph(self.tensors, *args)
        began = time.perf_counter()
        graph = self._capture(args, num_data)
        try:
            result = graph(self.tensors, *args)  # the first call compiles
        except Exception as error:  # torch.compile's backends raise many types
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CaptureError(f"compiling the captured {type(self.elbo).__name__} loss failed: {first[:200]}") from error
        self.capture_seconds += time.perf_counter() - began
        self.graphs[key] = graph
        return result
