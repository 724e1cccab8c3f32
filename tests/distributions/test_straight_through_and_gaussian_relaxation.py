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


def test_straight_through_default_temperature_is_one():
    # The default's gradient is the binary Concrete's at t = 1, on the same noise.
    grads = []
    for kwargs in ({}, {"temperature": 1.0}):
        logits = LOGITS.clone().requires_grad_()
        torch.manual_seed(3)
        StraightThroughBernoulli(logits, **kwargs).rsample((2,)).sum().backward()
        grads.append(logits.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)


def test_straight_through_noise_at_the_split_is_read_as_zero(monkeypatch):
    # b = 1[a + L > 0]: logits 0 and u = 1/2 give L = 0 exactly, which counts as 0, as hard_threshold's split.
    monkeypatch.setattr(torch.Tensor, "uniform_", lambda tensor, *args, **kwargs: tensor.fill_(0.5))
    for dtype in (torch.float32, torch.float64):
        draw = StraightThroughBernoulli(torch.zeros(3, dtype=dtype)).rsample()
        assert draw.dtype == dtype and draw.tolist() == [0.0, 0.0, 0.0]


def test_straight_through_sample_is_a_detached_hard_draw_of_the_shape_asked():
    logits = LOGITS.clone().requires_grad_()
    draws = StraightThroughBernoulli(logits, temperature=0.5).sample((4, 2))
    assert draws.shape == (4, 2, 5) and not draws.requires_grad
    assert set(draws.unique().tolist()) <= {0.0, 1.0}


def test_straight_through_passes_validate_args_on():
    # Pyro's validation is on in the tests: validate_args=False must switch it off for this instance.
    nan = torch.tensor([float("nan")])
    fn = StraightThroughBernoulli(nan, validate_args=False)
    assert not fn._validate_args
    with pytest.raises(ValueError, match="logits"):
        StraightThroughBernoulli(nan, validate_args=True)


def test_straight_through_expand_fills_the_instance_a_subclass_hands_it():
    class FixedTemperature(StraightThroughBernoulli):
        def __init__(self, logits, *, validate_args=None):
            super().__init__(logits, temperature=0.25, validate_args=validate_args)

        def expand(self, batch_shape, _instance=None):
            new = self._get_checked_instance(FixedTemperature, _instance)
            return super().expand(batch_shape, _instance=new)

    expanded = FixedTemperature(LOGITS).expand((2, 5))
    assert type(expanded) is FixedTemperature and expanded.temperature == 0.25
    torch.testing.assert_close(expanded.logits, LOGITS.expand(2, 5))
