"""The conditional VAE with a learned, label-dependent prior (Yang 2022, §5.4).

Generative model of an example ``x`` given its class ``y`` (one-hot ``e_y`` of ``C`` classes), for
each data point ``i`` in the ``"data"`` plate::

    z_i | y_i ~ Normal(mu(e_y), diag sigma(e_y)^2)       (site "z"; linear heads on the one-hot label)
    x_i | y_i, z_i ~ p_theta(x | decoder(e_y, z_i))      (site "x"; continuous Bernoulli or Bernoulli)

It models ``p(x | y)``; the labels are observed inputs, not a site. A guide ``q(z | x, y)`` (see
:class:`~pyrovae.guides.ConditionalGuide`) samples ``"z"`` in the same plate, and the bound is

    ELBO(x | y) = E_q[log p(x | y, z)] - KL(q(z | x, y) || p(z | y)) <= log p(x | y).

Because the prior depends on ``y``, sampling ``z ~ p(z | y)`` and decoding generates images of a
chosen class (the tutorial's Fig. 9; :func:`class_conditional_grid`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyrovae.nn import ACTIVATIONS, LocScaleHead, decoder_mlp, make_likelihood, open_data_plate
from pyrovae.registry import register_model
from pyrovae.validation import InputSpec, check_labels

#: Likelihoods of intensities in [0, 1] (the tutorial's) or of binarized images.
CONDITIONAL_LIKELIHOODS = ("continuous_bernoulli", "bernoulli")


def one_hot(y: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """Labels ``(B,)`` as one-hot vectors ``(B, C)`` in the dtype and device of ``like``."""
    return F.one_hot(y, num_classes).to(dtype=like.dtype, device=like.device)


class ConditionalVAE(nn.Module):
    """A conditional VAE: ``forward(x, y, num_data=None)`` is the Pyro model of ``p(x | y)``.

    Args:
        x_dim: number of pixels ``D``.
        num_classes: number of label values ``C``.
        z_dim: latent dimension ``L``.
        hidden_sizes: decoder hidden layers (used when ``decoder`` is not given).
        likelihood: ``"continuous_bernoulli"`` (intensities in [0, 1]) or ``"bernoulli"`` (binary pixels).
        activation: hidden activation of the default decoder.
        prior: a module mapping one-hot labels ``(B, C)`` to ``(loc, scale)`` of ``p(z | y)``
            (default: :class:`~pyrovae.nn.LocScaleHead`, linear in the one-hot label).
        decoder: a module mapping ``(..., C + L)``, the one-hot label then ``z``, to ``(..., D)``
            likelihood parameters.
        name: the prefix of its parameters in Pyro's parameter store.
    """

    #: The data plate is the only plate.
    max_plate_nesting = 1

    def __init__(
        self,
        x_dim: int,
        num_classes: int,
        z_dim: int = 20,
        hidden_sizes: Sequence[int] = (500, 500),
        likelihood: str = "continuous_bernoulli",
        activation: str = "relu",
        prior: nn.Module | None = None,
        decoder: nn.Module | None = None,
        name: str = "cvae",
    ):
        super().__init__()
        if z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {z_dim}")
        if num_classes < 2:
            raise ValueError(f"a conditional VAE needs at least 2 classes, got num_classes={num_classes}")
        if likelihood not in CONDITIONAL_LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {CONDITIONAL_LIKELIHOODS}, got {likelihood!r}")
        self.x_dim, self.num_classes, self.z_dim, self.name = x_dim, num_classes, z_dim, name
        self.likelihood = make_likelihood(likelihood, x_dim)
        self.inputs = InputSpec((x_dim,), support=self.likelihood.support, num_classes=num_classes)
        self.prior_head = prior if prior is not None else LocScaleHead(num_classes, z_dim)
        self.decoder = (decoder if decoder is not None
                        else decoder_mlp(num_classes + z_dim, hidden_sizes, x_dim, activation))

    def prior(self, label: torch.Tensor) -> dist.TorchDistribution:
        """``p(z | y) = N(mu(e_y), diag sigma(e_y)^2)`` for one-hot labels ``(B, C)``."""
        loc, scale = self.prior_head(label)
        return dist.Normal(loc, scale).to_event(1)

    def _output(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        # z may carry particle dimensions on the left of the batch (vectorized particles, IWAE samples).
        return self.decoder(torch.cat([label.expand(*z.shape[:-1], -1), z], dim=-1))

    def decode(self, z: torch.Tensor, label: torch.Tensor) -> dist.TorchDistribution:
        """``p(x | y, z)`` for one-hot labels ``(B, C)``."""
        return self.likelihood.distribution(self._output(z, label))

    def forward(self, x: torch.Tensor, y: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        with open_data_plate(self, x, y, num_data):
            label = one_hot(y, self.num_classes, x)
            z = pyro.sample("z", self.prior(label))
            pyro.sample("x", self.decode(z, label), obs=x)
        return z

    @torch.no_grad()
    def sample_images(self, num_samples: int, generator: torch.Generator | None = None,
                      labels: torch.Tensor | None = None) -> torch.Tensor:
        """Mean images ``E[x | y, z]`` for ``z ~ p(z | y)``: ``(num_samples, D)``.

        ``labels`` ``(num_samples,)`` chooses each image's class; by default the classes in order,
        in equal consecutive blocks (100 samples drawn 10 to a row show one class per row).
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        device = next(self.parameters()).device
        if labels is None:
            labels = torch.arange(num_samples, device=device) * self.num_classes // num_samples
        labels = torch.as_tensor(labels)
        check_labels(labels, self.num_classes, num_samples, name="labels")
        label = one_hot(labels.to(device), self.num_classes, next(self.parameters()))
        loc, scale = self.prior_head(label)
        z = loc + scale * torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=device)
        return self.likelihood.mean(self._output(z, label))


