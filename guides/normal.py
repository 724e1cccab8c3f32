"""Amortised Gaussian guides ``q_phi(z | x)`` for site ``"z"``.

* :class:`DiagonalNormalGuide`: ``q(z | x) = N(mu_phi(x), diag sigma_phi(x)^2)`` (Kingma & Welling 2014).
* :class:`FullCovarianceNormalGuide`: ``q(z | x) = N(mu_phi(x), L_phi(x) L_phi(x)^T)`` with a
  lower-triangular ``L`` whose diagonal is positive, so correlations between latents are captured.

Both sample ``"z"`` with shape ``(B, L)`` inside the ``"data"`` plate, which is all a model with a
site ``"z"`` needs; swap one for the other without touching the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyrovae.networks import Encoder, LocScaleHead
from pyrovae.params import register_module
from pyrovae.plates import data_plate
from pyrovae.validation import check_data, data_checks_enabled


class AmortizedGuide(nn.Module):
    """Shared body of the amortised guides: ``forward`` samples ``"z" ~ self.posterior(x)`` in the data plate."""

    def __init__(self, x_dim: int, z_dim: int, name: str):
        super().__init__()
        self.x_dim, self.z_dim, self.name = x_dim, z_dim, name

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        if data_checks_enabled():
            check_data(x, self.x_dim)
        register_module(self.name, self)
        with data_plate(x.shape[0], num_data, x.device):
            return pyro.sample("z", self.posterior(x))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean ``E_q[z | x]``, used for reconstructions and latent plots."""
        return self.posterior(x).mean


class DiagonalNormalGuide(AmortizedGuide):
    """``q(z | x) = prod_l N(z_l; mu_l(x), sigma_l(x)^2)`` from an MLP encoder."""

    def __init__(
        self,
        x_dim: int,
        z_dim: int = 20,
        hidden_sizes: Sequence[int] = (400,),
        activation: str = "relu",
        encoder: nn.Module | None = None,
        name: str = "guide",
    ):
        super().__init__(x_dim, z_dim, name)
        hidden = list(hidden_sizes)
        self.encoder = encoder or Encoder(x_dim, hidden, LocScaleHead(hidden[-1] if hidden else x_dim, z_dim), activation)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        loc, scale = self.encoder(x)
        return dist.Normal(loc, scale).to_event(1)


class TriangularHead(nn.Module):
    """Features ``h`` to ``(mu, L)``: ``L`` lower-triangular with ``softplus`` on its diagonal."""

    def __init__(self, in_features: int, z_dim: int, min_scale: float = 1e-4):
        super().__init__()
        self.z_dim, self.min_scale = z_dim, min_scale
        self.loc = nn.Linear(in_features, z_dim)
        self.tril = nn.Linear(in_features, z_dim * (z_dim + 1) // 2)
        rows, cols = torch.tril_indices(z_dim, z_dim)
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        entries = self.tril(h)
        scale_tril = entries.new_zeros(*h.shape[:-1], self.z_dim, self.z_dim)
        scale_tril[..., self.rows, self.cols] = entries
        diagonal = F.softplus(torch.diagonal(scale_tril, dim1=-2, dim2=-1)) + self.min_scale
        scale_tril = torch.tril(scale_tril, diagonal=-1) + torch.diag_embed(diagonal)
        return self.loc(h), scale_tril


class FullCovarianceNormalGuide(AmortizedGuide):
    """``q(z | x) = N(z; mu(x), L(x) L(x)^T)`` with an amortised Cholesky factor ``L(x)``."""

    def __init__(
        self,
        x_dim: int,
        z_dim: int = 20,
        hidden_sizes: Sequence[int] = (400,),
        activation: str = "relu",
        encoder: nn.Module | None = None,
        name: str = "guide",
    ):
        super().__init__(x_dim, z_dim, name)
        hidden = list(hidden_sizes)
        self.encoder = encoder or Encoder(x_dim, hidden, TriangularHead(hidden[-1] if hidden else x_dim, z_dim), activation)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        loc, scale_tril = self.encoder(x)
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)
