"""Tests of StepLogistic (Sadier-Gane 2020, §5.2) and its registered KL divergences.

The chain of evidence: the density integrates to one; the cdf is its integral and matches
eq. (5.6); the icdf inverts the cdf (into the float tails) and matches eq. (5.7); samples pass a
KS test against the cdf; pathwise gradients match finite differences; the KLs match Monte Carlo
means of log density ratios and Sadier-Gane's Table 5.1.
"""

import math
import re

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.kl import kl_divergence
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam
from torch.distributions import biject_to

import pyrovae.distributions.kl  # noqa: F401  (registers the KL divergences)
from pyrovae.distributions.constraints import open_interval
from pyrovae.distributions.step_logistic import StepLogistic
from tests.support.distribution_checks import (
    assert_cdf_is_integral_of_density,
    assert_density_integrates_to_one,
    assert_finite_everywhere,
    assert_icdf_inverts_cdf,
    assert_kl_matches_monte_carlo,
    assert_moments_match_samples,
    assert_real_line_limits,
    assert_rsample_grad_matches_finite_difference,
    assert_samples_match_cdf,
    aten_op_counts,
    density,
    moments_by_quadrature,
    parameter_grid,
    quad,
)

ALPHAS = [1e-3, 0.3, 1.0, 1.5, 2 - 1e-3]
EXTREME_ALPHAS = [1e-6, 1e-3, 0.5, 1.0, 1.5, 2 - 1e-3, 2 - 1e-6]


def step_logistic(alphas=ALPHAS, dtype=torch.float64):
    return StepLogistic(torch.tensor(alphas, dtype=dtype))


def standard_logistic(dtype=torch.float64):
    return dist.Logistic(torch.zeros((), dtype=dtype), torch.ones((), dtype=dtype))


def test_density_integrates_to_one():
    assert_density_integrates_to_one(step_logistic(), points=[0.0], atol=1e-10)


def test_probability_of_positive_half_is_half_alpha():
    d = step_logistic()
    positive = quad(density(d), 0, math.inf)
    torch.testing.assert_close(positive, d.bernoulli_probs, atol=1e-10, rtol=0)
    torch.testing.assert_close(1 - d.cdf(torch.zeros(5, dtype=torch.float64)), d.bernoulli_probs)


def test_cdf_is_integral_of_density():
    grid = [-30.0, -5.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 5.0, 30.0]
    assert_cdf_is_integral_of_density(step_logistic(), grid, points=[0.0], atol=1e-10, rtol=1e-9)


