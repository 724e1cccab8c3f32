"""Amortised Gaussian guides ``q_phi(z | x)`` for site ``"z"``.

* :class:`DiagonalNormalGuide`: ``q(z | x) = N(mu_phi(x), diag sigma_phi(x)^2)`` (Kingma & Welling 2014).
* :class:`FullCovarianceNormalGuide`: ``q(z | x) = N(mu_phi(x), L_phi(x) L_phi(x)^T)`` with a
  lower-triangular ``L`` whose diagonal is positive, so correlations between latents are captured.

Both sample ``"z"`` with shape ``(B, L)`` inside the ``"data"`` plate, which is all a model with a
site ``"z"`` needs; swap one for the other without touching the model.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from pyrovae.amortized import AmortizedGuide, register_amortized_guide
from pyrovae.nn import LocScaleHead, TriangularHead


class DiagonalNormalGuide(AmortizedGuide):
    """``q(z | x) = prod_l N(z_l; mu_l(x), sigma_l(x)^2)`` from an MLP encoder."""

    head_class = LocScaleHead

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        loc, scale = self.encoder(x)
        return dist.Normal(loc, scale).to_event(1)


class FullCovarianceNormalGuide(AmortizedGuide):
    """``q(z | x) = N(z; mu(x), L(x) L(x)^T)`` with an amortised Cholesky factor ``L(x)``."""

    head_class = TriangularHead

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        loc, scale_tril = self.encoder(x)
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)


register_amortized_guide("vae", "diagonal", DiagonalNormalGuide)
register_amortized_guide("vae", "full", FullCovarianceNormalGuide)
