r"""The mixed categorical–Gaussian deep latent-variable model of Rainforth (2020), "Deep LVM" example.

Generative model, for each data point in the ``"data"`` plate (the lecture's :math:`z_1, z_2`)::

    y ~ Categorical(1/K, ..., 1/K)                       (site "y": z_1, one of K = 5 components)
    z | y ~ Normal(m_y, diag S_y)                         (site "z": z_2; m, S fixed per component)
    x | y, z ~ Normal(mu_theta(e_y, z), diag Sigma_theta(e_y, z))   (site "x": a Gaussian decoder)

``y`` is an index, read one-hot (:math:`e_y`) by the networks (:func:`~pyrovae.nn.mixture.component_code`).

The lecture fixes :math:`m_{1:K}` and :math:`S_{1:K}` and leaves their values open; here the means
sit at the vertices of a regular K-gon of radius ``component_spread`` in the first two latent
dimensions (evenly on a line when ``z_dim = 1``) and :math:`S_k = I`, or they are learned with
``learn_component_prior``. :math:`\mu_\theta` and :math:`\Sigma_\theta` are one MLP on :math:`[z; y]`
with two linear heads (``Sigma = diag(softplus(.) + 1e-3)^2``); the lecture's covariance is general,
a diagonal one is what is trained here.

The guide :class:`~pyrovae.guides.MixtureGuide` is :math:`q(y \mid x)\, q(z \mid x, y)` with ``y``
enumerated (objective ``enum``), so the ELBO sums over the K components exactly:

.. math::

    \mathcal L(x) = \sum_y q(y \mid x)\, \mathbb E_{q(z \mid x, y)}\big[\log p(x \mid y, z) + \log p(z \mid y)
                    - \log q(z \mid x, y)\big] - \mathrm{KL}\big(q(y \mid x) \,\|\, p(y)\big).

On continuous data the ELBO is a density bound (dequantized intensities, Yang 2022, §5.3): it can
be positive. Nothing in the ELBO makes the model use every component: the decoder reads ``y``
directly and ``z`` is rich, so :math:`q(y \mid x)` may settle on a few components and leave the
others untrained (it kept two of five, clothing against footwear and bags, in 5 epochs of
``rainforth`` with seed 0). How the components agree with the classes is
:func:`pyrovae.clustering.clustering_accuracy` (with K = 5 components for 10 classes, the best
one-to-one matching can cover at most half of a balanced data set).

Cluster assignments: :math:`\arg\max_y q(y \mid x)` is ``guide.cluster_probabilities(x).argmax(-1)``;
the model's posterior :math:`p(y \mid x, z) \propto p(y)\, p(z \mid y)\, p(x \mid y, z)` given a code
``z`` from the guide comes from Pyro's ``infer_discrete`` (most probable ``y`` or a posterior draw)
or ``TraceEnum_ELBO.compute_marginals``, through :func:`pyrovae.clustering.infer_assignments` and
:func:`pyrovae.clustering.posterior_assignment_probabilities` (the recipe in plain Pyro is in
:mod:`pyrovae.models.gmvae`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.clustering import ClusterMetrics, cluster_sample_grid
from pyrovae.nn import ACTIVATIONS, LocScaleHead, open_data_plate
from pyrovae.nn.initialization import glorot_normal_
from pyrovae.nn.mixture import ComponentGaussian, ConditionedEncoder, component_code
from pyrovae.registry import register_model
from pyrovae.validation import InputSpec

#: The smallest decoder scale: keeps the Gaussian density of a near-constant pixel finite.
DECODER_MIN_SCALE = 1e-3


def polygon_components(num_components: int, z_dim: int, spread: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed component means and scales ``(K, L)``: means at the vertices of a regular K-gon of radius
    ``spread`` in the first two dimensions (evenly spaced on a line, ``spread`` apart, for ``L = 1``),
    unit scales."""
    if not spread > 0:
        raise ValueError(f"component_spread must be positive, got {spread}")
    locs = torch.zeros(num_components, z_dim)
    k = torch.arange(num_components, dtype=locs.dtype)
    if z_dim == 1:
        locs[:, 0] = spread * (k - (num_components - 1) / 2)
    else:
        angle = 2 * math.pi * k / num_components
        locs[:, 0], locs[:, 1] = spread * torch.cos(angle), spread * torch.sin(angle)
    return locs, torch.ones(num_components, z_dim)