def test_cdf_and_icdf_match_sadier_gane_equations():
    """Eqs. (5.6) and (5.7) as printed, in float64 where they are accurate."""
    alpha = torch.tensor(ALPHAS, dtype=torch.float64)
    d = StepLogistic(alpha)
    z = torch.linspace(-8, 8, 161, dtype=torch.float64).unsqueeze(-1)
    eq_5_6 = torch.where(
        z < 0, (2 - alpha) * torch.sigmoid(z), (2 - alpha + alpha * torch.tanh(z / 2)) / 2
    )
    torch.testing.assert_close(d.cdf(z), eq_5_6, atol=1e-15, rtol=1e-12)
    u = torch.linspace(0.01, 0.99, 99, dtype=torch.float64).unsqueeze(-1)
    lower = torch.log(u / (2 - alpha - u).clamp(min=1e-300))
    upper = torch.log((alpha + u - 1).clamp(min=1e-300) / (1 - u))
    eq_5_7 = torch.where(u < (2 - alpha) / 2, lower, upper)
    torch.testing.assert_close(d.icdf(u), eq_5_7, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_icdf_inverts_cdf_into_the_tails(dtype):
    finfo = torch.finfo(dtype)
    d = step_logistic(EXTREME_ALPHAS, dtype)
    z = torch.tensor([-30.0, -3.0, -0.1], dtype=dtype).unsqueeze(-1)
    assert_icdf_inverts_cdf(d, values=z, atol=0, rtol=100 * finfo.eps)
    # Above 0 a cdf near 1 is rounded to a multiple of eps, so z comes back to eps / f(z),
    # wherever the cdf has not rounded to 1 (where icdf(1) = inf is the right answer).
    z = torch.tensor([0.1, 3.0], dtype=dtype).unsqueeze(-1).expand(2, len(EXTREME_ALPHAS))
    u = d.cdf(z)
    below_one = u < 1
    assert below_one.sum() >= 12
    error = (d.icdf(u) - z)[below_one].abs()
    tolerance = 4 * finfo.eps / d.log_prob(z).exp() + 100 * finfo.eps * z
    assert (error <= tolerance[below_one]).all()
    # The lower tail keeps relative accuracy down to the smallest normal number, up to the
    # conditioning of exp: a rounding of z by eps |z| moves the cdf by that much relatively.
    u = torch.tensor([finfo.tiny, 1e-30, 1e-6, 0.25], dtype=dtype).unsqueeze(-1)
    rtol = 4 * finfo.eps * (1 - u.log())
    assert_icdf_inverts_cdf(d, probs=u, atol=0, rtol=rtol)
    # The upper tail is accurate up to the largest float below 1: against the exact
    # -logit((1 - u) / alpha), evaluated in float64 where z > 0 (1 - u < alpha / 2).
    u = 1 - torch.tensor([finfo.eps / 2, 1e-7, 1e-3, 0.25], dtype=dtype).unsqueeze(-1)
    v, alpha = 1 - u.double(), d.alpha.double()
    upper = v < alpha / 2
    assert upper.sum() >= 12
    exact = torch.log(alpha - v) - torch.log(v)
    z = d.icdf(u).double()
    torch.testing.assert_close(z[upper], exact[upper], atol=0, rtol=10 * finfo.eps)


def test_samples_match_cdf():
    assert_samples_match_cdf(step_logistic([0.1, 0.5, 1.5]), n=100_000)


def test_samples_fail_the_ks_test_against_a_wrong_cdf():
    d = step_logistic([0.5])
    with pytest.raises(AssertionError, match="do not match"):
        assert_samples_match_cdf(d, cdf=step_logistic([0.55]).cdf, n=100_000)


def test_hard_values_are_bernoulli_half_alpha():
    d = step_logistic([0.2, 1.0, 1.8])
    torch.manual_seed(0)
    hard = d.hard(d.sample((100_000,)))
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    assert hard.dtype == torch.float64
    standard_error = (d.bernoulli_probs * (1 - d.bernoulli_probs) / 100_000).sqrt()
    assert ((hard.mean(0) - d.bernoulli_probs).abs() < 5 * standard_error).all()


def test_moments_match_samples():
    assert_moments_match_samples(step_logistic([0.1, 1.0, 1.7]))


def test_moments_match_quadrature():
    d = step_logistic()
    mean, second = moments_by_quadrature(d, points=[0.0])
    torch.testing.assert_close(d.mean, mean, atol=1e-9, rtol=0)
    torch.testing.assert_close(d.variance, second - mean**2, atol=1e-9, rtol=0)


def test_entropy_matches_monte_carlo():
    d = step_logistic()
    torch.manual_seed(0)
    log_prob = d.log_prob(d.sample((100_000,)))
    tolerance = 5 * log_prob.std(0) / math.sqrt(100_000)
    assert ((-log_prob.mean(0) - d.entropy()).abs() < tolerance).all()


def test_rsample_gradient_matches_finite_difference_of_icdf():
    alpha = torch.tensor(ALPHAS * 40, dtype=torch.float64)
    assert_rsample_grad_matches_finite_difference(
        StepLogistic, {"alpha": alpha}, eps=1e-7, atol=1e-6, rtol=1e-5
    )


def test_rsample_gradient_fails_against_a_wrong_sampler():
    def biased(alpha):
        return StepLogistic(alpha.detach() + 0.1 * (alpha - alpha.detach()))

    with pytest.raises(AssertionError, match="disagree"):
        assert_rsample_grad_matches_finite_difference(
            biased, {"alpha": torch.tensor(ALPHAS, dtype=torch.float64)}
        )


def test_gradcheck_icdf():
    alpha = torch.tensor([1e-3, 0.3, 1.0, 1.5, 2 - 1e-3], dtype=torch.float64, requires_grad=True)
    # Away from the branch points u = 1 - alpha / 2, where the density jumps.
    u = torch.tensor([1e-4, 0.1, 0.4, 0.6, 0.9, 1 - 1e-4], dtype=torch.float64).unsqueeze(-1)
    u.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda u, a: StepLogistic(a).icdf(u), (u, alpha))
    z = torch.tensor([-20.0, -1.0, 1.0, 20.0], dtype=torch.float64).unsqueeze(-1)
    assert torch.autograd.gradcheck(lambda a: StepLogistic(a).log_prob(z), (alpha,))
    assert torch.autograd.gradcheck(lambda a: StepLogistic(a).cdf(z), (alpha,))


