"""Observation models p(x | decoder output), chosen by name and shared by every model.

Each likelihood says how many decoder outputs it needs per pixel, builds the Pyro distribution over
one example (event dim 1), checks data where it enters, and gives a mean image for plots.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyrovae.validation import check_data


class BernoulliLikelihood(nn.Module):
    """``x_d ~ Bernoulli(sigmoid(logits_d))`` for binary pixels."""

    params_per_pixel = 1

    def __init__(self, x_dim: int):
        super().__init__()
        self.x_dim = x_dim

    def check(self, x: torch.Tensor) -> None:
        check_data(x, self.x_dim, binary=True)

    def distribution(self, output: torch.Tensor) -> dist.TorchDistribution:
        return dist.Bernoulli(logits=output, validate_args=False).to_event(1)

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output)


class ContinuousBernoulliLikelihood(BernoulliLikelihood):
    """``x_d ~ ContinuousBernoulli(logits_d)`` on [0, 1] with its normaliser (Loaiza-Ganem &
    Cunningham 2019; seed 002 §5.3.1)."""

    def check(self, x: torch.Tensor) -> None:
        check_data(x, self.x_dim, unit_interval=True)

    def distribution(self, output: torch.Tensor) -> dist.TorchDistribution:
        return dist.ContinuousBernoulli(logits=output, validate_args=False).to_event(1)

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        return dist.ContinuousBernoulli(logits=output, validate_args=False).mean


class GaussianLikelihood(nn.Module):
    """``x_d ~ Normal(mu_d, sigma_d)``.

    ``scale=None`` learns one scale per pixel, shared across examples (``sigma_d = softplus(s_d) + 1e-3``);
    a number fixes ``sigma_d`` to it (with ``scale=1/sqrt(2)`` the loss is a scaled squared error).
    """

    params_per_pixel = 1

    def __init__(self, x_dim: int, scale: float | None = None):
        super().__init__()
        self.x_dim = x_dim
        if scale is None:
            # softplus^{-1}(0.1): a moderate initial scale for intensities in [0, 1].
            self.raw_scale = nn.Parameter(torch.full((x_dim,), math.log(math.expm1(0.1))))
            self.fixed_scale = None
        else:
            if not scale > 0:
                raise ValueError(f"Gaussian likelihood scale must be positive, got {scale}")
            self.raw_scale = None
            self.fixed_scale = float(scale)

    def check(self, x: torch.Tensor) -> None:
        check_data(x, self.x_dim)

    def scale(self) -> torch.Tensor | float:
        return self.fixed_scale if self.raw_scale is None else F.softplus(self.raw_scale) + 1e-3

    def distribution(self, output: torch.Tensor) -> dist.TorchDistribution:
        scale = torch.as_tensor(self.scale(), dtype=output.dtype).expand_as(output)
        return dist.Normal(output, scale, validate_args=False).to_event(1)

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        return output


LIKELIHOODS = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "continuous_bernoulli": ContinuousBernoulliLikelihood,
}


def make_likelihood(name: str, x_dim: int, **options) -> nn.Module:
    """The likelihood called ``name`` (``bernoulli``, ``gaussian``, ``continuous_bernoulli``)."""
    try:
        cls = LIKELIHOODS[name]
    except KeyError:
        raise ValueError(f"unknown likelihood {name!r}; expected one of {sorted(LIKELIHOODS)}") from None
    return cls(x_dim, **options)
