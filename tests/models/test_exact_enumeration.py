"""What :mod:`pyrovae.discrete` does besides the sum itself (which ``test_bernoulli_vae`` checks against a
brute-force sum and Pyro's enumeration): the states are made where the model is, a Bernoulli
likelihood takes the one-matmul path, and the limits and refusals are the documented ones. Each test
kills mutants that the value checks let through (docs/testing.md)."""

import math
from types import SimpleNamespace

import pyro.distributions as dist
import pytest
import torch

from pyrovae.discrete import MAX_UNITS, _check_model, binary_states, exact_log_likelihood
from pyrovae.models import BernoulliVAE


def test_binary_states_are_the_rows_of_the_binary_table_on_the_device_and_dtype_asked_for():
    states = binary_states(5, 8, 3, torch.empty(0, dtype=torch.float64))
    assert torch.equal(states, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64))
    # The "meta" device stands for a GPU: states built on the CPU beside a model on a GPU would fail there.
    assert binary_states(0, 4, 2, torch.empty(0, device="meta")).device.type == "meta"


def test_a_bernoulli_likelihood_is_summed_by_one_matrix_product_without_a_distribution_per_state(monkeypatch):
    torch.manual_seed(0)
    model = BernoulliVAE(6, z_dim=4, relaxation="logistic", hidden_sizes=[5])
    x = torch.bernoulli(torch.full((3, 6), 0.5))
    expected = exact_log_likelihood(model, x)

    def refuse(z):
        raise AssertionError("decode(z) built a distribution over 2^D states; the Bernoulli path needs only logits")

    monkeypatch.setattr(model, "decode", refuse)
    torch.testing.assert_close(exact_log_likelihood(model, x), expected)


def test_the_limit_is_max_units_inclusive_and_a_refusal_names_what_is_missing():
    _check_model(SimpleNamespace(z_dim=MAX_UNITS, decode=None, discrete_prior_probs=None))  # at the limit: allowed
    with pytest.raises(ValueError, match=f"D = {MAX_UNITS + 1} is too many"):
        _check_model(SimpleNamespace(z_dim=MAX_UNITS + 1, decode=None, discrete_prior_probs=None))
    with pytest.raises(TypeError, match=r"; Linear lacks z_dim, decode, discrete_prior_probs$"):
        exact_log_likelihood(torch.nn.Linear(2, 2), torch.zeros(2, 2))


class TwoUnitModel(torch.nn.Module):
    """The least a model needs for the exact sum: ``z_dim``, ``decode`` and ``discrete_prior_probs``;
    no ``likelihood`` attribute. ``x | z ~ N(z_1 + z_2, 1)`` on three coordinates."""

    z_dim = 2
    discrete_prior_probs = torch.tensor([0.5, 0.5])

    def decode(self, z):
        return dist.Normal(z.sum(-1, keepdim=True).expand(*z.shape[:-1], 3), 1.0).to_event(1)


def test_a_model_without_a_likelihood_attribute_is_summed_through_decode():
    x = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    terms = [math.log(0.25) + dist.Normal(float(s), 1.0).log_prob(x).sum(-1) for s in (0, 1, 1, 2)]
    torch.testing.assert_close(exact_log_likelihood(TwoUnitModel(), x), torch.logsumexp(torch.stack(terms), 0))
