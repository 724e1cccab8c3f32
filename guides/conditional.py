"""Amortised guides ``q_phi(z | x, y)`` for models that take labels, such as the conditional VAE.

:class:`ConditionalGuide`: ``q(z | x, y) = N(mu_phi(x, e_y), diag sigma_phi(x, e_y)^2)``, an MLP on the
example and its one-hot label (Yang 2022, §5.4.2). It samples ``"z"`` with shape ``(B, L)`` inside
the ``"data"`` plate, as :class:`~pyrovae.models.ConditionalVAE` expects.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.models.conditional_vae import one_hot
from pyrovae.nn import Encoder, LocScaleHead, open_data_plate
from pyrovae.registry import register_guide
from pyrovae.validation import InputSpec


class ConditionalGuide(nn.Module):
    """``q(z | x, y) = prod_l N(z_l; mu_l(x, e_y), sigma_l(x, e_y)^2)``: ``forward(x, y, num_data=None)``.

    Args:
        x_dim: number of inputs ``D``.
        num_classes: number of label values ``C``.
        z_dim: latent dimension ``L``.
        hidden_sizes: encoder hidden layers (used when ``encoder`` is not given).
        activation: hidden activation of the default encoder.
        encoder: a module mapping ``(B, D + C)``, the example then its one-hot label, to ``(loc, scale)``.
        name: the prefix of its parameters in Pyro's parameter store.
    """

    max_plate_nesting = 1

    def __init__(
        self,
        x_dim: int,
        num_classes: int,
        z_dim: int = 20,
        hidden_sizes: Sequence[int] = (500, 500),
        activation: str = "relu",
        encoder: nn.Module | None = None,
        name: str = "guide",
    ):
        super().__init__()
        if z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {z_dim}")
        self.x_dim, self.num_classes, self.z_dim, self.name = x_dim, num_classes, z_dim, name
        self.inputs = InputSpec((x_dim,), num_classes=num_classes)
        if encoder is None:
            hidden = list(hidden_sizes)
            head = LocScaleHead(hidden[-1] if hidden else x_dim + num_classes, z_dim)
            encoder = Encoder(x_dim + num_classes, hidden, head, activation)
        self.encoder = encoder

    def posterior(self, x: torch.Tensor, y: torch.Tensor) -> dist.TorchDistribution:
        r""":math:`q_\phi(z \mid x, y) = \mathcal N(\mu_\phi(x, y), \mathrm{diag}\,\sigma^2_\phi(x, y))`, the
        encoder reading the image and the one-hot label."""
        loc, scale = self.encoder(torch.cat([x, one_hot(y, self.num_classes, x)], dim=-1))
        return dist.Normal(loc, scale).to_event(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        with open_data_plate(self, x, y, num_data):
            return pyro.sample("z", self.posterior(x, y))

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The posterior mean ``E_q[z | x, y]``."""
        return self.posterior(x, y).mean


def build_conditional_guide(config, data, model) -> ConditionalGuide:
    """The :class:`ConditionalGuide` for a model config with ``z_dim``, ``hidden_sizes`` and ``activation``."""
    return ConditionalGuide(data.x_dim, data.num_classes, config.z_dim, config.hidden_sizes, config.activation)


register_guide("cvae", "diagonal", build_conditional_guide)
