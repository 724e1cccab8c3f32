"""The callback protocol of :func:`pyrovae.train.fit`, and the :class:`Run` its hooks receive.

The loop owns only what every run has (the device, the seed, the engine's steps, the test ELBO,
finiteness and the reductions over ranks); everything a run *may* have (checkpoints, logs,
schedules, a time budget, a model's own metrics) is a :class:`Callback`. This is the smallest form
of Keras's ``Callback.on_epoch_end(epoch, logs)``, Lightning's ``Callback`` hooks and Ignite's
event handlers: no-op hooks, called in the order of the list, and nothing else decides the order.

A callback with state (an annealing schedule, a time budget, a plateau counter) returns it from
:meth:`Callback.state_dict`; :class:`~pyrovae.callbacks.Checkpoint` saves it in the checkpoint and
hands it back through :meth:`Callback.load_state_dict` on resume, so that a killed and resumed run
reaches exactly the state of the uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch

from pyrovae.checkpoint import History, load_weights, rng_state, set_rng_state
from pyrovae.data import Dataset
from pyrovae.validation import InputSpec


class Callback:
    """A no-op at every point of a run; subclasses override the hooks they need.

    ``epoch`` counts from 1 (it is ``row["epoch"]``); ``step`` counts the training steps over the
    whole run from 0. Hooks run on every rank; a callback that writes files writes on rank 0
    (:func:`pyrovae.distributed.is_main`). To end a run, set ``run.stop = True``: the loop stops
    before the next epoch, and every rank stops if any rank asked to.
    """

    def on_fit_start(self, run: Run) -> None:
        """Before the first epoch, after the engine is built and the seed set (resume restores here)."""

    def on_epoch_start(self, epoch: int, run: Run) -> None:
        """Before epoch ``epoch``'s first step (a learning rate to set, a budget to check)."""

    def on_batch_start(self, step: int, run: Run) -> None:
        """Before training step ``step``. Called only for callbacks that override it."""

    def on_batch_end(self, step: int, loss: torch.Tensor, run: Run) -> None:
        """After training step ``step``, with its loss (a tensor: no ``.item()`` unless needed).
        Called only for callbacks that override it."""

    def on_epoch_end(self, epoch: int, row: dict, run: Run) -> None:
        """After epoch ``epoch``'s evaluation, with its metrics ``row`` (already in ``run.history``);
        keys added to ``row`` are recorded, and seen by the callbacks after this one."""

    def on_fit_end(self, run: Run) -> None:
        """After the last epoch, and also when the run stops on an error: release what
        :meth:`on_fit_start` opened."""

    def state_dict(self) -> dict:
        """What a resumed run needs to continue as the uninterrupted one (tensors and plain types)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back the state :meth:`state_dict` returned."""


def overrides(callback: Callback, hook: str) -> bool:
    """Whether ``callback`` does something at ``hook`` (the loop skips per-step hooks that do nothing)."""
    return getattr(type(callback), hook) is not getattr(Callback, hook)


@dataclass(eq=False)
class Run:
    """A run as its callbacks see it: the pair, the data, the settings of :func:`pyrovae.train.fit`,
    the engine, the history so far and the flag that stops it."""

    model: torch.nn.Module
    guide: torch.nn.Module
    elbo: pyro.infer.ELBO
    train: Dataset
    test: Dataset | None
    #: How a batch enters the model (:func:`pyrovae.placement.input_spec`).
    spec: InputSpec
    epochs: int
    batch_size: int
    lr: float
    seed: int
    #: The engine's name after ``"auto"`` is resolved, and the engine (:mod:`pyrovae.engines`).
    engine_name: str
    engine: object
    device: torch.device
    callbacks: list[Callback]
    #: The objective of the test ELBO (:func:`pyrovae.train.default_eval_elbo` unless a callback sets it
    #: in :meth:`Callback.on_fit_start`, as :class:`~pyrovae.callbacks.TestObjective` does).
    eval_elbo: pyro.infer.ELBO
    #: The generator of the data order.
    generator: torch.Generator
    batches_per_epoch: int
    history: History = field(default_factory=History)
    stop: bool = False
    #: The newest checkpoint a callback wrote, named in the error of a run that stops on one.
    checkpoint: Path | None = None

    @property
    def epochs_done(self) -> int:
        """The number of the last epoch recorded in the run's history, 0 before the first."""
        return self.history.epochs_done

    @property
    def seconds(self) -> float:
        """The training time so far (the ``seconds`` of the recorded epochs)."""
        return sum(row["seconds"] for row in self.history.rows)

    def state_dict(self) -> dict:
        """Everything a resumed run continues from: the weights, the optimizer, every random state
        and each callback's state (keyed by class name, numbered when a class appears twice)."""
        states = {key: callback.state_dict() for key, callback in _keyed(self.callbacks)}
        return {"epoch": self.epochs_done, "model": self.model.state_dict(), "guide": self.guide.state_dict(),
                "optimizer": self.engine.state_dict(), "rng": rng_state(), "data_rng": self.generator.get_state(),
                "callbacks": {key: state for key, state in states.items() if state}}

    def load_state_dict(self, state: dict, history: History, path="checkpoint") -> None:
        """Continue from ``state`` (a :meth:`state_dict`) and the ``history`` of its epochs.

        Weights are copied into the modules' own parameters (on their device). The optimizer state
        brings the learning rate it was saved with; the run's rate is this call's ``lr``.
        """
        load_weights(state, self.model, self.guide, path)
        self.engine.load_state_dict(state["optimizer"])
        self.engine.set_lr(self.lr)
        set_rng_state(state["rng"])
        self.generator.set_state(state["data_rng"])
        saved = state.get("callbacks", {})
        for key, callback in _keyed(self.callbacks):
            if key in saved:
                callback.load_state_dict(saved[key])
        self.history = history


def _keyed(callbacks):
    seen: dict[str, int] = {}
    for callback in callbacks:
        name = type(callback).__name__
        seen[name] = seen.get(name, 0) + 1
        yield (name if seen[name] == 1 else f"{name}.{seen[name]}"), callback
