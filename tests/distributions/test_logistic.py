"""pyrovae's Logistic: Pyro's distribution with finite samples when the uniform noise is exactly 0."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.distributions import Logistic
from pyrovae.relaxations import RELAXATIONS, RelaxationSettings

pyro.enable_validation(True)


@pytest.fixture
def zero_noise(monkeypatch):
    """``uniform_`` returning exactly 0, which float32 ``uniform_`` does once in 2**24 draws."""
    monkeypatch.setattr(torch.Tensor, "uniform_", lambda self, *args, **kwargs: self.zero_())


def test_uniform_noise_of_exactly_zero_gives_finite_samples_and_densities(zero_noise):
    loc, scale = torch.tensor([0.0, 3.0, -2.0]), torch.tensor([1.0, 0.5, 2.0])
    z = Logistic(loc, scale).rsample()
    assert torch.isfinite(z).all() and torch.isfinite(Logistic(loc, scale).log_prob(z)).all()
    assert (z < loc - 40 * scale).all()  # still the far left tail


@pytest.mark.parametrize("name", ["logistic", "concrete"])
def test_the_logistic_relaxations_survive_zero_noise(zero_noise, name):
    relaxation = RELAXATIONS[name]
    posterior = relaxation.posterior(RelaxationSettings(beta=1.0, prior_temperature=0.5, posterior_temperature=2 / 3), torch.tensor([0.3, -1.0]))
    z = posterior.rsample()
    prior = relaxation.prior(RelaxationSettings(beta=1.0, prior_temperature=0.5, posterior_temperature=2 / 3), z)
    assert torch.isfinite(posterior.log_prob(z)).all() and torch.isfinite(prior.log_prob(z)).all()


def test_it_is_pyros_logistic_otherwise():
    loc, scale = torch.tensor([0.5, -1.0]), torch.tensor([1.0, 3.0])
    ours, pyros = Logistic(loc, scale), dist.Logistic(loc, scale)
    x = torch.linspace(-10, 10, 41).unsqueeze(-1)
    assert torch.equal(ours.log_prob(x), pyros.log_prob(x)) and torch.equal(ours.cdf(x), pyros.cdf(x))
    assert isinstance(ours.expand((4, 2)), Logistic)
    torch.manual_seed(0)
    samples = ours.rsample((200_000,))
    # Kolmogorov-Smirnov distance to the cdf: about 1.36 / sqrt(n) at the 5% level.
    for k in range(2):
        sorted_samples = samples[:, k].sort().values
        empirical = torch.arange(1, len(sorted_samples) + 1) / len(sorted_samples)
        assert (pyros.cdf(sorted_samples.unsqueeze(-1))[:, k] - empirical).abs().max() < 1.36 / 200_000**0.5 * 1.5


def test_rsample_gradients_are_the_pathwise_ones():
    loc, scale = torch.tensor([0.2], requires_grad=True), torch.tensor([1.5], requires_grad=True)
    torch.manual_seed(1)
    z = Logistic(loc, scale).rsample((5,))
    d_loc, d_scale = torch.autograd.grad(z.sum(), (loc, scale))
    assert d_loc.item() == pytest.approx(5.0)
    assert d_scale.item() == pytest.approx(((z.detach() - 0.2) / 1.5).sum().item(), rel=1e-5)
