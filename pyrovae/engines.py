"""Training engines: one optimisation step of an objective, and the optimizer state to checkpoint.

* :class:`ModuleEngine` (``engine="module"``): ``loss = elbo(model, guide)`` is an
  ``nn.Module`` and one fused ``torch.optim.Adam`` steps all its parameters. Pyro's ``SVI`` keeps one
  optimizer per parameter tensor and collects the parameters from a trace on every step; this
  engine does neither, and it needs no ``pyro.module`` registration.
* :class:`SVIEngine` (``engine="svi"``): ``pyro.infer.SVI`` with ``pyro.optim.Adam``, for users who
  want Pyro's own loop. It gives the same updates.
* :class:`CompiledEngine` (``engine="compiled"``): the module engine with the loss captured once per
  input shape and compiled (:mod:`pyrovae.capture`), so Pyro's Python runs at capture only; when the
  objective cannot be captured it falls back to the module engine with one warning naming the reason.
* ``engine="captured"``: the compiled engine's captured graph run without compiling it. Capture
  takes under a second and the graph runs the same tensor operations as the eager loss, so it gives
  the module engine's results (the same weights under the same seed), without Pyro's per-step
  Python: on ``vae/torch-example`` a step took 1.13× a hand-written eager step, against 1.73× for
  the module engine, on a busy host.
* ``engine="auto"`` (the default of :func:`pyrovae.train.fit` and the CLI): compiled when the run is
  long enough for compilation to pay (:data:`COMPILE_MIN_STEPS` steps), captured from
  :data:`CAPTURE_MIN_STEPS` steps, else the module engine.

The fused Adam kernel is several times faster on CPU than the per-tensor loop torch uses by
default (on a small VAE the optimizer step otherwise costs as much as the forward pass).

Under ``torchrun`` (:mod:`pyrovae.distributed`) the module engine steps the objective module
wrapped in ``DistributedDataParallel``, which averages the gradients over the ranks during
``backward``; the compiled engine's captured loss bypasses that wrapper, so it averages the
gradients itself in one all-reduce. ``SVI`` has no data-parallel form here.
"""

from __future__ import annotations

import warnings

import pyro
import pyro.optim
import torch
from pyro.infer import SVI, JitTrace_ELBO, JitTraceEnum_ELBO, JitTraceGraph_ELBO, JitTraceMeanField_ELBO

from pyrovae import distributed
from pyrovae.capture import CapturedLoss, CaptureError, ObjectiveModule

#: The names ``engine=`` accepts in :func:`make_engine`, :func:`pyrovae.train.fit` and the CLI (see the
#: module docstring).
ENGINES = ("auto", "module", "captured", "compiled", "svi")
UPDATES = ("both", "guide", "model")
#: ``engine="auto"`` compiles from this many training steps on. Compiling a VAE's loss takes 5-40 s
#: on a CPU (less when torch's compile cache holds it) and saves about 1 ms per step.
COMPILE_MIN_STEPS = 20_000
#: ``engine="auto"`` captures (without compiling) from this many steps on: capture costs about half a
#: second per batch shape and saves about 1 ms or more per step.
CAPTURE_MIN_STEPS = 2_000
JIT_OBJECTIVES = (JitTrace_ELBO, JitTraceEnum_ELBO, JitTraceGraph_ELBO, JitTraceMeanField_ELBO)


def is_jit(elbo) -> bool:
    """Whether ``elbo`` compiles the model and guide with ``torch.jit.trace`` (Pyro's ``Jit*`` objectives)."""
    return isinstance(elbo, JIT_OBJECTIVES)


def check_jit_side_effects(elbo, *modules) -> None:
    """Refuse a ``Jit*`` objective for modules with an update that ``torch.jit.trace`` would drop: a
    submodule whose ``jit_blocker`` names one (the VQ-VAE's EMA codebook). Buffers that the loss
    reads (annealed temperatures and betas) need no check: the traced graph reads them by reference."""
    if not is_jit(elbo):
        return
    for module in modules:
        for submodule in module.modules():
            reason = getattr(submodule, "jit_blocker", None)
            if reason:
                raise ValueError(reason)


def _check_lr(lr: float) -> None:
    if not lr > 0:
        raise ValueError(f"the learning rate must be positive, got {lr}")


