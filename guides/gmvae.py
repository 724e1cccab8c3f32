r"""The guide of the Gaussian-mixture VAE: :math:`q(y \mid x)\, q(z \mid x, y)` (Yang 2022, §5.5.2).

* :math:`q(y \mid x) = \mathrm{Categorical}(\operatorname{softmax} f(x))`: ``y`` is enumerated
  (``config_enumerate``; objective ``enum``), or relaxed to a Gumbel-softmax sample for the
  estimators ``gumbel-a`` and ``gumbel-b``, which then adds the closed-form
  :math:`\mathrm{KL}(q(y \mid x) \,\|\, p(y))` as a guide factor (see :mod:`pyrovae.models.gmvae`).
* :math:`q(z \mid x, y) = \mathcal N(\mu(x, y), \operatorname{diag}\sigma(x, y)^2)`.

The networks are :class:`~pyrovae.nn.mixture.MixtureEncoder`, shared with
:class:`~pyrovae.guides.MixtureGuide`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import kl_divergence

from pyrovae.models.gmvae import check_estimator
from pyrovae.nn import open_data_plate
from pyrovae.nn.initialization import glorot_normal_
from pyrovae.nn.mixture import MixtureEncoder, enumerated_mixture_latents, relaxed_one_hot_categorical
from pyrovae.registry import register_guide
from pyrovae.validation import InputSpec


class GMVAEGuide(nn.Module):
    """``forward(x, num_data=None)`` samples ``"y"`` (enumerated or relaxed) and ``"z"`` in the data plate.

    Args:
        x_dim: number of inputs ``D``.
        num_components: number of values ``C`` of ``y``.
        z_dim: dimension ``L`` of ``z``.
        hidden_sizes, activation: both networks' hidden layers (used when ``encoder`` is not given).
        estimator, temperature, straight_through: as :class:`~pyrovae.models.GMVAE`'s (model and guide must agree).
        encoder: a :class:`~pyrovae.nn.mixture.MixtureEncoder` (or a module with its ``logits`` and ``z_params``).
        name: the prefix of its parameters in Pyro's parameter store.
    """

    max_plate_nesting = 1

    def __init__(
        self,
        x_dim: int,
        num_components: int = 10,
        z_dim: int = 64,
        hidden_sizes: Sequence[int] = (512, 512),
        activation: str = "relu",
        estimator: str = "enumerate",
        temperature: float = 1.0,
        straight_through: bool = False,
        encoder: nn.Module | None = None,
        name: str = "gmvae_guide",
    ):
        super().__init__()
        check_estimator(estimator, temperature)
        self.x_dim, self.num_components, self.z_dim, self.name = x_dim, num_components, z_dim, name
        self.estimator, self.straight_through = estimator, straight_through
        self.inputs = InputSpec((x_dim,))
        self.encoder = encoder if encoder is not None else MixtureEncoder(x_dim, num_components, z_dim, hidden_sizes,
                                                                          activation)
        # The model's fixed uniform p(y), for the closed-form KL of estimator gumbel-b.
        self.register_buffer("prior_logits", torch.zeros(num_components))
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def with_estimator(self, estimator: str) -> GMVAEGuide:
        """A view of this guide with another ``estimator``, sharing every parameter and buffer."""
        check_estimator(estimator, float(self.temperature))
        view = copy.copy(self)
        view.estimator = estimator
        return view

    def posterior_y(self, logits: torch.Tensor) -> dist.TorchDistribution:
        """``q(y | x)`` as the estimator needs it: categorical (enumerated), relaxed one-hot, or relaxed
        one-hot and masked."""
        if self.estimator == "enumerate":
            return dist.Categorical(logits=logits)
        relaxed = relaxed_one_hot_categorical(self.temperature, logits, self.straight_through)
        return relaxed if self.estimator == "gumbel-a" else relaxed.mask(False)

    def forward(self, x: torch.Tensor, num_data: int | None = None):
        with open_data_plate(self, x, num_data=num_data):
            logits = self.encoder.logits(x)
            if self.estimator == "gumbel-b":
                prior = dist.Categorical(logits=self.prior_logits.expand_as(logits))
                kl = kl_divergence(dist.Categorical(logits=logits), prior)
                pyro.factor("y_kl", kl, has_rsample=True)
            return enumerated_mixture_latents(self.encoder, x, self.posterior_y(logits))

    def cluster_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`q(y \\mid x)`, shape ``(B, C)``."""
        return self.encoder.cluster_probabilities(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`\\mathbb E_q[z \\mid x, y^*]` at the most probable component :math:`y^* = \\arg\\max_y q(y \\mid x)`."""
        return self.encoder.most_probable_code(x)[1]


def build_gmvae_guide(config, data, model) -> GMVAEGuide:
    guide = GMVAEGuide(data.x_dim, config.num_components, config.z_dim, config.hidden_sizes, config.activation,
                       config.estimator, config.temperature, config.straight_through)
    return glorot_normal_(guide) if config.glorot_init else guide


register_guide("gmvae", "mixture", build_gmvae_guide)
