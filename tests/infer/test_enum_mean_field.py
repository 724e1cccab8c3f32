"""TraceEnumMeanField_ELBO: TraceEnum_ELBO with closed-form KL terms (the tutorial's GMVAE bound,
Yang 2022, §5.5.3)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.distributions as td
from pyro.infer import TraceEnum_ELBO, config_enumerate

from pyrovae.guides import GMVAEGuide
from pyrovae.infer import TraceEnumMeanField_ELBO
from pyrovae.models import GMVAE

C, L, D, B = 4, 3, 12, 5


def closed_form_bound(model, guide, x, eps):
    """sum_y q(y|x) [log p(x | z_y) - KL(q(z|x,y) || p(z|y))] - KL(q(y|x) || Uniform(C)),
    z_y = mu(x, y) + sigma(x, y) * eps[y], written with torch.distributions."""
    eye = torch.eye(C)[:, None, :].expand(C, x.shape[0], C)
    loc, scale = guide.encoder.z_params(x, eye)
    z = loc + scale * eps
    prior_loc, prior_scale = model.component_prior(eye)
    inner = (td.Bernoulli(logits=model.decoder(z)).log_prob(x).sum(-1)
             - td.kl_divergence(td.Normal(loc, scale), td.Normal(prior_loc, prior_scale)).sum(-1))  # (C, B)
    q_y = td.Categorical(logits=guide.encoder.logits(x))
    kl_y = td.kl_divergence(q_y, td.Categorical(logits=torch.zeros(C)))
    return (q_y.probs * inner.T).sum(-1) - kl_y


def test_it_is_the_closed_form_marginalised_bound_in_value_and_gradient():
    model, guide = GMVAE(D, C, L, (8,)), GMVAEGuide(D, C, L, (8,))
    x = torch.bernoulli(torch.full((B, D), 0.5))
    pyro.set_rng_seed(3)
    loss = TraceEnumMeanField_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x, num_data=50)
    pyro.set_rng_seed(3)
    bound = closed_form_bound(model, guide, x, torch.randn(C, B, L))
    expected = -bound.sum() * 50 / B
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    parameters = [*model.parameters(), *guide.parameters()]
    for a, b in zip(torch.autograd.grad(loss, parameters), torch.autograd.grad(expected, parameters)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_it_agrees_with_trace_enum_elbo_in_expectation_with_less_noise():
    model, guide = GMVAE(D, C, L, (8,)), GMVAEGuide(D, C, L, (8,))
    x = torch.bernoulli(torch.full((B, D), 0.5))
    with torch.no_grad():
        sampled = torch.tensor([TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, x) for _ in range(500)])
        closed = torch.tensor([TraceEnumMeanField_ELBO(max_plate_nesting=1).loss(model, guide, x) for _ in range(500)])
    standard_error = (sampled.var() / 500 + closed.var() / 500).sqrt()
    assert abs(sampled.mean() - closed.mean()) < 4 * standard_error
    assert closed.var() < 0.8 * sampled.var()


def test_a_pair_without_a_closed_form_keeps_its_sampled_terms():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(torch.ones(3) / 3))
            z = pyro.sample("z", dist.StudentT(3.0, y.float(), 1.0))  # no closed-form KL from a Normal
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    @config_enumerate
    def guide(x):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(logits=torch.tensor([0.1, 0.2, 0.3])))
            pyro.sample("z", dist.Normal(y.float() + 0.5, 0.7))

    x = torch.randn(4)
    pyro.set_rng_seed(1)
    expected = TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, x)
    pyro.set_rng_seed(1)
    assert TraceEnumMeanField_ELBO(max_plate_nesting=1).loss(model, guide, x) == pytest.approx(expected, rel=1e-6)


def test_a_latent_enumerated_in_the_model_is_refused_in_one_line():
    @config_enumerate
    def model(x):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(torch.ones(3) / 3))
            pyro.sample("x", dist.Normal(y.float(), 1.0), obs=x)

    with pytest.raises(ValueError, match="enumerates 'y'"):
        TraceEnumMeanField_ELBO(max_plate_nesting=1).loss(model, lambda x: None, torch.randn(4))
