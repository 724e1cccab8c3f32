"""A progress bar over each epoch's steps and the printed row of each epoch (rank 0)."""

from __future__ import annotations

from tqdm.auto import tqdm

from pyrovae import distributed
from pyrovae.callbacks.base import Callback, Run


class Progress(Callback):
    """A ``tqdm`` bar per epoch showing the running loss per example (read every ``every`` steps,
    which costs a device synchronisation), and the epoch's row printed as ``key=value`` when it ends.
    It prints the row as the callbacks before it in the list have left it."""

    def __init__(self, every: int = 10):
        self.every = every
        self.bar = None
        self.loss = self.steps = 0

    def on_batch_start(self, step: int, run: Run) -> None:
        if self.bar is None and distributed.is_main():
            epoch = step // run.batches_per_epoch + 1
            self.bar = tqdm(total=run.batches_per_epoch, desc=f"epoch {epoch}/{run.epochs}", leave=False)
            self.loss = self.steps = 0

    def on_batch_end(self, step: int, loss, run: Run) -> None:
        if self.bar is None:
            return
        self.loss, self.steps = self.loss + loss, self.steps + 1
        self.bar.update(1)
        if (self.steps - 1) % self.every == 0:
            self.bar.set_postfix(loss=f"{float(self.loss) / self.steps / len(run.train):.3f}")

    def on_epoch_end(self, epoch: int, row: dict, run: Run) -> None:
        self._close()
        if distributed.is_main():
            tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))

    def on_fit_end(self, run: Run) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
