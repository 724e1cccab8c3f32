"""Tests of SpikeAndExponential, SpikeAndPower and SymmetricPowerRelaxation.

The chain of evidence: ``icdf`` is compared with the smoothing formulas f1, f2, f3 of the lecture
notes (Anonymous n.d., §2.3) evaluated in 30-digit arithmetic; samples (``icdf`` of uniforms) are
tested against ``cdf``; ``cdf`` against the integral of ``exp(log_prob)``; mean and variance
against integrals of the smoothing; KLs against Monte Carlo means of ``log_prob`` ratios.
"""

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pytest
import scipy.stats
import torch
from pyro.distributions.kl import kl_divergence
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam
from torch.distributions import Bernoulli
from torch.distributions.constraints import positive, unit_interval

import pyrovae.distributions.kl  # noqa: F401  (registers the KL divergences)
from pyrovae.distributions.smoothed_bernoulli import (
    PowerSegment,
    SmoothedBernoulli,
    Spike,
    TruncatedExponential,
    smoothed_bernoulli_kl,
)
from pyrovae.distributions.spike_and_exponential import SpikeAndExponential
from pyrovae.distributions.spike_and_power import SpikeAndPower
from pyrovae.distributions.symmetric_power_relaxation import SymmetricPowerRelaxation
from tests.distributions.lecture_note_smoothings import f1, f2, f3, mean_and_variance, on_grid
from tests.support.distribution_checks import (
    assert_cdf_is_integral_of_density,
    assert_density_integrates_to_one,
    assert_finite,
    assert_finite_everywhere,
    assert_icdf_inverts_cdf,
    assert_kl_matches_monte_carlo,
    assert_moments_match_samples,
    assert_rsample_grad_matches_finite_difference,
    assert_samples_match_cdf,
    parameter_grid,
    quad,
)


@dataclass
class Case:
    relaxation: type
    smoothing: object
    split: float

    @property
    def has_spike(self):
        return self.split == 0.0

    def atoms(self, probs):
        """The atom masses in the form of distribution_checks: the spike at 0 has mass 1 - q."""
        return {0.0: 1 - probs} if self.has_spike else None

    def points(self):
        """Where the density jumps, for the quadratures."""
        return () if self.has_spike else (self.split,)

    def continuous_values(self, n=9, dtype=torch.float64):
        """Values inside the continuous part of the support, away from the endpoints."""
        return torch.linspace(0.02, 0.98, n, dtype=dtype)

    def lower_values(self):
        """Values a member with q = 0 can take (its hard value 0)."""
        if self.has_spike:
            return torch.tensor([0.0])
        return torch.tensor([0.0, 1e-30, 0.25, 0.5])

    def upper_values(self):
        """Values a member with q = 1 can take (its hard value 1)."""
        return torch.tensor([0.5 + 1e-6, 0.75, 1 - 1e-6, 1.0])


CASES = [
    pytest.param(Case(SpikeAndExponential, f1, 0.0), id="SpikeAndExponential"),
    pytest.param(Case(SpikeAndPower, f2, 0.0), id="SpikeAndPower"),
    pytest.param(Case(SymmetricPowerRelaxation, f3, 0.5), id="SymmetricPowerRelaxation"),
]
SPIKE_CASES = CASES[:2]


def quadrature_dist(case):
    """A float64 batch of four members. For beta > 1 the power relaxations' density has an
    integrable singularity at 0 or 1 carrying mass (1e-16)^(1/beta) within float64's resolution
    of it, which quadrature cannot see; beta = 1.5 keeps that below 1e-10."""
    params = parameter_grid(torch.float64, probs=[0.2, 0.7], beta=[0.5, 1.5])
    return case.relaxation(params["probs"], params["beta"]), params


