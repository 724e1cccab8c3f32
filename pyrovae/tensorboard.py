"""A run's metrics and images in TensorBoard, next to its JSON records (``<run_dir>/tensorboard``).

TensorBoard is an optional dependency (``pip install "pyrovae[tensorboard]"``): the event files are
written with :class:`torch.utils.tensorboard.SummaryWriter`, which needs the ``tensorboard``
package, and nothing imports it unless a run asks for it. The JSON metrics stay the record a table
is rebuilt from; the event files are for watching a run while it trains (``tensorboard --logdir runs``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

#: The folder of a run directory that holds its event files.
FOLDER = "tensorboard"
INSTALL = 'pip install "pyrovae[tensorboard]"'


class TensorBoardUnavailable(ImportError):
    """The ``tensorboard`` package, which TensorBoard logging needs, is not installed."""


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises it when the tensorboard package is missing
        raise TensorBoardUnavailable(f"TensorBoard logging needs the tensorboard package: {INSTALL}") from None
    return SummaryWriter


def check_available() -> None:
    """Raise :class:`TensorBoardUnavailable` now, before a run starts, rather than after its first epoch."""
    _summary_writer()


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def figure_array(figure) -> np.ndarray:
    """A matplotlib ``Figure`` drawn into an ``(H, W, 3)`` uint8 array (without pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class TensorBoardLog:
    """Scalars and images of one run, at the epoch they belong to.

    Args:
        log_dir: the folder of the event files (created if missing; a resumed run adds a new file).
    """

    def __init__(self, log_dir):
        self.log_dir = Path(log_dir)
        self.writer = _summary_writer()(log_dir=str(self.log_dir))

    def scalars(self, row: dict, step: int) -> None:
        """Every finite number of a metrics row (losses, bounds, accuracies) under its key; ``epoch`` is the step."""
        for key, value in row.items():
            if key != "epoch" and _is_number(value):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def image(self, tag: str, image, step: int) -> None:
        """An image: a matplotlib ``Figure`` (e.g. :func:`pyrovae.plots.image_grid`), an ``(H, W, 3)``
        array or a ``(C, H, W)`` tensor with values in [0, 1]."""
        if hasattr(image, "savefig"):
            image = figure_array(image)
        if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] in (1, 3, 4):
            self.writer.add_image(tag, image, step, dataformats="HWC")
        else:
            self.writer.add_image(tag, torch.as_tensor(image), step)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
