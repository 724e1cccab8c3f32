"""Network builders shared by every model and guide.

One place builds multilayer perceptrons and the heads that turn a hidden representation into a
distribution's parameters, so models and guides differ only in their probabilistic structure.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU, "gelu": nn.GELU}


def activation_module(name: str) -> nn.Module:
    """The activation layer called ``name`` (one of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


def mlp(sizes: Sequence[int], activation: str = "relu", activate_last: bool = False) -> nn.Sequential:
    """A multilayer perceptron ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

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


class LocScaleHead(nn.Module):
    """Maps features ``h`` to ``(loc, scale)`` with ``scale = softplus(W h + b) + min_scale``.

    The softplus keeps the scale positive with a gradient that does not vanish for small scales
    (unlike ``exp``, it cannot overflow); ``min_scale`` keeps log-densities finite.
    """

    def __init__(self, in_features: int, out_features: int, min_scale: float = 1e-4):
        super().__init__()
        self.loc = nn.Linear(in_features, out_features)
        self.raw_scale = nn.Linear(in_features, out_features)
        self.min_scale = min_scale

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loc(h), F.softplus(self.raw_scale(h)) + self.min_scale


class TriangularHead(nn.Module):
    """Features ``h`` to ``(loc, L)``: ``L`` lower-triangular with ``softplus(.) + min_scale`` on its
    diagonal, the Cholesky factor of a full covariance ``L L^T``."""

    def __init__(self, in_features: int, out_features: int, min_scale: float = 1e-4):
        super().__init__()
        self.out_features, self.min_scale = out_features, min_scale
        self.loc = nn.Linear(in_features, out_features)
        self.tril = nn.Linear(in_features, out_features * (out_features + 1) // 2)
        rows, cols = torch.tril_indices(out_features, out_features)
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        entries = self.tril(h)
        scale_tril = entries.new_zeros(*h.shape[:-1], self.out_features, self.out_features)
        scale_tril[..., self.rows, self.cols] = entries
        diagonal = F.softplus(torch.diagonal(scale_tril, dim1=-2, dim2=-1)) + self.min_scale
        scale_tril = torch.tril(scale_tril, diagonal=-1) + torch.diag_embed(diagonal)
        return self.loc(h), scale_tril


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
