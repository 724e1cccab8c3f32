"""The linear-Gaussian model, whose evidence, posterior and reconstruction error are known exactly.

    z ~ N(0, I_L),   x | z ~ N(W z + b, s^2 I_D)

gives, in closed form,

* the evidence ``p(x) = N(x; b, W W^T + s^2 I)``;
* the posterior ``p(z | x) = N(m, S)`` with ``S = (I + W^T W / s^2)^{-1}`` and ``m = S W^T (x - b) / s^2``;
* the reconstruction error under the posterior: with ``r = x - W m - b`` and ``A = W S W^T`` (the
  covariance of ``E[x | z] = W z + b``), ``E ||x - E[x | z]||^2 = ||r||^2 + tr A``, and one draw of
  ``||x - W z - b||^2`` has variance ``4 r^T A r + 2 tr(A^2)``.

:class:`ExactPosteriorGuide` samples ``z`` from that posterior, optionally inflated and shifted.
"""

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.data import Dataset
from pyrovae.nn import data_plate


class LinearGaussian(nn.Module):
    """``z ~ N(0, I_L)``, ``x | z ~ N(W z + b, s^2 I_D)``."""

    max_plate_nesting = 1

    def __init__(self, weight, bias, scale):
        super().__init__()
        self.weight, self.bias, self.scale = weight, bias, scale

    def forward(self, x, num_data=None):
        with data_plate(x.shape[0], num_data):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], self.weight.shape[1], dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.weight.T + self.bias, self.scale).to_event(1), obs=x)

    def log_evidence(self, x):
        """``log p(x)`` per example."""
        covariance = self.weight @ self.weight.T + self.scale**2 * torch.eye(len(self.bias), dtype=x.dtype)
        return dist.MultivariateNormal(self.bias, covariance).log_prob(x)

    def posterior(self, x):
        """``(m, S)``: the posterior means ``(N, L)`` and the shared covariance ``(L, L)``."""
        precision = torch.eye(self.weight.shape[1], dtype=x.dtype) + self.weight.T @ self.weight / self.scale**2
        covariance = torch.linalg.inv(precision)
        loc = (x - self.bias) @ self.weight @ covariance.T / self.scale**2
        return loc, covariance

    def reconstruction_error(self, x):
        """``(E ||x - E[x | z]||^2, Var ||x - E[x | z]||^2)`` per example for ``z ~ p(z | x)``."""
        loc, covariance = self.posterior(x)
        residual = x - loc @ self.weight.T - self.bias
        mean_covariance = self.weight @ covariance @ self.weight.T
        mean = residual.pow(2).sum(-1) + torch.trace(mean_covariance)
        variance = 4 * ((residual @ mean_covariance) * residual).sum(-1) + 2 * torch.trace(mean_covariance @ mean_covariance)
        return mean, variance


class ExactPosteriorGuide(nn.Module):
    """``q(z | x) = N(m + shift, inflate * S)``: the exact posterior of ``model`` when ``inflate=1, shift=0``."""

    max_plate_nesting = 1

    def __init__(self, model, inflate=1.0, shift=0.0):
        super().__init__()
        self.model, self.inflate, self.shift = model, inflate, shift

    def forward(self, x, num_data=None):
        loc, covariance = self.model.posterior(x)
        with data_plate(x.shape[0], num_data):
            pyro.sample("z", dist.MultivariateNormal(loc + self.shift, covariance * self.inflate))


def linear_gaussian(num_data=40, x_dim=5, z_dim=2, scale=0.5, seed=0):
    """A float64 :class:`LinearGaussian` with random ``W``, ``b`` and ``num_data`` draws from it, as a Dataset."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(x_dim, z_dim, generator=generator, dtype=torch.float64)
    bias = torch.randn(x_dim, generator=generator, dtype=torch.float64)
    z = torch.randn(num_data, z_dim, generator=generator, dtype=torch.float64)
    x = z @ weight.T + bias + scale * torch.randn(num_data, x_dim, generator=generator, dtype=torch.float64)
    return LinearGaussian(weight, bias, scale), Dataset("linear-gaussian", "test", x, None, (1, x_dim), 0, levels=None)