class ModuleEngine:
    """``step(args, num_data)``: one Adam step on ``elbo(model, guide)(*args, num_data=num_data)``.

    Objectives with a ``loss_and_metrics(model, guide, *args, **kwargs)`` method (pyrovae's
    particle objectives) also return their metrics, e.g. the ELBO estimated from the particles of a
    variance loss. Across ranks (:func:`pyrovae.distributed.active`) the loss module, or for those
    objectives the :class:`~pyrovae.capture.ObjectiveModule`, runs inside ``DistributedDataParallel``.
    """

    def __init__(self, model, guide, elbo, lr: float, eps: float = 1e-8):
        _check_lr(lr)
        check_jit_side_effects(elbo, model, guide)
        if not (hasattr(elbo, "differentiable_loss") or hasattr(elbo, "loss_and_metrics")):
            raise ValueError(f"{type(elbo).__name__} has no differentiable_loss, which this engine steps; use engine "
                             "'svi' (or, for TraceGraph_ELBO, pyrovae.infer.DifferentiableTraceGraph_ELBO)")
        self.model, self.guide, self.elbo = model, guide, elbo
        self.loss_module = elbo(model, guide)
        self.optimizer = torch.optim.Adam(self.loss_module.parameters(), lr=lr, eps=eps, fused=True)
        #: Which parameters the next steps update: ``"both"``, ``"guide"`` or ``"model"`` (see :meth:`update_only`).
        self.updating = "both"
        # Pyro's JIT objectives find their parameters through pyro.module registration.
        self.needs_registration = is_jit(elbo)
        self._with_metrics = hasattr(elbo, "loss_and_metrics")
        self.parallel = None
        if distributed.active():
            if is_jit(elbo):
                raise ValueError("Pyro's JIT objectives cannot run data-parallel; use Trace_ELBO under torchrun")
            self.parallel = distributed.wrap(ObjectiveModule(elbo, model, guide) if self._with_metrics
                                             else self.loss_module)

    def step(self, args: tuple, num_data: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One optimisation step on the batch ``args`` (a subsample of ``num_data`` examples): the
        loss and the objective's metrics, both detached."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.parallel is not None:
            output = self.parallel(*args, num_data=num_data)
            loss, metrics = output if self._with_metrics else (output, {})
        elif self._with_metrics:
            loss, metrics = self.elbo.loss_and_metrics(self.model, self.guide, *args, num_data=num_data)
        else:
            loss, metrics = self.loss_module(*args, num_data=num_data), {}
        loss.backward()
        self._step_optimizer()
        return loss.detach(), metrics

    def update_only(self, which: str) -> None:
        """Update only the guide's parameters (``"guide"``), only the model's (``"model"``) or both
        (``"both"``) from the next step on: alternating the first two is stochastic variational EM."""
        if which not in UPDATES:
            raise ValueError(f"updates must be one of {UPDATES}, got {which!r}")
        self.updating = which

    def _step_optimizer(self) -> None:
        if self.updating != "both":
            # Adam skips a parameter whose gradient is None: its value and its moments stay as they are.
            frozen = self.model if self.updating == "guide" else self.guide
            for parameter in frozen.parameters():
                parameter.grad = None
        self.optimizer.step()

    def set_lr(self, lr: float) -> None:
        """Set the optimizer's learning rate (a schedule calls it between epochs)."""
        _check_lr(lr)
        self.set_adam_option("lr", lr)

    def set_adam_option(self, name: str, value: float) -> None:
        """Set Adam's ``name`` (``"lr"``, ``"eps"``) for the next steps."""
        for group in self.optimizer.param_groups:
            group[name] = value

    def state_dict(self) -> dict:
        """The optimizer's state, to checkpoint."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore the optimizer's state from :meth:`state_dict`."""
        self.optimizer.load_state_dict(state)


class SVIEngine:
    """``step(args, num_data)``: ``pyro.infer.SVI.step`` with ``pyro.optim.Adam``."""

    needs_registration = True

    def __init__(self, model, guide, elbo, lr: float, eps: float = 1e-8):
        _check_lr(lr)
        check_jit_side_effects(elbo, model, guide)
        if distributed.active():
            raise ValueError("engine 'svi' cannot run data-parallel under torchrun; use engine 'module' or 'compiled'")
        self.optimizer = pyro.optim.Adam({"lr": lr, "eps": eps, "fused": True})
        self.svi = SVI(model, guide, self.optimizer, elbo)

    def step(self, args: tuple, num_data: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One ``SVI.step`` on the batch ``args``: the loss, and no metrics."""
        return torch.tensor(self.svi.step(*args, num_data=num_data)), {}

    def set_lr(self, lr: float) -> None:
        """Set the optimizer's learning rate (a schedule calls it between epochs)."""
        _check_lr(lr)
        self.set_adam_option("lr", lr)

    def set_adam_option(self, name: str, value: float) -> None:
        """Set Adam's ``name`` (``"lr"``, ``"eps"``) for the next steps."""
        # Pyro creates one torch optimizer per parameter when the parameter is first seen; new ones
        # read pt_optim_args. After a resume, a checkpointed state waits to be loaded into each new
        # optimizer and would bring its old setting with it: set it there too.
        self.optimizer.pt_optim_args[name] = value
        for torch_optimizer in self.optimizer.optim_objs.values():
            for group in torch_optimizer.param_groups:
                group[name] = value
        for state in self.optimizer._state_waiting_to_be_consumed.values():
            for group in state["param_groups"]:
                group[name] = value

    def state_dict(self) -> dict:
        """The state of Pyro's optimizer (one Adam per parameter), to checkpoint."""
        return self.optimizer.get_state()

    def load_state_dict(self, state: dict) -> None:
        """Restore the state of Pyro's optimizer from :meth:`state_dict`."""
        self.optimizer.set_state(state)


class CompiledEngine(ModuleEngine):
    """``step(args, num_data)``: one Adam step on the captured (and compiled) loss of ``elbo``.

    The step is a cache lookup by input shape, a call of the compiled graph, ``backward`` and the
    fused Adam step. ``compile=False`` runs the captured graph uncompiled, which gives exactly the
    eager loss and gradients under the same seed. For an objective with ``gradient_hooks`` (DReG) the
    graph returns the gradients as well, and they are assigned instead of calling ``backward``
    (:mod:`pyrovae.capture`). If capture fails, the engine warns once with the
    reason and runs every step eagerly (as :class:`ModuleEngine`); ``fallback_reason`` keeps it.
    """

    def __init__(self, model, guide, elbo, lr: float, eps: float = 1e-8, compile: bool = True):
        super().__init__(model, guide, elbo, lr, eps)
        self.needs_registration = False
        hooks = getattr(elbo, "gradient_hooks", False)
        self.captured = CapturedLoss(elbo, model, guide, compile=compile, gradients=hooks)
        self.fallback_reason: str | None = None
        if is_jit(elbo):
            self._fall_back("Pyro's JIT objectives trace the model themselves; use Trace_ELBO with this engine")

    def _fall_back(self, reason: str) -> None:
        self.fallback_reason = reason
        self.needs_registration = is_jit(self.elbo)
        name = "compiled" if self.captured.compile else "captured"
        warnings.warn(f"engine {name!r} runs eagerly instead: {reason}", RuntimeWarning, stacklevel=3)

    def step(self, args: tuple, num_data: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One step through the captured, compiled loss (captured at the batch's first shape); the
        module engine's step once capture has failed."""
        if self.fallback_reason is None:
            self.optimizer.zero_grad(set_to_none=True)
            try:
                loss, metrics, *gradients = self.captured(args, num_data)
            except CaptureError as error:
                self._fall_back(str(error))
            else:
                if gradients:  # the graph computed them (an objective with gradient hooks)
                    for parameter, gradient in zip(self.captured.trainable, gradients[0]):
                        parameter.grad = gradient
                else:
                    loss.backward()
                distributed.average_gradients(self.loss_module.parameters())
                self._step_optimizer()
                return loss.detach(), {key: value.detach() for key, value in metrics.items()}
        return super().step(args, num_data)


def resolve_engine(name: str, num_steps: int) -> str:
    """``"auto"`` becomes ``"compiled"`` for runs of at least :data:`COMPILE_MIN_STEPS` steps, ``"captured"``
    from :data:`CAPTURE_MIN_STEPS`, else ``"module"``."""
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES[1:]} (or 'auto' through resolve_engine), got {name!r}")
    if name != "auto":
        return name
    if num_steps >= COMPILE_MIN_STEPS:
        return "compiled"
    return "captured" if num_steps >= CAPTURE_MIN_STEPS else "module"


def make_engine(name: str, model, guide, elbo, lr: float, eps: float = 1e-8):
    """The engine called ``name`` (one of :data:`ENGINES` other than ``"auto"``, see :func:`resolve_engine`),
    stepping with Adam at learning rate ``lr`` and ``eps`` (Burda et al. 2016 use 1e-4)."""
    if name == "module":
        return ModuleEngine(model, guide, elbo, lr, eps)
    if name in ("captured", "compiled"):
        return CompiledEngine(model, guide, elbo, lr, eps, compile=name == "compiled")
    if name == "svi":
        return SVIEngine(model, guide, elbo, lr, eps)
    raise ValueError(f"engine must be one of {ENGINES[1:]} (or 'auto' through resolve_engine), got {name!r}")
