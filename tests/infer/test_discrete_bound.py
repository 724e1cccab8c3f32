"""bernoulli_view, TrueDiscreteBound and RelaxedBernoulliELBO (Sadier-Gane 2020, §4.4-4.5)."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import scipy.integrate
import torch
from pyro.infer import SVI
from pyro.optim import Adam
from scipy.special import expit
from torch.distributions.transforms import AbsTransform, AffineTransform, SigmoidTransform

from pyrovae.distributions import (
    BernoulliView,
    SmoothStepLogistic,
    SpikeAndExponential,
    SpikeAndPower,
    StepLogistic,
    SymmetricPowerRelaxation,
    register_bernoulli_view,
)
from pyrovae.distributions.uniform_noise import hard_threshold
from pyrovae.infer import RelaxedBernoulliELBO, TrueDiscreteBound, bernoulli_view
from pyrovae.infer.discrete_bound import DiscreteBernoulliMessenger, Discretized, HardRelaxed, hard_points

pytestmark = pytest.mark.usefixtures("float64")


def smooth_step_logistic(probs, beta=10.0):
    """The SmoothStepLogistic with P(z > 0) = probs.

    Integrating eq. (5.8) of Sadier-Gane (2020) over z > 0 with the even Logistic density l gives
    P(z > 0) = h0 + alpha (1 - 2 h0) / 2, h0 = 2 int_{-inf}^0 l(z) sigmoid(beta z) dz; h0 comes
    from scipy's quadrature here, not from the distribution.
    """
    h0 = 2 * scipy.integrate.quad(lambda z: expit(z) * expit(-z) * expit(beta * z), -np.inf, 0.0)[0]
    alpha = (2 * probs - 2 * h0) / (1 - 2 * h0)
    return SmoothStepLogistic(alpha, torch.tensor(beta))


class PowerStep(dist.Beta):
    """Beta(a, 1) read as 1[x > 1/2]: a relaxation pyrovae does not know, added by one registration.

    P(x > 1/2) = 1 - 2^-a.
    """


@register_bernoulli_view(PowerStep)
def _view_power_step(fn):
    return BernoulliView(-torch.expm1(-fn.concentration1 * math.log(2)), lambda value: hard_threshold(value, 0.5))


def power_step(probs):
    return PowerStep(-torch.log2(1 - probs), torch.ones_like(probs))


# Each family maps the Bernoulli probability it should stand for to a relaxed distribution.
FAMILIES = {
    "bernoulli": lambda probs: dist.Bernoulli(probs),  # stands for itself, on {0, 1}
    "relaxed_bernoulli": lambda probs: dist.RelaxedBernoulli(torch.tensor(0.5), probs=probs),
    "relaxed_bernoulli_straight_through": lambda probs: dist.RelaxedBernoulliStraightThrough(
        torch.tensor(0.5), probs=probs
    ),
    "logistic": lambda probs: dist.Logistic(torch.logit(probs) * 2.0, torch.tensor(2.0)),
    "sigmoid_logistic": lambda probs: dist.TransformedDistribution(
        dist.Logistic(torch.logit(probs), torch.tensor(1.0)), [AffineTransform(0.0, 4.0), SigmoidTransform()]
    ),
    "spike_and_exponential": lambda probs: SpikeAndExponential(probs, torch.tensor(5.0)),
    "spike_and_power": lambda probs: SpikeAndPower(probs, torch.tensor(5.0)),
    "symmetric_power_relaxation": lambda probs: SymmetricPowerRelaxation(probs, torch.tensor(5.0)),
    "step_logistic": lambda probs: StepLogistic(2 * probs),
    "smooth_step_logistic": smooth_step_logistic,
    "power_step": power_step,
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hard_samples_are_distributed_as_the_viewed_bernoulli(family):
    probs = torch.tensor([0.1, 0.5, 0.85])
    fn = FAMILIES[family](probs)
    for wrapped in (fn, fn.expand((4, 3)), fn.expand((4, 3)).to_event(1)):
        assert torch.allclose(torch.broadcast_to(bernoulli_view(wrapped).probs, (4, 3)), probs.expand(4, 3))
    num = 100_000
    view = bernoulli_view(fn)
    hard = view.hard(fn.sample((num,)))
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    # 4 binomial standard errors.
    assert ((hard.mean(0) - probs).abs() < 4 * (probs * (1 - probs) / num).sqrt()).all()


def test_non_relaxed_distributions_have_no_view():
    assert bernoulli_view(dist.Normal(0.0, 1.0)) is None
    assert bernoulli_view(dist.Normal(torch.zeros(3), 1.0).to_event(1)) is None
    assert bernoulli_view(dist.TransformedDistribution(dist.Normal(0.0, 1.0), [SigmoidTransform()])) is None
    # |l| forgets the sign that a Logistic's view reads: a transform that is not a bijection has no view.
    assert bernoulli_view(dist.TransformedDistribution(dist.Logistic(0.5, 1.0), [AbsTransform()])) is None
    assert bernoulli_view(dist.TransformedDistribution(dist.Logistic(0.5, 1.0), [SigmoidTransform()])) is not None
    # The registration of PowerStep is not one of its base class Beta.
    assert bernoulli_view(dist.Beta(2.0, 1.0)) is None


def test_views_are_found_along_the_method_resolution_order():
    class PlainRelaxedBernoulli(dist.RelaxedBernoulli):
        pass

    class FlippedRelaxedBernoulli(dist.RelaxedBernoulli):
        """Reads z_r <= 1/2 as 1: stands for Bernoulli(1 - probs)."""

    class FlippedAgain(FlippedRelaxedBernoulli):
        pass

    @register_bernoulli_view(FlippedRelaxedBernoulli)
    def _view_flipped(fn):
        return BernoulliView(1 - fn.probs, lambda value: 1 - hard_threshold(value, 0.5))

    probs, value = torch.tensor([0.2, 0.7]), torch.tensor([0.4, 0.6])
    temperature = torch.tensor(0.5)
    plain = bernoulli_view(PlainRelaxedBernoulli(temperature, probs=probs))
    assert torch.equal(plain.probs, probs) and plain.hard(value).tolist() == [0.0, 1.0]
    for cls in (FlippedRelaxedBernoulli, FlippedAgain):
        flipped = bernoulli_view(cls(temperature, probs=probs))
        assert torch.allclose(flipped.probs, 1 - probs) and flipped.hard(value).tolist() == [1.0, 0.0]
    # The base class keeps its own view.
    assert torch.equal(bernoulli_view(dist.RelaxedBernoulli(temperature, probs=probs)).probs, probs)


def test_register_bernoulli_view_needs_a_class():
    with pytest.raises(TypeError, match="needs a distribution class"):
        register_bernoulli_view(dist.RelaxedBernoulli(torch.tensor(0.5), probs=torch.tensor(0.5)))


# Three relaxed Bernoulli latents per data point (8 discrete configurations).
PRIOR = torch.tensor([0.2, 0.5, 0.7], dtype=torch.float64)
WEIGHTS = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
DATA = torch.tensor([0.9, -1.5, 0.2], dtype=torch.float64)
GUIDE_PROBS = torch.tensor([[0.3, 0.6, 0.8], [0.1, 0.9, 0.5], [0.5, 0.5, 0.4]], dtype=torch.float64)
CONFIGS = torch.tensor([[(i >> k) & 1 for k in range(3)] for i in range(8)], dtype=torch.float64)
NOISE = 0.8


# Relaxations on the real line, read by their sign: the model squashes them into [0, 1], and a hard
# sample (at -inf or +inf, see hard_points) becomes exactly 0 or 1.
REAL_LINE = {"logistic", "step_logistic", "smooth_step_logistic"}


def relaxed_model(family, seen=None):
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", FAMILIES[family](PRIOR).to_event(1))
            decoded = torch.sigmoid(4.0 * z) if family in REAL_LINE else z
            if seen is not None:
                seen.append(decoded.detach())
            pyro.sample("x", dist.Normal(decoded @ WEIGHTS + 0.3, NOISE), obs=x)

    return model


def relaxed_guide(family, probs=GUIDE_PROBS):
    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", FAMILIES[family](probs).to_event(1))

    return guide


def exact_discrete_elbo_and_variance():
    """Sum over the 8 configurations per data point, of the discrete model the relaxations stand for."""
    log_q = dist.Bernoulli(GUIDE_PROBS.unsqueeze(1)).log_prob(CONFIGS).sum(-1)  # (N, 8)
    log_p = dist.Bernoulli(PRIOR).log_prob(CONFIGS).sum(-1) + dist.Normal(CONFIGS @ WEIGHTS + 0.3, NOISE).log_prob(
        DATA.unsqueeze(1)
    )
    f = log_p - log_q
    elbo = (log_q.exp() * f).sum(-1)
    variance = (log_q.exp() * (f - elbo.unsqueeze(1)) ** 2).sum(-1)
    return elbo.sum().item(), variance.sum().item()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_true_discrete_bound_equals_the_enumerated_discrete_elbo(family):
    num = 20_000
    seen = []
    bound = -TrueDiscreteBound(num_particles=num).loss(relaxed_model(family, seen), relaxed_guide(family), DATA)
    exact, variance = exact_discrete_elbo_and_variance()
    # 4 Monte Carlo standard errors; the variance of one particle's log weight is exact too.
    assert abs(bound - exact) < 4 * math.sqrt(variance / num), (bound, exact)
    # The decoder saw hard values.
    assert set(seen[-1].unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hard_points_are_the_ends_where_the_relaxation_becomes_the_step(family):
    fn = FAMILIES[family](torch.tensor([0.3, 0.6])).to_event(1)
    view = bernoulli_view(fn)
    low, high = hard_points(fn, view, torch.zeros(()))
    expected = (-math.inf, math.inf) if family in REAL_LINE else (0.0, 1.0)
    assert (low.item(), high.item()) == expected
    assert view.hard(low).item() == 0.0 and view.hard(high).item() == 1.0



class ReversedRelaxedBernoulli(dist.RelaxedBernoulli):
    """Reads z_r <= 1/2 as 1: stands for Bernoulli(1 - probs)."""


@register_bernoulli_view(ReversedRelaxedBernoulli)
def _view_reversed(fn):
    return BernoulliView(1 - fn.probs, lambda value: 1 - hard_threshold(value, 0.5))


def test_hard_points_follow_a_view_that_reads_the_low_end_as_one():
    fn = ReversedRelaxedBernoulli(torch.tensor(0.5), probs=torch.tensor([0.3, 0.6]))
    view = bernoulli_view(fn)
    low, high = hard_points(fn, view, torch.zeros(()))
    assert (low.item(), high.item()) == (1.0, 0.0)
    assert view.hard(low).item() == 0.0 and view.hard(high).item() == 1.0


def test_hard_relaxed_is_the_bernoulli_on_the_two_hard_points():
    probs = torch.tensor([0.2, 0.7])
    fn = HardRelaxed(probs, torch.tensor(-math.inf), torch.tensor(math.inf))
    num = 100_000
    samples = fn.sample((num,))
    assert samples.shape == (num, 2) and set(samples.unique().tolist()) == {-math.inf, math.inf}
    # 4 binomial standard errors.
    assert (((samples == math.inf).double().mean(0) - probs).abs() < 4 * (probs * (1 - probs) / num).sqrt()).all()
    torch.testing.assert_close(fn.log_prob(torch.tensor([math.inf, -math.inf])), torch.tensor([0.2, 0.3]).log())


def test_the_hard_stand_in_of_a_site_built_without_validation_checks_nothing():
    """HardRelaxed takes a view's probabilities as given, with Pyro's validation on (as here): a relaxed
    site built with ``validate_args=False`` (a StepLogistic with a NaN logit, as from a diverged prior)
    gets a stand-in that raises no more than the site does and scores its hard value NaN; a stand-in
    built directly from a probability of 1.5 or NaN returns the log-masses it was given."""
    given = (torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -4.0]))
    fn = HardRelaxed(torch.tensor([1.5, math.nan]), torch.tensor(0.0), torch.tensor(1.0), given)
    torch.testing.assert_close(fn.log_prob(torch.tensor([1.0, 0.0])), torch.tensor([-1.0, -4.0]))

    def model():
        pyro.sample("z", StepLogistic(logits=torch.tensor(math.nan), validate_args=False))

    hard = pyro.poutine.trace(lambda: pyro.sample("z", dist.Delta(torch.tensor(math.inf)))).get_trace()
    with DiscreteBernoulliMessenger() as messenger:
        site = pyro.poutine.trace(pyro.poutine.replay(model, trace=hard)).get_trace().nodes["z"]
    assert messenger.replaced == ["z"] and isinstance(site["fn"], HardRelaxed)
    assert math.isnan(site["fn"].log_prob(site["value"]).item())


def test_true_discrete_bound_stays_finite_where_a_probability_rounds_to_one():
    """Prior logit 40 (sigmoid(40) is 1.0 in float64), guide logit -40: the guide draws z = 0, whose prior
    log-mass is logsigmoid(-40) = -40, not log(1 - 1.0) = -inf. q(z = 1) ~ 4e-18, so the bound is
    log p(z = 0) + log N(x; 0, 1) - log q(z = 0) up to ~1e-16."""
    temperature, x = torch.tensor(0.5), torch.tensor(0.3)

    def model(x):
        z = pyro.sample("z", dist.RelaxedBernoulli(temperature, logits=torch.tensor(40.0)))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        pyro.sample("z", dist.RelaxedBernoulli(temperature, logits=torch.tensor(-40.0)))

    expected = -40.0 + dist.Normal(0.0, 1.0).log_prob(x).item() - torch.nn.functional.logsigmoid(torch.tensor(40.0)).item()
    assert -TrueDiscreteBound(num_particles=10).loss(model, guide, x) == pytest.approx(expected, abs=1e-9)


def test_true_discrete_bound_gives_no_gradients_and_runs_in_svi_and_as_module():
    probs = torch.nn.Parameter(GUIDE_PROBS.clone())

    def guide(x):
        pyro.param("probs", probs)
        relaxed_guide("relaxed_bernoulli", probs)(x)

    objective = TrueDiscreteBound(num_particles=100)
    model = relaxed_model("relaxed_bernoulli")
    loss = objective.differentiable_loss(model, guide, DATA)
    assert not loss.requires_grad
    objective.loss_and_grads(model, guide, DATA)
    assert probs.grad is None

    # In SVI and as a module it is the same bound: the enumerated discrete ELBO, within 4 Monte
    # Carlo standard errors of 100 particles.
    exact, variance = exact_discrete_elbo_and_variance()
    tolerance = 4 * math.sqrt(variance / 100)
    svi = SVI(model, guide, Adam({"lr": 0.1}), loss=objective)
    assert abs(-svi.evaluate_loss(DATA) - exact) < tolerance
    before = pyro.param("probs").detach().clone()
    svi.step(DATA)
    assert torch.equal(pyro.param("probs").detach(), before)

    assert abs(-objective(model, guide)(DATA).item() - exact) < tolerance


def test_true_discrete_bound_needs_relaxed_sites_in_guide_and_model():
    def normal_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).to_event(1))

    def normal_model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ WEIGHTS, NOISE), obs=x)

    message = (r"^found no relaxed Bernoulli latent site in the guide \(a distribution with a registered Bernoulli view: "
               r"RelaxedBernoulli, Logistic, a sigmoid-transformed Logistic, pyrovae's relaxations, or a class "
               r"registered with register_bernoulli_view\)$")
    with pytest.raises(ValueError, match=message):
        TrueDiscreteBound(num_particles=2).loss(normal_model, normal_guide, DATA)
    with pytest.raises(ValueError, match=r"^site\(s\) \['z'\] are relaxed Bernoulli variables in only one of model and guide; "
                       r"both must relax the same Bernoulli latents$"):
        TrueDiscreteBound(num_particles=2).loss(normal_model, relaxed_guide("relaxed_bernoulli"), DATA)


def test_relaxed_bernoulli_elbo_warns_at_construction():
    message = (r"RelaxedBernoulliELBO scores relaxed samples with Bernoulli log-masses and is not a lower bound on "
               r"log p\(x\); use TrueDiscreteBound to monitor the discrete model's ELBO")
    with pytest.warns(UserWarning, match=message):
        RelaxedBernoulliELBO(num_particles=2)


@pytest.mark.parametrize("family", ["relaxed_bernoulli", "logistic"])
def test_relaxed_bernoulli_elbo_scores_relaxed_samples_with_bernoulli_masses(family):
    """eqs. 4.11-4.12: log p(z) = z_r log p + (1 - z_r) log(1 - p), likewise for q; a Logistic sample
    l is scored at the z_r = sigmoid(4 l) its model decodes (``relaxed_value``)."""
    model, guide = relaxed_model(family), relaxed_guide(family)
    squash = (lambda value: torch.sigmoid(4.0 * value)) if family in REAL_LINE else None
    with pytest.warns(UserWarning):
        objective = RelaxedBernoulliELBO(max_plate_nesting=1, relaxed_value=squash)  # one particle by default
    pyro.set_rng_seed(7)
    loss = objective.loss(model, guide, DATA)
    pyro.set_rng_seed(7)
    z = pyro.poutine.trace(guide).get_trace(DATA).nodes["z"]["value"]
    z = squash(z) if squash else z
    assert ((z >= 0) & (z <= 1)).all() and not set(z.unique().tolist()) <= {0.0, 1.0}

    def bernoulli_mass(p):
        return (z * p.log() + (1 - z) * (1 - p).log()).sum(-1)

    by_hand = dist.Normal(z @ WEIGHTS + 0.3, NOISE).log_prob(DATA) + bernoulli_mass(PRIOR) - bernoulli_mass(GUIDE_PROBS)
    assert loss == pytest.approx(-by_hand.sum().item(), rel=1e-12)


def test_relaxed_bernoulli_elbo_is_not_a_bound():
    """z ~ Bernoulli(1/2), x | z ~ N(z, 0.5^2), x = 1/2. A hot relaxation puts z_r near 1/2, where
    the likelihood is highest, and the Bernoulli masses cancel (q = p): the objective is about
    log N(1/2; 1/2, 0.5^2), half a nat above log p(x) = log N(1/2; 0, 0.5^2)."""
    half = torch.tensor(0.5)

    def model(x):
        z = pyro.sample("z", dist.RelaxedBernoulli(torch.tensor(10.0), probs=half))
        pyro.sample("x", dist.Normal(z, 0.5), obs=x)

    def guide(x):
        pyro.sample("z", dist.RelaxedBernoulli(torch.tensor(10.0), probs=half))

    x = torch.tensor(0.5)
    log_evidence = dist.Normal(0.0, 0.5).log_prob(x).item()
    with pytest.warns(UserWarning):
        relaxed = -RelaxedBernoulliELBO(num_particles=20_000).loss(model, guide, x)
    assert relaxed > log_evidence + 0.4
    # Here q = Bernoulli(1/2) is the exact discrete posterior, so the true bound is log p(x) exactly.
    assert -TrueDiscreteBound(num_particles=100).loss(model, guide, x) == pytest.approx(log_evidence, abs=1e-12)


class SignedStep(dist.Uniform):
    """Uniform(-1, 1) read as 1[x > 0]: a relaxation on [-1, 1], not [0, 1]."""


@register_bernoulli_view(SignedStep)
def _view_signed_step(fn):
    return BernoulliView(torch.full(fn.batch_shape, 0.5), lambda value: hard_threshold(value, 0.0))


def test_relaxed_bernoulli_elbo_rejects_relaxations_outside_the_unit_interval():
    with pytest.warns(UserWarning):
        objective = RelaxedBernoulliELBO(num_particles=2)
    hint = (r"needs the relaxed value in \[0, 1\], e.g. TransformedDistribution\(Logistic\(loc, scale\), "
            r"\[AffineTransform\(0, beta\), SigmoidTransform\(\)\]\)")
    with pytest.raises(ValueError, match=rf"model site 'z' \(Independent\) is a relaxed Bernoulli with support IndependentConstraint\(Real\(\), 1\); "
                       rf"RelaxedBernoulliELBO {hint}"):
        objective.loss(relaxed_model("logistic"), relaxed_guide("logistic"), DATA)
    # Only the guide's relaxation on the real line (checked without validation, which would
    # refuse the real-valued sample at the model's [0, 1] site first).
    with pyro.validation_enabled(False), pytest.raises(ValueError, match=rf"guide site 'z' \(Independent\) is a relaxed Bernoulli .*{hint}"):
        objective.loss(relaxed_model("sigmoid_logistic"), relaxed_guide("logistic"), DATA)

    def signed(x):
        z = pyro.sample("z", SignedStep(-1.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    with pytest.warns(UserWarning):
        one_particle = RelaxedBernoulliELBO(num_particles=1)
    with pytest.raises(ValueError, match=rf"model site 'z' \(SignedStep\) is a relaxed Bernoulli with support Interval.*{hint}"):
        one_particle.loss(signed, lambda x: pyro.sample("z", SignedStep(-1.0, 1.0)), torch.tensor(0.5))


def test_relaxed_bernoulli_elbo_refuses_non_reparameterized_guide_sites():
    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(GUIDE_PROBS).to_event(1))

    with pytest.warns(UserWarning):
        objective = RelaxedBernoulliELBO(num_particles=2)
    with pytest.raises(ValueError, match="RelaxedBernoulliELBO needs reparameterized guide sites, but guide site 'z' is Independent"):
        objective.loss(relaxed_model("relaxed_bernoulli"), guide, DATA)


def test_relaxed_bernoulli_elbo_keeps_the_densities_of_other_latents():
    """A Normal latent next to a relaxed one without an event dim: the Normal keeps its density,
    the relaxed one gets the Bernoulli log-mass, per data point."""
    temperature = torch.tensor(0.5)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Normal(0.0, 1.0))
            z = pyro.sample("z", dist.RelaxedBernoulli(temperature, probs=torch.tensor(0.3)))
            pyro.sample("x", dist.Normal(c + z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Normal(0.2, 0.8))
            pyro.sample("z", dist.RelaxedBernoulli(temperature, probs=torch.tensor(0.6)))

    with pytest.warns(UserWarning):
        objective = RelaxedBernoulliELBO(max_plate_nesting=1)
    pyro.set_rng_seed(3)
    loss = objective.loss(model, guide, DATA)
    pyro.set_rng_seed(3)
    trace = pyro.poutine.trace(guide).get_trace(DATA)
    c, z = trace.nodes["c"]["value"], trace.nodes["z"]["value"]
    by_hand = (
        dist.Normal(c + z, 1.0).log_prob(DATA)
        + dist.Normal(0.0, 1.0).log_prob(c) - dist.Normal(0.2, 0.8).log_prob(c)
        + z * math.log(0.3) + (1 - z) * math.log(0.7) - z * math.log(0.6) - (1 - z) * math.log(0.4)
    )
    assert loss == pytest.approx(-by_hand.sum().item(), rel=1e-12)


def test_discretized_module_keeps_the_modules_interface_and_passes_keywords():
    class Guide(torch.nn.Module):
        inputs, max_plate_nesting = ("x",), 1

        def forward(self, x, probs=GUIDE_PROBS):
            relaxed_guide("relaxed_bernoulli", probs)(x)

    wrapped = Discretized(Guide())
    assert wrapped.inputs == ("x",) and wrapped.max_plate_nesting == 1
    bare = Discretized(torch.nn.Identity())
    assert bare.inputs is None and bare.max_plate_nesting == math.inf
    probs = GUIDE_PROBS.flip(0)
    trace = pyro.poutine.trace(wrapped).get_trace(DATA, probs=probs)
    z = trace.nodes["z"]["value"]
    assert set(z.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(trace.log_prob_sum(), dist.Bernoulli(probs).log_prob(z).sum())


def test_relaxed_bernoulli_elbo_trains_in_svi_and_as_module():
    family = "sigmoid_logistic"
    model = relaxed_model(family)
    with pytest.warns(UserWarning):
        objective = RelaxedBernoulliELBO(num_particles=4)

    def run(train_step):
        logits = torch.nn.Parameter(torch.zeros(3, 3))

        def guide(x):
            pyro.param("logits", logits)
            relaxed_guide(family, torch.sigmoid(logits))(x)

        pyro.set_rng_seed(0)
        before = -TrueDiscreteBound(num_particles=5000).loss(model, guide, DATA)
        train_step(guide, logits)
        after = -TrueDiscreteBound(num_particles=5000).loss(model, guide, DATA)
        return before, after

    def svi_steps(guide, logits):
        svi = SVI(model, guide, Adam({"lr": 0.05}), loss=objective)
        for _ in range(200):
            svi.step(DATA)

    def module_steps(guide, logits):
        module = objective(model, guide)
        optimizer = torch.optim.Adam([logits], lr=0.05)
        for _ in range(200):
            optimizer.zero_grad()
            module(DATA).backward()
            optimizer.step()

    for train_step in (svi_steps, module_steps):
        pyro.clear_param_store()
        before, after = run(train_step)
        # Discrete ELBO from a uniform guide improves by more than a nat (MC error ~0.03).
        assert after > before + 1.0, (train_step.__name__, before, after)



def test_a_support_with_batched_bounds_is_read_whole():
    """A relaxation whose support bounds are per-element tensors (a batched Uniform) is the unit interval
    only when every bound is 0 and 1, instead of an error from a many-element tensor's truth value."""
    from pyro import distributions as dist

    from pyrovae.infer.discrete_bound import _is_unit_interval

    assert _is_unit_interval(dist.Uniform(torch.zeros(3), torch.ones(3)).support)
    assert not _is_unit_interval(dist.Uniform(torch.zeros(3), torch.tensor([1.0, 2.0, 1.0])).support)
    assert not _is_unit_interval(dist.Uniform(torch.tensor([0.0, -1.0]), torch.ones(2)).support)
    assert _is_unit_interval(dist.Uniform(0.0, 1.0).support) and not _is_unit_interval(dist.Normal(0.0, 1.0).support)
