"""The learning rate of each epoch, from a schedule."""

from __future__ import annotations

from pyrovae.callbacks.base import Callback, Run


class LearningRateSchedule(Callback):
    """Set Adam's learning rate before each epoch to ``schedule(epoch, seconds)``, where ``epoch``
    counts from 0 and ``seconds`` is the training time so far (``run.seconds``); both are read from
    the run, so a resumed run continues the schedule where it stopped."""

    def __init__(self, schedule):
        self.schedule = schedule

    def on_epoch_start(self, epoch: int, run: Run) -> None:
        run.engine.set_lr(self.schedule(epoch - 1, run.seconds))
