"""gradient_statistics against the closed-form distribution of a reparameterized ELBO gradient."""

import importlib
import math
from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovae.infer import TrueDiscreteBound, VarianceELBO, gradient_statistics
from pyrovae.infer.gradient_statistics import GroupGradientStatistics
from tests.support.conjugate import SIGMA, X

pytestmark = pytest.mark.usefixtures("float64")

LOC, SCALE, OFFSET = 0.4, 0.8, 0.2


def model(x):
    """z ~ N(0, 1), x | z ~ N(z + b, SIGMA^2) with b a Pyro param (the model group)."""
    offset = pyro.param("offset", torch.tensor(OFFSET))
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.sample("x", dist.Normal(z + offset, SIGMA), obs=x)


class Guide(torch.nn.Module):
    """q(z) = N(loc, exp(log_scale)^2) with nn.Module parameters (the guide group)."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.tensor(LOC))
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(SCALE)))

    def forward(self, x):
        pyro.sample("z", dist.Normal(self.loc, self.log_scale.exp()))


def exact_gradient_moments():
    """With z = m + s eps, the single-sample loss -log p(x, z) + log q(z) has gradients

    d/dm  = z (1 + 1/s2) - (x - b)/s2                      (s2 = SIGMA^2)
    d/dls = s eps (m (1 + 1/s2) - (x - b)/s2) + s^2 eps^2 (1 + 1/s2) - 1
    d/db  = -(x - z - b)/s2
    """
    a = 1 + 1 / SIGMA**2
    drift = LOC * a - (X - OFFSET) / SIGMA**2
    mean = {"loc": drift, "log_scale": SCALE**2 * a - 1, "offset": -(X - LOC - OFFSET) / SIGMA**2}
    variance = {
        "loc": SCALE**2 * a**2,
        "log_scale": SCALE**2 * drift**2 + 2 * SCALE**4 * a**2,
        "offset": SCALE**2 / SIGMA**4,
    }
    return mean, variance


@pytest.mark.slow
def test_trace_elbo_gradient_moments_match_the_closed_form():
    guide, x = Guide(), torch.tensor(X)
    num_draws = 2000
    stats = gradient_statistics(model, guide, Trace_ELBO(), x, num_draws)
    mean, variance = exact_gradient_moments()
    estimated = {
        "loc": (stats.groups["guide"], 0),
        "log_scale": (stats.groups["guide"], 1),
        "offset": (stats.groups["model"], 0),
    }
    for name, (group, index) in estimated.items():
        # 4 standard errors of a mean of num_draws draws.
        assert abs(group.mean[index].item() - mean[name]) < 4 * math.sqrt(variance[name] / num_draws), name
    for name in ("loc", "offset"):
        # Gaussian gradients: the sample variance has relative SE sqrt(2 / (D - 1)); 4 of them.
        group, index = estimated[name]
        assert group.variance[index].item() == pytest.approx(variance[name], rel=4 * math.sqrt(2 / (num_draws - 1)))
        # The exact SNR |mean| / sd; for Gaussian draws its estimate has standard error
        # sqrt((1 + SNR^2 / 2) / D) (delta method); 4 of them.
        snr = abs(mean[name]) / math.sqrt(variance[name])
        assert abs(group.snr[index].item() - snr) < 4 * math.sqrt((1 + snr**2 / 2) / num_draws), (name, snr)
    assert guide.loc.grad is None and pyro.param("offset").grad is None
    summary = stats.summary()
    assert summary["num_draws"] == num_draws and set(summary) == {"seconds_per_draw", "num_draws", "guide", "model"}


class ScriptedObjective:
    """An objective whose d-th gradient draw is the d-th row of ``draws``: the loss is linear in
    the parameters, with the row as coefficients (guide weights first, then the model's ``b``)."""

    def __init__(self, draws, clock, seconds_per_draw):
        self.draws = iter(draws)
        self.clock, self.seconds_per_draw = clock, seconds_per_draw

    def differentiable_loss(self, model, guide, *args):
        self.clock["now"] += self.seconds_per_draw
        row = torch.tensor(next(self.draws))
        return (guide.weight * row[:2]).sum() + pyro.param("b") * row[2]


class WeightGuide(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(2))

    def forward(self, x):
        pass


def test_statistics_of_a_known_gradient_sequence(monkeypatch):
    """Draws (1, 0, -2), (2, 4, 2), (3, 0, -2), (6, 4, 2). By hand, with the D - 1 = 3 divisor:
    guide weight 0: mean 3, variance (4 + 1 + 0 + 9) / 3 = 14/3, SNR 3 / sqrt(14/3);
    guide weight 1: mean 2, variance 16/3, SNR 2 / sqrt(16/3); model b: mean 0, variance 16/3, SNR 0."""
    # The module, not the function of the same name that pyrovae.infer exports.
    module = importlib.import_module("pyrovae.infer.gradient_statistics")
    clock = {"now": 100.0}
    monkeypatch.setattr(module, "time", SimpleNamespace(perf_counter=lambda: clock["now"]))
    draws = [(1.0, 0.0, -2.0), (2.0, 4.0, 2.0), (3.0, 0.0, -2.0), (6.0, 4.0, 2.0)]

    def model(x):
        pyro.param("b", torch.tensor(0.0))

    objective = ScriptedObjective(draws, clock, seconds_per_draw=0.25)
    stats = gradient_statistics(model, WeightGuide(), objective, torch.zeros(1), num_draws=4)
    guide, model_group = stats.groups["guide"], stats.groups["model"]
    snr = [3 / math.sqrt(14 / 3), 2 / math.sqrt(16 / 3)]
    torch.testing.assert_close(guide.mean, torch.tensor([3.0, 2.0]))
    torch.testing.assert_close(guide.variance, torch.tensor([14 / 3, 16 / 3]))
    torch.testing.assert_close(guide.snr, torch.tensor(snr))
    torch.testing.assert_close(model_group.mean, torch.tensor([0.0]))
    torch.testing.assert_close(model_group.snr, torch.tensor([0.0]))
    assert stats.seconds_per_draw == 0.25 and stats.num_draws == 4
    summary = stats.summary()
    assert summary["seconds_per_draw"] == 0.25 and summary["num_draws"] == 4
    assert summary["guide"] == pytest.approx(
        {"mean_abs_mean": 2.5, "mean_variance": 5.0, "mean_snr": sum(snr) / 2, "median_snr": min(snr), "num_constant": 0}
    )


def test_works_with_pyrovae_objectives_and_rejects_gradient_free_ones():
    guide, x = Guide(), torch.full((5,), X)

    def plated_model(x):
        offset = pyro.param("offset", torch.tensor(OFFSET))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z + offset, SIGMA), obs=x)

    def plated_guide(x):
        with pyro.plate("data", len(x)):
            guide(x)

    stats = gradient_statistics(plated_model, plated_guide, VarianceELBO(num_particles=4), (x,), 5)
    assert stats.groups["model"].mean.shape == (1,)
    with pytest.raises(ValueError, match="num_draws must be at least 2"):
        gradient_statistics(plated_model, plated_guide, VarianceELBO(num_particles=4), (x,), 1)

    def relaxed_model(x):
        z = pyro.sample("z", dist.RelaxedBernoulli(torch.tensor(0.5), probs=torch.tensor(0.5)))
        pyro.sample("x", dist.Normal(z + pyro.param("offset", torch.tensor(OFFSET)), SIGMA), obs=x)

    def relaxed_guide(x):
        pyro.sample("z", dist.RelaxedBernoulli(torch.tensor(0.5), logits=guide.loc))

    with pytest.raises(ValueError, match="TrueDiscreteBound produces no gradients"):
        gradient_statistics(relaxed_model, relaxed_guide, TrueDiscreteBound(num_particles=2), torch.tensor(X), 3)


