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
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_normal_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module
