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

from pyrovae.networks import Encoder, LocScaleHead, TriangularHead
from pyrovae.params import register_module
from pyrovae.plates import data_plate
from pyrovae.validation import check_data, data_checks_enabled


class AmortizedGuide(nn.Module):
    """Shared body of the amortised guides: an MLP encoder ending in ``head_class`` (unless an
    ``encoder`` is given), and ``forward`` sampling ``"z" ~ self.posterior(x)`` in the data plate."""

    head_class: type[nn.Module]

    def __init__(
        self,
        x_dim: int,
        z_dim: int = 20,
        hidden_sizes: Sequence[int] = (400,),
        activation: str = "relu",
        encoder: nn.Module | None = None,
        name: str = "guide",
    ):
        super().__init__()
        self.x_dim, self.z_dim, self.name = x_dim, z_dim, name
        hidden = list(hidden_sizes)
        head = None if encoder is not None else self.head_class(hidden[-1] if hidden else x_dim, z_dim)
        self.encoder = encoder if encoder is not None else Encoder(x_dim, hidden, head, activation)

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

    head_class = LocScaleHead

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        loc, scale = self.encoder(x)
        return dist.Normal(loc, scale).to_event(1)


class FullCovarianceNormalGuide(AmortizedGuide):
    """``q(z | x) = N(z; mu(x), L(x) L(x)^T)`` with an amortised Cholesky factor ``L(x)``."""

    head_class = TriangularHead

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        loc, scale_tril = self.encoder(x)
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)
