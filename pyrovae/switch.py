"""A process-wide on/off setting that a context manager can change for a block of code."""

from __future__ import annotations

from contextlib import contextmanager


class Switch:
    """``switch.enabled`` is read where the setting matters; ``with switch.set(False): ...`` changes
    it for a block and restores the previous value afterwards, also on error."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    @contextmanager
    def set(self, enabled: bool):
        previous, self.enabled = self.enabled, enabled
        try:
            yield
        finally:
            self.enabled = previous
