"""Training: stochastic variational inference over minibatches, with checkpoints and resume.

:func:`fit` minimises any Pyro objective ``elbo`` (``Trace_ELBO``, ``TraceEnum_ELBO``, pyrovae's
variance losses, ...) for a ``model``/``guide`` pair of ``nn.Module``\\ s. Two engines give the same
updates:

* ``engine="module"`` (default): ``loss = elbo(model, guide)`` is an ``nn.Module`` and a single
  ``torch.optim.Adam`` steps all its parameters. This is the fast path: Pyro's ``SVI`` keeps one
  optimizer per parameter tensor and re-collects parameters from a trace on every step.
* ``engine="svi"``: ``pyro.infer.SVI`` with ``pyro.optim.Adam``, for users who want Pyro's loop.

A run directory holds ``config.json``, ``metrics.jsonl`` (one line per epoch) and
``checkpoint.pt``; each is replaced atomically after every epoch, so an interrupted run resumes from
the last finished epoch and reproduces the uninterrupted run exactly (RNG states are checkpointed).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import pyro.optim
import torch
from pyro.infer import (
    SVI,
    JitTrace_ELBO,
    JitTraceEnum_ELBO,
    JitTraceGraph_ELBO,
    JitTraceMeanField_ELBO,
    Trace_ELBO,
    TraceEnum_ELBO,
)
from pyro.infer.util import is_validation_enabled
from pyro.util import get_rng_state, set_rng_state
from tqdm.auto import tqdm

from pyrovae.data import Dataset
from pyrovae.evaluate import mean_elbo
from pyrovae.io import read_jsonl, save_torch, write_json, write_jsonl
from pyrovae.params import module_registration
from pyrovae.validation import data_checks

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
ENGINES = ("module", "svi")


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left in place."""


@dataclass
class History:
    """Per-epoch metrics of a run (the rows of ``metrics.jsonl``)."""

    rows: list[dict] = field(default_factory=list)

    def column(self, key: str) -> list:
        return [row[key] for row in self.rows if key in row]


def default_eval_elbo(elbo) -> pyro.infer.ELBO:
    """The objective used for the test ELBO: ``TraceEnum_ELBO`` (same plate nesting) when training
    enumerates discrete latents, otherwise a single-particle ``Trace_ELBO``, whatever the training
    objective (a variance loss, say) optimises."""
    if isinstance(elbo, TraceEnum_ELBO):
        return TraceEnum_ELBO(max_plate_nesting=elbo.max_plate_nesting)
    return Trace_ELBO()


