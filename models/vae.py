"""The Gaussian-latent variational autoencoder (Kingma & Welling 2014; Yang 2022, §5.3).

Generative model, for each data point ``i`` in the ``"data"`` plate::

    z_i ~ Normal(0, I_L)                         (site "z")
    x_i | z_i ~ p_theta(x | decoder(z_i))        (site "x"; Bernoulli, Gaussian or continuous Bernoulli)

Any guide that samples site ``"z"`` with shape ``(B, L)`` inside the same plate pairs with it
(see :mod:`pyrovae.guides`). The evidence lower bound it is trained on is

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || N(0, I)) <= log p(x).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.nn import (
    ACTIVATIONS,
    LIKELIHOODS,
    DecodesThroughLikelihood,
    PriorThenLikelihood,
    decoder_mlp,
    make_likelihood,
)
from pyrovae.registry import register_model
from pyrovae.validation import InputSpec


class VAE(PriorThenLikelihood, DecodesThroughLikelihood, nn.Module):
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

    #: The data plate is the only plate.
    max_plate_nesting = 1

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
        if z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {z_dim}")
        self.x_dim, self.z_dim, self.name = x_dim, z_dim, name
        options = {"scale": likelihood_scale} if likelihood == "gaussian" else {}
        self.likelihood = make_likelihood(likelihood, x_dim, **options)
        self.inputs = InputSpec((x_dim,), support=self.likelihood.support)
        self.decoder = decoder if decoder is not None else decoder_mlp(z_dim, hidden_sizes, x_dim, activation)
        self.register_buffer("prior_loc", torch.zeros(z_dim))
        self.register_buffer("prior_scale", torch.ones(z_dim))

    def prior(self, batch_size: int) -> dist.TorchDistribution:
        """``p(z) = N(0, I_L)`` for a batch."""
        return dist.Normal(self.prior_loc, self.prior_scale).expand([batch_size, self.z_dim]).to_event(1)

    @torch.no_grad()
    def sample_images(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images ``E[x | z]`` for ``z ~ p(z)``: ``(num_samples, D)``."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        z = torch.randn(num_samples, self.z_dim, generator=generator, device=self.prior_loc.device)
        return self.decode_mean(z)


@dataclass
class VAEConfig:
    """Hyperparameters of :class:`VAE` and its guides (the defaults train on the 8x8 digits in seconds)."""

    z_dim: int = field(default=8, metadata={"help": "latent dimension L", "min": 1, "flags": ["--latent-dim"]})
    hidden_sizes: list[int] = field(default_factory=lambda: [128], metadata={
        "help": "hidden layer sizes of the encoder and of the decoder", "min": 1, "flags": ["--hidden"]})
    activation: str = field(default="relu", metadata={"help": "hidden activation", "choices": sorted(ACTIVATIONS)})
    likelihood: str = field(default="bernoulli", metadata={"help": "p(x | z)", "choices": sorted(LIKELIHOODS)})
    likelihood_scale: float | None = field(default=None, metadata={
        "help": "fixed scale of the gaussian likelihood (none: learned per pixel)", "positive": True})
    output_bias_from_data: bool = field(default=False, metadata={
        "help": "start the decoder's output bias at the logit of the mean training image (Burda et al. 2016)"})


def build_vae(config: VAEConfig, data) -> VAE:
    """The :class:`VAE` of ``config`` for examples of ``data``."""
    model = VAE(data.x_dim, config.z_dim, config.hidden_sizes, config.likelihood, config.likelihood_scale,
                activation=config.activation)
    if config.output_bias_from_data:
        output = model.decoder[-1]
        mean = data.x.mean(0).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            output.bias.copy_(torch.logit(mean) if config.likelihood != "gaussian" else mean)
    return model


register_model(
    "vae",
    VAEConfig,
    build=build_vae,
    default_guide="diagonal",
    description="Gaussian-latent VAE; Bernoulli, Gaussian or continuous-Bernoulli decoder",
    presets={
        "tiny": dict(dataset="digits", z_dim=2, hidden_sizes=[16], epochs=1, batch_size=64),
        "digits": dict(dataset="digits", z_dim=8, hidden_sizes=[128], epochs=60, batch_size=64, lr=3e-3),
        # Burda, Grosse & Salakhutdinov 2016, VAE with one stochastic layer (k = 1): 784-200-200-50, tanh,
        # Bernoulli decoder, dynamic binarization, batch 100, Adam with eps 1e-4; 3,280 epochs in the paper.
        "burda": dict(dataset="mnist", binarize="dynamic", z_dim=50, hidden_sizes=[200, 200], activation="tanh",
                      likelihood="bernoulli", output_bias_from_data=True, batch_size=100, lr=1e-3, adam_eps=1e-4,
                      epochs=3280),
        # PyTorch's examples/vae: 784-400-20, ReLU, Bernoulli decoder on MNIST intensities thresholded here, batch 128, Adam 1e-3.
        "torch-example": dict(dataset="mnist", binarize="dynamic", z_dim=20, hidden_sizes=[400], activation="relu",
                              batch_size=128, lr=1e-3, epochs=10),
        # Yang 2022, §5.3.3: continuous-Bernoulli VAE on normalized MNIST, z = 20, 500-500 layers, Adam 3e-4,
        # batch 100 (the tutorial's dropout of 0.1 is not applied).
        "yang": dict(dataset="mnist", binarize=None, likelihood="continuous_bernoulli", z_dim=20,
                        hidden_sizes=[500, 500], activation="relu", batch_size=100, lr=3e-4, epochs=70),
    },
)
