"""Heads: the last layer of a network, mapping features to a distribution's parameters.

Every model and guide builds its parameter heads from here, so a family of distributions is
parameterized the same way everywhere.
"""

from __future__ import annotations

import torch
from pyro.distributions.transforms import SoftplusLowerCholeskyTransform
from torch import nn
from torch.distributions.utils import tril_matrix_to_vec, vec_to_tril_matrix
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
        return self.loc(h), self.cholesky(self.tril(h))

    def cholesky(self, free: torch.Tensor) -> torch.Tensor:
        """The Cholesky factor ``(..., L, L)`` whose ``L(L+1)/2`` unconstrained entries are ``free``."""
        scale_tril = self.to_cholesky(vec_to_tril_matrix(free))
        jitter = torch.full(scale_tril.shape[:-1], self.min_scale, dtype=free.dtype, device=free.device)
        return scale_tril + torch.diag_embed(jitter)

    def free_entries(self, scale_tril: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`cholesky`: the unconstrained entries giving ``scale_tril``, whose
        diagonal must exceed ``min_scale``."""
        jitter = torch.full(scale_tril.shape[:-1], self.min_scale, dtype=scale_tril.dtype, device=scale_tril.device)
        return tril_matrix_to_vec(self.to_cholesky.inv(scale_tril - torch.diag_embed(jitter)))


class SharedTriangularHead(TriangularHead):
    """Features ``h`` to ``(W h + b, L)`` with one Cholesky factor ``L`` shared by every input.

    A full covariance ``L Lᵀ`` that does not depend on the input, as in the exact posterior of
    factor analysis (Yang 2022, §5.2.2). :class:`TriangularHead`'s construction of ``L`` applies to
    one learned vector of free entries in place of a linear layer's output; ``L`` starts at the identity.
    """

    def __init__(self, in_features: int, out_features: int, min_scale: float = 1e-4):
        super().__init__(in_features, out_features, min_scale)
        self.tril = nn.Parameter(self.free_entries(torch.eye(out_features)))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # One (L, L) factor: a distribution broadcasts it over the batch of locations.
        return self.loc(h), self.cholesky(self.tril)