def test_kl_to_standard_logistic_is_bernoulli_kl_eq_5_5():
    alpha = torch.tensor(EXTREME_ALPHAS, dtype=torch.float64)
    kl = kl_divergence(StepLogistic(alpha), standard_logistic())
    bernoulli = kl_divergence(dist.Bernoulli(alpha / 2), dist.Bernoulli(torch.tensor(0.5)))
    torch.testing.assert_close(kl, bernoulli.to(kl.dtype), atol=1e-8, rtol=1e-6)
    eq_5_5 = ((2 - alpha) * torch.log(2 - alpha) + alpha * torch.log(alpha)) / 2
    torch.testing.assert_close(kl, eq_5_5, atol=1e-15, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kl_limits_are_finite(dtype):
    finfo = torch.finfo(dtype)
    alpha = torch.tensor([finfo.tiny, 2 - finfo.eps], dtype=dtype, requires_grad=True)
    kl = kl_divergence(StepLogistic(alpha), standard_logistic(dtype))
    torch.testing.assert_close(kl, torch.full_like(kl, math.log(2)), atol=1e-5, rtol=0)
    (grad,) = torch.autograd.grad(kl.sum(), alpha)
    assert torch.isfinite(grad).all()
    zero_log_zero = kl_divergence(StepLogistic(alpha), StepLogistic(torch.ones_like(alpha)))
    torch.testing.assert_close(zero_log_zero, kl)


def test_kl_at_the_closed_ends_reads_0_log_0_as_0():
    # alpha = 0 or 2, outside the open support (validation off), is eq. (5.5)'s limit log 2: the empty
    # half's 0 log 0 counts as 0, not as 0 * -inf = NaN.
    p = StepLogistic(torch.tensor([0.0, 2.0], dtype=torch.float64), validate_args=False)
    log2 = torch.full((2,), math.log(2), dtype=torch.float64)
    torch.testing.assert_close(kl_divergence(p, standard_logistic()), log2)
    torch.testing.assert_close(kl_divergence(p, step_logistic([1.0, 1.0])), log2)


def test_kls_match_monte_carlo():
    p = step_logistic()
    assert_kl_matches_monte_carlo(p, standard_logistic())
    assert_kl_matches_monte_carlo(standard_logistic().expand([5]), p)
    assert_kl_matches_monte_carlo(p, step_logistic([0.5, 0.5, 1.9, 0.1, 1.0]))


def test_kl_rejects_a_nonstandard_logistic():
    for q in (dist.Logistic(1.0, 1.0), dist.Logistic(0.0, 2.0)):
        message = (
            "The StepLogistic KL has a closed form only against Logistic(0, 1); got Logistic with "
            f"loc={q.loc} and scale={q.scale}. Use a Monte Carlo estimate instead."
        )
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            kl_divergence(StepLogistic(torch.tensor(0.5)), q)
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            kl_divergence(q, StepLogistic(torch.tensor(0.5)))


@pytest.mark.parametrize("mu, logistic_kl, bernoulli_kl", [(1.0, 0.16, 0.11), (10.0, 8.00, 0.69)])
def test_sadier_gane_table_5_1(mu, logistic_kl, bernoulli_kl):
    """Bernoulli column via StepLogistic(2 sigmoid(mu)); Logistic column by quadrature."""
    alpha = 2 * torch.sigmoid(torch.tensor(mu, dtype=torch.float64))
    kl = kl_divergence(StepLogistic(alpha), standard_logistic())
    assert abs(kl.item() - bernoulli_kl) < 0.005
    shifted, prior = dist.Logistic(torch.tensor(mu, dtype=torch.float64), 1.0), standard_logistic()

    def integrand(z):
        z = torch.tensor(z, dtype=torch.float64)
        log_p = shifted.log_prob(z)
        return log_p.exp() * (log_p - prior.log_prob(z))

    assert abs(quad(integrand, -math.inf, math.inf).item() - logistic_kl) < 0.005


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_everywhere(dtype):
    params = parameter_grid(dtype, alpha=EXTREME_ALPHAS)
    values = torch.cat([torch.linspace(-50, 50, 101), torch.tensor([-1e-30, 0.0, 1e-30])])
    assert_finite_everywhere(StepLogistic, params, values, n_samples=10_000)
    finfo = torch.finfo(dtype)
    u = torch.tensor([finfo.tiny, finfo.eps, 0.5, 1 - finfo.eps, 1 - finfo.eps / 2], dtype=dtype)
    alpha = params["alpha"].clone().requires_grad_(True)
    z = StepLogistic(alpha).icdf(u.unsqueeze(-1))
    (grad,) = torch.autograd.grad(z.sum(), alpha)
    assert torch.isfinite(z).all() and torch.isfinite(grad).all()


def test_shapes_expand_and_to_event():
    d = StepLogistic(torch.full((3, 1), 0.5))
    assert d.batch_shape == (3, 1) and d.event_shape == ()
    assert d.rsample((4,)).shape == (4, 3, 1)
    e = d.expand([2, 3, 5])
    assert e.batch_shape == (2, 3, 5) and e.sample().shape == (2, 3, 5)
    assert e.log_prob(torch.zeros(2, 3, 5)).shape == (2, 3, 5)
    assert e.bernoulli_probs.shape == (2, 3, 5)
    i = d.expand([3, 5]).to_event(1)
    assert i.batch_shape == (3,) and i.event_shape == (5,)
    assert i.log_prob(i.sample()).shape == (3,)
    assert StepLogistic(0.5).batch_shape == ()
    assert StepLogistic(torch.tensor(0.5, dtype=torch.float64)).rsample().dtype == torch.float64


def test_open_interval_constraint_and_transform():
    constraint = StepLogistic.arg_constraints["alpha"]
    assert constraint.check(torch.tensor([0.0, 1e-6, 1.0, 2.0])).tolist() == [
        False,
        True,
        True,
        False,
    ]
    # The transform is 2 sigmoid(x): inside (0, 2) even at |x| = 30, and invertible (below the
    # upper end, where 2 - y keeps its precision).
    x = torch.tensor([-30.0, 0.0, 3.0, 30.0], dtype=torch.float64)
    transform = biject_to(constraint)
    y = transform(x)
    torch.testing.assert_close(y, 2 * torch.sigmoid(x), atol=0.0, rtol=1e-15)
    assert constraint.check(y).all()
    torch.testing.assert_close(transform.inv(y[:3]), x[:3])
    assert isinstance(open_interval(0.0, 2.0), type(constraint))


@pytest.mark.parametrize(
    "alpha, error",
    [
        (torch.tensor(0.0), ValueError),
        (torch.tensor(2.0), ValueError),
        (torch.tensor([0.5, -0.1]), ValueError),
        (torch.tensor(2.5), ValueError),
        (torch.tensor(float("nan")), ValueError),
        (torch.tensor(1), TypeError),
    ],
)
def test_bad_parameters_raise(alpha, error):
    with pytest.raises(error, match="alpha"):
        StepLogistic(alpha)


def test_bad_value_raises_under_validation():
    with pytest.raises(ValueError, match="support"):
        StepLogistic(torch.tensor(0.5)).log_prob(torch.tensor(float("nan")))


def _mean_field_model(n, dim):
    with pyro.plate("data", n):
        pyro.sample("z", standard_logistic(torch.float32).expand([n, dim]).to_event(1))


def _mean_field_guide(n, dim):
    init = torch.linspace(0.2, 1.8, n * dim).reshape(n, dim)
    alpha = pyro.param("alpha", init, constraint=open_interval(0.0, 2.0))
    with pyro.plate("data", n):
        pyro.sample("z", StepLogistic(alpha).to_event(1))


def test_trace_mean_field_elbo_uses_the_registered_kl():
    """With no likelihood, the mean-field loss is the closed-form KL, exactly and every time."""
    n, dim = 4, 3
    _mean_field_guide(n, dim)
    alpha = pyro.param("alpha").detach()
    exact = (((2 - alpha) * torch.log(2 - alpha) + alpha * torch.log(alpha)) / 2).sum()
    elbo = TraceMeanField_ELBO()
    losses = [elbo.loss(_mean_field_model, _mean_field_guide, n, dim) for _ in range(3)]
    assert losses == pytest.approx([exact.item()] * 3, rel=1e-6)
    mc = Trace_ELBO(num_particles=20_000, vectorize_particles=True)
    estimate = mc.loss(_mean_field_model, _mean_field_guide, n, dim)
    assert estimate == pytest.approx(exact.item(), abs=0.05)


@pytest.mark.parametrize("elbo", [Trace_ELBO(), TraceMeanField_ELBO()])
def test_svi_step_in_a_plated_model(elbo):
    data = torch.tensor([[2.0, -2.0, 0.5]] * 4)

    def model(data):
        with pyro.plate("data", data.shape[0]):
            z = pyro.sample("z", standard_logistic(torch.float32).expand(data.shape).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=data)

    def guide(data):
        alpha = pyro.param("alpha", torch.ones(data.shape), constraint=open_interval(0.0, 2.0))
        with pyro.plate("data", data.shape[0]):
            pyro.sample("z", StepLogistic(alpha).to_event(1))

    svi = SVI(model, guide, Adam({"lr": 0.05}), elbo)
    losses = [svi.step(data) for _ in range(200)]
    assert all(math.isfinite(loss) for loss in losses)
    alpha = pyro.param("alpha").detach()
    # Positive data pushes the posterior sign towards 1, negative data towards 0.
    assert (alpha[:, 0] > 1.2).all() and (alpha[:, 1] < 0.8).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_and_cdf_at_infinity(dtype):
    # The support is the real line: the density vanishes at both ends (log_prob was NaN at -inf,
    # from 2 log sigmoid(z) - z = -inf + inf).
    assert_real_line_limits(step_logistic(EXTREME_ALPHAS, dtype))


def test_makes_no_call_to_torchs_log_sigmoid_kernel():
    # See the test of the same name for SmoothStepLogistic: torch's log_sigmoid kernel opens a
    # parallel region for every tensor of 2+ elements, which stalls on a loaded 2-thread machine.
    alpha = torch.full((16,), 0.7, requires_grad=True)
    counts = aten_op_counts(lambda: StepLogistic(alpha).log_prob(torch.linspace(-3, 3, 16)).sum().backward())
    assert sum(counts.values()) > 5 and not {op: n for op, n in counts.items() if "log_sigmoid" in op}


def test_entropy_by_logits_equals_entropy_by_alpha():
    # alpha = 2 sigmoid(a): the logits branch has its own closed form, which must agree.
    logits = torch.tensor([-8.0, -1.0, 0.0, 0.7, 8.0], dtype=torch.float64)
    torch.testing.assert_close(StepLogistic(logits=logits).entropy(),
                               StepLogistic(2 * torch.sigmoid(logits)).entropy(), atol=1e-12, rtol=0)


def test_an_expanded_distribution_validates_as_its_original_does():
    nan = torch.tensor(float("nan"))
    with pytest.raises(ValueError, match="support"):
        StepLogistic(torch.tensor(0.5), validate_args=True).expand([3]).log_prob(nan)
    assert StepLogistic(torch.tensor(0.5), validate_args=False).expand([3]).log_prob(nan).isnan().all()
    # With validation off, expand checks nothing either: not even a parameter outside (0, 2), by alpha or by logits.
    for outside in (StepLogistic(torch.tensor(2.5), validate_args=False), StepLogistic(logits=torch.tensor(math.nan), validate_args=False)):
        expanded = outside.expand([3])
        assert expanded.batch_shape == (3,) and not expanded._validate_args


class ScaledStepLogistic(StepLogistic):
    """A subclass with state of its own that expands through ``StepLogistic.expand(_instance=...)``,
    as torch's distributions chain ``expand``."""

    def __init__(self, alpha, scale):
        self.scale = scale
        super().__init__(alpha)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ScaledStepLogistic, _instance)
        new.scale = self.scale
        return super().expand(batch_shape, _instance=new)


