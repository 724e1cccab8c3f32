"""Observation models p(x | decoder output), chosen by name and shared by every model.

Each likelihood says which values it models (its ``support``, which the model's
:class:`~pyrovae.validation.InputSpec` checks), builds the Pyro distribution over one example
(its event dims are the shape of one example), and gives a mean image for plots.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyrovae.distributions import BernoulliLogits


def _as_shape(event_shape) -> tuple[int, ...]:
    return (int(event_shape),) if isinstance(event_shape, int) else tuple(int(s) for s in event_shape)


class BernoulliLikelihood(nn.Module):
    """``x_d ~ Bernoulli(sigmoid(logits_d))`` for binary pixels."""

    support = "binary"

    def __init__(self, event_shape):
        super().__init__()
        self.event_shape = _as_shape(event_shape)

    def distribution(self, output: torch.Tensor) -> dist.TorchDistribution:
        return BernoulliLogits(logits=output, validate_args=False).to_event(len(self.event_shape))

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output)


class ContinuousBernoulliLikelihood(BernoulliLikelihood):
    """``x_d ~ ContinuousBernoulli(logits_d)`` on [0, 1] with its normaliser (Loaiza-Ganem &
    Cunningham 2019; Yang 2022, §5.3.1)."""

    support = "unit_interval"

    def distribution(self, output: torch.Tensor) -> dist.TorchDistribution:
        return dist.ContinuousBernoulli(logits=output, validate_args=False).to_event(len(self.event_shape))

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        return dist.ContinuousBernoulli(logits=output, validate_args=False).mean


class BernoulliCrossEntropy(BernoulliLikelihood):
    r"""The Bernoulli cross-entropy of grey values, :math:`\log p(x \mid \ell) = \sum_d x_d \log q_d + (1 - x_d)
    \log(1 - q_d)` with :math:`q = \sigma(\ell)` and :math:`x \in [0, 1]^D`: the loss the dissertation trains
    with on intensities (Sadier-Gane 2020, §3.3.3, eq. 3.3, "Bernoulli(q_i).logprob(p_i)").

    It is **not a normalised density** on :math:`[0, 1]^D`: :math:`\int_0^1 q^x (1 - q)^{1 - x}\,dx < 1`
    except where :math:`q \in \{0, 1\}`, so a bound computed with it is no bound on any log-likelihood and is not
    comparable with one on binary data; the continuous Bernoulli (``continuous_bernoulli``,
    Loaiza-Ganem & Cunningham 2019) is this function with its normaliser. Offered by name only, for
    reproducing the dissertation; a plain ``bernoulli`` likelihood refuses grey values.
    """

    support = "unit_interval"


class GaussianLikelihood(nn.Module):
    """``x_d ~ Normal(mu_d, sigma_d)``.

    ``scale=None`` learns one scale per pixel, shared across examples (``sigma_d = softplus(s_d) + 1e-3``);
    a number fixes ``sigma_d`` to it (with ``scale=1/sqrt(2)`` the loss is a scaled squared error).
    """

    support = "real"

    def __init__(self, event_shape, scale: float | None = None):
        super().__init__()
        self.event_shape = _as_shape(event_shape)
        if scale is None:
            # softplus^{-1}(0.1): a moderate initial scale for intensities in [0, 1].
            self.raw_scale = nn.Parameter(torch.full(self.event_shape, math.log(math.expm1(0.1))))
            self.fixed_scale = None
        else:
            if not scale > 0:
                raise ValueError(f"Gaussian likelihood scale must be positive, got {scale}")
            self.raw_scale = None
            self.fixed_scale = float(scale)

    def scale(self) -> torch.Tensor | float:
        return self.fixed_scale if self.raw_scale is None else F.softplus(self.raw_scale) + 1e-3

    def distribution(self, output: torch.Tensor) -> dist.TorchDistribution:
        scale = torch.as_tensor(self.scale(), dtype=output.dtype).expand_as(output)
        return dist.Normal(output, scale, validate_args=False).to_event(len(self.event_shape))

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        return output


LIKELIHOODS = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "continuous_bernoulli": ContinuousBernoulliLikelihood,
    "bernoulli_cross_entropy": BernoulliCrossEntropy,
}


def make_likelihood(name: str, event_shape, **options) -> nn.Module:
    """The likelihood called ``name`` (``bernoulli``, ``gaussian``, ``continuous_bernoulli``,
    ``bernoulli_cross_entropy``)."""
    try:
        cls = LIKELIHOODS[name]
    except KeyError:
        raise ValueError(f"unknown likelihood {name!r}; expected one of {sorted(LIKELIHOODS)}") from None
    return cls(event_shape, **options)


class DecodesThroughLikelihood:
    """``decode(z)`` and ``decode_mean(z)`` for a model whose ``decoder`` network feeds its
    ``likelihood``: the distribution ``p(x | z)`` and its mean ``E[x | z]``, the image a latent code
    stands for. A mixin, so a model keeps its own ``nn.Module`` layout (and checkpoints their keys)."""

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        """``p(x | z)``."""
        return self.likelihood.distribution(self.decoder(z))

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """``E[x | z]``."""
        return self.likelihood.mean(self.decoder(z))

