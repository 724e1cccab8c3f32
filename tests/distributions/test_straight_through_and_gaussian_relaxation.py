"""StraightThroughBernoulli (hard values, Concrete gradient, Bernoulli mass) and GaussianRelaxation's view."""

import pytest
import torch
from pyro.distributions import Bernoulli, Normal

from pyrovae.distributions import GaussianRelaxation, StraightThroughBernoulli
from pyrovae.infer import bernoulli_view

LOGITS = torch.tensor([-2.0, -0.3, 0.0, 0.8, 3.0])


def test_straight_through_samples_are_hard_and_bernoulli_distributed():
    torch.manual_seed(0)
    draws = StraightThroughBernoulli(LOGITS, temperature=0.5).rsample((40_000,))
    assert set(draws.unique().tolist()) == {0.0, 1.0}
    probs = torch.sigmoid(LOGITS)
    standard_error = (probs * (1 - probs) / draws.shape[0]).sqrt()
    assert ((draws.mean(0) - probs).abs() < 4 * standard_error).all()


def test_straight_through_gradient_is_the_binary_concretes():
    logits = LOGITS.clone().requires_grad_()
    temperature = 0.7
    torch.manual_seed(1)
    StraightThroughBernoulli(logits, temperature).rsample((3,)).sum().backward()
    # The same noise by hand: u, then y = sigmoid((a + logit u) / t).
    torch.manual_seed(1)
    u = torch.rand(3, 5).clamp(min=torch.finfo(torch.float32).tiny, max=1 - torch.finfo(torch.float32).eps / 2)
    a = LOGITS.clone().requires_grad_()
    torch.sigmoid((a + u.log() - torch.log1p(-u)) / temperature).sum().backward()
    torch.testing.assert_close(logits.grad, a.grad)


def test_straight_through_log_prob_is_the_bernoulli_mass_and_expand_keeps_the_temperature():
    fn = StraightThroughBernoulli(LOGITS, temperature=0.3)
    value = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    torch.testing.assert_close(fn.log_prob(value), Bernoulli(logits=LOGITS).log_prob(value))
    expanded = fn.expand((4, 5))
    assert expanded.batch_shape == (4, 5) and expanded.temperature == 0.3 and expanded.has_rsample
    view = bernoulli_view(fn)
    torch.testing.assert_close(view.probs, torch.sigmoid(LOGITS))
    assert torch.equal(view.hard(value), value)


def test_straight_through_refuses_a_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature must be positive"):
        StraightThroughBernoulli(LOGITS, temperature=0.0)


def test_gaussian_relaxation_is_a_normal_whose_sign_has_the_viewed_probability():
    loc, scale = torch.tensor([-1.0, 0.2, 2.0]), torch.tensor([0.5, 1.0, 3.0])
    fn = GaussianRelaxation(loc, scale)
    value = torch.tensor([0.3, -0.2, 4.0])
    torch.testing.assert_close(fn.log_prob(value), Normal(loc, scale).log_prob(value))
    torch.manual_seed(2)
    positive = (fn.sample((40_000,)) > 0).float().mean(0)
    view = bernoulli_view(fn)
    assert ((positive - view.probs).abs() < 0.01).all()
    assert view.hard(torch.tensor([-0.1, 0.0, 0.1])).tolist() == [0.0, 0.0, 1.0]
    # A plain Normal is not read as a relaxed Bernoulli.
    assert bernoulli_view(Normal(loc, scale)) is None