def test_summary_leaves_out_elements_whose_gradient_never_varies():
    group = GroupGradientStatistics(mean=torch.tensor([0.0, 2.0, 1.0, 3.0]), variance=torch.tensor([0.0, 0.0, 1.0, 4.0]),
                                    snr=torch.tensor([float("nan"), float("inf"), 1.0, 1.5]))
    summary = group.summary()
    assert summary["num_constant"] == 2
    assert summary["mean_snr"] == pytest.approx(1.25) and summary["median_snr"] == pytest.approx(1.0)


class LinearObjective:
    """The loss ``sum_j row_j * theta_j`` over ``tensors()`` with the d-th row of ``draws``: the d-th
    gradient draw is the row itself, times the chain rule from each tensor to its leaf."""

    def __init__(self, draws, tensors):
        self.draws, self.tensors = iter(draws), tensors

    def differentiable_loss(self, model, guide, *args):
        row = torch.tensor(next(self.draws))
        return (torch.cat([t.reshape(-1) for t in self.tensors()]) * row).sum()


def test_a_constrained_pyro_param_is_drawn_on_the_scale_the_optimizer_steps():
    """A positive param s = exp(u): Pyro's optimizers step u, and d(c s)/du = c s. With s = 2 and
    draws c = 1, 3: mean 2 * 2 = 4, variance (2 - 6)^2 / 2 = 8 (two draws are enough)."""

    def model(x):
        pyro.param("s", torch.tensor(2.0), constraint=dist.constraints.positive)

    objective = LinearObjective([(1.0,), (3.0,)], lambda: [pyro.param("s")])
    stats = gradient_statistics(model, lambda x: None, objective, torch.zeros(1), num_draws=2)
    assert set(stats.groups) == {"model"}
    torch.testing.assert_close(stats.groups["model"].mean, torch.tensor([4.0]))
    torch.testing.assert_close(stats.groups["model"].variance, torch.tensor([8.0]))


