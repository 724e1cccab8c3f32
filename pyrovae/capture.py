"""An objective's loss captured once as a graph of tensor operations, then (optionally) compiled.

Pyro builds a loss by running the model and guide under effect handlers: on a small VAE this
Python costs about as much as the tensor work of a step. The tensor work is the same at every step
for a given input shape, so :class:`CapturedLoss` records it once with
:func:`torch.fx.experimental.proxy_tensor.make_fx` (the loss as a function of the parameters,
buffers and inputs, through :func:`torch.func.functional_call`) and then calls the recorded graph,
which holds only tensor operations (traced with ``pre_dispatch=True``, which keeps ``detach``: the
stop-gradients of surrogate losses and of the variance loss's samples). The noise draws are operations of the graph, so every call
draws fresh noise from torch's generator: run uncompiled, the graph gives exactly the eager loss
and gradients under the same seed. :func:`torch.compile` then fuses the graph. Its noise draws stay
torch's own kernels (inductor's ``fallback_random``), so the compiled graph draws the same noise as
eager code under the same seed, and draws it fast: inductor's in-kernel Gaussian sampler is scalar,
and on ``vae/burda``'s K = 5000 evaluation its 250,000 draws per pass took 23.5 of 71 ms, against
under 2 ms for torch's vectorised ``normal_``.

An objective whose gradient relies on autograd hooks on intermediate tensors (DReG's reweighting
of the guide samples' gradients) says so with ``gradient_hooks``. A forward graph would drop the
hooks, so its loss is captured together with its gradients (``gradients=True``): the trace runs
``torch.autograd.grad`` on real tensors, the hooks run during that backward, and their
operations are recorded in the one graph, which returns the loss, the metrics and the gradients.

Capture needs a loss without host synchronisation: no ``.item()`` and no Python branch on a
tensor's value. pyrovae's objectives check values only when Pyro's validation is on, which
:func:`pyrovae.train.fit` keeps for the first batch only. Pyro's ``Trace_ELBO`` family reads
``.item()`` of the surrogate loss to subtract its value, and checks it for NaN; during capture,
``_host_sync_free`` makes those reads a ``detach()`` and the check a no-op, which gives the same
value and gradients (the training loop checks the loss after every step). ``TraceEnum_ELBO`` (and
:class:`~pyrovae.infer.TraceEnumMeanField_ELBO`) sums its costs against the enumerated values'
marginal probabilities after asking whether any of them is zero; during capture its ``Dice`` is
``MaskFreeDice`` (``pyrovae.infer.dice``), which zeroes those entries' costs without asking (the
same value and gradients), so enumerated objectives are captured too.
"""

from __future__ import annotations

import contextlib
import importlib
import time
import traceback

import pyro
import torch
from torch.func import functional_call

from pyrovae.infer.dice import MaskFreeDice

#: Pyro modules whose ``torch_item``/``warn_if_nan`` run inside a differentiable loss.
_PYRO_LOSS_MODULES = (
    "pyro.infer.trace_elbo",
    "pyro.infer.trace_mean_field_elbo",
    "pyro.infer.traceenum_elbo",
    "pyro.infer.tracegraph_elbo",
)


#: Pyro's classes replaced, during a capture, by a version that reads no tensor's value: (module, name, replacement).
_CAPTURABLE_CLASSES = (("pyro.infer.traceenum_elbo", "Dice", MaskFreeDice),)


def _detached_item(value):
    return value.detach() if torch.is_tensor(value) else value


def _no_nan_warning(value, msg="", **kwargs):
    return value


@contextlib.contextmanager
def _host_sync_free():
    """Pyro's losses with ``.item()`` reads as ``detach()``, no NaN check and :class:`MaskFreeDice`, for the
    duration of a capture."""
    saved = []
    replacements = [(name, attribute, replacement) for name in _PYRO_LOSS_MODULES
                    for attribute, replacement in (("torch_item", _detached_item), ("warn_if_nan", _no_nan_warning))]
    for name, attribute, replacement in [*replacements, *_CAPTURABLE_CLASSES]:
        module = importlib.import_module(name)
        if hasattr(module, attribute):
            saved.append((module, attribute, getattr(module, attribute)))
            setattr(module, attribute, replacement)
    try:
        yield
    finally:
        for module, attribute, original in saved:
            setattr(module, attribute, original)


