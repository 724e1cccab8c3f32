"""Factor analysis, the linear-Gaussian latent-variable model whose evidence is exact (Yang 2022, §5.2).

Generative model, for each data point ``i`` in the ``"data"`` plate::

    z_i ~ Normal(0, I_L)                           (site "z")
    x_i | z_i ~ Normal(W z_i, diag sigma^2)        (site "x")

with a factor loading ``W`` (D x L) and noise scales ``sigma`` (D), ``sigma = softplus(s)`` for a
free ``s``. The data are assumed centred, so the mean is ``W z`` with no bias. Integrating ``z``
out gives the evidence in closed form,

    p(x) = N(x; 0, W W^T + diag sigma^2),

and the posterior is Gaussian with a mean linear in ``x`` and a covariance that does not depend
on ``x`` (Yang 2022, §5.2.2):

    p(z | x) = N(V x, S),   S = (I + W^T Phi^{-1} W)^{-1},   V = S W^T Phi^{-1},   Phi = diag sigma^2.

So :class:`~pyrovae.guides.FactorAnalysisGuide`, ``q(z | x) = N(V x + b, Sigma)``, contains the exact
posterior: the ELBO can meet the evidence, and training shows the approximate E- and M-steps of EM
(the tutorial's Figs. 2 and 3; ``fit(..., alternate=(1000, 1000))`` for the alternating version).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import SoftplusTransform
from torch import nn

from pyrovae.nn import open_data_plate
from pyrovae.registry import register_model
from pyrovae.validation import InputSpec

_POSITIVE = SoftplusTransform()


class FactorAnalysis(nn.Module):
    """The factor-analysis model: ``forward(x, num_data=None)`` is the Pyro model.

    Args:
        x_dim: number of observed variables ``D``.
        z_dim: number of factors ``L``.
        name: the prefix of its parameters in Pyro's parameter store.

    ``W`` and ``s`` (``sigma = softplus(s)``) start standard normal, as in the tutorial's code.
    """

    #: The data plate is the only plate.
    max_plate_nesting = 1

    def __init__(self, x_dim: int = 3, z_dim: int = 2, name: str = "factor_analysis"):
        super().__init__()
        for label, value in (("x_dim", x_dim), ("z_dim", z_dim)):
            if value < 1:
                raise ValueError(f"{label} must be at least 1, got {value}")
        self.x_dim, self.z_dim, self.name = x_dim, z_dim, name
        self.inputs = InputSpec((x_dim,))
        self.loading = nn.Parameter(torch.randn(x_dim, z_dim))
        self.raw_noise_scale = nn.Parameter(torch.randn(x_dim))
        self.register_buffer("prior_loc", torch.zeros(z_dim))
        self.register_buffer("prior_scale", torch.ones(z_dim))

    @classmethod
    def from_parameters(cls, loading, noise_scale, name: str = "factor_analysis") -> FactorAnalysis:
        """The model with loading ``W`` ``(D, L)`` and noise scales ``sigma`` ``(D,)``, e.g. the ground
        truth of a synthetic data set (``FactorAnalysis.from_parameters(**data.metadata)``)."""
        loading = torch.as_tensor(loading)
        loading = loading if loading.is_floating_point() else loading.to(torch.get_default_dtype())
        noise_scale = torch.as_tensor(noise_scale, dtype=loading.dtype)
        if loading.dim() != 2:
            raise ValueError(f"loading must be a (D, L) matrix, got shape {tuple(loading.shape)}")
        if tuple(noise_scale.shape) != (loading.shape[0],):
            raise ValueError(f"noise_scale must have shape ({loading.shape[0]},), one per row of the loading, "
                             f"got {tuple(noise_scale.shape)}")
        if not (noise_scale > 0).all():
            raise ValueError(f"noise_scale must be positive, got {noise_scale.tolist()}")
        model = cls(*loading.shape, name=name).to(loading.dtype)
        with torch.no_grad():
            model.loading.copy_(loading)
            model.raw_noise_scale.copy_(_POSITIVE.inv(noise_scale))
        return model

    @property
    def noise_scale(self) -> torch.Tensor:
        """``sigma``, the standard deviations of the noise ``(D,)``."""
        return _POSITIVE(self.raw_noise_scale)

    def prior(self, batch_size: int) -> dist.TorchDistribution:
        """``p(z) = N(0, I_L)`` for a batch."""
        return dist.Normal(self.prior_loc, self.prior_scale).expand([batch_size, self.z_dim]).to_event(1)

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        """``p(x | z) = N(W z, diag sigma^2)``."""
        return dist.Normal(z @ self.loading.T, self.noise_scale).to_event(1)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        with open_data_plate(self, x, num_data=num_data):
            z = pyro.sample("z", self.prior(x.shape[0]))
            pyro.sample("x", self.decode(z), obs=x)
        return z

    def marginal(self) -> dist.TorchDistribution:
        """``p(x) = N(0, W W^T + diag sigma^2)``, as the low-rank-plus-diagonal Gaussian it is."""
        return dist.LowRankMultivariateNormal(self.prior_loc.new_zeros(self.x_dim), self.loading, self.noise_scale**2)

    def log_evidence(self, x: torch.Tensor) -> torch.Tensor:
        """The exact ``log p(x) = log N(x; 0, W W^T + diag sigma^2)`` of each example of ``x`` ``(N, D)``: ``(N,)``."""
        self.inputs.check(x)
        return self.marginal().log_prob(x)

    def exact_posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V, S)`` with ``p(z | x) = N(V x, S)``: ``S = (I + W^T Phi^{-1} W)^{-1}``, ``V = S W^T Phi^{-1}``."""
        scaled = self.loading.T / self.noise_scale**2  # W^T Phi^{-1}
        precision = torch.eye(self.z_dim, dtype=scaled.dtype, device=scaled.device) + scaled @ self.loading
        covariance = torch.cholesky_inverse(torch.linalg.cholesky(precision))
        return covariance @ scaled, covariance


