"""Each epoch's metrics, and optionally a sample grid and reconstructions, in TensorBoard (rank 0)."""

from __future__ import annotations

from pathlib import Path

from pyrovae import distributed
from pyrovae.callbacks.base import Callback, Run
from pyrovae.tensorboard import TensorBoardLog, check_available


class TensorBoard(Callback):
    """Log every number of each epoch's row as a TensorBoard scalar, at the epoch.

    Args:
        log_dir: a folder for the event files, or an open :class:`~pyrovae.tensorboard.TensorBoardLog`
            (which the caller closes); needs ``pip install "pyrovae[tensorboard]"``, checked here.
        images: also log 64 samples of the model (drawn with ``fit``'s seed, if the model has
            ``sample_images``) and 16 test reconstructions each epoch.

    It logs the row as the callbacks before it in the list have left it.
    """

    def __init__(self, log_dir, images: bool = False):
        check_available()
        if not isinstance(log_dir, (str, Path, TensorBoardLog)):
            raise TypeError(f"log_dir must be a folder or a TensorBoardLog, got {type(log_dir).__name__}")
        self.log_dir, self.images = log_dir, images
        self.log: TensorBoardLog | None = None

    def on_fit_start(self, run: Run) -> None:
        if distributed.is_main():
            self.log = self.log_dir if isinstance(self.log_dir, TensorBoardLog) else TensorBoardLog(self.log_dir)

    def on_epoch_end(self, epoch: int, row: dict, run: Run) -> None:
        if self.log is None:
            return
        if self.images and run.test is not None:
            self._log_images(epoch, run)
        self.log.scalars(row, epoch)

    def _log_images(self, epoch: int, run: Run) -> None:
        from pyrovae import plots
        from pyrovae.evaluate import reconstructions, sample_images

        samples = sample_images(run.model, 64, run.seed)
        if samples is not None:
            self.log.image("samples", plots.image_grid(samples, run.test.image_shape, columns=8), epoch)
        x, reconstruction, how = reconstructions(run.model, run.guide, run.test, 16)
        self.log.image("reconstructions", plots.reconstructions(x, reconstruction, run.test.image_shape, columns=8,
                                                                title=how), epoch)

    def on_fit_end(self, run: Run) -> None:
        if self.log is not None and not isinstance(self.log_dir, TensorBoardLog):
            self.log.close()
        self.log = None