@contextlib.contextmanager
def _buffers_kept(module: torch.nn.Module):
    """The module's buffers as they were on entry, restored on exit."""
    saved = [(buffer, buffer.detach().clone()) for buffer in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _where(error: BaseException) -> str:
    """``file:line (function)`` of the innermost frame outside torch in the traceback: the line of the
    model, guide, objective or Pyro that asked for what a graph cannot hold."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/torch/" not in f.filename.replace("\\", "/")]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return "an unknown place"
    parts = frame.filename.replace("\\", "/").split("/")
    return f"{'/'.join(parts[-3:])}:{frame.lineno} ({frame.name})"


def _bias_after_matmul(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``linear(x, W, b)`` rewritten as ``linear(x, W) + b`` in a graph about to be compiled.

    On the CPU, inductor lowers a biased linear layer to ``addmm``, which first copies the bias into
    every row of the output; as an ``add``, the bias fuses into the elementwise kernel that reads the
    product anyway (a decoder's likelihood, an activation). On ``vae/burda``'s K = 5000 evaluation
    pass that copy took 4.5 of 49 ms. Inductor does this rewrite itself on GPUs only. Only graphs
    captured without autograd (evaluation) are rewritten: in a training step the bias's gradient
    then becomes a column sum fused into an elementwise kernel, which made the compiled step slower
    (``bernoulli-vae/arm-linear``, DisARM: 0.946x to 0.932x a plain eager step without the rewrite;
    ``gmvae/yang``: 1.125x to 1.097x; CPU time, one thread).
    """
    linear = torch.ops.aten.linear.default
    for node in list(graph.graph.nodes):
        if node.op == "call_function" and node.target is linear and len(node.args) == 3 and node.args[2] is not None:
            x, weight, bias = node.args
            with graph.graph.inserting_after(node):
                product = graph.graph.call_function(linear, (x, weight))
            with graph.graph.inserting_after(product):
                biased = graph.graph.call_function(torch.ops.aten.add.Tensor, (product, bias))
            node.replace_all_uses_with(biased)
            graph.graph.erase_node(node)
    graph.recompile()
    return graph


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


class LogWeightsModule(torch.nn.Module):
    """``forward(*args) -> (K, B)``: the log weights ``log p(x, z_k) - log q(z_k | x)`` of
    ``objective.num_particles`` guide samples per example (the importance-sampled log-likelihood)."""

    def __init__(self, objective, model, guide):
        super().__init__()
        self.objective, self.model, self.guide = objective, model, guide

    def forward(self, *args):
        return self.objective.log_weights(self.model, self.guide, *args).values


class CapturedModule:
    """``captured(*args, **options)`` computes ``module(*args, **options)`` with one captured graph per
    input signature (shapes, dtypes, devices, and the values of ``options``, which must be hashable).

    Args:
        module: the ``nn.Module``; its parameters and buffers are the graph's inputs, so an optimizer
            updating them in place is seen by the next call.
        compile: pass each captured graph through :func:`torch.compile`.
        name: what the module computes, for error messages.
        blocker: why the module cannot be captured, if it cannot (then every call raises).
        gradients: the module returns ``(loss, metrics)``; capture its gradients with it, so that a
            call returns ``(loss, metrics, gradients)`` (one per tensor of :attr:`trainable`,
            ``None`` where unused), computed without autograd outside the graph.

    Raises :class:`CaptureError` at the first call of a signature if capture or compilation fails.
    """

    def __init__(self, module: torch.nn.Module, compile: bool = True, name: str = "loss", blocker: str | None = None,
                 gradients: bool = False):
        self.module, self.compile, self.name, self.blocker = module, compile, name, blocker
        self.gradients = gradients
        named = dict(module.named_parameters())
        named.update(module.named_buffers())
        self.names = list(named)
        self.tensors = list(named.values())
        self.graphs: dict = {}
        #: Seconds spent capturing and compiling so far.
        self.capture_seconds = 0.0

    def _capture(self, args, options):
        from torch.fx.experimental.proxy_tensor import make_fx

        if self.blocker:
            raise CaptureError(f"{self.name} cannot be captured: {self.blocker}")

        def function(tensors, *inputs):
            return functional_call(self.module, dict(zip(self.names, tensors)), inputs, options)

        def function_and_gradients(tensors, *inputs):
            loss, metrics = function(tensors, *inputs)
            trainable = [t for t, own in zip(tensors, self.tensors) if own.requires_grad]  # as self.trainable
            gradients = torch.autograd.grad(loss, trainable, allow_unused=True)
            return loss.detach(), {key: value.detach() for key, value in metrics.items()}, gradients

        # Tracing runs the module once on real tensors; fork_rng keeps that run's noise draws out of
        # the run's random stream, so the graph's first call draws what an eager call would, and
        # _buffers_kept undoes that run's in-place buffer updates (an EMA codebook's), so that the
        # graph's call applies the step's update once.
        devices = [a.device for a in args if torch.is_tensor(a) and a.device.type == "cuda"]
        with _host_sync_free(), pyro.validation_enabled(False), pyro.poutine.block(), \
                pyro.settings.context(pyrovae_check_data=False, pyrovae_register_modules=False), \
                torch.random.fork_rng(devices=devices), _buffers_kept(self.module):
            try:
                if self.gradients:  # traced below autograd: the backward, hooks included, is recorded
                    graph = make_fx(function_and_gradients)(self.tensors, *args)
                else:
                    graph = make_fx(function, pre_dispatch=True)(self.tensors, *args)
            except Exception as error:  # make_fx raises many types; the message names the cause and the line
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise CaptureError(f"{self.name} could not be captured at {_where(error)}: {first[:160]}") from error
        if not self.compile:
            return graph
        if not torch.is_grad_enabled():
            graph = _bias_after_matmul(graph)
        return torch.compile(graph, dynamic=False, options={"fallback_random": True})

    def __call__(self, *args, **options):
        key = (tuple(sorted(options.items())),
               tuple((tuple(a.shape), a.dtype, a.device) if torch.is_tensor(a) else a for a in args))
        graph = self.graphs.get(key)
        if graph is not None:
            return self._call(graph, args)
        began = time.perf_counter()
        graph = self._capture(args, options)
        try:
            result = self._call(graph, args)  # the first call compiles
        except Exception as error:  # torch.compile's backends raise many types
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CaptureError(f"compiling the captured {self.name} failed: {first[:200]}") from error
        self.capture_seconds += time.perf_counter() - began
        self.graphs[key] = graph
        return result

    def _call(self, graph, args):
        if not self.gradients:
            return graph(self.tensors, *args)
        with torch.no_grad():  # the graph holds its own backward
            return graph(self.tensors, *args)

    @property
    def trainable(self) -> list[torch.Tensor]:
        """The parameters that require gradients, in the order of a ``gradients=True`` call's gradients."""
        return [t for t in self.tensors if t.requires_grad]


class CapturedLoss(CapturedModule):
    """``captured((x, ...), num_data) -> (loss, metrics)``: an objective's loss (:class:`ObjectiveModule`)
    from one captured graph per input signature; see :class:`CapturedModule`. With
    ``gradients=True``, ``-> (loss, metrics, gradients)``, which an objective with
    ``gradient_hooks`` needs: without it, its capture raises :class:`CaptureError`."""

    def __init__(self, elbo, model, guide, compile: bool = True, gradients: bool = False):
        name = f"{type(elbo).__name__} loss"
        blocker = None
        if getattr(elbo, "gradient_hooks", False) and not gradients:
            blocker = "its gradient acts through hooks on intermediate tensors, which a forward graph drops " \
                      "(capture it with gradients=True)"
        super().__init__(ObjectiveModule(elbo, model, guide), compile, name, blocker, gradients)

    def __call__(self, args: tuple, num_data: int):
        return super().__call__(*args, num_data=num_data)
