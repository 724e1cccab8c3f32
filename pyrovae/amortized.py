"""The base of pyrovae's amortised guides for a site ``"z"``: an encoder network ``x -> head`` and
``forward`` sampling ``"z" ~ self.posterior(x)`` in the data plate.

A subclass sets ``head_class`` (a head of :mod:`pyrovae.nn`) and writes ``posterior(x)``, the
distribution ``q(z | x)``; :func:`register_amortized_guide` registers it for a model whose config
has ``z_dim``, ``hidden_sizes`` and ``activation``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.nn import Encoder, open_data_plate
from pyrovae.registry import register_guide
from pyrovae.validation import InputSpec


class AmortizedGuide(nn.Module):
    """Shared body of the amortised guides: an MLP encoder ending in ``head_class`` (unless an
    ``encoder`` is given), and ``forward`` sampling ``"z" ~ self.posterior(x)`` in the data plate.

    Args:
        x_dim: number of inputs ``D``.
        z_dim: latent dimension ``L``.
        hidden_sizes: encoder hidden layers (used when ``encoder`` is not given).
        activation: hidden activation of the default encoder.
        encoder: a module mapping ``(B, D)`` to the head's outputs.
        name: the prefix of its parameters in Pyro's parameter store.
    """

    head_class: type[nn.Module]
    max_plate_nesting = 1

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
        if z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {z_dim}")
        self.x_dim, self.z_dim, self.name = x_dim, z_dim, name
        self.inputs = InputSpec((x_dim,))
        hidden = list(hidden_sizes)
        head = None if encoder is not None else self.head_class(hidden[-1] if hidden else x_dim, z_dim)
        self.encoder = encoder if encoder is not None else Encoder(x_dim, hidden, head, activation)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        r"""The amortised posterior :math:`q_\phi(z \mid x)` of a batch ``x``, one event of shape
        ``(z_dim,)`` per example: the distribution the guide samples ``z`` from."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        with open_data_plate(self, x, num_data=num_data):
            return pyro.sample("z", self.posterior(x))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean ``E_q[z | x]``, used for reconstructions and latent plots."""
        return self.posterior(x).mean


def register_amortized_guide(model: str, name: str, guide_class: type[AmortizedGuide], **options) -> None:
    """Register ``guide_class`` as guide ``name`` of ``model``, built from the model config's
    ``z_dim``, ``hidden_sizes`` and ``activation`` (and the fixed ``options``)."""

    def build(config, data, model):
        return guide_class(data.x_dim, config.z_dim, config.hidden_sizes, activation=config.activation, **options)

    register_guide(model, name, build)
