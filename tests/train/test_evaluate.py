
import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyrovae.data import Dataset, load_dataset
from pyrovae.evaluate import importance_log_likelihood, mean_elbo, reconstruction_error
from pyrovae.guides import DiagonalNormalGuide
from pyrovae.models import VAE
from pyrovae.nn import data_plate
from pyrovae.train import fit


class LinearGaussian(nn.Module):
    """z ~ N(0, I_L), x | z ~ N(W z + b, s^2 I_D): log p(x) = log N(x; b, W W^T + s^2 I) exactly."""

    def __init__(self, weight, bias, scale):
        super().__init__()
        self.weight, self.bias, self.scale = weight, bias, scale

    def forward(self, x, num_data=None):
        with data_plate(x.shape[0], num_data):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], self.weight.shape[1], dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.weight.T + self.bias, self.scale).to_event(1), obs=x)

    def log_evidence(self, x):
        covariance = self.weight @ self.weight.T + self.scale ** 2 * torch.eye(len(self.bias), dtype=x.dtype)
        return dist.MultivariateNormal(self.bias, covariance).log_prob(x)

    def posterior(self, x):
        precision = torch.eye(self.weight.shape[1], dtype=x.dtype) + self.weight.T @ self.weight / self.scale ** 2
        covariance = torch.linalg.inv(precision)
        loc = (x - self.bias) @ self.weight @ covariance.T / self.scale ** 2
        return loc, covariance


class ExactPosteriorGuide(nn.Module):
    def __init__(self, model, inflate=1.0, shift=0.0):
        super().__init__()
        self.model, self.inflate, self.shift = model, inflate, shift

    def forward(self, x, num_data=None):
        loc, covariance = self.model.posterior(x)
        with data_plate(x.shape[0], num_data):
            pyro.sample("z", dist.MultivariateNormal(loc + self.shift, covariance * self.inflate))


@pytest.fixture
def linear_gaussian():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    bias = torch.randn(5, generator=generator, dtype=torch.float64)
    model = LinearGaussian(weight, bias, 0.5)
    x = (torch.randn(40, 2, generator=generator, dtype=torch.float64) @ weight.T + bias
         + 0.5 * torch.randn(40, 5, generator=generator, dtype=torch.float64))
    return model, Dataset("linear-gaussian", "test", x, None, (1, 5), 0, levels=None)


def test_exact_posterior_gives_the_exact_evidence_for_any_k(linear_gaussian):
    model, data = linear_gaussian
    exact = model.log_evidence(data.x)
    for k, chunk in ((1, 1), (7, 3), (50, 50)):
        estimate = importance_log_likelihood(model, ExactPosteriorGuide(model), data, k, chunk_size=chunk, per_example=True)
        assert torch.allclose(estimate, exact, atol=1e-9)


def test_estimate_with_a_poor_guide_converges_to_the_evidence(linear_gaussian):
    model, data = linear_gaussian
    guide = ExactPosteriorGuide(model, inflate=1.5, shift=0.1)
    exact = model.log_evidence(data.x)
    elbo = mean_elbo(model, guide, data, pyro.infer.Trace_ELBO(num_particles=2000, vectorize_particles=True))
    large = importance_log_likelihood(model, guide, data, 5000, chunk_size=700, per_example=True)
    # The guide is poor enough that the ELBO is visibly loose, and importance sampling closes the gap.
    assert exact.mean().item() - elbo > 0.05
    assert elbo < large.mean().item()
    # Per point the K = 5000 estimate has a Monte Carlo error of ~0.01 nats here; 0.05 is ~5 sigma.
    assert (large - exact).abs().max() < 0.05
    assert abs(large.mean().item() - exact.mean().item()) < 0.01


def test_importance_estimate_is_at_least_the_elbo_for_a_trained_vae():
    train = load_dataset("digits", "train", binarize="static").subset(400)
    test = load_dataset("digits", "test", binarize="static").subset(100)
    model, guide = VAE(64, 4, (32,)), DiagonalNormalGuide(64, 4, (32,))
    fit(model, guide, pyro.infer.Trace_ELBO(), train, epochs=5, batch_size=50, lr=3e-3, progress=False)
    elbo = mean_elbo(model, guide, test, pyro.infer.Trace_ELBO(num_particles=50, vectorize_particles=True))
    log_likelihood = importance_log_likelihood(model, guide, test, 500)
    assert log_likelihood > elbo
    assert log_likelihood - elbo < 10.0  # a sane gap, not a broken estimator
    error = reconstruction_error(model, guide, test)
    assert 0.0 < error < (test.x - test.x.mean(0)).pow(2).sum(1).mean().item() * 1.5


def test_guide_missing_a_latent_is_rejected(linear_gaussian):
    model, data = linear_gaussian

    def empty_guide(x, num_data=None):
        pass

    with pytest.raises(ValueError, match="latent site"):
        importance_log_likelihood(model, empty_guide, data, 3)
    with pytest.raises(ValueError, match="num_samples"):
        importance_log_likelihood(model, ExactPosteriorGuide(model), data, 0)
