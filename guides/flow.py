"""An amortised normalizing-flow guide for site ``"z"`` (Kingma et al. 2016, inverse autoregressive flow).

    e ~ N(mu_phi(x), diag sigma_phi(x)^2),   z = T_K o ... o T_1(e),
    log q(z | x) = log N(e; mu, sigma^2) - sum_k log |det dT_k/de_{k-1}|,

with each ``T_k`` an affine autoregressive transform (``pyro.distributions.transforms``) in IAF
direction: sampling and scoring the guide's own samples take one pass each. The flows are shared
across data points; the encoder makes the base distribution depend on ``x``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import affine_autoregressive, permute
from torch import nn

from pyrovae.amortized import AmortizedGuide, register_amortized_guide
from pyrovae.nn import LocScaleHead


class NormalizingFlowGuide(AmortizedGuide):
    """A diagonal-Normal encoder followed by ``num_flows`` affine autoregressive transforms,
    with the latent order reversed between them so every coordinate gets to depend on the others.

    It takes :class:`~pyrovae.guides.AmortizedGuide`'s ``x_dim, z_dim, hidden_sizes, activation,
    encoder, name``, and:

    Args:
        num_flows: number of autoregressive transforms ``K``.
        flow_hidden_sizes: hidden layers of each transform's autoregressive network.
    """

    head_class = LocScaleHead

    def __init__(self, *args, num_flows: int = 2, flow_hidden_sizes: Sequence[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        z_dim = self.z_dim
        if num_flows < 1:
            raise ValueError(f"num_flows must be at least 1, got {num_flows}")
        hidden = list(flow_hidden_sizes or [4 * z_dim])
        self.flows = nn.ModuleList(affine_autoregressive(z_dim, hidden_dims=hidden) for _ in range(num_flows))
        self.register_buffer("reverse", torch.arange(z_dim - 1, -1, -1))

    def transforms(self) -> list:
        """The flow's bijections in the order applied to the base sample, with a permutation of the
        coordinates between consecutive flows (so each flow conditions on different coordinates)."""
        steps = []
        for i, flow in enumerate(self.flows):
            if i > 0:
                steps.append(permute(self.z_dim, self.reverse))
            steps.append(flow)
        return steps

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        loc, scale = self.encoder(x)
        return dist.TransformedDistribution(dist.Normal(loc, scale).to_event(1), self.transforms())

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The flow applied to the base mean: a point summary of ``q(z | x)``, which has no closed-form mean."""
        loc, _ = self.encoder(x)
        for transform in self.transforms():
            loc = transform(loc)
        return loc


register_amortized_guide("vae", "flow", NormalizingFlowGuide)
