r"""The guide :math:`q(y \mid x)\, q(z \mid x, y)` of :class:`~pyrovae.models.MixtureVAE`, with ``y`` enumerated.

:math:`q(y \mid x)` is a categorical from an MLP, :math:`q(z \mid x, y)` a diagonal Gaussian
from an MLP on :math:`[x; y]` (:class:`~pyrovae.nn.mixture.MixtureEncoder`, the networks of the
GMVAE guide too). ``y`` is marked for parallel enumeration (``config_enumerate``): with objective
``enum`` (``TraceEnum_ELBO``) the ELBO sums over its values exactly and only ``z`` is sampled,
once per value of ``y`` (Rainforth 2020, "Deep LVM"; Yang 2022, §5.5.3's marginalising estimator).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.nn import open_data_plate
from pyrovae.nn.initialization import glorot_normal_
from pyrovae.nn.mixture import MixtureEncoder, enumerated_mixture_latents
from pyrovae.registry import register_guide
from pyrovae.validation import InputSpec


class MixtureGuide(nn.Module):
    """``forward(x, num_data=None)`` samples ``"y"`` (enumerated) and ``"z"`` in the data plate.

    Args:
        x_dim: number of inputs ``D``.
        num_components: number of values ``K`` of ``y``.
        z_dim: dimension ``L`` of ``z``.
        hidden_sizes, activation: both networks' hidden layers (used when ``encoder`` is not given).
        encoder: a :class:`~pyrovae.nn.mixture.MixtureEncoder` (or a module with its ``logits`` and ``z_params``).
        name: the prefix of its parameters in Pyro's parameter store.
    """

    max_plate_nesting = 1

    def __init__(self, x_dim: int, num_components: int = 5, z_dim: int = 8, hidden_sizes: Sequence[int] = (512, 512),
                 activation: str = "relu", encoder: nn.Module | None = None, name: str = "mixture_guide"):
        super().__init__()
        self.x_dim, self.num_components, self.z_dim, self.name = x_dim, num_components, z_dim, name
        self.inputs = InputSpec((x_dim,))
        self.encoder = encoder if encoder is not None else MixtureEncoder(x_dim, num_components, z_dim, hidden_sizes,
                                                                          activation)

    def forward(self, x: torch.Tensor, num_data: int | None = None):
        with open_data_plate(self, x, num_data=num_data):
            y_distribution = dist.Categorical(logits=self.encoder.logits(x))
            return enumerated_mixture_latents(self.encoder, x, y_distribution)

    def cluster_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`q(y \\mid x)`, shape ``(B, K)``."""
        return self.encoder.cluster_probabilities(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code ``[y*; E_q[z | x, y*]]`` at the most probable component ``y* = argmax_y q(y | x)``
        (one-hot ``y*`` first), which :meth:`~pyrovae.models.MixtureVAE.decode_mean` decodes."""
        return torch.cat(self.encoder.most_probable_code(x), dim=-1)


def build_mixture_guide(config, data, model) -> MixtureGuide:
    guide = MixtureGuide(data.x_dim, config.num_components, config.z_dim, config.hidden_sizes, config.activation)
    return glorot_normal_(guide) if config.glorot_init else guide


register_guide("mixture-vae", "mixture", build_mixture_guide)
