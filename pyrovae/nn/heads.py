"""Heads: the last layer of a network, mapping features to a distribution's parameters.

Every model and guide builds its parameter heads from here, so a family of distributions is
parameterized the same way everywhere.
"""

from __future__ import annotations

import torch
from pyro.distributions.transforms import SoftplusLowerCholeskyTransform
from torch import nn
from torch.distributions.utils import vec_to_tril_matrix
from torch.nn import functional as F


class LocScaleHead(nn.Module):
    """Features ``h`` to ``(loc, scale)`` with ``scale = softplus(W h + b) + min_scale``.

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


class LogitsHead(nn.Module):
    """Features ``h`` to unnormalised log-probabilities (logits) ``W h + b``."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.logits = nn.Linear(in_features, out_features)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.logits(h)


class TriangularHead(nn.Module):
    """Features ``h`` to ``(loc, L)``, ``L`` the Cholesky factor of a full covariance ``L Lᵀ``.

    A linear layer gives the ``L(L+1)/2`` free entries, :func:`torch.distributions.utils.vec_to_tril_matrix`
    lays them out, and Pyro's :class:`~pyro.distributions.transforms.SoftplusLowerCholeskyTransform`
    makes the diagonal positive (plus ``min_scale``, which keeps ``L`` invertible).
    """

    def __init__(self, in_features: int, out_features: int, min_scale: float = 1e-4):
        super().__init__()
        self.min_scale = min_scale
        self.loc = nn.Linear(in_features, out_features)
        self.tril = nn.Linear(in_features, out_features * (out_features + 1) // 2)
        self.to_cholesky = SoftplusLowerCholeskyTransform()

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale_tril = self.to_cholesky(vec_to_tril_matrix(self.tril(h)))
        jitter = torch.full(scale_tril.shape[:-1], self.min_scale, dtype=h.dtype, device=h.device)
        return self.loc(h), scale_tril + torch.diag_embed(jitter)
