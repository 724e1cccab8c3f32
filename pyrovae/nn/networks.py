"""Network builders shared by every model and guide.

One place builds multilayer perceptrons (the heads that turn features into a distribution's
parameters are in :mod:`pyrovae.nn.heads`), so models and guides differ only in their
probabilistic structure.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU, "gelu": nn.GELU}


def activation_module(name: str) -> nn.Module:
    """The activation layer called ``name`` (one of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


def mlp(sizes: Sequence[int], activation: str = "relu", activate_last: bool = False) -> nn.Sequential:
    """A multilayer perceptron through the widths ``sizes`` (``sizes[0]`` in, ``sizes[-1]`` out).

    The activation follows every linear layer except the last, unless ``activate_last``.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise ValueError(f"mlp needs at least two positive layer sizes, got {sizes}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or activate_last:
            layers.append(activation_module(activation))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """``x -> MLP -> head``: the amortised network shared by the Gaussian guides."""

    def __init__(self, in_features: int, hidden_sizes: Sequence[int], head: nn.Module, activation: str = "relu"):
        super().__init__()
        hidden_sizes = list(hidden_sizes)
        self.body = mlp([in_features, *hidden_sizes], activation, activate_last=True) if hidden_sizes else nn.Identity()
        self.head = head

    def forward(self, x: torch.Tensor):
        return self.head(self.body(x))


def decoder_mlp(z_dim: int, hidden_sizes: Sequence[int], out_features: int, activation: str = "relu") -> nn.Sequential:
    """``z -> hidden -> out_features`` with a linear output layer (the likelihood head reads it)."""
    return mlp([z_dim, *hidden_sizes, out_features], activation)
