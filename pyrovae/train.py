"""Training: stochastic variational inference over minibatches, with checkpoints and resume.

:func:`fit` minimises any Pyro objective ``elbo`` (``Trace_ELBO``, ``TraceEnum_ELBO``, pyrovae's
variance losses, ...) for a ``model``/``guide`` pair of ``nn.Module``\\ s, composing an engine
(:mod:`pyrovae.engines`), one epoch (:func:`run_epoch`), the per-epoch evaluation
(:func:`evaluate_epoch`) and a run directory's records (:mod:`pyrovae.checkpoint`).

Each batch is passed to the model as the model's :class:`~pyrovae.validation.InputSpec` declares:
shaped ``(B, *shape)``, with its labels when the model takes them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from pyro.infer.util import is_validation_enabled
from tqdm.auto import tqdm

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
from pyrovae.engines import is_jit, make_engine, resolve_engine
from pyrovae.evaluate import input_spec, mean_elbo, set_plate_nesting

__all__ = ["History", "RunExistsError", "TrainingDivergedError", "default_eval_elbo", "fit", "run_epoch"]


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
    non-finite loss.
    """
    num_batches = len(train) // batch_size if drop_last else math.ceil(len(train) / batch_size)
    description = f"epoch {epoch}/{epochs}" if epochs else f"epoch {epoch}"
    totals: dict[str, torch.Tensor] = {}
    loss_total = torch.zeros(())
    bar = tqdm(train.batches(batch_size, generator, drop_last=drop_last), total=num_batches, disable=not progress,
               desc=description, leave=False)
    for step, (x, y) in enumerate(bar):
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
    row = {"train_loss": float(loss_total) / num_batches / len(train)}
    row.update({f"train_{key}": float(value) / num_batches / len(train) for key, value in totals.items()})
    return row