@pytest.mark.parametrize("case", CASES)
def test_icdf_is_the_lecture_notes_smoothing(case):
    # 1 - p itself is left out: f1 rises with slope e^beta / beta there, which turns the
    # rounding of 1 - p in float64 into visible differences from the exact value.
    eps = (torch.linspace(0, 1, 401, dtype=torch.float64) + 1e-4)[:-1]
    for p in (0.2, 0.5, 0.8):
        for beta in (0.5, 2.0, 8.0, 30.0):
            d = case.relaxation(torch.tensor(p, dtype=torch.float64), beta)
            expected = on_grid(case.smoothing, beta, p, eps)
            torch.testing.assert_close(d.icdf(eps), expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_smoothing_is_increasing_from_0_to_1(case):
    eps = torch.linspace(0, 1, 2001, dtype=torch.float64)
    params = parameter_grid(torch.float64, probs=[0.0, 0.2, 0.5, 0.8, 1.0], beta=[0.1, 1, 10, 100])
    d = case.relaxation(params["probs"], params["beta"])
    zeta = d.icdf(eps.unsqueeze(-1))
    assert (zeta.diff(dim=0) >= 0).all()
    # f(0) = 0 and f(1) = 1 need both halves (0 < q < 1).
    interior = (params["probs"] > 0) & (params["probs"] < 1)
    ends = zeta[[0, -1]][:, interior]
    torch.testing.assert_close(ends[0], torch.zeros_like(ends[0]), atol=1e-12, rtol=0)
    torch.testing.assert_close(ends[1], torch.ones_like(ends[1]), atol=1e-12, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_smoothing_converges_to_step(case):
    eps = torch.linspace(0, 1, 1001, dtype=torch.float64).unsqueeze(-1)
    probs = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    step = (eps >= 1 - probs).double()
    away = (eps - (1 - probs)).abs() > 0.05
    errors = []
    for beta in (1.0, 10.0, 100.0, 1e4):
        zeta = case.relaxation(probs, beta).icdf(eps)
        errors.append(float((zeta - step).abs()[away].max()))
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-2, errors


@pytest.mark.parametrize("case", CASES)
def test_density_integrates_to_one(case):
    d, params = quadrature_dist(case)
    assert_density_integrates_to_one(
        d, lower=0.0, upper=1.0, atoms=case.atoms(params["probs"]), points=case.points(), atol=1e-6
    )


@pytest.mark.parametrize("case", CASES)
def test_cdf_is_integral_of_density(case):
    d, params = quadrature_dist(case)
    grid = [0.0, 0.2, 0.5, 0.8, 0.99, 1.0]
    assert_cdf_is_integral_of_density(
        d,
        grid,
        lower=0.0,
        atoms=case.atoms(params["probs"]),
        points=case.points(),
        atol=1e-6,
        rtol=1e-6,
    )


@pytest.mark.parametrize("case", CASES)
def test_icdf_inverts_cdf_on_continuous_part(case):
    # Moderate betas: sharper, and cdf or icdf is so flat somewhere on the grid that rounding
    # the intermediate result (e.g. zeta = 1 - 1e-20 to 1) loses the round trip.
    params = parameter_grid(torch.float64, probs=[0.2, 0.7], beta=[0.5, 3.0])
    d = case.relaxation(params["probs"], params["beta"])
    values = case.continuous_values().unsqueeze(-1)
    # Levels above the jump 1 - q of the spike relaxations' cdf; all levels for f3.
    levels = torch.linspace(0.01, 0.99, 9, dtype=torch.float64).unsqueeze(-1)
    if case.has_spike:
        levels = 1 - d.probs * (1 - levels)
    assert_icdf_inverts_cdf(d, values=values, probs=levels, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_samples_match_cdf(case, dtype):
    # In float32 the power relaxations put mass (3e-8)^(1/beta) onto exactly 1.0 (and 0), ties
    # that KS would flag for beta = 4 with 1e5 samples; beta = 1.5 keeps them below one sample.
    beta = [0.5, 4.0] if dtype == torch.float64 else [0.5, 1.5]
    params = parameter_grid(dtype, probs=[0.3, 0.8], beta=beta)
    d = case.relaxation(params["probs"], params["beta"])
    assert_samples_match_cdf(d, atoms=case.atoms(params["probs"]), n=100_000)


@pytest.mark.parametrize("case", CASES)
def test_hard_value_is_bernoulli(case):
    probs = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    d = case.relaxation(probs, 3.0)
    torch.testing.assert_close(d.bernoulli_probs, probs)
    torch.manual_seed(0)
    hard = d.hard(d.sample((20_000,)))
    assert hard.dtype == torch.float64 and set(hard.unique().tolist()) <= {0.0, 1.0}
    for column, p in enumerate(probs.tolist()):
        ones = int(hard[:, column].sum())
        assert scipy.stats.binomtest(ones, 20_000, p).pvalue > 1e-4, (p, ones)
    split = torch.tensor(case.split, dtype=torch.float64)
    just_above = torch.nextafter(split, torch.tensor(1.0, dtype=torch.float64))
    assert d.hard(split).item() == 0.0 and d.hard(just_above).item() == 1.0


@pytest.mark.parametrize("case", CASES)
def test_mean_and_variance_are_integrals_of_the_smoothing(case):
    # E[zeta] and E[zeta^2] are integrals of f and f^2 over the uniform, split at each 1 - q;
    # beta = 0.01 and 0.05 exercise the small-beta series of the exponential part.
    params = parameter_grid(
        torch.float64, probs=[0.0, 0.3, 0.9, 1.0], beta=[0.01, 0.05, 0.5, 3.0, 40.0]
    )
    d = case.relaxation(params["probs"], params["beta"])
    splits = set((1 - params["probs"]).tolist())

    def powers_of_f(eps):
        zeta = d.icdf(torch.full(d.batch_shape, eps, dtype=torch.float64))
        return torch.stack([zeta, zeta**2])

    first, second = quad(powers_of_f, 0.0, 1.0, points=splits)
    torch.testing.assert_close(d.mean, first, rtol=1e-8, atol=1e-11)
    torch.testing.assert_close(d.variance, second - first**2, rtol=1e-7, atol=1e-11)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_moments_match_samples(case, dtype):
    params = parameter_grid(dtype, probs=[0.2, 0.6], beta=[0.3, 5.0])
    d = case.relaxation(params["probs"], params["beta"])
    assert_moments_match_samples(d, n=100_000)


@pytest.mark.parametrize("case", CASES)
def test_rsample_grad_matches_finite_differences(case):
    torch.manual_seed(1)
    probs = torch.rand(300, dtype=torch.float64) * 0.9 + 0.05
    beta = torch.exp(torch.empty(300, dtype=torch.float64).uniform_(math.log(0.2), math.log(20)))
    # A sample whose uniform lies within the step of 1 - q jumps between branches.
    assert_rsample_grad_matches_finite_difference(
        case.relaxation,
        {"probs": probs, "beta": beta},
        eps=1e-7,
        atol=1e-5,
        rtol=1e-4,
        max_mismatch_fraction=0.01,
    )


@pytest.mark.parametrize("case", CASES)
def test_gradcheck(case):
    def leaf(values):
        return torch.tensor(values, dtype=torch.float64, requires_grad=True)

    probs, beta = leaf([0.3, 0.6, 0.85]), leaf([0.7, 2.0, 9.0])
    other_probs, other_beta = leaf([0.5, 0.2, 0.9]), leaf([1.5, 2.0, 4.0])
    levels = torch.tensor([0.1, 0.55, 0.5], dtype=torch.float64)  # away from 1 - probs
    values = torch.tensor([0.2, 0.45, 0.8], dtype=torch.float64)
    make = case.relaxation
    assert torch.autograd.gradcheck(lambda q, b: make(q, b).icdf(levels), (probs, beta))
    assert torch.autograd.gradcheck(lambda q, b: make(q, b).log_prob(values), (probs, beta))
    assert torch.autograd.gradcheck(lambda q, b: make(q, b).cdf(values), (probs, beta))
    assert torch.autograd.gradcheck(
        lambda q, b: (make(q, b).mean, make(q, b).variance), (probs, beta)
    )
    assert torch.autograd.gradcheck(
        lambda q1, b1, q2, b2: kl_divergence(make(q1, b1), make(q2, b2)),
        (probs, beta, other_probs, other_beta),
    )


@pytest.mark.parametrize("case", SPIKE_CASES)
def test_log_prob_of_spike_is_log_probability(case):
    probs = torch.tensor([0.0, 0.3, 0.9], dtype=torch.float64)
    d = case.relaxation(probs, 5.0)
    torch.testing.assert_close(d.log_prob(torch.zeros(3, dtype=torch.float64)), torch.log1p(-probs))


@pytest.mark.parametrize("case", CASES)
def test_same_beta_kl_is_bernoulli_kl(case):
    p = case.relaxation(torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0]), 7.0)
    q = case.relaxation(torch.tensor([0.3, 0.6, 0.5, 0.1, 0.4]), 7.0)
    expected = kl_divergence(Bernoulli(probs=p.probs), Bernoulli(probs=q.probs))
    torch.testing.assert_close(kl_divergence(p, q), expected)
    infinite = kl_divergence(case.relaxation(torch.tensor(0.5), 7.0), case.relaxation(0.0, 7.0))
    assert infinite.item() == math.inf


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("same_beta", [True, False], ids=["same_beta", "different_beta"])
def test_kl_matches_monte_carlo(case, same_beta):
    p = case.relaxation(
        torch.tensor([0.2, 0.7, 0.5], dtype=torch.float64),
        torch.tensor([0.5, 3.0, 1.5], dtype=torch.float64),
    )
    q = case.relaxation(
        torch.tensor([0.6, 0.4, 0.5], dtype=torch.float64),
        p.beta if same_beta else torch.tensor([2.0, 1.0, 6.0], dtype=torch.float64),
    )
    assert_kl_matches_monte_carlo(p, q, n=100_000)


def test_kl_between_different_relaxations_is_not_registered():
    with pytest.raises(NotImplementedError):
        kl_divergence(SpikeAndExponential(0.5, 2.0), SpikeAndPower(0.5, 2.0))


GRID_BETAS = [0.1, 1.0, 10.0, 100.0]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_everywhere(case, dtype):
    params = parameter_grid(dtype, probs=[1e-6, 0.01, 0.3, 0.5, 0.99, 1 - 1e-6], beta=GRID_BETAS)
    values = torch.tensor([0.0, 1e-30, 1e-6, 0.25, 0.5, 0.5 + 1e-6, 0.75, 1 - 1e-6, 1.0])
    assert_finite_everywhere(case.relaxation, params, values, n_samples=2000)
    # q = 0 and q = 1: log_prob is finite on what each can produce (elsewhere it is -inf).
    for probs, values in ((0.0, case.lower_values()), (1.0, case.upper_values())):
        params = parameter_grid(dtype, probs=[probs], beta=GRID_BETAS)
        assert_finite_everywhere(case.relaxation, params, values, n_samples=2000)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rsample_finite_when_the_uniform_is_extreme(case, dtype, monkeypatch):
    # uniform_ draws from [0, 1): rsample's noise must keep both extremes off the smoothing.
    one, zero = torch.tensor(1.0, dtype=dtype), torch.tensor(0.0, dtype=dtype)
    for extreme in (0.0, torch.nextafter(one, zero).item()):

        def uniform_(tensor, *args, extreme=extreme, **kwargs):
            return tensor.fill_(extreme)

        monkeypatch.setattr(torch.Tensor, "uniform_", uniform_)
        # The patched noise does reach rsample: 0 comes in as the smallest normal number.
        d = case.relaxation(torch.tensor([0.0, 1.0], dtype=dtype), torch.tensor(2.0, dtype=dtype))
        noise = torch.tensor(max(extreme, torch.finfo(dtype).tiny), dtype=dtype)
        assert torch.equal(d.rsample(), d.icdf(noise.expand(2)))
        params = parameter_grid(dtype, probs=[0.0, 0.4, 1.0], beta=GRID_BETAS)
        assert_finite_everywhere(case.relaxation, params, torch.tensor([]), n_samples=3)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_icdf_just_above_the_step_stays_on_the_upper_side(case, dtype):
    # Uniforms a few ulps above 1 - q map to zeta barely above the split, where rounding could
    # put zeta on the split and make the sample stand for 0, with log_prob log(1 - q).
    probs = torch.tensor([0.3, 0.5, 0.9, 1.0], dtype=dtype)
    one = torch.tensor(1.0, dtype=dtype)
    levels = [1 - probs]
    for _ in range(4):
        levels.append(torch.nextafter(levels[-1], one))
    levels = torch.stack(levels[1:])
    for beta in GRID_BETAS:
        d = case.relaxation(probs, torch.tensor(beta, dtype=dtype))
        zeta = d.icdf(levels)
        assert (d.hard(zeta) == 1).all(), (beta, zeta)
        assert_finite("log_prob just above the step", d.log_prob(zeta))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kl_mean_variance_finite_and_accurate_at_extremes(case, dtype):
    # 0.99 and 1.0 straddle the switch from series to closed form of the exponential part.
    params = parameter_grid(dtype, probs=[0.0, 1e-6, 0.5, 1.0], beta=[0.1, 0.99, 1.0, 10.0, 100.0])
    d = case.relaxation(params["probs"], params["beta"])
    other = case.relaxation(params["probs"].flip(0).clamp(0.1, 0.9), params["beta"].flip(0))
    assert_finite("mean, variance, KL", d.mean, d.variance, kl_divergence(d, other))
    # Against the moments of the lecture notes' smoothing, integrated in 30-digit arithmetic:
    # to a few float roundings relatively, also where the variance is tiny (q = 1e-6, beta = 100).
    pairs = zip(params["probs"].tolist(), params["beta"].tolist())
    reference = [mean_and_variance(case.smoothing, beta, q) for q, beta in pairs]
    mean, variance = (torch.tensor(column, dtype=torch.float64) for column in zip(*reference))
    rtol = 100 * torch.finfo(dtype).eps
    torch.testing.assert_close(d.mean.double(), mean, rtol=rtol, atol=0.0)
    torch.testing.assert_close(d.variance.double(), variance, rtol=rtol, atol=0.0)


@pytest.mark.parametrize("case", CASES)
def test_shapes_expand_and_to_event(case):
    d = case.relaxation(torch.full((3, 1), 0.4), torch.tensor([1.0, 2.0]))
    assert d.batch_shape == (3, 2) and d.event_shape == ()
    assert d.sample((5,)).shape == (5, 3, 2)
    assert d.log_prob(torch.full((2,), 0.3)).shape == (3, 2)
    assert d.mean.shape == d.variance.shape == (3, 2)

    expanded = d.expand((4, 3, 2))
    assert type(expanded) is case.relaxation and expanded.batch_shape == (4, 3, 2)
    assert expanded._validate_args == d._validate_args
    value = torch.full((2,), 0.3)
    torch.testing.assert_close(expanded.log_prob(value)[0], d.log_prob(value))

    event = d.to_event(1)
    assert event.batch_shape == (3,) and event.event_shape == (2,)
    assert event.log_prob(event.sample()).shape == (3,)
    assert case.relaxation(0.5, 2.0).batch_shape == ()


def run_elbo(case, elbo, num_particles=1, event=False):
    """A model whose only latent is a plate of relaxed variables, and a guide over the same."""
    prior_probs = torch.tensor([0.2, 0.5, 0.7, 0.9])
    prior_beta = torch.tensor([2.0, 2.0, 3.0, 3.0])

    def sample_z(relaxed):
        if event:
            pyro.sample("z", relaxed.to_event(1))
        else:
            with pyro.plate("latents", 4):
                pyro.sample("z", relaxed)

    def model():
        sample_z(case.relaxation(prior_probs, prior_beta))

    def guide():
        probs = pyro.param("probs", torch.tensor([0.4, 0.5, 0.1, 0.95]), constraint=unit_interval)
        beta = pyro.param("beta", torch.tensor([2.0, 2.0, 5.0, 1.0]), constraint=positive)
        sample_z(case.relaxation(probs, beta))

    elbo = elbo(num_particles=num_particles, vectorize_particles=num_particles > 1)
    loss = elbo.loss(model, guide)
    guide_dist = case.relaxation(pyro.param("probs"), pyro.param("beta"))
    exact = kl_divergence(guide_dist, case.relaxation(prior_probs, prior_beta)).sum()
    return loss, exact.item()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("event", [False, True], ids=["plate", "to_event"])
def test_trace_mean_field_elbo_uses_the_registered_kl(case, event):
    first, exact = run_elbo(case, TraceMeanField_ELBO, event=event)
    second, _ = run_elbo(case, TraceMeanField_ELBO, event=event)
    # The model has no observations, so the loss is the KL; a Monte Carlo fallback would vary.
    assert first == second == pytest.approx(exact, rel=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_trace_elbo_estimates_the_kl(case):
    torch.manual_seed(0)
    loss, exact = run_elbo(case, Trace_ELBO, num_particles=20_000)
    assert loss == pytest.approx(exact, abs=0.05)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
def test_svi_steps_in_a_tiny_vae_stay_finite(case, elbo):
    data = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", case.relaxation(torch.full((3,), 0.5), 4.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 0.3).to_event(1), obs=x)

    def guide(x):
        probs = pyro.param("guide_probs", torch.full((2, 3), 0.5), constraint=unit_interval)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", case.relaxation(probs, 4.0).to_event(1))

    torch.manual_seed(0)
    svi = SVI(model, guide, Adam({"lr": 0.05}), elbo())
    losses = [svi.step(data) for _ in range(60)]
    assert all(math.isfinite(loss) for loss in losses)
    learned = pyro.param("guide_probs").detach()
    # The guide learns which relaxed bits are on.
    assert ((learned > 0.5) == data.bool()).all(), learned


@pytest.mark.parametrize("case", CASES)
def test_bad_parameters_raise(case):
    with pytest.raises(ValueError, match="probs"):
        case.relaxation(torch.tensor([0.5, 1.5]), 1.0)
    with pytest.raises(ValueError, match="probs"):
        case.relaxation(-0.1, 1.0)
    with pytest.raises(ValueError, match="beta"):
        case.relaxation(0.5, 0.0)
    with pytest.raises(ValueError, match="beta"):
        case.relaxation(0.5, torch.tensor([1.0, -2.0]))
    with pytest.raises(TypeError, match="probs must be a floating point"):
        case.relaxation(torch.tensor([0, 1]), torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="beta must be a floating point"):
        case.relaxation(torch.tensor([0.5]), torch.tensor([2]))
    d = case.relaxation(0.5, 1.0)
    for bad_value in (-0.1, 1.1):
        with pytest.raises(ValueError, match="support"):
            d.log_prob(torch.tensor(bad_value))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mean_and_variance_accurate_for_small_beta(case, dtype):
    # The power segment's mean 1 - l / (1 + beta) cancelled for small beta (3e-5 relative at
    # beta = 1e-3 in float32), and so did the gap between the symmetric relaxation's two segment
    # means in its variance (1e-3 relative at beta = 1e-5). Against 30-digit integrals of the
    # lecture notes' smoothings, to a few roundings.
    params = parameter_grid(dtype, probs=[1e-6, 0.5, 1.0], beta=[1e-2, 1e-3, 1e-5])
    d = case.relaxation(params["probs"], params["beta"])
    pairs = zip(params["probs"].tolist(), params["beta"].tolist())
    reference = [mean_and_variance(case.smoothing, beta, q) for q, beta in pairs]
    mean, variance = (torch.tensor(column, dtype=torch.float64) for column in zip(*reference))
    rtol = 8 * torch.finfo(dtype).eps
    torch.testing.assert_close(d.mean.double(), mean, rtol=rtol, atol=0.0)
    torch.testing.assert_close(d.variance.double(), variance, rtol=rtol, atol=0.0)


# --- the components and the base class's contract (SmoothedBernoulli) -----------------------------


def test_components_measure_their_mean_from_the_origin():
    beta = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    for component in (Spike(), TruncatedExponential(), PowerSegment(0.0, 0.5), PowerSegment(1.0, 1.0)):
        torch.testing.assert_close(component.mean(beta, 0.3), component.mean(beta) - 0.3, rtol=1e-15, atol=1e-15)


def test_power_segment_cdf_is_clamped_beyond_its_ends():
    # PowerSegment.cdf clamps the distance to [0, 1]: all the mass lies on one side of a value past either end.
    beta = torch.tensor(2.5, dtype=torch.float64)
    outside = torch.tensor([-0.5, 1.5], dtype=torch.float64)
    assert PowerSegment(0.0, 0.5).cdf(beta, outside).tolist() == [0.0, 1.0]
    assert PowerSegment(1.0, 0.5).cdf(beta, outside).tolist() == [0.0, 1.0]


def test_power_segment_refuses_an_anchor_other_than_0_or_1_and_builds_the_relaxations():
    with pytest.raises(ValueError, match=r"^anchor must be 0\.0 or 1\.0, got 0\.5$"):
        PowerSegment(anchor=0.5, length=0.5)

    class Rebuilt(SmoothedBernoulli):  # SymmetricPowerRelaxation's components, built now
        lower = PowerSegment(anchor=0.0, length=0.5)
        upper = PowerSegment(anchor=1.0, length=0.5)
        split = 0.5

    probs, beta = torch.tensor([0.2, 0.7], dtype=torch.float64), torch.tensor([0.5, 4.0], dtype=torch.float64)
    rebuilt, reference = Rebuilt(probs, beta), SymmetricPowerRelaxation(probs, beta)
    value = torch.tensor([[0.0], [0.1], [0.5], [0.8], [1.0]], dtype=torch.float64)
    eps = torch.tensor([[1e-3], [0.3], [0.6], [0.999]], dtype=torch.float64)
    torch.testing.assert_close(rebuilt.log_prob(value), reference.log_prob(value), rtol=0, atol=0)
    torch.testing.assert_close(rebuilt.cdf(value), reference.cdf(value), rtol=0, atol=0)
    torch.testing.assert_close(rebuilt.icdf(eps), reference.icdf(eps), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_at_an_anchor_is_the_density_at_the_rounding_radius(dtype):
    # A float on the anchor stands for the true values that round to it: the density is evaluated at the
    # smallest normal number above 0, and a quarter of the machine epsilon below 1 (PowerSegment's docstring).
    finfo = torch.finfo(dtype)
    q, beta = torch.tensor(0.3, dtype=dtype), torch.tensor(4.0, dtype=dtype)
    ends = torch.tensor([0.0, 1.0], dtype=dtype)
    tiny, quarter_eps = torch.tensor(finfo.tiny, dtype=torch.float64), finfo.eps / 4
    q64, beta64 = q.double(), beta.double()
    # SymmetricPowerRelaxation: (2(1 - q)/beta)(2 zeta)^(1/beta - 1) below 1/2, (2q/beta)(2(1 - zeta))^(1/beta - 1) above.
    symmetric = torch.stack([
        torch.log(2 * (1 - q64) / beta64) + (1 / beta64 - 1) * torch.log(2 * tiny),
        torch.log(2 * q64 / beta64) + (1 / beta64 - 1) * math.log(2 * quarter_eps),
    ])
    torch.testing.assert_close(SymmetricPowerRelaxation(q, beta).log_prob(ends).double(), symmetric, rtol=1e-6, atol=0)
    # SpikeAndPower: its upper segment has length 1: (q / beta)(1 - zeta)^(1/beta - 1).
    top = torch.log(q64 / beta64) + (1 / beta64 - 1) * math.log(quarter_eps)
    torch.testing.assert_close(SpikeAndPower(q, beta).log_prob(ends[1:]).double(), top.reshape(1), rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_at_the_branch_boundary_stays_on_the_lower_side(dtype):
    # epsilon = fl(1 - q) is on the lower branch (epsilon <= 1 - q); log(fl(1 - q)) - log1p(-q) can round above 0
    # (q = 0.1 in float64), and the lower segment's sample must still not pass the split (hard value 0).
    for q in (0.1, 0.3, 0.7):
        for beta in (10.0, 100.0):
            probs = torch.tensor(q, dtype=dtype)
            d = SymmetricPowerRelaxation(probs, torch.tensor(beta, dtype=dtype))
            zeta = d.icdf(1 - probs)
            assert zeta <= 0.5 and d.hard(zeta) == 0, (q, beta, zeta)


class _SplitAnchoredLower:
    """A lower component on [0, 1/2] anchored at the split, zeta = (1 - (1 - v)^beta) / 2: it reads log(1 - v)."""

    def icdf(self, beta, log_u, log1m_u):
        return -torch.expm1(beta * log1m_u) / 2


class _SplitAnchored(SmoothedBernoulli):
    lower = _SplitAnchoredLower()
    upper = PowerSegment(anchor=1.0, length=0.5)
    split = 0.5


def test_the_lower_component_gets_log_one_minus_its_uniform():
    # The base class hands a component both log v and log(1 - v) of its branch's conditional uniform v.
    probs = torch.tensor([0.1, 0.45, 0.8], dtype=torch.float64, requires_grad=True)
    beta = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64, requires_grad=True)
    d = _SplitAnchored(probs, beta)
    q = probs.detach()
    eps = torch.stack([torch.full_like(q, 1e-300), (1 - q) / 3, (1 - q) * 0.9, 1 - q, 1 - q / 2])
    zeta = d.icdf(eps)
    lower = eps <= 1 - q
    one_minus_v = ((1 - q) - eps) / (1 - q)
    expected = (1 - one_minus_v ** beta.detach()) / 2
    torch.testing.assert_close(zeta[lower], expected[lower], rtol=1e-12, atol=1e-300)
    assert (zeta[lower] >= 0).all() and (zeta[lower] <= 0.5).all() and (zeta[~lower] > 0.5).all()
    # The branch not taken sees finite stand-ins: no NaN reaches the parameters' gradients (away from
    # epsilon = 1 - q, where this component's (1 - v)^beta has the gradient 0 log 0 in beta).
    grads = torch.autograd.grad(d.icdf(eps[[0, 1, 2, 4]]).sum(), (probs, beta))
    assert all(torch.isfinite(grad).all() for grad in grads), grads


def test_smoothed_bernoulli_kl_refuses_two_classes_naming_them():
    message = "smoothed_bernoulli_kl needs two distributions of one class, got SpikeAndExponential and SpikeAndPower"
    with pytest.raises(TypeError, match=f"^{message}$"):
        smoothed_bernoulli_kl(SpikeAndExponential(0.5, 2.0), SpikeAndPower(0.5, 2.0))


@pytest.mark.parametrize("case", CASES)
def test_validate_args_false_checks_nothing(case):
    # Pyro's validation is on in the tests; validate_args=False must switch every check off, in the
    # constructor, expand and the closed-form KL (a NaN probability gives a NaN KL, as it gives a NaN log_prob).
    nan, half, two = torch.tensor([math.nan]), torch.tensor([0.5]), torch.tensor([2.0])
    outside = case.relaxation(torch.tensor([1.5]), two, validate_args=False)
    assert not outside._validate_args and not outside.expand((3,))._validate_args
    for p, q in ((nan, half), (half, nan)):
        kl = kl_divergence(case.relaxation(p, two, validate_args=False), case.relaxation(q, two, validate_args=False))
        assert torch.isnan(kl).all()
    checked = case.relaxation(half, two).expand((3,))
    with pytest.raises(ValueError, match="support"):
        checked.log_prob(torch.full((3,), 1.5))


@pytest.mark.parametrize("case", CASES)
def test_integer_parameters_are_refused_naming_the_class(case):
    name = case.relaxation.__name__
    with pytest.raises(TypeError, match=f"^{name}: parameter probs must be a floating point tensor, got dtype torch.int64$"):
        case.relaxation(torch.tensor([0, 1]), torch.tensor([1.0, 2.0]))


def test_expand_fills_the_instance_a_subclass_hands_it():
    class Tagged(SymmetricPowerRelaxation):
        def __init__(self, probs, beta, tag, *, validate_args=None):
            self.tag = tag
            super().__init__(probs, beta, validate_args=validate_args)

        def expand(self, batch_shape, _instance=None):
            new = self._get_checked_instance(Tagged, _instance)
            new.tag = self.tag
            return super().expand(batch_shape, _instance=new)

    expanded = Tagged(torch.tensor([0.2, 0.6]), torch.tensor(3.0), "mine").expand((4, 2))
    assert type(expanded) is Tagged and expanded.tag == "mine" and expanded.batch_shape == (4, 2)
    torch.testing.assert_close(expanded.probs, torch.tensor([0.2, 0.6]).expand(4, 2))
