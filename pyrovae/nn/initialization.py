"""Weight initialisations applied to a whole network after it is built."""

from __future__ import annotations

from torch import nn


def glorot_normal_(module: nn.Module) -> nn.Module:
    """Glorot-normal weights ``W ~ N(0, 2 / (fan_in + fan_out))`` and zero biases for every
    ``nn.Linear`` in ``module`` (Glorot & Bengio 2010); returns ``module``.

    Yang 2022, §5.5.4 trains the Gaussian-mixture VAE from this initialisation, following Rui Shu's
    advice that clustering depends on it (the tutorial notes training "seems to be highly dependent
    on initial condition").
    """
    return _initialise_linear_layers(module, nn.init.xavier_normal_)


def small_normal_(module: nn.Module, scale: float) -> nn.Module:
    """Weights ``W ~ N(0, scale^2)`` and zero biases for every ``nn.Linear`` in ``module``; returns
    ``module``. Kingma et al. 2014's code starts its networks so, with ``scale = 1e-3``
    (dpkingma/nips14-ssl, ``learn_yz_x_ss.py``: ``init_w(1e-3)``), which makes every network start
    close to its output layer's bias: ``q(y | x)`` uniform, ``z`` at the prior's mean.
    """
    if not scale > 0:
        raise ValueError(f"the initial weights' scale must be positive, got {scale}")
    return _initialise_linear_layers(module, lambda weight: nn.init.normal_(weight, 0.0, scale))


def _initialise_linear_layers(module: nn.Module, initialise_weight) -> nn.Module:
    """``initialise_weight(W)`` and a zero bias for every ``nn.Linear`` in ``module``; returns ``module``."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            initialise_weight(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module