def class_conditional_grid(model: ConditionalVAE, image_shape, per_class: int = 15,
                           generator: torch.Generator | None = None, title: str | None = None):
    """One row of ``per_class`` samples ``E[x | y, z]``, ``z ~ p(z | y)``, per class ``y`` (Yang 2022,
    Fig. 9), drawn by :func:`pyrovae.plots.labelled_grid`; returns the ``Figure``."""
    from pyrovae import plots  # matplotlib: only when a figure is drawn

    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    labels = torch.arange(model.num_classes).repeat_interleave(per_class)
    images = model.sample_images(len(labels), generator, labels)
    return plots.labelled_grid(images, labels, image_shape, columns=per_class, title=title, row_axis_label="class")


@dataclass
class ConditionalVAEConfig:
    """Hyperparameters of :class:`ConditionalVAE` and its guide (the defaults train on the 8x8 digits in seconds)."""

    z_dim: int = field(default=8, metadata={"help": "latent dimension L", "min": 1, "flags": ["--latent-dim"]})
    hidden_sizes: list[int] = field(default_factory=lambda: [128], metadata={
        "help": "hidden layer sizes of the encoder and of the decoder", "min": 1, "flags": ["--hidden"]})
    activation: str = field(default="relu", metadata={"help": "hidden activation", "choices": sorted(ACTIVATIONS)})
    likelihood: str = field(default="continuous_bernoulli", metadata={
        "help": "p(x | y, z): continuous_bernoulli models intensities (--binarize none), bernoulli binary pixels",
        "choices": list(CONDITIONAL_LIKELIHOODS)})


def build_conditional_vae(config: ConditionalVAEConfig, data) -> ConditionalVAE:
    """The :class:`ConditionalVAE` of ``config`` for examples and labels of ``data``."""
    if data.y is None or data.num_classes < 2:
        raise ValueError(f"the conditional VAE models p(x | y) and needs labels; data set {data.name!r} has none")
    return ConditionalVAE(data.x_dim, data.num_classes, config.z_dim, config.hidden_sizes, config.likelihood,
                          config.activation)


register_model(
    "cvae",
    ConditionalVAEConfig,
    build=build_conditional_vae,
    default_guide="diagonal",
    description="conditional VAE p(x | y), learned prior p(z | y); continuous-Bernoulli or Bernoulli decoder",
    presets={
        "tiny": dict(dataset="digits", binarize=None, dequantize=True, likelihood="continuous_bernoulli", z_dim=2,
                     hidden_sizes=[16], epochs=1, batch_size=64),
        # Intensities dequantized as in the tutorial: exact zeros would let a continuous-Bernoulli
        # decoder gain without bound by pushing the border pixels' logits to -inf.
        "digits": dict(dataset="digits", binarize=None, dequantize=True, likelihood="continuous_bernoulli", z_dim=8,
                       hidden_sizes=[128], epochs=60, batch_size=64, lr=3e-3),
        # Yang 2022, §5.4.4 (its code, 03_cvae): continuous Bernoulli on dequantized MNIST, z = 20, 500-500 ReLU
        # layers, Adam 3e-4, batch 100; test ELBO 1820.10 at epoch 69. Its dropout of 0.1 is not applied.
        "yang": dict(dataset="mnist", binarize=None, dequantize=True, likelihood="continuous_bernoulli", z_dim=20,
                     hidden_sizes=[500, 500], activation="relu", batch_size=100, lr=3e-4, epochs=70),
        # The same networks with a Bernoulli decoder on dynamically binarized MNIST.
        "bernoulli": dict(dataset="mnist", binarize="dynamic", likelihood="bernoulli", z_dim=20,
                          hidden_sizes=[500, 500], activation="relu", batch_size=100, lr=3e-4, epochs=70),
    },
    figures={"samples-by-class.png": lambda model, test, title, generator: class_conditional_grid(
        model, test.image_shape, generator=generator, title=f"samples E[x | y, z], z ~ p(z | y), one row per class\n{title}")},
)
