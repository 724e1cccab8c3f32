"""Alternating guide-only and model-only steps: stochastic variational EM (Yang 2022, §5.2, Fig. 3)."""

from __future__ import annotations

from pyrovae.callbacks.base import Callback, Run


def alternation(guide_steps: int, model_steps: int):
    """``phase(step) -> "guide" | "model"``: ``guide_steps`` guide-only steps, then ``model_steps``
    model-only steps, and again (stochastic variational EM: Yang 2022, §5.2, Fig. 3)."""
    for name, value in (("guide_steps", guide_steps), ("model_steps", model_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"alternate needs positive step counts, got {name}={value!r}")

    def phase(step: int) -> str:
        return "guide" if step % (guide_steps + model_steps) < guide_steps else "model"

    return phase


class Alternate(Callback):
    """Update only the guide for ``guide_steps`` steps, then only the model for ``model_steps``, and so
    on over the whole run (a resumed run continues the phase from its step count). Needs an engine
    other than svi, which updates every parameter it sees."""

    def __init__(self, guide_steps: int, model_steps: int):
        self.phase = alternation(guide_steps, model_steps)

    def on_fit_start(self, run: Run) -> None:
        if run.engine_name == "svi":
            raise ValueError("alternate needs the module, captured or compiled engine (SVI updates every parameter "
                             "it sees)")

    def on_batch_start(self, step: int, run: Run) -> None:
        run.engine.update_only(self.phase(step))