def fit(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    elbo: pyro.infer.ELBO,
    train: Dataset,
    test: Dataset | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    run_dir: str | Path | None = None,
    resume: bool = False,
    engine: str = "module",
    eval_elbo: pyro.infer.ELBO | None = None,
    config: dict | None = None,
    progress: bool = True,
    epoch_callback=None,
    max_seconds: float | None = None,
    lr_schedule=None,
    diagnostics: dict[str, pyro.infer.ELBO] | None = None,
    validate_every_step: bool = False,
) -> History:
    """Train ``model``/``guide`` by minimising ``elbo`` on minibatches of ``train``.

    Args:
        model, guide: ``nn.Module``\\ s whose ``forward(x, num_data=None)`` are the Pyro model and guide.
        elbo: any ``pyro.infer.ELBO`` instance.
        train, test: :class:`~pyrovae.data.Dataset`\\ s; the test ELBO (nats per example) is logged each epoch.
        epochs, batch_size, lr, seed: optimisation settings (Adam).
        run_dir: where ``config.json``, ``metrics.jsonl`` and ``checkpoint.pt`` go (nothing is written if ``None``).
        resume: continue from ``run_dir/checkpoint.pt``; ``epochs`` is the total, not the number still to run.
        engine: ``"module"`` (one torch optimizer over ``elbo(model, guide)``) or ``"svi"`` (``pyro.infer.SVI``).
            Pyro's ``JitTrace_ELBO`` (and the other ``Jit*`` objectives) work with both and cut
            Pyro's per-step Python time further; their traced graph fixes the batch size, so the
            last, smaller batch of each epoch is dropped.
        eval_elbo: objective for the test ELBO (default: :func:`default_eval_elbo`).
        config: extra settings recorded in ``config.json``.
        epoch_callback: called as ``callback(epoch, row)`` after each epoch; may add keys to ``row``.
        max_seconds: a wall-time budget: no epoch starts once this many seconds of training have passed.
        lr_schedule: ``schedule(epoch, seconds) -> lr``, applied before each epoch (``epoch`` counts
            from 0, ``seconds`` is the training time so far).
        diagnostics: more objectives evaluated each epoch on the test set (the training set if there
            is none), logged as ``-loss`` per example under their names, e.g.
            ``{"true_discrete_bound": TrueDiscreteBound()}`` next to a relaxed objective.
        validate_every_step: keep Pyro's validation (distribution arguments, site shapes) and the
            models' data checks on for every step. By default both run on the first batch only
            (shapes and supports do not change between batches; a NaN is caught by the loss check),
            which removes their per-step cost.

    Returns:
        The :class:`History` of per-epoch metrics: ``train_loss`` (objective per example, averaged over
        the epoch), ``train_elbo`` (when the objective exposes ``last_elbo``, e.g.
        :class:`~pyrovae.infer.VarianceELBO`: the ELBO estimated from the training particles),
        ``test_elbo`` (nats per example), one entry per diagnostic, ``seconds``.

    Raises:
        TrainingDivergedError: a step returned a non-finite loss (names epoch and step).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    _check_dataset(train, "train")
    if test is not None:
        _check_dataset(test, "test")
    run_dir = Path(run_dir) if run_dir is not None else None
    if resume and (run_dir is None or not (run_dir / CHECKPOINT).exists()):
        raise FileNotFoundError(f"cannot resume: no checkpoint at {run_dir and run_dir / CHECKPOINT}")

    # Validate the first batch (shapes, dtype, support) through the model's own checks, then turn
    # per-step checks off: the whole data set was checked for NaN above.
    # This runs before seeding, so that it consumes no randomness of the run.
    first_x, _ = next(train.batches(batch_size, torch.Generator().manual_seed(seed)))
    with pyro.poutine.block(), torch.no_grad():
        pyro.poutine.trace(guide).get_trace(first_x, num_data=len(train))
        model(first_x, num_data=len(train))

    pyro.set_rng_seed(seed)
    # Pyro's parameter store is global: a stale entry under a module's name would shadow its
    # parameters in SVI (pyro.module hands the stored tensor to the optimizer), so start clean.
    pyro.clear_param_store()
    generator = torch.Generator().manual_seed(seed)
    step_fn, optimizer = _make_engine(engine, model, guide, elbo, lr)
    eval_elbo = eval_elbo or default_eval_elbo(elbo)
    history = History()
    start_epoch = 0
    if resume:
        start_epoch, history = _load_checkpoint(run_dir, model, guide, optimizer, generator)
    elif run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        settings = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, engine=engine,
                        objective=type(elbo).__name__, dataset=train.name, num_train=len(train),
                        binarize=train.binarize, dequantize=train.dequantize)
        write_json(run_dir / CONFIG, {**settings, **(config or {})})

    # A traced (JIT) objective bakes the batch size into its graph: every batch must have the same size.
    jit = is_jit(elbo)
    if jit and len(train) < batch_size:
        raise ValueError(f"a JIT objective needs full batches: {len(train)} examples < batch_size {batch_size}")
    num_batches = len(train) // batch_size if jit else math.ceil(len(train) / batch_size)
    trained_seconds = sum(row["seconds"] for row in history.rows)
    with data_checks(validate_every_step), pyro.validation_enabled(validate_every_step and is_validation_enabled()):
        for epoch in range(start_epoch, epochs):
            if max_seconds is not None and trained_seconds >= max_seconds:
                break
            if lr_schedule is not None:
                _set_lr(optimizer, lr_schedule(epoch, trained_seconds))
            began = time.perf_counter()
            model.train(), guide.train()
            total, total_elbo = 0.0, 0.0
            bar = tqdm(train.batches(batch_size, generator, drop_last=jit), total=num_batches, disable=not progress,
                       desc=f"epoch {epoch + 1}/{epochs}", leave=False)
            for step, (x, _) in enumerate(bar):
                loss = step_fn(x, len(train))
                if not math.isfinite(loss):
                    where = f"last good checkpoint: {run_dir / CHECKPOINT}" if run_dir and (run_dir / CHECKPOINT).exists() else "no checkpoint written yet"
                    raise TrainingDivergedError(f"non-finite loss {loss} at epoch {epoch + 1}, step {step + 1}; {where}")
                total += loss
                total_elbo += getattr(elbo, "last_elbo", None) or 0.0
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{total / (step + 1) / len(train):.3f}")
            model.eval(), guide.eval()
            row = {"epoch": epoch + 1, "train_loss": total / num_batches / len(train)}
            if getattr(elbo, "last_elbo", None) is not None:
                row["train_elbo"] = total_elbo / num_batches / len(train)
            if test is not None:
                row["test_elbo"] = mean_elbo(model, guide, test, eval_elbo)
            for name, objective in (diagnostics or {}).items():
                row[name] = mean_elbo(model, guide, test if test is not None else train, objective)
            if epoch_callback is not None:
                epoch_callback(epoch + 1, row)
            row["seconds"] = time.perf_counter() - began
            trained_seconds += row["seconds"]
            history.rows.append(row)
            if progress:
                tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            if run_dir is not None:
                _save_checkpoint(run_dir, epoch + 1, model, guide, optimizer, generator, history)
    return history


def _check_dataset(dataset: Dataset, name: str) -> None:
    if not isinstance(dataset, Dataset):
        raise TypeError(f"{name} must be a pyrovae.data.Dataset (see load_dataset), got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError(f"{name} data set is empty")
    if not torch.isfinite(dataset.x).all():
        raise ValueError(f"{name} data contains {(~torch.isfinite(dataset.x)).sum().item()} NaN or infinite values")


JIT_OBJECTIVES = (JitTrace_ELBO, JitTraceEnum_ELBO, JitTraceGraph_ELBO, JitTraceMeanField_ELBO)


def is_jit(elbo) -> bool:
    """Whether ``elbo`` compiles the model and guide with ``torch.jit.trace`` (Pyro's ``Jit*`` objectives)."""
    return isinstance(elbo, JIT_OBJECTIVES)


def _make_engine(engine, model, guide, elbo, lr):
    """A ``step(x, num_data) -> float`` closure and the optimizer whose state is checkpointed."""
    # The fused Adam kernel is several times faster than the per-tensor loop torch uses by default on
    # CPU (where the optimizer step can cost as much as the forward pass of a small VAE).
    if engine == "svi":
        optimizer = pyro.optim.Adam({"lr": lr, "fused": True})
        svi = SVI(model, guide, optimizer, elbo)
        return (lambda x, n: svi.step(x, num_data=n)), optimizer
    loss_module = elbo(model, guide)
    optimizer = torch.optim.Adam(loss_module.parameters(), lr=lr, fused=True)
    # The torch optimizer reads the parameters directly, so registering them with Pyro on every step
    # is skipped; Pyro's JIT objectives find their parameters through that registration, so keep it.
    register = is_jit(elbo)

    def step(x, num_data):
        optimizer.zero_grad(set_to_none=True)
        with module_registration(register):
            loss = loss_module(x, num_data=num_data)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step, optimizer


def _set_lr(optimizer, lr: float) -> None:
    if not lr > 0:
        raise ValueError(f"lr_schedule returned a non-positive learning rate {lr}")
    if isinstance(optimizer, pyro.optim.PyroOptim):
        optimizer.pt_optim_args["lr"] = lr  # for per-parameter optimizers created later
        torch_optimizers = optimizer.optim_objs.values()
    else:
        torch_optimizers = [optimizer]
    for torch_optimizer in torch_optimizers:
        for group in torch_optimizer.param_groups:
            group["lr"] = lr


def _optimizer(optimizer):
    return optimizer.get_state() if isinstance(optimizer, pyro.optim.PyroOptim) else optimizer.state_dict()


def _save_checkpoint(run_dir, epoch, model, guide, optimizer, generator, history) -> None:
    for owner, module in (("model", model), ("guide", guide)):
        for name, value in module.state_dict().items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise TrainingDivergedError(f"{owner} tensor {name!r} is not finite after epoch {epoch}; "
                                            f"the checkpoint of the previous epoch is kept")
    save_torch(run_dir / CHECKPOINT, {
        "epoch": epoch,
        "model": model.state_dict(),
        "guide": guide.state_dict(),
        "optimizer": _optimizer(optimizer),
        "rng": get_rng_state(),
        "data_rng": generator.get_state(),
    })
    write_jsonl(run_dir / METRICS, history.rows)


def load_checkpoint(run_dir, model, guide) -> dict:
    """Load the model and guide weights of ``run_dir/checkpoint.pt``; return the checkpoint."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    checkpoint = torch.load(path, weights_only=False)
    model.load_state_dict(checkpoint["model"])
    guide.load_state_dict(checkpoint["guide"])
    return checkpoint


def _load_checkpoint(run_dir, model, guide, optimizer, generator):
    # Weights are copied into the modules' own Parameter objects, which pyro.module registers
    # afresh in the (cleared) parameter store on the next step.
    checkpoint = load_checkpoint(run_dir, model, guide)
    if isinstance(optimizer, pyro.optim.PyroOptim):
        optimizer.set_state(checkpoint["optimizer"])
    else:
        optimizer.load_state_dict(checkpoint["optimizer"])
    set_rng_state(checkpoint["rng"])
    generator.set_state(checkpoint["data_rng"])
    rows = [r for r in read_jsonl(Path(run_dir) / METRICS) if r["epoch"] <= checkpoint["epoch"]]
    return checkpoint["epoch"], History(rows)
