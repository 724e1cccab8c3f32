"""BernoulliLogits: Pyro's Bernoulli with the log density written as x * logits - softplus(logits)."""

import pyro.distributions as dist
import pytest
import torch

from pyrovae.distributions import BernoulliLogits

LOGITS = torch.tensor([-200.0, -45.0, -30.0, -5.0, -1e-3, 0.0, 1e-3, 5.0, 30.0, 45.0, 200.0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_is_pyros_bernoulli_including_extreme_logits(dtype):
    logits = LOGITS.to(dtype)
    for x in (torch.zeros_like(logits), torch.ones_like(logits)):
        ours = BernoulliLogits(logits=logits).log_prob(x)
        reference = dist.Bernoulli(logits=logits.double()).log_prob(x.double())
        assert torch.isfinite(ours).all()
        assert torch.allclose(ours.double(), reference, rtol=1e-6, atol=1e-6)


def test_probabilities_of_zero_and_one_sum_to_one():
    logits = torch.randn(1000, dtype=torch.float64) * 10
    d = BernoulliLogits(logits=logits)
    total = d.log_prob(torch.zeros_like(logits)).exp() + d.log_prob(torch.ones_like(logits)).exp()
    assert torch.allclose(total, torch.ones_like(total))


def test_gradient_with_respect_to_the_logits_is_x_minus_sigmoid():
    logits = (torch.randn(50, dtype=torch.float64) * 5).requires_grad_()
    x = torch.bernoulli(torch.full((50,), 0.5, dtype=torch.float64))
    (grad,) = torch.autograd.grad(BernoulliLogits(logits=logits).log_prob(x).sum(), logits)
    assert torch.allclose(grad, x - torch.sigmoid(logits.detach()))


def test_broadcasts_samples_over_logits_and_samples_have_the_right_frequency():
    torch.manual_seed(0)
    logits = torch.tensor([-2.0, 0.0, 1.5])
    d = BernoulliLogits(logits=logits)
    x = d.sample((20000,))
    assert d.log_prob(x).shape == (20000, 3)
    assert torch.allclose(x.mean(0), torch.sigmoid(logits), atol=0.015)


def test_validation_rejects_non_binary_values():
    with pytest.raises(ValueError):
        BernoulliLogits(logits=torch.zeros(3), validate_args=True).log_prob(torch.tensor([0.0, 0.5, 1.0]))


def test_softplus_is_exact_above_torchs_default_threshold():
    """torch's softplus returns its input above 20; log p(0 | 25) = -log(1 + e^25) = -(25 + 1.4e-11)."""
    logits = torch.tensor([25.0, 35.0], dtype=torch.float64)
    expected = -(logits + torch.exp(-logits).log1p())
    torch.testing.assert_close(BernoulliLogits(logits=logits).log_prob(torch.zeros(2, dtype=torch.float64)), expected,
                               rtol=0, atol=1e-14)
