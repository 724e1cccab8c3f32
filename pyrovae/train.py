"""Training: stochastic variational inference over minibatches, with checkpoints and resume.

:func:`fit` minimises any Pyro objective ``elbo`` (``Trace_ELBO``, ``TraceEnum_ELBO``, pyrovae's
variance losses, ...) for a ``model``/``guide`` pair of ``nn.Module``\\ s, composing an engine
(:mod:`pyrovae.engines`), one epoch (:func:`run_epoch`), the per-epoch evaluation
(:func:`evaluate_epoch`) and a run directory's records (:mod:`pyrovae.checkpoint`).

Each batch is passed to the model as the model's :class:`~pyrovae.validation.InputSpec` declares:
shaped ``(B, *shape)``, with its labels when the model takes them.

``device`` puts the model, the guide and the data sets on one device once, before the first step.
Under ``torchrun`` (a process group of several ranks, :mod:`pyrovae.distributed`) the same call
trains one run across the ranks: each steps on its shard of every global batch of ``batch_size``,
the losses and metrics are reduced over the ranks, and only rank 0 writes the run directory.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from pyro.infer.util import is_validation_enabled
from tqdm.auto import tqdm

from pyrovae import distributed
from pyrovae.checkpoint import (
    METRICS,
    RUN_FILES,
    Checkpointer,
    CheckpointError,
    History,
    RunExistsError,
    TrainingDivergedError,
    check_finite,
    holds_run,
    load_weights,
    rng_state,
    set_rng_state,
)
from pyrovae.data import Dataset
from pyrovae.devices import module_device, resolve_device
from pyrovae.distributed import DistributedError
from pyrovae.engines import is_jit, make_engine, resolve_engine
from pyrovae.evaluate import input_spec, mean_elbo, set_plate_nesting

__all__ = ["DistributedError", "History", "RunExistsError", "TrainingDivergedError", "default_eval_elbo", "fit",
           "run_epoch"]


def default_eval_elbo(elbo, model=None) -> pyro.infer.ELBO:
    """The objective used for the test ELBO: ``TraceEnum_ELBO`` (same plate nesting) when training
    enumerates discrete latents, otherwise a single-particle ``Trace_ELBO``, whatever the training
    objective (a variance loss, say) optimises."""
    nesting = getattr(model, "max_plate_nesting", float("inf"))
    if isinstance(elbo, TraceEnum_ELBO):
        return TraceEnum_ELBO(max_plate_nesting=elbo.max_plate_nesting)
    return Trace_ELBO(max_plate_nesting=nesting)


def _check_options(epochs, batch_size, lr, max_seconds) -> None:
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")


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


def alternation(guide_steps: int, model_steps: int):
    """``phase(step) -> "guide" | "model"``: ``guide_steps`` guide-only steps, then ``model_steps``
    model-only steps, and again (stochastic variational EM: Yang 2022, §5.2, Fig. 3)."""
    for name, value in (("guide_steps", guide_steps), ("model_steps", model_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"alternate needs positive step counts, got {name}={value!r}")

    def phase(step: int) -> str:
        return "guide" if step % (guide_steps + model_steps) < guide_steps else "model"

    return phase


def run_epoch(engine, train: Dataset, spec, batch_size: int, generator: torch.Generator, drop_last: bool = False,
              progress: bool = False, epoch: int = 1, epochs: int | None = None, where: str = "", phase=None) -> dict:
    """One pass over ``train``: ``{"train_loss": ..., "train_<metric>": ...}`` per example.

    ``phase(step)`` (see :func:`alternation`) names, for each step counted over the whole run, which
    parameters it updates. Raises :class:`TrainingDivergedError` naming the step at the first
    non-finite loss. Across ranks, each steps on its shard of every global batch of ``batch_size``
    and the row is the mean over the ranks (one all-reduce per epoch).
    """
    num_batches = len(train) // batch_size if drop_last else math.ceil(len(train) / batch_size)
    description = f"epoch {epoch}/{epochs}" if epochs else f"epoch {epoch}"
    totals: dict[str, torch.Tensor] = {}
    loss_total = torch.zeros((), device=train.x.device)
    shard = (distributed.rank(), distributed.world_size())
    bar = tqdm(train.batches(batch_size, generator, drop_last=drop_last, shard=shard), total=num_batches,
               disable=not progress, desc=description, leave=False)
    steps = 0
    for step, (x, y) in enumerate(bar):
        steps = step + 1
        if phase is not None:
            engine.update_only(phase((epoch - 1) * num_batches + step))
        loss, metrics = engine.step(spec.arguments(x, y), len(train))
        if not torch.isfinite(loss):
            raise TrainingDivergedError(f"non-finite loss {float(loss)} at epoch {epoch}, step {step + 1}; {where}")
        loss_total = loss_total + loss
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value.detach()
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{float(loss_total) / (step + 1) / len(train):.3f}")
    keys = sorted(totals)
    sums = distributed.all_reduce(torch.stack([loss_total, *(torch.as_tensor(totals[k]) for k in keys)]).double())
    per_example = (sums / max(steps, 1) / len(train)).tolist()
    row = {"train_loss": per_example[0]}
    row.update({f"train_{key}": value for key, value in zip(keys, per_example[1:])})
    return row


def evaluate_epoch(model, guide, test: Dataset | None, eval_elbo, diagnostics: dict | None, train: Dataset) -> dict:
    """The per-epoch evaluation: ``test_elbo`` and each diagnostic (on the test set, else the training set).

    Across ranks each evaluates its contiguous part of the data and the sums are added up.
    """
    rank, world = distributed.rank(), distributed.world_size()
    objectives = {"test_elbo": eval_elbo} if test is not None else {}
    objectives.update(diagnostics or {})
    if not objectives:
        return {}
    data = test if test is not None else train
    part = data.shard(rank, world) if world > 1 else data
    sums = [mean_elbo(model, guide, part, objective) * len(part) if len(part) else 0.0
            for objective in objectives.values()]
    totals = distributed.all_reduce(torch.tensor(sums, dtype=torch.float64), op="sum")
    return dict(zip(objectives, (total / len(data) for total in totals.tolist())))


def _prepare_run_dir(run_dir: Path | None, resume: bool, overwrite: bool) -> Checkpointer | None:
    if run_dir is None:
        if resume:
            raise ValueError("resume=True needs the run_dir of the run to continue")
        return None
    checkpointer = Checkpointer(run_dir)
    if resume:
        if not checkpointer.exists():
            raise CheckpointError(f"cannot resume: no checkpoint at {checkpointer.path}")
        return checkpointer
    if holds_run(run_dir):
        if not overwrite:
            raise RunExistsError(f"{run_dir} already holds a run; pass resume=True to continue it or overwrite=True "
                                 "to replace it (CLI: --resume or --force)")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    return checkpointer


def fit(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    elbo: pyro.infer.ELBO,
    train: Dataset,
    test: Dataset | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    adam_eps: float = 1e-8,
    seed: int = 0,
    run_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    engine: str = "auto",
    eval_elbo: pyro.infer.ELBO | None = None,
    config: dict | None = None,
    progress: bool = True,
    epoch_callback=None,
    max_seconds: float | None = None,
    lr_schedule=None,
    diagnostics: dict[str, pyro.infer.ELBO] | None = None,
    validate_every_step: bool = False,
    alternate: tuple[int, int] | None = None,
    device: str | torch.device | None = None,
    tensorboard=None,
) -> History:
    """Train ``model``/``guide`` by minimising ``elbo`` on minibatches of ``train``.

    Args:
        model, guide: ``nn.Module``\\ s whose ``forward(*inputs, num_data=None)`` are the Pyro model and
            guide; ``inputs`` follow the model's ``inputs`` spec (``x``, or ``x, y`` for a model that takes labels).
        elbo: any ``pyro.infer.ELBO`` instance; its ``max_plate_nesting`` is taken from the model's when unset.
        train, test: :class:`~pyrovae.data.Dataset`\\ s (``Dataset.from_tensor(x, y)`` for your own
            tensors); the test ELBO (nats per example) is logged each epoch.
        epochs, batch_size, lr, adam_eps, seed: optimisation settings (Adam with ``eps=adam_eps``).
            ``seed`` seeds the batches and the noise; seed the initial weights yourself before
            building the networks (the CLI does).
        run_dir: where ``config.json``, ``metrics.jsonl`` and the checkpoints go (nothing is written if ``None``).
        resume: continue from ``run_dir``'s checkpoint; ``epochs`` is the new total, recorded in ``config.json``.
        overwrite: replace a run already in ``run_dir``; without it (or ``resume``) an existing run
            raises :class:`~pyrovae.checkpoint.RunExistsError`.
        engine: ``"module"`` (one torch optimizer over ``elbo(model, guide)``), ``"compiled"`` (the
            same with the loss captured and compiled per batch shape, :mod:`pyrovae.capture`),
            ``"captured"`` (captured, not compiled: the module engine's results without Pyro's
            per-step Python), ``"svi"`` (``pyro.infer.SVI``), or ``"auto"``: compiled for runs of
            20,000 steps or more, captured from 2,000, else module (see
            :func:`pyrovae.engines.resolve_engine`). Pyro's ``JitTrace_ELBO`` (and
            the other ``Jit*`` objectives) work with module and svi (compiled and captured run them
            eagerly, as module): their traced graph fixes the batch size, so the last, smaller batch
            of each epoch is dropped, and it reads the annealed buffers (temperature, beta) by
            reference, so schedules apply. They are refused for a model whose forward pass updates
            its own state (the VQ-VAE's EMA codebook, ``ema=True``), since ``torch.jit.trace``
            drops that update (:func:`pyrovae.engines.check_jit_side_effects`); every engine
            applies such an update once per step with the other objectives. Objectives without
            ``differentiable_loss`` (Pyro's ``TraceGraph_ELBO``) need svi.
        eval_elbo: objective for the test ELBO (default: :func:`default_eval_elbo`).
        config: extra settings recorded in ``config.json``.
        epoch_callback: called as ``callback(epoch, row)`` after each epoch's evaluation; may add keys to ``row``.
        max_seconds: a wall-time budget: no epoch starts once this many seconds of training have passed.
        lr_schedule: ``schedule(epoch, seconds) -> lr``, applied before each epoch (``epoch`` counts
            from 0, ``seconds`` is the training time so far).
        diagnostics: more objectives evaluated each epoch on the test set (the training set if there
            is none), logged as ``-loss`` per example under their names, e.g.
            ``{"true_discrete_bound": TrueDiscreteBound()}`` next to a relaxed objective.
        alternate: ``(guide_steps, model_steps)``: update only the guide for ``guide_steps`` steps,
            then only the model for ``model_steps``, and so on (stochastic variational EM; Yang
            2022, §5.2); ``None`` updates both at every step. Needs an engine other than svi.
        validate_every_step: keep Pyro's validation and the models' data checks on for every step.
            By default both run on the first batch only (shapes and supports do not change between
            batches; a NaN is caught by the loss check), which removes their per-step cost.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (see :func:`pyrovae.devices.resolve_device`);
            the model, the guide and the data sets are moved there once. ``None``: where the model is.
            Under ``torchrun``, ``"cuda"`` is each rank's own GPU.
        tensorboard: a folder (or a :class:`pyrovae.tensorboard.TensorBoardLog`) to log each
            epoch's metrics to as TensorBoard scalars; needs ``pip install "pyrovae[tensorboard]"``.

    Across ranks (a process group started by ``torchrun``, see :mod:`pyrovae.distributed`):
    ``batch_size`` is the global batch, split evenly over the ranks (it must be divisible by their
    number); each rank draws its own noise, seeded by ``seed``, the epoch and its rank; the rows of
    the history are the same on every rank; only rank 0 writes ``run_dir`` and the TensorBoard log.

    Returns:
        The :class:`~pyrovae.checkpoint.History` of per-epoch metrics: ``train_loss`` (objective per
        example, averaged over the epoch), ``train_elbo`` (for objectives that report it, e.g.
        :class:`~pyrovae.infer.VarianceELBO` with the module engine: the ELBO of the training
        particles), ``test_elbo``, one entry per diagnostic, ``seconds``.

    Raises:
        TrainingDivergedError: a step returned a non-finite loss, or a parameter became non-finite;
            the last good checkpoint is kept.
        DistributedError: another rank stopped or did not answer; the last good checkpoint is kept.
    """
    _check_options(epochs, batch_size, lr, max_seconds)
    phase = alternation(*alternate) if alternate is not None else None
    if phase is not None and engine == "svi":
        raise ValueError("alternate needs the module, captured or compiled engine (SVI updates every parameter it sees)")
    _check_dataset(train, "train")
    if test is not None:
        _check_dataset(test, "test")
    world = distributed.world_size()
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {world} ranks: the global batch is "
                         "split evenly across them")
    _check_tensorboard(tensorboard)
    device = resolve_device(device) if device is not None else module_device(model, guide)
    model.to(device), guide.to(device)
    train = train.to(device)
    test = test.to(device) if test is not None else None
    spec = input_spec(model, train)
    for objective in (elbo, eval_elbo, *(diagnostics or {}).values()):
        if objective is not None:
            set_plate_nesting(objective, model)
    # Data the model refuses must not cost an existing run: check before overwrite deletes it.
    _check_first_batch(model, guide, spec, train, batch_size, seed)
    checkpointer = distributed.run_on_main(_prepare_run_dir, Path(run_dir) if run_dir is not None else None,
                                           resume, overwrite)

    pyro.set_rng_seed(seed)
    # Pyro's parameter store is global: a stale entry under a module's name would shadow its
    # parameters in SVI (pyro.module hands the stored tensor to the optimizer), so start clean.
    pyro.clear_param_store()
    generator = torch.Generator().manual_seed(seed)
    engine = resolve_engine(engine, epochs * math.ceil(len(train) / batch_size))
    trainer = make_engine(engine, model, guide, elbo, lr, adam_eps)
    eval_elbo = eval_elbo or default_eval_elbo(elbo, model)
    history = History()
    if resume:
        # Read once, by rank 0, and handed to every rank: the other nodes need not see the file.
        history = _restore(*distributed.run_on_main(_read_checkpoint, checkpointer), model, guide, trainer,
                           generator)
        # The optimizer state brings the learning rate it was saved with; the run's rate is this call's.
        trainer.set_lr(lr)
    writes = checkpointer is not None and distributed.is_main()
    if writes:
        settings = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, engine=engine,
                        objective=type(elbo).__name__, dataset=train.name, num_train=len(train),
                        binarize=train.binarize, dequantize=train.dequantize)
        checkpointer.write_config({**settings, **(config or {}), "epochs": epochs, "engine_used": engine,
                                   "device": str(device), "world_size": world, "global_batch_size": batch_size,
                                   "rank_batch_size": batch_size // world})

    # A traced (JIT) objective bakes the batch size into its graph: every batch must have the same size.
    drop_last = is_jit(elbo)
    if drop_last and len(train) < batch_size:
        raise ValueError(f"a JIT objective needs full batches: {len(train)} examples < batch_size {batch_size}")
    where = lambda: (f"last good checkpoint: {checkpointer.path}" if checkpointer and checkpointer.exists()  # noqa: E731
                     else "no checkpoint written yet")
    trained_seconds = sum(row["seconds"] for row in history.rows)
    validation = validate_every_step and is_validation_enabled()
    progress = progress and distributed.is_main()
    log, owns_log = _open_tensorboard(tensorboard)
    try:
        with pyro.settings.context(pyrovae_check_data=validate_every_step,
                                   pyrovae_register_modules=trainer.needs_registration), \
                pyro.validation_enabled(validation):
            for epoch in range(history.epochs_done, epochs):
                if max_seconds is not None and trained_seconds >= max_seconds:
                    break
                if lr_schedule is not None:
                    trainer.set_lr(lr_schedule(epoch, trained_seconds))
                if world > 1:
                    # Each rank its own noise, which a resumed run (with any number of ranks) draws again.
                    pyro.set_rng_seed(_rank_seed(seed, epoch, distributed.rank()))
                began = time.perf_counter()
                model.train(), guide.train()
                row = {"epoch": epoch + 1}
                row.update(run_epoch(trainer, train, spec, batch_size, generator, drop_last, progress,
                                     epoch + 1, epochs, where(), phase))
                model.eval(), guide.eval()
                row.update(evaluate_epoch(model, guide, test, eval_elbo, diagnostics, train))
                if epoch_callback is not None:
                    epoch_callback(epoch + 1, row)
                # The slowest rank's time, so that every rank makes the same max_seconds decision.
                row["seconds"] = float(distributed.all_reduce(torch.tensor(time.perf_counter() - began), op="max"))
                trained_seconds += row["seconds"]
                history.rows.append(row)
                if progress:
                    tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in row.items()))
                check_finite(epoch + 1, model=model, guide=guide)
                if writes:
                    checkpointer.save(_state(epoch + 1, model, guide, trainer, generator), history)
                if log is not None:
                    log.scalars(row, epoch + 1)
    except RuntimeError as error:
        if world > 1 and not isinstance(error, TrainingDivergedError) and distributed.is_communication_error(error):
            raise distributed.lost_rank_error(error, where()) from None
        raise
    finally:
        if owns_log:
            log.close()
    return history


def _check_tensorboard(tensorboard) -> None:
    """Refuse a ``tensorboard`` argument that cannot work before anything is written."""
    if tensorboard is None:
        return
    from pyrovae.tensorboard import TensorBoardLog, check_available

    check_available()
    if not isinstance(tensorboard, (str, Path, TensorBoardLog)):
        raise TypeError(f"tensorboard must be a folder or a TensorBoardLog, got {type(tensorboard).__name__}")


def _open_tensorboard(tensorboard):
    """``(log, owned)``: ``fit``'s ``tensorboard`` as a log on rank 0 (``None`` elsewhere, or when not
    asked for), and whether ``fit`` opened it and so closes it."""
    from pyrovae.tensorboard import TensorBoardLog

    if tensorboard is None or not distributed.is_main():
        return None, False
    if isinstance(tensorboard, TensorBoardLog):
        return tensorboard, False
    return TensorBoardLog(tensorboard), True


def _rank_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def _state(epoch, model, guide, trainer, generator) -> dict:
    return {"epoch": epoch, "model": model.state_dict(), "guide": guide.state_dict(),
            "optimizer": trainer.state_dict(), "rng": rng_state(), "data_rng": generator.get_state()}


def _read_checkpoint(checkpointer: Checkpointer) -> tuple[dict, History, Path]:
    checkpoint = checkpointer.load()
    history = checkpointer.history(checkpoint["epoch"])
    if history.epochs_done != checkpoint["epoch"]:
        # Training would restart at the last recorded epoch and repeat the ones after it.
        raise CheckpointError(f"{checkpointer.path} holds epoch {checkpoint['epoch']} but {METRICS} records "
                              f"epochs up to {history.epochs_done}; restore the metrics file or train afresh")
    return checkpoint, history, checkpointer.path


def _restore(checkpoint: dict, history: History, path: Path, model, guide, trainer, generator) -> History:
    # Weights are copied into the modules' own Parameter objects (on their device), which pyro.module
    # registers afresh in the (cleared) parameter store on the next step.
    load_weights(checkpoint, model, guide, path)
    trainer.load_state_dict(checkpoint["optimizer"])
    set_rng_state(checkpoint["rng"])
    generator.set_state(checkpoint["data_rng"])
    return history


def load_checkpoint(run_dir, model, guide) -> dict:
    """Load the model and guide weights of ``run_dir``'s newest checkpoint; return the checkpoint."""
    checkpointer = Checkpointer(run_dir)
    checkpoint = checkpointer.load()
    load_weights(checkpoint, model, guide, checkpointer.path)
    return checkpoint
