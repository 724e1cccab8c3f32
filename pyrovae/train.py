"""Training: stochastic variational inference over minibatches, as a short loop plus callbacks.

:func:`fit` minimises any Pyro objective ``elbo`` (``Trace_ELBO``, ``TraceEnum_ELBO``, pyrovae's
variance losses, ...) for a ``model``/``guide`` pair of ``nn.Module``\\ s. The loop owns what every
run has: the device, the seed, the engine's steps (:mod:`pyrovae.engines`, :func:`run_epoch`), the
test ELBO, the finiteness checks and the reductions over ranks. Everything a run *may* have is a
callback (:mod:`pyrovae.callbacks`): the run directory and resume (``Checkpoint``), TensorBoard,
progress, diagnostics, a time budget, a learning-rate schedule and a model's own metrics.

Each batch is passed to the model as the model's :class:`~pyrovae.validation.InputSpec` declares:
shaped ``(B, *shape)``, with its labels when the model takes them.

``device`` puts the model, the guide and the data sets on one device once, before the first step.
Under ``torchrun`` (a process group of several ranks, :mod:`pyrovae.distributed`) the same call
trains one run across the ranks: each steps on its shard of every global batch of ``batch_size``,
the losses and metrics are reduced over the ranks, every rank takes the same decision to stop, and
callbacks write only on rank 0.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import pyro
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from pyro.infer.util import is_validation_enabled

from pyrovae import distributed, settings
from pyrovae.callbacks.base import Callback, Run, overrides
from pyrovae.checkpoint import Checkpointer, History, RunExistsError, TrainingDivergedError, check_finite, load_weights
from pyrovae.data import Dataset
from pyrovae.devices import module_device, resolve_device
from pyrovae.distributed import DistributedError
from pyrovae.engines import is_jit, make_engine, resolve_engine
from pyrovae.evaluate import mean_elbos_over_ranks
from pyrovae.placement import input_spec, set_plate_nesting

__all__ = ["DistributedError", "History", "RunExistsError", "TrainingDivergedError", "default_eval_elbo", "fit",
           "load_checkpoint", "run_epoch"]


def default_eval_elbo(elbo, model=None) -> pyro.infer.ELBO:
    """The objective used for the test ELBO: ``TraceEnum_ELBO`` (same plate nesting) when training
    enumerates discrete latents, otherwise a single-particle ``Trace_ELBO``, whatever the training
    objective (a variance loss, say) optimises."""
    nesting = getattr(model, "max_plate_nesting", float("inf"))
    if isinstance(elbo, TraceEnum_ELBO):
        return TraceEnum_ELBO(max_plate_nesting=elbo.max_plate_nesting)
    return Trace_ELBO(max_plate_nesting=nesting)


def _check_options(epochs, batch_size, lr, callbacks) -> None:
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    world = distributed.world_size()
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {world} ranks: the global batch is "
                         "split evenly across them")
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks must be pyrovae.callbacks.Callback instances, got {type(callback).__name__} "
                            "(wrap a function f(epoch, row) in OnEpochEnd(f))")


def _check_dataset(dataset, name: str) -> None:
    if not isinstance(dataset, Dataset):
        raise TypeError(f"{name} must be a pyrovae.data.Dataset (load_dataset or Dataset.from_tensor), "
                        f"got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError(f"{name} data set is empty")
    if not torch.isfinite(dataset.x).all():
        raise ValueError(f"{name} data contains {(~torch.isfinite(dataset.x)).sum().item()} NaN or infinite values")


def _check_first_batch(model, guide, spec, train: Dataset, batch_size: int, seed: int) -> None:
    # Shapes, dtype, support and labels, through the model's and guide's own checks; this runs
    # before seeding, so it consumes no randomness of the run.
    x, y = next(train.batches(batch_size, torch.Generator().manual_seed(seed)))
    args = spec.arguments(x, y)
    with pyro.poutine.block(), torch.no_grad(), pyro.settings.context(pyrovae_check_data=True):
        pyro.poutine.trace(guide).get_trace(*args, num_data=len(train))
        model(*args, num_data=len(train))


def run_epoch(engine, train: Dataset, spec, batch_size: int, generator: torch.Generator, drop_last: bool = False,
              epoch: int = 1, where: str = "", run: Run | None = None) -> dict:
    """One pass over ``train``: ``{"train_loss": ..., "train_<metric>": ...}`` per example.

    Raises :class:`TrainingDivergedError` naming the step at the first non-finite loss. Across
    ranks, each steps on its shard of every global batch of ``batch_size`` and the row is the mean
    over the ranks (one all-reduce per epoch). With a ``run``, its callbacks' per-step hooks are
    called (only those of callbacks that override them, so a run without any pays nothing).
    """
    num_batches = len(train) // batch_size if drop_last else math.ceil(len(train) / batch_size)
    callbacks = run.callbacks if run is not None else ()
    starts = [c.on_batch_start for c in callbacks if overrides(c, "on_batch_start")]
    ends = [c.on_batch_end for c in callbacks if overrides(c, "on_batch_end")]
    first = (epoch - 1) * num_batches
    totals: dict[str, torch.Tensor] = {}
    loss_total = torch.zeros((), device=train.x.device)
    shard = (distributed.rank(), distributed.world_size())
    steps = 0
    for step, (x, y) in enumerate(train.batches(batch_size, generator, drop_last=drop_last, shard=shard)):
        steps = step + 1
        for hook in starts:
            hook(first + step, run)
        loss, metrics = engine.step(spec.arguments(x, y), len(train))
        if not torch.isfinite(loss):
            raise TrainingDivergedError(f"non-finite loss {float(loss)} at epoch {epoch}, step {step + 1}; {where}")
        loss_total = loss_total + loss
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value.detach()
        for hook in ends:
            hook(first + step, loss, run)
    keys = sorted(totals)
    sums = distributed.all_reduce(torch.stack([loss_total, *(torch.as_tensor(totals[k]) for k in keys)]).double())
    per_example = (sums / max(steps, 1) / len(train)).tolist()
    row = {"train_loss": per_example[0]}
    row.update({f"train_{key}": value for key, value in zip(keys, per_example[1:])})
    return row


def fit(model: torch.nn.Module, guide: torch.nn.Module, elbo: pyro.infer.ELBO, train: Dataset,
        test: Dataset | None = None, epochs: int = 10, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
        engine: str = "auto", device: str | torch.device | None = None, callbacks=()) -> History:
    """Train ``model``/``guide`` by minimising ``elbo`` on minibatches of ``train``.

    Args:
        model, guide: ``nn.Module``\\ s whose ``forward(*inputs, num_data=None)`` are the Pyro model and
            guide; ``inputs`` follow the model's ``inputs`` spec (``x``, or ``x, y`` for a model that takes labels).
        elbo: any ``pyro.infer.ELBO`` instance; its ``max_plate_nesting`` is taken from the model's when unset.
        train, test: :class:`~pyrovae.data.Dataset`\\ s (``Dataset.from_tensor(x, y)`` for your own
            tensors); the test ELBO (nats per example, :func:`default_eval_elbo`) is logged each epoch.
        epochs, batch_size, lr, seed: Adam's settings. ``seed`` seeds the batches and the noise; seed
            the initial weights yourself before building the networks (the CLI does).
        engine: ``"module"``, ``"compiled"``, ``"captured"``, ``"svi"`` or ``"auto"`` (:mod:`pyrovae.engines`). A
            ``Jit*`` objective (module, svi) fixes the batch size (last batches are dropped) and is refused for
            a model updating its own state (:func:`pyrovae.engines.check_jit_side_effects`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (:func:`pyrovae.devices.resolve_device`; under
            ``torchrun`` each rank's own GPU): the pair and the data move there once; ``None``: the model's.
        callbacks: :class:`~pyrovae.callbacks.Callback`\\ s, called in this order at each point of the run
            (:mod:`pyrovae.callbacks`: ``Checkpoint(run_dir, resume=..., overwrite=...)``, ``Progress()``,
            ``TensorBoard``, ``Diagnostics``, ``TimeBudget``, a model's own, yours). Put ``Checkpoint``
            last: it records the keys and the state that the callbacks before it leave.

    Across ranks (``torchrun``, :mod:`pyrovae.distributed`) ``batch_size`` is the global batch, split evenly;
    each rank draws its own noise (``seed``, epoch, rank); rows are the same on every rank, and so is a stop.

    Returns:
        The :class:`~pyrovae.checkpoint.History` of per-epoch rows: ``train_loss`` (per example), ``train_elbo``
        (objectives that report it), ``test_elbo``, ``seconds`` (training and test ELBO), and callbacks' keys.

    Raises:
        TrainingDivergedError: a non-finite loss or parameter; the last good checkpoint is kept.
        DistributedError: another rank stopped or did not answer; the last good checkpoint is kept.
    """
    run = _start(model, guide, elbo, train, test, epochs, batch_size, lr, seed, engine, device, list(callbacks))
    try:
        with _step_settings(run.engine):
            for callback in run.callbacks:
                callback.on_fit_start(run)
            for epoch in range(run.epochs_done + 1, epochs + 1):
                for callback in run.callbacks:
                    callback.on_epoch_start(epoch, run)
                if _stopped(run):
                    break
                row = _train_and_evaluate(run, epoch)
                run.history.rows.append(row)
                for callback in run.callbacks:
                    callback.on_epoch_end(epoch, row, run)
                check_finite(epoch, model=run.model, guide=run.guide)
                if _stopped(run):
                    break
    except RuntimeError as error:
        if distributed.world_size() > 1 and not isinstance(error, TrainingDivergedError) \
                and distributed.is_communication_error(error):
            raise distributed.lost_rank_error(error, _where(run)) from None
        raise
    finally:
        for callback in run.callbacks:
            callback.on_fit_end(run)
    return run.history


def _start(model, guide, elbo, train, test, epochs, batch_size, lr, seed, engine, device, callbacks) -> Run:
    """The run before its first epoch: arguments checked, everything on one device, the first batch
    accepted by the model (before any callback can touch a run directory), the seed set and the engine built."""
    _check_options(epochs, batch_size, lr, callbacks)
    _check_dataset(train, "train")
    if test is not None:
        _check_dataset(test, "test")
    device = resolve_device(device) if device is not None else module_device(model, guide)
    model.to(device), guide.to(device)
    train = train.to(device)
    test = test.to(device) if test is not None else None
    spec = input_spec(model, train)
    set_plate_nesting(elbo, model)
    _check_first_batch(model, guide, spec, train, batch_size, seed)
    # A traced (JIT) objective bakes the batch size into its graph: every batch must have the same size.
    if is_jit(elbo) and len(train) < batch_size:
        raise ValueError(f"a JIT objective needs full batches: {len(train)} examples < batch_size {batch_size}")
    batches = len(train) // batch_size if is_jit(elbo) else math.ceil(len(train) / batch_size)
    pyro.set_rng_seed(seed)
    # Pyro's parameter store is global: a stale entry under a module's name would shadow its
    # parameters in SVI (pyro.module hands the stored tensor to the optimizer), so start clean.
    pyro.clear_param_store()
    name = resolve_engine(engine, epochs * math.ceil(len(train) / batch_size))
    return Run(model, guide, elbo, train, test, spec, epochs, batch_size, lr, seed, name,
               make_engine(name, model, guide, elbo, lr), device, callbacks, default_eval_elbo(elbo, model),
               torch.Generator().manual_seed(seed), batches)


def _train_and_evaluate(run: Run, epoch: int) -> dict:
    """Epoch ``epoch``'s row: its training steps, the test ELBO and the seconds both took."""
    if distributed.world_size() > 1:
        # Each rank its own noise, which a resumed run (with any number of ranks) draws again.
        pyro.set_rng_seed(_rank_seed(run.seed, epoch - 1, distributed.rank()))
    began = time.perf_counter()
    run.model.train(), run.guide.train()
    row = {"epoch": epoch}
    row.update(run_epoch(run.engine, run.train, run.spec, run.batch_size, run.generator, is_jit(run.elbo), epoch,
                         _where(run), run))
    run.model.eval(), run.guide.eval()
    if run.test is not None:
        row.update(mean_elbos_over_ranks(run.model, run.guide, run.test, {"test_elbo": run.eval_elbo}))
    # The slowest rank's time, so that every rank makes the same time-budget decision.
    row["seconds"] = float(distributed.all_reduce(torch.tensor(time.perf_counter() - began), op="max"))
    return row


def _stopped(run: Run) -> bool:
    """Whether a callback stopped the run on any rank: every rank takes the same decision."""
    if distributed.world_size() > 1:
        run.stop = bool(distributed.all_reduce(torch.tensor(float(run.stop)), op="max"))
    return run.stop


@contextlib.contextmanager
def _step_settings(engine):
    """Pyro's validation and the data checks on the first batch only (by default, see
    :mod:`pyrovae.settings`), and module registration only for an engine that needs it."""
    every_step = settings.validate_every_step()
    with pyro.settings.context(pyrovae_check_data=every_step, pyrovae_register_modules=engine.needs_registration), \
            pyro.validation_enabled(every_step and is_validation_enabled()):
        yield


def _where(run: Run) -> str:
    return f"last good checkpoint: {run.checkpoint}" if run.checkpoint is not None else "no checkpoint written yet"


def _rank_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def load_checkpoint(run_dir, model, guide) -> dict:
    """Load the model and guide weights of ``run_dir``'s newest checkpoint; return the checkpoint."""
    checkpointer = Checkpointer(run_dir)
    checkpoint = checkpointer.load()
    load_weights(checkpoint, model, guide, checkpointer.path)
    return checkpoint
