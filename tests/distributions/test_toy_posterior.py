"""The toy model of Sadier-Gane (2020, §5.1): its exact posterior is StepLogistic(2 sigma(2)),
SVI with a StepLogistic guide finds it, and a Logistic guide cannot (Figure 5.1)."""

import math

import pyro
import pytest
import torch
from matplotlib.figure import Figure
from pyro.infer import Trace_ELBO
from torch.distributions import kl_divergence

from pyrovae import toy_posterior
from pyrovae.distributions import StepLogistic

SIGMOID_2 = 1 / (1 + math.exp(-2))  # Pr(z > 0 | x = 1) = 0.8808
# The best Logistic guide, by maximising the exact ELBO by quadrature (scipy, independently of
# this module): learnable scale mu = 1.1127, s = 0.7372, Pr(z > 0) = 0.8190, KL = 0.08470; scale
# fixed at 1 as in the dissertation, mu = 1.1461, Pr(z > 0) = 0.7588, KL = 0.13046.
BEST_LOGISTIC = {None: (0.8190, 0.08470), 1.0: (0.7588, 0.13046)}


def test_exact_posterior_is_step_logistic_two_sigmoid_two():
    posterior = toy_posterior.exact_posterior()
    assert isinstance(posterior, StepLogistic)
    # The likelihood ratio N(1; 1, 0.5^2) / N(1; 0, 0.5^2) is e^2.
    assert toy_posterior.log_likelihood_ratio().item() == pytest.approx(2.0, abs=1e-15)
    assert posterior.alpha.item() == pytest.approx(2 * SIGMOID_2, abs=1e-15)
    prob_positive = 1 - posterior.cdf(torch.zeros((), dtype=torch.float64)).item()
    assert prob_positive == pytest.approx(0.8808, abs=5e-5)


def test_exact_density_equals_normalised_bayes_numerator():
    grid = torch.linspace(-40, 40, 80_001, dtype=torch.float64)
    numerator = toy_posterior.normalised_bayes_numerator(grid)
    exact = toy_posterior.exact_posterior().log_prob(grid).exp()
    torch.testing.assert_close(numerator, exact, rtol=1e-7, atol=0.0)
    # The normaliser is the evidence: the integral of the numerator equals p(x = 1).
    raw = toy_posterior.log_bayes_numerator(grid).exp()
    assert (raw / numerator)[0].log().item() == pytest.approx(toy_posterior.log_evidence().item(), abs=1e-7)
    # At other observations too, e.g. x = 0 (StepLogistic(2 sigma(-2)), the mirror image) and x = 0.3.
    for x in (0.0, 0.3):
        posterior = toy_posterior.exact_posterior(x=x)
        torch.testing.assert_close(toy_posterior.normalised_bayes_numerator(grid, x=x),
                                   posterior.log_prob(grid).exp(), rtol=1e-7, atol=0.0)
    assert toy_posterior.exact_posterior(x=0.0).alpha.item() == pytest.approx(2 * (1 - SIGMOID_2), abs=1e-15)


def test_normalised_numerator_fails_against_a_wrong_posterior():
    grid = torch.linspace(-40, 40, 8001, dtype=torch.float64)
    wrong = StepLogistic(torch.tensor(2 * SIGMOID_2 - 0.01, dtype=torch.float64)).log_prob(grid).exp()
    assert (toy_posterior.normalised_bayes_numerator(grid) - wrong).abs().max() > 1e-3


def test_exact_elbo_at_the_exact_posterior_is_the_evidence():
    posterior = toy_posterior.exact_posterior()
    assert toy_posterior.kl_to_exact_posterior(posterior) == pytest.approx(0.0, abs=1e-9)
    q = StepLogistic(torch.tensor(1.5, dtype=torch.float64))
    assert toy_posterior.kl_to_exact_posterior(q) == pytest.approx(kl_divergence(q, posterior).item(), rel=1e-7)
    # A Monte Carlo ELBO of the model with the exact posterior as guide has zero variance.
    pyro.clear_param_store()
    alpha = posterior.alpha.float()
    loss = Trace_ELBO(num_particles=64, vectorize_particles=True).loss(
        toy_posterior.model, lambda *args: pyro.sample("z", StepLogistic(alpha)))
    assert -loss == pytest.approx(toy_posterior.log_evidence().item(), abs=1e-5)


@pytest.fixture(scope="module")
def fits():
    return toy_posterior.fit_guides(steps=300, seed=0)


def test_svi_with_step_logistic_guide_recovers_the_posterior(fits):
    fit = fits["step-logistic"]
    assert fit["prob_positive"] == pytest.approx(SIGMOID_2, abs=0.02)
    assert fit["kl_to_posterior"] < 1e-3


def test_svi_logistic_guide_puts_too_much_mass_below_zero(fits):
    # Figure 5.1: the Logistic guide's best fit has Pr(z > 0) well below 0.881. Its ELBO is below
    # the StepLogistic guide's by about its KL to the posterior, 0.085 nats.
    fit = fits["logistic"]
    best_prob, best_kl = BEST_LOGISTIC[None]
    assert fit["prob_positive"] < SIGMOID_2 - 0.03
    assert fit["prob_positive"] == pytest.approx(best_prob, abs=0.01)
    assert fit["kl_to_posterior"] == pytest.approx(best_kl, abs=0.002)
    assert fit["elbo"] < fits["step-logistic"]["elbo"] - 0.05


@pytest.mark.slow
def test_svi_logistic_guide_with_unit_scale_as_in_the_dissertation():
    fit = toy_posterior.fit_guides(steps=300, seed=0, logistic_scale=1.0)["logistic"]
    best_prob, best_kl = BEST_LOGISTIC[1.0]
    assert fit["params"]["scale"] == 1.0
    assert fit["prob_positive"] == pytest.approx(best_prob, abs=0.01)
    assert fit["kl_to_posterior"] == pytest.approx(best_kl, abs=0.002)


def test_figure_shows_exact_posterior_and_guides(fits):
    fig = toy_posterior.posterior_figure(fits)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    labels = [line.get_label() for line in fig.axes[1].get_lines()]
    assert any("logistic guide" in label and f"{fits['logistic']['prob_positive']:.3f}" in label for label in labels)
    assert any("step-logistic guide" in label for label in labels)
    assert len(toy_posterior.posterior_figure().axes) == 1


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: toy_posterior.fit_guides(steps=0), "steps"),
        (lambda: toy_posterior.exact_posterior(noise_scale=0.0), "noise_scale"),
        (lambda: toy_posterior.make_logistic_guide(scale=-1.0), "scale"),
        (lambda: toy_posterior.guide_distribution("gaussian", {}), "unknown guide"),
        (lambda: toy_posterior.normalised_bayes_numerator(torch.tensor([1.0, 0.0])), "increasing"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
