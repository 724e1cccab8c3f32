"""Registering a model's or guide's ``nn.Module`` parameters with Pyro's parameter store.

``pyro.infer.SVI`` finds the parameters to optimise in the parameter store, so models and guides
call :func:`register_module` on every call. When an objective is used as a module,
``elbo(model, guide)``, a torch optimizer reads ``.parameters()`` directly and registration is pure
per-step overhead (about a sixth of Pyro's per-step Python time for a VAE); the training loop turns
it off with :class:`module_registration`.
"""

from __future__ import annotations

import pyro
from torch import nn

from pyrovae.switch import Switch

_REGISTRATION = Switch()


def register_module(name: str, module: nn.Module) -> None:
    """``pyro.module(name, module)`` unless registration is switched off."""
    if _REGISTRATION.enabled:
        pyro.module(name, module)


def module_registration(enabled: bool):
    """Context manager: ``with module_registration(False): ...`` skips :func:`register_module`."""
    return _REGISTRATION.set(enabled)