def evidence_logger(model: FactorAnalysis, data, key: str = "test_evidence"):
    """An ``epoch_callback`` for :func:`pyrovae.train.fit` that adds the exact mean ``log p(x)`` of
    ``data`` to each epoch's metrics under ``key``: the evidence curve of Yang 2022, Fig. 2."""

    def log(epoch: int, row: dict) -> None:
        with torch.no_grad():
            row[key] = model.log_evidence(data.x.to(model.loading.dtype)).mean().item()

    return log


@dataclass
class FactorAnalysisConfig:
    """Hyperparameters of :class:`FactorAnalysis` and its guide; the number of observed variables comes from the data."""

    z_dim: int = field(default=2, metadata={"help": "number of factors L", "min": 1, "flags": ["--latent-dim"]})


def build_factor_analysis(config: FactorAnalysisConfig, data) -> FactorAnalysis:
    """The :class:`FactorAnalysis` of ``config`` for examples of ``data``."""
    return FactorAnalysis(data.x_dim, config.z_dim)


register_model(
    "factor-analysis",
    FactorAnalysisConfig,
    build=build_factor_analysis,
    default_guide="linear",
    description="factor analysis, exact evidence; linear Gaussian guide that holds the posterior",
    # The exact test evidence beside the test ELBO every epoch (Yang 2022, Fig. 2).
    fit_options=lambda config, model, guide, test: {} if test is None else {"epoch_callback": evidence_logger(model, test)},
    presets={
        "tiny": dict(dataset="factor-analysis", binarize=None, z_dim=2, epochs=1, batch_size=32, lr=1e-2),
        # Yang 2022, §5.2.4, Experiment 1: L = 2, D = 3, batch 32, Adam 1e-2. The tutorial runs 35 epochs of 32
        # steps (its Fig. 2 shows 1000); the evidence is then within 0.1 nats of the truth, and within 0.03 at 100.
        "yang": dict(dataset="factor-analysis", binarize=None, z_dim=2, epochs=100, batch_size=32, lr=1e-2),
    },
)
