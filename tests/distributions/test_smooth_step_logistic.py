"""Tests of SmoothStepLogistic (Sadier-Gane 2020, §5.4.1, eq. 5.8).

The chain of evidence: the density integrates to one for every beta (Sadier-Gane 2020, appendix A.4); the
quadrature cdf is the integral of the density (by independent adaptive quadrature) and matches
the closed form at beta = 1; the Newton icdf inverts it into the float tails; samples pass a
KS test against it; the implicit reparameterization gradients pass gradcheck and match finite
differences; beta -> inf recovers StepLogistic and beta -> 0 Logistic(0, 1).
"""

import math
import sys

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.kl import kl_divergence
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam

import pyrovae.distributions.kl  # noqa: F401  (registers the KL divergences)
from pyrovae.distributions.constraints import open_interval
from pyrovae.distributions.smooth_step_logistic import SmoothStepLogistic
from pyrovae.distributions.step_logistic import StepLogistic
from tests.support.distribution_checks import (
    assert_cdf_is_integral_of_density,
    assert_density_integrates_to_one,
    assert_finite,
    assert_finite_everywhere,
    assert_icdf_inverts_cdf,
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
BETAS = [0.1, 1.0, 10.0, 100.0]
EXTREME_ALPHAS = [1e-6, 0.5, 1.0, 1.5, 2 - 1e-6]


def grid(alphas=ALPHAS, betas=BETAS, dtype=torch.float64):
    """Every (alpha, beta) pair as one flat batch."""
    params = parameter_grid(dtype, alpha=alphas, beta=betas)
    return SmoothStepLogistic(params["alpha"], params["beta"])


def smooth_step(alpha, beta, dtype=torch.float64):
    return SmoothStepLogistic(torch.tensor(alpha, dtype=dtype), torch.tensor(beta, dtype=dtype))


def test_density_integrates_to_one_for_every_beta():
    assert_density_integrates_to_one(grid(betas=BETAS + [1e-3, 1e3]), points=[0.0], atol=1e-10)


def test_cdf_is_integral_of_density():
    z = [-40.0, -5.0, -1.0, -0.05, -1e-3, 0.0, 1e-3, 0.05, 1.0, 5.0, 40.0]
    assert_cdf_is_integral_of_density(grid(), z, points=[0.0], atol=1e-12, rtol=1e-10)


def test_cdf_matches_closed_form_at_beta_one():
    """At beta = 1, int_{-inf}^x l(z) sigmoid(z) dz = sigmoid(x)^2 / 2, so
    F(x) = (2 - alpha) sigmoid(x) + (alpha - 1) sigmoid(x)^2."""
    alpha = torch.tensor(ALPHAS, dtype=torch.float64)
    d = SmoothStepLogistic(alpha, torch.ones_like(alpha))
    z = torch.cat([-torch.logspace(-6, 2.8, 40), torch.logspace(-6, 1.5, 40)]).double()
    z = z.unsqueeze(-1)
    s = torch.sigmoid(z)
    below = (2 - alpha) * s + (alpha - 1) * s**2
    # Above 0, compare survival functions: 1 - F = sigmoid(-z) (alpha - (alpha - 1) sigmoid(-z)).
    survival = torch.sigmoid(-z) * (alpha - (alpha - 1) * torch.sigmoid(-z))
    cdf = d.cdf(z)
    torch.testing.assert_close(cdf[z[:, 0] <= 0], below[z[:, 0] <= 0], atol=0, rtol=1e-13)
    torch.testing.assert_close(
        1 - cdf[z[:, 0] > 0], survival[z[:, 0] > 0], atol=1e-16, rtol=1e-12
    )


def test_bernoulli_probs_is_mass_above_zero_and_not_half_alpha():
    d = grid()
    above = quad(density(d), 0.0, math.inf)
    torch.testing.assert_close(d.bernoulli_probs, above, atol=1e-12, rtol=0)
    torch.testing.assert_close(d.bernoulli_probs, 1 - d.cdf(torch.zeros_like(d.alpha)))
    # Closed form at beta = 1: (alpha + 1) / 4; it is alpha / 2 only at alpha = 1.
    alpha = torch.tensor(ALPHAS, dtype=torch.float64)
    at_one = SmoothStepLogistic(alpha, torch.ones_like(alpha)).bernoulli_probs
    torch.testing.assert_close(at_one, (alpha + 1) / 4, atol=1e-14, rtol=0)
    assert (at_one - alpha / 2).abs()[[0, 1, 3, 4]].min() > 0.1


def test_hard_values_follow_bernoulli_probs():
    d = grid([0.2, 1.8], [1.0, 10.0])
    torch.manual_seed(0)
    hard = d.hard(d.sample((20_000,)))
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    standard_error = (d.bernoulli_probs * (1 - d.bernoulli_probs) / 20_000).sqrt()
    assert ((hard.mean(0) - d.bernoulli_probs).abs() < 5 * standard_error).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_icdf_inverts_cdf_into_the_tails(dtype):
    finfo = torch.finfo(dtype)
    d = grid(EXTREME_ALPHAS, BETAS, dtype)
    z = torch.tensor([-30.0, -3.0, -0.3, -1e-3], dtype=dtype).unsqueeze(-1)
    # Near 0 the cdf is about 1/2, so z is recovered to a few eps absolutely.
    assert_icdf_inverts_cdf(d, values=z, atol=16 * finfo.eps, rtol=1000 * finfo.eps)
    u = torch.tensor([finfo.tiny, 1e-30, 1e-6, 0.3], dtype=dtype).unsqueeze(-1)
    rtol = 100 * finfo.eps * (1 - u.log())
    assert_icdf_inverts_cdf(d, probs=u, atol=0, rtol=rtol)
    # The upper tail: 1 - u down to the largest float below 1 comes back from 1 - cdf where
    # the cdf is computed through the upper tail directly (z > 0 far out).
    v = torch.tensor([finfo.eps / 2, 1e-5], dtype=dtype).unsqueeze(-1)
    z = d.icdf(1 - v)
    assert torch.isfinite(z).all() and (z > 0).all()
    torch.testing.assert_close(1 - d.cdf(z), v.expand_as(z), atol=finfo.eps, rtol=1e-3)


def test_icdf_inverts_cdf_where_the_lower_tail_changes_slope():
    # With 2 - alpha tiny, F(x) = sigma(x) [(2 - alpha)(1 - h) + alpha h] goes from the (2 - alpha) sigma(x)
    # asymptote to the smoothed step's 2 sigma(x) h(x) around u ~ 2 - alpha; there a Newton step from the
    # asymptote leaves the bracket and lands above 0 unless bisection replaces it.
    for gap in (1e-9, 1e-12):
        alpha = torch.tensor(2 - gap, dtype=torch.float64)
        for beta in (10.0, 1000.0):
            d = SmoothStepLogistic(alpha, torch.tensor(beta, dtype=torch.float64))
            u = gap * torch.tensor([1.0, 3.0, 10.0, 30.0], dtype=torch.float64)
            z = d.icdf(u)
            assert (z < 0).all(), (gap, beta, z)
            torch.testing.assert_close(d.cdf(z), u, atol=0, rtol=1e-10)


def test_icdf_newton_solve_stops_after_a_few_iterations_one_element_or_many(monkeypatch):
    # Each iteration of the solve evaluates the density once: count them. The worst seen over
    # alpha in [1e-12, 2 - 1e-12], beta in [0.1, 1000] and u from 1e-308 to 1 - 2^-53 is 9 (of the cap 24).
    module = sys.modules[SmoothStepLogistic.__module__]
    log_density, calls = module._log_density, []

    def counted(*args):
        calls.append(1)
        return log_density(*args)

    monkeypatch.setattr(module, "_log_density", counted)
    u = torch.tensor([1e-308, 1e-30, 1e-3, 0.3, 0.7, 1 - 1e-6], dtype=torch.float64)
    for alpha, beta in [(1e-6, 0.1), (1e-6, 100.0), (1.0, 1.0), (2 - 1e-12, 3.0)]:
        d = smooth_step(alpha, beta)
        for values in [u] + [u[i : i + 1] for i in range(len(u))]:
            calls.clear()
            z = d.icdf(values)
            assert 1 <= len(calls) <= 12, (alpha, beta, values, len(calls))
            # Each element comes back at rounding level, a lone one too.
            lower = z <= 0
            torch.testing.assert_close(d.cdf(z)[lower], values[lower], atol=0, rtol=1e-12)
            torch.testing.assert_close((1 - d.cdf(z))[~lower], (1 - values)[~lower], atol=1e-16, rtol=1e-9)


def test_lower_tail_quadrature_against_the_small_beta_expansion():
    # sigma(beta z) = 1/2 + beta z / 4 + O(beta^3 z^3) gives h(x) = 1/2 + (beta / 4)(x - softplus(x) / sigma(x))
    # (int_{-inf}^x z l(z) dz = x sigma(x) - softplus(x)), so F(x) = sigma(x) [1 + (1 - alpha)(1 - 2h)] for x <= 0,
    # to about 1e-17 at beta = 1e-6: the quadrature's claimed accuracy, ~2e-14 relative, is tested there.
    x = torch.tensor([0.0, -0.5, -1.0, -3.0, -10.0], dtype=torch.float64).unsqueeze(-1)
    alpha = torch.tensor([1e-3, 0.3, 1.7], dtype=torch.float64)
    beta = 1e-6
    h = 0.5 + beta / 4 * (x - torch.nn.functional.softplus(x) / torch.sigmoid(x))
    expected = torch.sigmoid(x) * (1 + (1 - alpha) * (1 - 2 * h))
    cdf = SmoothStepLogistic(alpha, torch.full_like(alpha, beta)).cdf(x)
    torch.testing.assert_close(cdf, expected, atol=0, rtol=1e-14)


def test_validate_args_is_handed_on_and_kept_by_expand():
    outside = torch.tensor(2.5, dtype=torch.float64)
    unchecked = SmoothStepLogistic(outside, torch.tensor(1.0, dtype=torch.float64), validate_args=False)
    assert not unchecked._validate_args
    assert not unchecked.expand((3,))._validate_args
    nan = torch.full((3,), math.nan)
    checked = SmoothStepLogistic(torch.tensor(0.5), torch.tensor(1.0)).expand((3,))
    with pytest.raises(ValueError, match="value"):
        checked.log_prob(nan)
    assert torch.isnan(SmoothStepLogistic(torch.tensor(0.5), torch.tensor(1.0), validate_args=False).expand((3,)).log_prob(nan)).all()


def test_expand_fills_the_instance_a_subclass_hands_it():
    class Sharp(SmoothStepLogistic):
        def __init__(self, alpha, *, validate_args=None):
            super().__init__(alpha, torch.full_like(alpha, 50.0), validate_args=validate_args)

        def expand(self, batch_shape, _instance=None):
            return super().expand(batch_shape, _instance=self._get_checked_instance(Sharp, _instance))

    expanded = Sharp(torch.tensor([0.3, 1.5])).expand((4, 2))
    assert type(expanded) is Sharp and expanded.batch_shape == (4, 2)
    torch.testing.assert_close(expanded.beta, torch.full((4, 2), 50.0))


def test_icdf_converges_to_step_logistic_icdf():
    u = torch.tensor([1e-6, 0.1, 0.4, 0.6, 0.9, 1 - 1e-6], dtype=torch.float64).unsqueeze(-1)
    alpha = torch.tensor([0.3, 1.5], dtype=torch.float64)
    step = StepLogistic(alpha).icdf(u)
    smooth = SmoothStepLogistic(alpha, torch.full_like(alpha, 1e5)).icdf(u)
    torch.testing.assert_close(smooth, step, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_samples_match_cdf():
    alpha = torch.tensor([0.4, 1.7], dtype=torch.float64)
    beta = torch.tensor([1.0, 30.0], dtype=torch.float64)
    assert_samples_match_cdf(SmoothStepLogistic(alpha, beta), n=100_000)


def test_samples_fail_the_ks_test_against_a_wrong_cdf():
    with pytest.raises(AssertionError, match="do not match"):
        assert_samples_match_cdf(
            smooth_step(1.5, 3.0), cdf=smooth_step(1.5, 1.5).cdf, n=50_000
        )


def test_moments_match_quadrature():
    d = grid()
    mean, second = moments_by_quadrature(d, points=[0.0])
    torch.testing.assert_close(d.mean, mean, atol=1e-10, rtol=0)
    torch.testing.assert_close(second, torch.full_like(second, math.pi**2 / 3), atol=1e-9, rtol=0)
    torch.testing.assert_close(d.variance, second - mean**2, atol=1e-9, rtol=0)


def test_moments_match_samples():
    assert_moments_match_samples(grid([0.2, 1.6], [2.0, 20.0]), n=50_000)


def test_limits_in_beta():
    """beta -> inf gives StepLogistic(alpha); beta -> 0 gives Logistic(0, 1)."""
    alpha = torch.tensor(ALPHAS, dtype=torch.float64)
    z = torch.tensor([-20.0, -2.0, -0.5, 0.5, 2.0, 20.0], dtype=torch.float64).unsqueeze(-1)
    step = StepLogistic(alpha)
    errors = []
    for beta in (10.0, 100.0, 1000.0):
        smooth = SmoothStepLogistic(alpha, torch.full_like(alpha, beta))
        errors.append(
            (
                (smooth.log_prob(z) - step.log_prob(z)).abs().max(),
                (smooth.cdf(z) - step.cdf(z)).abs().max(),
                (smooth.bernoulli_probs - step.bernoulli_probs).abs().max(),
                (smooth.mean - step.mean).abs().max(),
            )
        )
    for coarse, fine in zip(errors, errors[1:]):
        assert all(f < c or f < 1e-14 for c, f in zip(coarse, fine))
    assert all(e < 2e-3 for e in errors[-1])
    flat = SmoothStepLogistic(alpha, torch.full_like(alpha, 1e-8))
    logistic = dist.Logistic(torch.zeros((), dtype=torch.float64), 1.0)
    torch.testing.assert_close(flat.cdf(z), logistic.cdf(z).expand(6, 5), atol=1e-8, rtol=0)
    log_prob = logistic.log_prob(z).expand(6, 5)
    torch.testing.assert_close(flat.log_prob(z), log_prob, atol=1e-7, rtol=0)


def test_rsample_gradient_matches_finite_difference_of_icdf():
    params = parameter_grid(torch.float64, alpha=ALPHAS * 4, beta=BETAS)
    assert_rsample_grad_matches_finite_difference(
        SmoothStepLogistic, params, eps=1e-6, atol=1e-6, rtol=1e-5
    )


def test_gradcheck_implicit_reparameterization():
    alpha = torch.tensor(ALPHAS, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor([0.1, 1.0, 10.0, 100.0, 3.0], dtype=torch.float64, requires_grad=True)
    u = torch.tensor([1e-4, 0.1, 0.4, 0.6, 0.9, 1 - 1e-4], dtype=torch.float64).unsqueeze(-1)
    u.requires_grad_(True)

    def icdf(u, alpha, beta):
        return SmoothStepLogistic(alpha, beta).icdf(u)

    assert torch.autograd.gradcheck(icdf, (u, alpha, beta), eps=1e-7, atol=1e-6, rtol=1e-5)
    z = torch.tensor([-3.0, -0.01, 0.5], dtype=torch.float64).unsqueeze(-1)
    def everything_but_samples(alpha, beta):
        d = SmoothStepLogistic(alpha, beta)
        return d.cdf(z), d.log_prob(z), d.mean, d.bernoulli_probs

    assert torch.autograd.gradcheck(everything_but_samples, (alpha, beta))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_everywhere(dtype):
    params = parameter_grid(dtype, alpha=EXTREME_ALPHAS, beta=BETAS)
    values = torch.cat([torch.linspace(-50, 50, 101), torch.tensor([-1e-30, 0.0, 1e-30])])
    assert_finite_everywhere(SmoothStepLogistic, params, values, n_samples=500)
    finfo = torch.finfo(dtype)
    u = torch.tensor([finfo.tiny, finfo.eps, 0.5, 1 - finfo.eps, 1 - finfo.eps / 2], dtype=dtype)
    leaves = [p.clone().requires_grad_(True) for p in params.values()]
    z = SmoothStepLogistic(*leaves).icdf(u.unsqueeze(-1))
    grads = torch.autograd.grad(z.sum(), leaves)
    assert torch.isfinite(z).all() and all(torch.isfinite(g).all() for g in grads)
    d = SmoothStepLogistic(*leaves)
    for moment in (d.mean, d.variance, d.bernoulli_probs):
        assert torch.isfinite(moment).all()


def test_shapes_expand_and_to_event():
    d = SmoothStepLogistic(torch.full((3, 1), 0.5), torch.tensor([1.0, 10.0]))
    assert d.batch_shape == (3, 2) and d.event_shape == ()
    assert d.rsample((4,)).shape == (4, 3, 2)
    assert d.rsample().dtype == torch.float32
    e = d.expand([5, 3, 2])
    assert e.batch_shape == (5, 3, 2) and e.sample().shape == (5, 3, 2)
    assert e.cdf(torch.zeros(5, 3, 2)).shape == (5, 3, 2)
    assert e.icdf(torch.tensor(0.5)).shape == (5, 3, 2)
    assert e.mean.shape == e.variance.shape == e.bernoulli_probs.shape == (5, 3, 2)
    i = d.to_event(1)
    assert i.batch_shape == (3,) and i.event_shape == (2,)
    assert i.log_prob(i.rsample()).shape == (3,)


def test_no_kl_is_registered():
    with pytest.raises(NotImplementedError):
        kl_divergence(smooth_step(0.5, 10.0), dist.Logistic(0.0, 1.0))


@pytest.mark.parametrize(
    "alpha, beta, error, name",
    [
        (torch.tensor(0.0), torch.tensor(1.0), ValueError, "alpha"),
        (torch.tensor(2.0), torch.tensor(1.0), ValueError, "alpha"),
        (torch.tensor(-0.5), torch.tensor(1.0), ValueError, "alpha"),
        (torch.tensor(0.5), torch.tensor(0.0), ValueError, "beta"),
        (torch.tensor(0.5), torch.tensor([1.0, -1.0]), ValueError, "beta"),
        (torch.tensor(1), torch.tensor(1.0), TypeError, "alpha"),
        (torch.tensor(0.5), torch.tensor(2), TypeError, "beta"),
    ],
)
def test_bad_parameters_raise(alpha, beta, error, name):
    with pytest.raises(error, match=name):
        SmoothStepLogistic(alpha, beta)


@pytest.mark.parametrize("elbo", [Trace_ELBO(), TraceMeanField_ELBO()])
def test_svi_learns_alpha_and_beta_in_a_plated_model(elbo):
    data = torch.tensor([[2.0, -2.0, 0.5]] * 4)

    def model(data):
        prior = dist.Logistic(0.0, 1.0).expand(data.shape).to_event(1)
        with pyro.plate("data", data.shape[0]):
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=data)

    def guide(data):
        alpha = pyro.param("alpha", torch.ones(data.shape), constraint=open_interval(0.0, 2.0))
        beta = pyro.param("beta", torch.full(data.shape, 5.0), constraint=dist.constraints.positive)
        with pyro.plate("data", data.shape[0]):
            pyro.sample("z", SmoothStepLogistic(alpha, beta).to_event(1))

    svi = SVI(model, guide, Adam({"lr": 0.05}), elbo)
    losses = [svi.step(data) for _ in range(100)]
    assert all(math.isfinite(loss) for loss in losses)
    alpha = pyro.param("alpha").detach()
    assert (alpha[:, 0] > 1.2).all() and (alpha[:, 1] < 0.8).all()
    assert not torch.allclose(pyro.param("beta").detach(), torch.full(data.shape, 5.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_and_cdf_at_infinity(dtype):
    # log_prob was NaN at -inf (-inf + inf in the Logistic factor) and cdf NaN at both ends
    # (-inf - (-inf) in the quadrature's integrand).
    assert_real_line_limits(grid(EXTREME_ALPHAS, BETAS + [1e-3, 1e3], dtype))


def test_cdf_gradient_is_finite_at_infinity():
    alpha, beta = torch.tensor([0.5, 1.5], requires_grad=True), torch.tensor([1.0, 10.0], requires_grad=True)
    cdf = SmoothStepLogistic(alpha, beta).cdf(torch.tensor([[-math.inf], [math.inf]]))
    assert_finite("grad of cdf at infinity", *torch.autograd.grad(cdf.sum(), (alpha, beta)))


def test_makes_no_call_to_torchs_log_sigmoid_kernel():
    # torch's CPU log_sigmoid kernel splits its work with parallel_for at a grain size of one
    # element, so with 2 intra-op threads every call on 2+ elements opens a parallel region;
    # waiting for the second worker made SmoothStepLogistic up to 10-100x slower on 2 threads
    # than on 1 on a shared machine (45 calls per rsample and backward). Counting the calls is
    # the timing-free check: they must all go through softplus (an elementwise kernel that
    # runs inline below torch's grain size of 32768).
    alpha = torch.full((16,), 0.7, requires_grad=True)
    beta = torch.full((16,), 5.0, requires_grad=True)
    d = SmoothStepLogistic(alpha, beta)
    z = torch.linspace(-3.0, 3.0, 16)

    def everything():
        (d.log_prob(z).sum() + d.cdf(z).sum() + d.mean.sum() + d.bernoulli_probs.sum()).backward()
        d.rsample((4,)).sum().backward()

    counts = aten_op_counts(everything)
    assert sum(counts.values()) > 100  # the counter does see the computation
    assert not {op: n for op, n in counts.items() if "log_sigmoid" in op}