class MixtureVAE(nn.Module):
    """The mixed categorical–Gaussian model: ``forward(x, num_data=None)`` is the Pyro model.

    Args:
        x_dim: number of inputs ``D`` (real-valued).
        num_components: number of components ``K`` (values of ``y``).
        z_dim: dimension ``L`` of ``z``.
        hidden_sizes, activation: the decoder MLP (used when ``decoder`` is not given).
        learn_component_prior: learn :math:`m_k, S_k` (linear in the one-hot ``y``) instead of fixing them.
        component_spread: radius of the fixed means (see ``polygon_components`` in ``pyrovae.models.mixture_vae``).
        decoder: a module ``(z, y) -> (loc, scale)`` of shape ``(..., D)``.
        name: the prefix of its parameters in Pyro's parameter store.
    """

    max_plate_nesting = 1

    def __init__(
        self,
        x_dim: int,
        num_components: int = 5,
        z_dim: int = 8,
        hidden_sizes: Sequence[int] = (512, 512),
        activation: str = "relu",
        learn_component_prior: bool = False,
        component_spread: float = 2.0,
        decoder: nn.Module | None = None,
        name: str = "mixture_vae",
    ):
        super().__init__()
        if z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {z_dim}")
        self.x_dim, self.num_components, self.z_dim, self.name = x_dim, num_components, z_dim, name
        self.inputs = InputSpec((x_dim,))
        fixed = (None, None) if learn_component_prior else polygon_components(num_components, z_dim, component_spread)
        self.component_prior = ComponentGaussian(num_components, z_dim, *fixed)
        hidden = list(hidden_sizes)
        if decoder is None:
            head = LocScaleHead(hidden[-1] if hidden else z_dim, x_dim, min_scale=DECODER_MIN_SCALE)
            decoder = ConditionedEncoder(z_dim, num_components, hidden, head, activation)
        self.decoder = decoder
        self.register_buffer("prior_logits", torch.zeros(num_components))

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> dist.TorchDistribution:
        """``p(x | y, z)`` for ``y`` an index or a one-hot vector (:func:`~pyrovae.nn.mixture.component_code`)."""
        loc, scale = self.decoder(z, component_code(y, self.num_components, z))
        return dist.Normal(loc, scale).to_event(1)

    def decode_mean(self, code: torch.Tensor) -> torch.Tensor:
        """``E[x | y, z]`` for a code ``[y; z]`` (one-hot ``y`` first), as
        :meth:`~pyrovae.guides.MixtureGuide.encode` gives."""
        y, z = code.split([self.num_components, self.z_dim], dim=-1)
        return self.decoder(z, y)[0]

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        with open_data_plate(self, x, num_data=num_data):
            logits = self.prior_logits.expand(x.shape[0], self.num_components)
            y = pyro.sample("y", dist.Categorical(logits=logits))
            z = pyro.sample("z", self.component_prior.distribution(y))
            pyro.sample("x", self.decode(z, y), obs=x)
        return z

    @torch.no_grad()
    def sample_components(self, components: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images ``E[x | y, z]``, ``z ~ p(z | y = e_k)`` for each component ``k`` in ``components``: ``(N, D)``."""
        loc, scale = self.component_prior(components)
        z = loc + scale * torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
        return self.decode(z, components).mean

    @torch.no_grad()
    def sample_images(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images ``E[x | y, z]`` for ``y ~ p(y)``, ``z ~ p(z | y)``: ``(num_samples, D)``."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        components = torch.randint(self.num_components, (num_samples,), generator=generator)
        return self.sample_components(components.to(self.prior_logits.device), generator)


@dataclass
class MixtureVAEConfig:
    """Hyperparameters of :class:`MixtureVAE` and :class:`~pyrovae.guides.MixtureGuide` (the lecture fixes
    the model's structure; the sizes are this project's choice)."""

    num_components: int = field(default=5, metadata={"help": "number of components K (values of y)", "min": 2})
    z_dim: int = field(default=8, metadata={"help": "dimension L of z", "min": 1, "flags": ["--latent-dim"]})
    hidden_sizes: list[int] = field(default_factory=lambda: [512, 512], metadata={
        "help": "hidden layer sizes of the decoder and of both encoder networks", "min": 1, "flags": ["--hidden"]})
    activation: str = field(default="relu", metadata={"help": "hidden activation", "choices": sorted(ACTIVATIONS)})
    learn_component_prior: bool = field(default=False, metadata={
        "help": "learn the component means and scales of p(z | y) (the lecture fixes them)"})
    component_spread: float = field(default=2.0, metadata={
        "help": "radius of the fixed component means (a regular K-gon in the first two dimensions of z)", "positive": True})
    glorot_init: bool = field(default=False, metadata={"help": "Glorot-normal weights and zero biases in every linear layer"})


def build_mixture_vae(config: MixtureVAEConfig, data) -> MixtureVAE:
    """The :class:`MixtureVAE` of ``config`` for examples of ``data``."""
    model = MixtureVAE(data.x_dim, config.num_components, config.z_dim, config.hidden_sizes, config.activation,
                       config.learn_component_prior, config.component_spread)
    return glorot_normal_(model) if config.glorot_init else model


register_model(
    "mixture-vae",
    MixtureVAEConfig,
    build=build_mixture_vae,
    default_guide="mixture",
    description="Rainforth's mixed categorical-Gaussian model: y ~ Cat(5), z | y Gaussian, Gaussian decoder on (y, z)",
    callbacks=lambda config, model, guide, test: (
        [] if test is None or test.y is None else [ClusterMetrics(model, guide, test)]),
    figures={"samples-per-cluster.png": lambda model, test, title, generator: cluster_sample_grid(
        model, test.image_shape, generator=generator, title=f"samples E[x | y, z], z ~ p(z | y), one row per component y\n{title}")},
    presets={
        "tiny": dict(dataset="digits", binarize=None, dequantize=True, objective="enum", num_components=5, z_dim=2,
                     hidden_sizes=[16], epochs=1, batch_size=64),
        # Rainforth 2020, "Deep LVM": K = 5, Gaussian decoder; trained here on dequantized Fashion-MNIST.
        "rainforth": dict(dataset="fashion-mnist", binarize=None, dequantize=True, objective="enum", num_components=5,
                          z_dim=8, hidden_sizes=[512, 512], activation="relu", batch_size=100, lr=1e-3, epochs=50),
    },
)
