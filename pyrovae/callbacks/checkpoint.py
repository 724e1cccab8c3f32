"""A run directory: ``config.json``, ``metrics.jsonl`` and the two newest checkpoints, with resume.

Every file is written by rank 0 only, atomically (:mod:`pyrovae.checkpoint`, :mod:`pyrovae.io`).
A checkpoint holds :meth:`pyrovae.callbacks.Run.state_dict`: the weights, the optimizer, every
random state and the state of each callback, so that a killed run resumed from it reaches the
weights and callback states of the uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pyrovae import distributed
from pyrovae.callbacks.base import Callback, Run
from pyrovae.checkpoint import (
    METRICS,
    RUN_FILES,
    Checkpointer,
    CheckpointError,
    History,
    RunExistsError,
    check_finite,
    holds_run,
)


class Checkpoint(Callback):
    """Keep the run in ``run_dir``, or continue the run already there.

    Args:
        run_dir: the run directory (created if missing).
        resume: continue from ``run_dir``'s checkpoint; ``fit``'s ``epochs`` is the new total,
            recorded in ``config.json``.
        overwrite: replace a run already in ``run_dir``; without it (or ``resume``) an existing run
            raises :class:`~pyrovae.checkpoint.RunExistsError` before anything is written.
        config: more settings recorded in ``config.json`` (the CLI records the whole experiment).

    It saves at the end of each epoch what the callbacks before it in the list have left (the keys
    they added to the row, the state they changed), so it goes last; it never saves weights that are
    not finite. On resume it restores the state of every callback of the run, whatever its place.
    """

    def __init__(self, run_dir, resume: bool = False, overwrite: bool = False, config: dict | None = None):
        self.run_dir, self.resume, self.overwrite = Path(run_dir), resume, overwrite
        self.config = dict(config or {})
        self.checkpointer = Checkpointer(self.run_dir)

    def on_fit_start(self, run: Run) -> None:
        distributed.run_on_main(self._prepare)
        if self.resume:
            # Read once, by rank 0, and handed to every rank: the other nodes need not see the file.
            state, history = distributed.run_on_main(self._read)
            run.load_state_dict(state, history, self.checkpointer.path)
            run.checkpoint = self.checkpointer.path
        if distributed.is_main():
            self.checkpointer.write_config(self._settings(run))

    def on_epoch_end(self, epoch: int, row: dict, run: Run) -> None:
        check_finite(epoch, model=run.model, guide=run.guide)
        if distributed.world_size() > 1:
            # Every rank has finished the epoch, its callbacks included, before rank 0 records it as
            # done: a rank lost on the way leaves the previous epoch as the last good checkpoint.
            distributed.all_reduce(torch.zeros(()))
        if distributed.is_main():
            self.checkpointer.save(run.state_dict(), run.history)
        run.checkpoint = self.checkpointer.path

    def _prepare(self) -> None:
        if self.resume:
            if not self.checkpointer.exists():
                raise CheckpointError(f"cannot resume: no checkpoint at {self.checkpointer.path}")
            return
        if holds_run(self.run_dir):
            if not self.overwrite:
                raise RunExistsError(f"{self.run_dir} already holds a run; pass resume=True to continue it or "
                                     "overwrite=True to replace it (CLI: --resume or --force)")
            for name in RUN_FILES:
                (self.run_dir / name).unlink(missing_ok=True)

    def _read(self) -> tuple[dict, History]:
        state = self.checkpointer.load()
        history = self.checkpointer.history(state["epoch"])
        if history.epochs_done != state["epoch"]:
            # Training would restart at the last recorded epoch and repeat the ones after it.
            raise CheckpointError(f"{self.checkpointer.path} holds epoch {state['epoch']} but {METRICS} records "
                                  f"epochs up to {history.epochs_done}; restore the metrics file or train afresh")
        return state, history

    def _settings(self, run: Run) -> dict:
        world = distributed.world_size()
        settings = dict(epochs=run.epochs, batch_size=run.batch_size, lr=run.lr, seed=run.seed, engine=run.engine_name,
                        objective=type(run.elbo).__name__, dataset=run.train.name, num_train=len(run.train),
                        binarize=run.train.binarize, dequantize=run.train.dequantize)
        return {**settings, **self.config, "epochs": run.epochs, "engine_used": run.engine_name,
                "device": str(run.device), "world_size": world, "global_batch_size": run.batch_size,
                "rank_batch_size": run.batch_size // world}
