"""Adam's settings other than the learning rate."""

from __future__ import annotations

from pyrovae.callbacks.base import Callback, Run


class AdamEpsilon(Callback):
    """Train with Adam's ``eps`` (default 1e-8) set to ``eps`` (Burda et al. 2016 use 1e-4)."""

    def __init__(self, eps: float):
        if not eps > 0:
            raise ValueError(f"Adam's eps must be positive, got {eps}")
        self.eps = eps

    def on_fit_start(self, run: Run) -> None:
        run.engine.set_adam_option("eps", self.eps)
