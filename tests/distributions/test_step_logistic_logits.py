"""StepLogistic built from logits: the same distribution as from alpha, and finite where alpha = 2 sigmoid(a)
rounds to 2 (the cause of the dissertation's divergence, Sadier-Gane 2020 §5.3)."""

import math

import pytest
import scipy.integrate
import torch
from pyro.distributions import Logistic
from torch.distributions import kl_divergence

from pyrovae.distributions import StepLogistic

LOGITS = torch.tensor([-3.0, -0.4, 0.0, 1.1, 4.0], dtype=torch.float64)


def test_logits_and_alpha_give_the_same_distribution():
    from_logits, from_alpha = StepLogistic(logits=LOGITS), StepLogistic(2 * torch.sigmoid(LOGITS))
    z = torch.linspace(-6, 6, 25, dtype=torch.float64)[:, None]
    torch.testing.assert_close(from_logits.log_prob(z), from_alpha.log_prob(z))
    torch.testing.assert_close(from_logits.cdf(z), from_alpha.cdf(z))
    u = torch.rand(100, 5, dtype=torch.float64)
    torch.testing.assert_close(from_logits.icdf(u), from_alpha.icdf(u))
    torch.testing.assert_close(from_logits.mean, from_alpha.mean)
    torch.testing.assert_close(from_logits.entropy(), from_alpha.entropy())
    prior = Logistic(torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(kl_divergence(from_logits, prior), kl_divergence(from_alpha, prior))
    torch.testing.assert_close(kl_divergence(prior, from_logits), kl_divergence(prior, from_alpha))
    torch.testing.assert_close(from_logits.alpha, from_alpha.alpha)
    torch.testing.assert_close(from_alpha.logits, LOGITS)


@pytest.mark.parametrize("logit", [-5.0, 2.5])
def test_the_density_from_logits_integrates_to_one(logit):
    fn = StepLogistic(logits=torch.tensor(logit, dtype=torch.float64))
    total = sum(scipy.integrate.quad(lambda z: math.exp(fn.log_prob(torch.tensor(z, dtype=torch.float64))), a, b)[0]
                for a, b in ((-math.inf, 0), (0, math.inf)))
    assert total == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("logit", [20.0, -110.0])
def test_saturated_logits_keep_every_gradient_finite(logit):
    # In float32, 2 sigmoid(20) rounds to 2 and 2 sigmoid(-110) to 0.
    logits = torch.full((4096,), logit, requires_grad=True)
    fn = StepLogistic(logits=logits)
    z = fn.rsample()
    prior = Logistic(torch.zeros(4096), torch.ones(4096))
    loss = (fn.log_prob(z) + prior.log_prob(z) + kl_divergence(fn, prior)).sum()
    loss.backward()
    assert torch.isfinite(z).all() and torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_alpha_that_rounds_to_two_gives_nan_gradients():
    # The failure the logits remove: alpha computed from a saturated logit.
    logits = torch.full((4096,), 20.0, requires_grad=True)
    alpha = 2 * torch.sigmoid(logits)
    assert (alpha == 2).all()
    fn = StepLogistic(alpha, validate_args=False)
    fn.log_prob(fn.rsample()).sum().backward()
    assert not torch.isfinite(logits.grad).all()


def test_exactly_one_parameter():
    with pytest.raises(ValueError, match="exactly one of alpha and logits"):
        StepLogistic()
    with pytest.raises(ValueError, match="exactly one of alpha and logits"):
        StepLogistic(torch.tensor(1.0), logits=torch.tensor(0.0))


def test_expand_keeps_the_logits():
    fn = StepLogistic(logits=torch.tensor([0.5, -1.0])).expand((3, 2))
    assert fn.batch_shape == (3, 2) and "logits" in fn.__dict__ and "alpha" not in fn.__dict__