def test_a_param_read_by_both_counts_once_as_the_guides_and_an_unused_one_as_constant():
    """The guide reads ``shared`` and ``unused``, the model ``shared`` and ``b``; the loss is
    c_1 shared + c_2 b and never touches ``unused``, whose gradient is 0 in every draw."""

    def model(x):
        pyro.param("shared", torch.tensor(0.0))
        pyro.param("b", torch.tensor(0.0))

    def guide(x):
        pyro.param("shared", torch.tensor(0.0))
        pyro.param("unused", torch.tensor(0.0))

    draws = [(1.0, 5.0), (3.0, 7.0), (2.0, 9.0)]
    objective = LinearObjective(draws, lambda: [pyro.param("shared"), pyro.param("b")])
    stats = gradient_statistics(model, guide, objective, torch.zeros(1), num_draws=3)
    guide_group, model_group = stats.groups["guide"], stats.groups["model"]
    torch.testing.assert_close(guide_group.mean, torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(guide_group.variance, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(model_group.mean, torch.tensor([7.0]))
    assert guide_group.summary()["num_constant"] == 1


def test_a_group_that_never_varies_has_no_snr_summary():
    group = GroupGradientStatistics(mean=torch.tensor([1.0, 0.0]), variance=torch.zeros(2),
                                    snr=torch.tensor([float("inf"), float("nan")]))
    summary = group.summary()
    assert math.isnan(summary["mean_snr"]) and math.isnan(summary["median_snr"])
    assert summary["num_constant"] == 2 and summary["mean_abs_mean"] == 0.5


def test_nothing_trainable_is_refused_in_one_line():
    with pytest.raises(ValueError, match="^neither the model nor the guide has trainable parameters$"):
        gradient_statistics(lambda x: None, lambda x: None, LinearObjective([], list), torch.zeros(1), num_draws=2)
