"""The guide of factor analysis: ``q(z | x) = N(V x + b, Sigma)`` with one full covariance for every ``x``.

The exact posterior of :class:`~pyrovae.models.FactorAnalysis` has this form (a mean linear in
``x``, a covariance that does not depend on ``x``; Yang 2022, §5.2.2), so variational inference in
this family is exact inference: at the optimum the ELBO equals the evidence.
"""

from __future__ import annotations

import torch

from pyrovae.guides.normal import FullCovarianceNormalGuide
from pyrovae.nn import SharedTriangularHead
from pyrovae.registry import register_guide


class FactorAnalysisGuide(FullCovarianceNormalGuide):
    """``q(z | x) = N(V x + b, C C^T)``: a linear encoder and one Cholesky factor ``C`` shared by every
    example (:class:`~pyrovae.nn.SharedTriangularHead`); ``C`` starts at the identity.

    Args:
        x_dim: number of observed variables ``D``.
        z_dim: number of factors ``L``.
        name: the prefix of its parameters in Pyro's parameter store.
    """

    head_class = SharedTriangularHead

    def __init__(self, x_dim: int, z_dim: int = 2, name: str = "guide"):
        super().__init__(x_dim, z_dim, hidden_sizes=(), name=name)

    @torch.no_grad()
    def set_posterior(self, weight: torch.Tensor, covariance: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Set ``q(z | x) = N(weight x + bias, covariance)``, e.g. to the exact posterior
        ``guide.set_posterior(*model.exact_posterior())``."""
        head = self.encoder.head
        head.loc.weight.copy_(weight)
        head.loc.bias.copy_(torch.zeros(self.z_dim) if bias is None else bias)
        head.tril.copy_(head.free_entries(torch.linalg.cholesky(covariance)))


def build_factor_analysis_guide(config, data, model) -> FactorAnalysisGuide:
    """The :class:`FactorAnalysisGuide` for the factor-analysis model of ``config`` on ``data``."""
    return FactorAnalysisGuide(data.x_dim, config.z_dim)


register_guide("factor-analysis", "linear", build_factor_analysis_guide)
