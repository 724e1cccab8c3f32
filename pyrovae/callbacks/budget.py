"""A wall-time budget: no epoch starts once the run has trained for ``max_seconds``."""

from __future__ import annotations

from pyrovae.callbacks.base import Callback, Run


class TimeBudget(Callback):
    """Stop the run once its epochs have taken ``max_seconds`` in all (their ``seconds``: training
    and test ELBO, the slowest rank's, so every rank decides alike). The time spent is its state:
    a resumed run spends only what is left of the budget. With ``per_call=True`` the budget is
    this call's: a resumed run trains up to ``max_seconds`` more, whatever earlier calls spent."""

    def __init__(self, max_seconds: float, per_call: bool = False):
        if not max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self.max_seconds = max_seconds
        self.per_call = per_call
        self.spent = 0.0

    def on_epoch_start(self, epoch: int, run: Run) -> None:
        run.stop = run.stop or self.spent >= self.max_seconds

    def on_epoch_end(self, epoch: int, row: dict, run: Run) -> None:
        self.spent += row["seconds"]
        run.stop = run.stop or self.spent >= self.max_seconds

    def state_dict(self) -> dict:
        return {"spent": self.spent}

    def load_state_dict(self, state: dict) -> None:
        if not self.per_call:
            self.spent = state["spent"]