def evaluate_epoch(model, guide, test: Dataset | None, eval_elbo, diagnostics: dict | None, train: Dataset) -> dict:
    """The per-epoch evaluation: ``test_elbo`` and each diagnostic (on the test set, else the training set)."""
    row = {}
    if test is not None:
        row["test_elbo"] = mean_elbo(model, guide, test, eval_elbo)
    for name, objective in (diagnostics or {}).items():
        row[name] = mean_elbo(model, guide, test if test is not None else train, objective)
    return row


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
            ``"svi"`` (``pyro.infer.SVI``), or ``"auto"``: compiled for runs of 20,000 steps or more,
            else module (see :func:`pyrovae.engines.resolve_engine`). Pyro's ``JitTrace_ELBO`` (and
            the other ``Jit*`` objectives) work with module and svi; their traced graph fixes the
            batch size, so the last, smaller batch of each epoch is dropped.
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
            2022, §5.2); ``None`` updates both at every step. Needs the module or compiled engine.
        validate_every_step: keep Pyro's validation and the models' data checks on for every step.
            By default both run on the first batch only (shapes and supports do not change between
            batches; a NaN is caught by the loss check), which removes their per-step cost.

    Returns:
        The :class:`~pyrovae.checkpoint.History` of per-epoch metrics: ``train_loss`` (objective per
        example, averaged over the epoch), ``train_elbo`` (for objectives that report it, e.g.
        :class:`~pyrovae.infer.VarianceELBO` with the module engine: the ELBO of the training
        particles), ``test_elbo``, one entry per diagnostic, ``seconds``.

    Raises:
        TrainingDivergedError: a step returned a non-finite loss, or a parameter became non-finite;
            the last good checkpoint is kept.
    """
    _check_options(epochs, batch_size, lr, max_seconds)
    phase = alternation(*alternate) if alternate is not None else None
    if phase is not None and engine == "svi":
        raise ValueError("alternate needs the module or compiled engine (SVI updates every parameter it sees)")
    _check_dataset(train, "train")
    if test is not None:
        _check_dataset(test, "test")
    spec = input_spec(model, train)
    for objective in (elbo, eval_elbo, *(diagnostics or {}).values()):
        if objective is not None:
            set_plate_nesting(objective, model)
    # Data the model refuses must not cost an existing run: check before overwrite deletes it.
    _check_first_batch(model, guide, spec, train, batch_size, seed)
    checkpointer = _prepare_run_dir(Path(run_dir) if run_dir is not None else None, resume, overwrite)

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
        history = _restore(checkpointer, model, guide, trainer, generator)
        # The optimizer state brings the learning rate it was saved with; the run's rate is this call's.
        trainer.set_lr(lr)
    if checkpointer is not None:
        settings = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, engine=engine,
                        objective=type(elbo).__name__, dataset=train.name, num_train=len(train),
                        binarize=train.binarize, dequantize=train.dequantize)
        checkpointer.write_config({**settings, **(config or {}), "epochs": epochs, "engine_used": engine})

    # A traced (JIT) objective bakes the batch size into its graph: every batch must have the same size.
    drop_last = is_jit(elbo)
    if drop_last and len(train) < batch_size:
        raise ValueError(f"a JIT objective needs full batches: {len(train)} examples < batch_size {batch_size}")
    where = lambda: (f"last good checkpoint: {checkpointer.path}" if checkpointer and checkpointer.exists()  # noqa: E731
                     else "no checkpoint written yet")
    trained_seconds = sum(row["seconds"] for row in history.rows)
    validation = validate_every_step and is_validation_enabled()
    with pyro.settings.context(pyrovae_check_data=validate_every_step,
                               pyrovae_register_modules=trainer.needs_registration), \
            pyro.validation_enabled(validation):
        for epoch in range(history.epochs_done, epochs):
            if max_seconds is not None and trained_seconds >= max_seconds:
                break
            if lr_schedule is not None:
                trainer.set_lr(lr_schedule(epoch, trained_seconds))
            began = time.perf_counter()
            model.train(), guide.train()
            row = {"epoch": epoch + 1}
            row.update(run_epoch(trainer, train, spec, batch_size, generator, drop_last, progress,
                                 epoch + 1, epochs, where(), phase))
            model.eval(), guide.eval()
            row.update(evaluate_epoch(model, guide, test, eval_elbo, diagnostics, train))
            if epoch_callback is not None:
                epoch_callback(epoch + 1, row)
            row["seconds"] = time.perf_counter() - began
            trained_seconds += row["seconds"]
            history.rows.append(row)
            if progress:
                tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            check_finite(epoch + 1, model=model, guide=guide)
            if checkpointer is not None:
                checkpointer.save(_state(epoch + 1, model, guide, trainer, generator), history)
    return history


def _state(epoch, model, guide, trainer, generator) -> dict:
    return {"epoch": epoch, "model": model.state_dict(), "guide": guide.state_dict(),
            "optimizer": trainer.state_dict(), "rng": rng_state(), "data_rng": generator.get_state()}


def _restore(checkpointer: Checkpointer, model, guide, trainer, generator) -> History:
    # Weights are copied into the modules' own Parameter objects, which pyro.module registers
    # afresh in the (cleared) parameter store on the next step.
    checkpoint = checkpointer.load()
    load_weights(checkpoint, model, guide, checkpointer.path)
    trainer.load_state_dict(checkpoint["optimizer"])
    set_rng_state(checkpoint["rng"])
    generator.set_state(checkpoint["data_rng"])
    history = checkpointer.history(checkpoint["epoch"])
    if history.epochs_done != checkpoint["epoch"]:
        # Training would restart at the last recorded epoch and repeat the ones after it.
        raise CheckpointError(f"{checkpointer.path} holds epoch {checkpoint['epoch']} but {METRICS} records "
                              f"epochs up to {history.epochs_done}; restore the metrics file or train afresh")
    return history


def load_checkpoint(run_dir, model, guide) -> dict:
    """Load the model and guide weights of ``run_dir``'s newest checkpoint; return the checkpoint."""
    checkpointer = Checkpointer(run_dir)
    checkpoint = checkpointer.load()
    load_weights(checkpoint, model, guide, checkpointer.path)
    return checkpoint