def test_a_subclass_expands_into_its_own_instance():
    expanded = ScaledStepLogistic(torch.tensor(0.5), scale=3.0).expand([2])
    assert type(expanded) is ScaledStepLogistic and expanded.scale == 3.0 and expanded.batch_shape == (2,)


def test_the_logits_parameterisation_gives_the_halves_of_alpha():
    logits = torch.tensor([-8.0, -1.0, 0.0, 0.7, 8.0], dtype=torch.float64)
    for by_logits, by_alpha in zip(StepLogistic(logits=logits).halves(), StepLogistic(2 * torch.sigmoid(logits)).halves()):
        torch.testing.assert_close(by_logits, by_alpha, atol=1e-12, rtol=1e-12)


def test_zero_belongs_to_the_negative_half_as_in_hard_and_cdf():
    d = StepLogistic(torch.tensor(0.5, dtype=torch.float64))
    zero = torch.zeros((), dtype=torch.float64)
    assert d.hard(zero) == 0.0
    torch.testing.assert_close(d.log_prob(zero), torch.log(torch.tensor(1.5, dtype=torch.float64) / 4))


def test_one_parameterisation_and_floating_point_logits_are_required():
    for arguments in ({}, {"alpha": torch.tensor(0.5), "logits": torch.tensor(0.0)}):
        with pytest.raises(ValueError, match="^StepLogistic takes exactly one of alpha and logits$"):
            StepLogistic(**arguments)
    with pytest.raises(TypeError, match="logits"):
        StepLogistic(logits=torch.tensor(1))
