"""A function of each epoch's row as a callback."""

from __future__ import annotations

from pyrovae.callbacks.base import Callback, Run


class OnEpochEnd(Callback):
    """Call ``function(epoch, row)`` at the end of each epoch (it may add keys to ``row``): Keras's
    ``LambdaCallback`` for the one hook most functions need. A function with state to carry over a
    resume belongs in a :class:`~pyrovae.callbacks.Callback` subclass with ``state_dict``."""

    def __init__(self, function):
        if not callable(function):
            raise TypeError(f"OnEpochEnd needs a function f(epoch, row), got {type(function).__name__}")
        self.function = function

    def on_epoch_end(self, epoch: int, row: dict, run: Run) -> None:
        self.function(epoch, row)
