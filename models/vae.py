"""The Gaussian-latent variational autoencoder (Kingma & Welling 2014; seed 002 §5.3).

Generative model, for each data point ``i`` in the ``"data"`` plate::

    z_i ~ Normal(0, I_L)                         (site "z")
    x_i | z_i ~ p_theta(x | decoder(z_i))        (site "x"; Bernoulli, Gaussian or continuous Bernoulli)

Any guide that samples site ``"z"`` with shape ``(B, L)`` inside the same plate pairs with it
(see :mod:`pyrovae.guides`). The evidence lower bound it is trained on is

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || N(0, I)) <= log p(x).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.likelihoods import make_likelihood
from pyrovae.networks import decoder_mlp
from pyrovae.params import register_module
from pyrovae.plates import data_plate
from pyrovae.validation import data_checks_enabled


class VAE(nn.Module):
    """A VAE model: ``forward(x, num_data=None)`` is the Pyro model.

    Args:
        x_dim: number of pixels ``D``.
        z_dim: latent dimension ``L``.
        hidden_sizes: decoder hidden layers (used when ``decoder`` is not given).
        likelihood: ``"bernoulli"`` (logits), ``"gaussian"`` or ``"continuous_bernoulli"``.
        likelihood_scale: for ``"gaussian"``, a fixed scale; ``None`` learns one per pixel.
        activation: hidden activation of the default decoder.
        decoder: a module mapping ``(..., L)`` to ``(..., D)`` likelihood parameters.
        name: the prefix of its parameters in Pyro's parameter store.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int = 20,
        hidden_sizes: Sequence[int] = (400,),
        likelihood: str = "bernoulli",
        likelihood_scale: float | None = None,
        activation: str = "relu",
        decoder: nn.Module | None = None,
        name: str = "vae",
    ):
        super().__init__()
        self.x_dim, self.z_dim, self.name = x_dim, z_dim, name
        options = {"scale": likelihood_scale} if likelihood == "gaussian" else {}
        self.likelihood = make_likelihood(likelihood, x_dim, **options)
        self.decoder = decoder if decoder is not None else decoder_mlp(z_dim, hidden_sizes, x_dim, activation)
        self.register_buffer("prior_loc", torch.zeros(z_dim))
        self.register_buffer("prior_scale", torch.ones(z_dim))

    def prior(self, batch_size: int) -> dist.TorchDistribution:
        """``p(z) = N(0, I_L)`` for a batch."""
        return dist.Normal(self.prior_loc, self.prior_scale).expand([batch_size, self.z_dim]).to_event(1)

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        """``p(x | z)``."""
        return self.likelihood.distribution(self.decoder(z))

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """``E[x | z]``, the image a latent code stands for."""
        return self.likelihood.mean(self.decoder(z))

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        if data_checks_enabled():
            self.likelihood.check(x)
        register_module(self.name, self)
        with data_plate(x.shape[0], num_data, x.device):
            z = pyro.sample("z", self.prior(x.shape[0]))
            pyro.sample("x", self.decode(z), obs=x)
        return z

    @torch.no_grad()
    def sample_images(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images ``E[x | z]`` for ``z ~ p(z)``: ``(num_samples, D)``."""
        z = torch.randn(num_samples, self.z_dim, generator=generator, device=self.prior_loc.device)
        return self.decode_mean(z)
