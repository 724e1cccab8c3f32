"""pyrovae's process-wide settings, registered on :mod:`pyro.settings`.

* ``pyrovae_check_data`` (default ``True``): models and guides check every batch that enters them
  (shape, dtype, finiteness, support). :func:`pyrovae.train.fit` checks the first batch, then turns
  this off for the remaining steps, where it would only cost time.
* ``pyrovae_register_modules`` (default ``True``): models and guides register their ``nn.Module``
  with ``pyro.module`` on every call, which :class:`pyro.infer.SVI` needs to find the parameters.
  With an objective used as a module (``elbo(model, guide)``) and a torch optimizer, registration is
  pure per-step overhead, and the training engine turns it off.
* ``pyrovae_validate_every_step`` (default ``False``): :func:`pyrovae.train.fit` keeps Pyro's
  validation and the data checks on for every step, not only the first batch (shapes and supports
  do not change between batches, and a NaN is caught by the loss check, so by default they run once).

Change them with Pyro's interface, for a block or for good::

    with pyro.settings.context(pyrovae_check_data=False):
        ...
    pyro.settings.set(pyrovae_register_modules=False)
"""

from __future__ import annotations

import pyro

CHECK_DATA = True
REGISTER_MODULES = True
VALIDATE_EVERY_STEP = False


def _validate_bool(value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"expected True or False, got {value!r}")


pyro.settings.register("pyrovae_check_data", __name__, "CHECK_DATA", _validate_bool)
pyro.settings.register("pyrovae_register_modules", __name__, "REGISTER_MODULES", _validate_bool)
pyro.settings.register("pyrovae_validate_every_step", __name__, "VALIDATE_EVERY_STEP", _validate_bool)


def check_data() -> bool:
    """Whether models and guides check each batch."""
    return CHECK_DATA


def register_modules() -> bool:
    """Whether models and guides register their modules with ``pyro.module``."""
    return REGISTER_MODULES


def validate_every_step() -> bool:
    """Whether training validates every step rather than the first batch only."""
    return VALIDATE_EVERY_STEP
