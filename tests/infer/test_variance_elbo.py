"""VarianceELBO and LogVarianceELBO against known answers (Stojanovič n.d., §2; Rainforth 2020's toy)."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.infer import ImportanceWeightedELBO, LogVarianceELBO, VarianceELBO, gradient_statistics
from pyrovae.infer.log_weights import particle_log_weights
from tests.support.conjugate import (
    LOG_EVIDENCE,
    POST_LOC,
    POST_SCALE,
    SIGMA,
    NormalGuide,
    X,
    assert_trains_to_the_posterior,
    conjugate_model,
)

pytestmark = pytest.mark.usefixtures("float64")


def kl_to_posterior_gradient(guide):
    """Closed-form gradient of KL(q || p(z | x)) for one data point, w.r.t. (loc, log_scale)."""
    loc, log_scale = (p.detach().clone().requires_grad_() for p in (guide.loc, guide.log_scale))
    kl = torch.distributions.kl_divergence(dist.Normal(loc, log_scale.exp()), dist.Normal(POST_LOC, POST_SCALE))
    return torch.stack(torch.autograd.grad(kl, [loc, log_scale]))


def monte_carlo_gradient(objective, model, guide, x, num_draws):
    """Mean per-data-point guide gradient and its standard error.

    The data plate holds len(x) independent copies, so one draw already averages len(x)
    independent per-point gradients; the standard error comes from the spread over draws.
    """
    stats = gradient_statistics(model, guide, objective, (x,), num_draws=num_draws).groups["guide"]
    return stats.mean / len(x), (stats.variance / num_draws).sqrt() / len(x)


def test_exact_posterior_gives_zero_loss_zero_gradient_and_the_evidence():
    guide = NormalGuide(POST_LOC, POST_SCALE)
    x = torch.full((50,), X)
    objective = VarianceELBO(num_particles=5)
    loss, metrics = objective.loss_and_metrics(conjugate_model, guide, x)
    grads = torch.autograd.grad(loss, list(guide.parameters()))
    # f = log p(x) for every particle; only float64 rounding (~1e-15) is left.
    assert abs(loss.item()) < 1e-12
    assert all(g.abs().max() < 1e-10 for g in grads)
    assert metrics["elbo"].item() == pytest.approx(50 * LOG_EVIDENCE, abs=1e-9)


@pytest.mark.parametrize("objective_class, factor", [(VarianceELBO, 2.0), (LogVarianceELBO, 1.0)])
def test_expected_guide_gradient_is_factor_times_kl_gradient(objective_class, factor):
    guide = NormalGuide(POST_LOC + 0.5, POST_SCALE * 1.4)
    x = torch.full((2000,), X)
    mean, standard_error = monte_carlo_gradient(objective_class(num_particles=4), conjugate_model, guide, x, 25)
    expected = factor * kl_to_posterior_gradient(guide)
    # 4 standard errors: a false failure has probability ~1e-4 per component.
    assert ((mean - expected).abs() < 4 * standard_error).all(), (mean, expected, standard_error)
    # Resolution: the tolerance is well below the gap between factors 1 and 2.
    assert (4 * standard_error < 0.25 * expected.abs()).all()


# Three Bernoulli latents (8 configurations) and one Categorical latent (4 configurations), with
# Gaussian observations; KL(q || p(z | x)) is computed by enumeration.
BERNOULLI_PRIOR = torch.tensor([0.2, 0.5, 0.7], dtype=torch.float64)
BERNOULLI_WEIGHTS = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
BERNOULLI_CONFIGS = torch.tensor([[(i >> k) & 1 for k in range(3)] for i in range(8)], dtype=torch.float64)
CATEGORICAL_PRIOR = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
CATEGORICAL_LOCS = torch.tensor([-1.0, 0.0, 1.5, 3.0], dtype=torch.float64)
CATEGORICAL_CONFIGS = torch.arange(4)
DISCRETE_X = 0.9


def bernoulli_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Bernoulli(BERNOULLI_PRIOR).to_event(1))
        pyro.sample("x", dist.Normal(z @ BERNOULLI_WEIGHTS + 0.3, 0.8), obs=x)


def bernoulli_log_joint(z):
    prior = dist.Bernoulli(BERNOULLI_PRIOR).to_event(1).log_prob(z)
    return prior + dist.Normal(z @ BERNOULLI_WEIGHTS + 0.3, 0.8).log_prob(torch.tensor(DISCRETE_X, dtype=torch.float64))


def categorical_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Categorical(CATEGORICAL_PRIOR))
        pyro.sample("x", dist.Normal(CATEGORICAL_LOCS[z], 1.0), obs=x)


def categorical_log_joint(z):
    prior = dist.Categorical(CATEGORICAL_PRIOR).log_prob(z)
    return prior + dist.Normal(CATEGORICAL_LOCS[z], 1.0).log_prob(torch.tensor(DISCRETE_X, dtype=torch.float64))


class DiscreteGuide(torch.nn.Module):
    def __init__(self, logits, make):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.as_tensor(logits, dtype=torch.float64))
        self.make = make

    def distribution(self):
        return self.make(self.logits)

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.distribution())


DISCRETE_CASES = {
    "bernoulli": (
        bernoulli_model,
        bernoulli_log_joint,
        BERNOULLI_CONFIGS,
        lambda logits: dist.Bernoulli(logits=logits).to_event(1),
        [0.4, -0.3, 1.0],
    ),
    "categorical": (
        categorical_model,
        categorical_log_joint,
        CATEGORICAL_CONFIGS,
        lambda logits: dist.Categorical(logits=logits),
        [0.5, 0.0, -0.5, 0.2],
    ),
}


def enumerated_kl_gradient(guide, log_joint, configs):
    logits = guide.logits.detach().clone().requires_grad_()
    log_q = guide.make(logits).log_prob(configs)
    log_p = log_joint(configs)
    kl = (log_q.exp() * (log_q - log_p)).sum() + torch.logsumexp(log_p, 0)
    return torch.autograd.grad(kl, [logits])[0]


@pytest.mark.parametrize("case", sorted(DISCRETE_CASES))
@pytest.mark.parametrize("objective_class, factor", [(VarianceELBO, 2.0), (LogVarianceELBO, 1.0)])
def test_discrete_latents_expected_gradient_is_factor_times_kl_gradient(case, objective_class, factor):
    model, log_joint, configs, make, logits = DISCRETE_CASES[case]
    guide = DiscreteGuide(logits, make)
    x = torch.full((2000,), DISCRETE_X)
    mean, standard_error = monte_carlo_gradient(objective_class(num_particles=4), model, guide, x, 25)
    expected = factor * enumerated_kl_gradient(guide, log_joint, configs)
    # 4 standard errors: a false failure has probability ~1e-4 per component.
    assert ((mean - expected).abs() < 4 * standard_error).all(), (mean, expected, standard_error)


def test_exact_categorical_posterior_gives_zero_variance():
    log_joint = categorical_log_joint(CATEGORICAL_CONFIGS)
    guide = DiscreteGuide(log_joint - torch.logsumexp(log_joint, 0), lambda logits: dist.Categorical(logits=logits))
    loss = VarianceELBO(num_particles=6).differentiable_loss(categorical_model, guide, torch.full((30,), DISCRETE_X))
    assert abs(loss.item()) < 1e-12


def test_global_latent_takes_the_variance_of_the_joint_log_weight():
    """mu ~ N(0, 1) outside the data plate, x_n ~ N(mu, 1): with the exact posterior of mu the
    joint log weight is constant, while per-data-point log weights would not be."""
    x = torch.tensor([0.3, -1.2, 2.0, 0.7])
    post_var = 1.0 / (1 + len(x))

    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(x.sum() * post_var, math.sqrt(post_var)))

    objective = VarianceELBO(num_particles=7)
    assert objective.log_weights(model, guide, x).values.shape == (7, 1)
    loss, metrics = objective.loss_and_metrics(model, guide, x)
    assert abs(loss.item()) < 1e-12
    log_evidence = dist.MultivariateNormal(torch.zeros(4), torch.eye(4) + 1).log_prob(x).item()
    assert metrics["elbo"].item() == pytest.approx(log_evidence, abs=1e-9)


def test_subsampled_data_plate_scales_the_variance_once():
    """A batch of B out of N multiplies the summed per-point variance by N / B (not (N / B)^2)."""
    guide = NormalGuide(POST_LOC + 0.5, POST_SCALE * 1.4)
    x = torch.full((10,), X)

    def model(x, num_data):
        with pyro.plate("data", num_data, subsample=torch.arange(len(x))):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, SIGMA), obs=x)

    def subsampled_guide(x, num_data):
        with pyro.plate("data", num_data, subsample=torch.arange(len(x))):
            pyro.sample("z", dist.Normal(guide.loc, guide.log_scale.exp()))

    objective = VarianceELBO(num_particles=3, max_plate_nesting=1)
    pyro.set_rng_seed(1)
    full, metrics_full = objective.loss_and_metrics(conjugate_model, guide, x)
    pyro.set_rng_seed(1)
    scaled, metrics_scaled = objective.loss_and_metrics(model, subsampled_guide, x, 1000)
    assert scaled.item() == pytest.approx(100 * full.item(), rel=1e-12)
    assert metrics_scaled["elbo"].item() == pytest.approx(100 * metrics_full["elbo"].item(), rel=1e-12)
    # The data size passed by keyword reaches model and guide in every entry point.
    entries = (
        lambda *args, **kwargs: objective.loss_and_metrics(*args, **kwargs)[0].item(),
        lambda *args, **kwargs: objective.differentiable_loss(*args, **kwargs).item(),
        objective.loss_and_grads,
    )
    for entry in entries:
        pyro.set_rng_seed(1)
        assert entry(model, subsampled_guide, x, num_data=1000) == pytest.approx(100 * full.item(), rel=1e-12)


def test_eight_particles_by_default():
    for objective in (VarianceELBO(), LogVarianceELBO()):
        assert objective.log_weights(conjugate_model, NormalGuide(0.0, 1.0), torch.full((3,), X)).values.shape == (8, 3)


def test_rainforth_lecture_toy_weights():
    """q = N(2, 1.1^2), p(x, z) = N(z; 0, 1) (so p(x) = 1): the weights w = p / q have E[w] = 1,
    Var[w] = 15.98, E[log w] = -2.0097, Var[log w] = 4.862 (the weights-versus-log-weights example
    of Rainforth 2020, "Model Learning with the ELBO")."""
    s = 1.1
    a = 1 - 1 / (2 * s**2)
    exact = {
        "mean_w": 1.0,
        "var_w": s / math.sqrt(2 * a) * math.exp(1 / (a * s**4) + 2 / s**2) - 1,
        "mean_log_w": -2 + math.log(s) + (1 - s**2) / 2,
        "var_log_w": 4 * s**2 + (1 - s**2) ** 2 / 2,
    }
    assert exact["var_w"] == pytest.approx(15.98, abs=0.005)
    assert exact["mean_log_w"] == pytest.approx(-2.0097, abs=5e-5)
    assert exact["var_log_w"] == pytest.approx(4.862, abs=5e-4)

    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        pyro.sample("z", dist.Normal(2.0, s))

    num = 2_000_000
    objective = VarianceELBO(num_particles=num)
    log_w = objective.log_weights(model, guide).values.reshape(-1)
    w = log_w.exp()
    sampled = {
        "mean_w": (w, w.mean()),
        "var_w": ((w - 1) ** 2, w.var()),
        "mean_log_w": (log_w, log_w.mean()),
        "var_log_w": ((log_w - log_w.mean()) ** 2, log_w.var()),
    }
    for key, (terms, estimate) in sampled.items():
        standard_error = terms.std().item() / math.sqrt(num)
        # 4 standard errors; the w-moments are heavy-tailed but E[w^4] is finite (~5e5).
        assert abs(estimate.item() - exact[key]) < 4 * standard_error, (key, estimate.item(), standard_error)

    # The objectives estimate the same quantities from their particles.
    loss, metrics = objective.loss_and_metrics(model, guide)
    loss = loss.item()
    assert loss == pytest.approx(exact["var_log_w"], abs=4 * sampled["var_log_w"][0].std().item() / math.sqrt(num))
    assert metrics["elbo"].item() == pytest.approx(exact["mean_log_w"], abs=4 * log_w.std().item() / math.sqrt(num))
    assert LogVarianceELBO(num_particles=num).loss(model, guide) == pytest.approx(exact["var_log_w"] / 2, rel=0.02)


@pytest.mark.slow
@pytest.mark.parametrize("objective_class", [VarianceELBO, LogVarianceELBO])
def test_trains_in_svi_and_as_module(objective_class):
    assert_trains_to_the_posterior(conjugate_model, lambda: objective_class(num_particles=8), torch.full((20,), X))


def test_fewer_than_two_particles_is_rejected():
    with pytest.raises(ValueError, match=r"^VarianceELBO needs num_particles >= 2, got 1$"):
        VarianceELBO(num_particles=1)
    with pytest.raises(ValueError, match=r"^LogVarianceELBO needs num_particles >= 2, got 0$"):
        LogVarianceELBO(num_particles=0)
    with pytest.raises(TypeError, match=r"^VarianceELBO: num_particles must be an int, got 2\.5$"):
        VarianceELBO(num_particles=2.5)


OBJECTIVES = {
    "variance": lambda: VarianceELBO(num_particles=3),
    "log_variance": lambda: LogVarianceELBO(num_particles=3),
    "iwae": lambda: ImportanceWeightedELBO(num_particles=3),
    "iwae_dreg": lambda: ImportanceWeightedELBO(num_particles=3, estimator="dreg"),
}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_guide_without_the_model_latent_is_rejected(name):
    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("w", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"^the guide does not sample the model's latent site\(s\) \['z'\]; every latent "
                       r"site of the model needs a guide site of the same name$"):
        OBJECTIVES[name]().loss(conjugate_model, guide, torch.full((4,), X))


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_non_finite_log_density_is_rejected(name):
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Uniform(z - 1, z + 1, validate_args=False), obs=x)

    guide = NormalGuide(0.0, 0.1)
    with pytest.raises(ValueError, match=r"^model site 'x' \(Uniform\) has a non-finite log-density at the "
                       r"sampled/observed value; check its parameters and support$"):
        OBJECTIVES[name]().loss(model, guide, torch.full((4,), 5.0))


def test_a_masked_observation_does_not_count():
    """The guide is the prior, so f = log p(x_n | z) where x_n is observed and 0 where it is masked out."""
    x, mask = torch.tensor([0.3, -1.0, 2.0]), torch.tensor([True, False, True])
    draws = []

    def model(x):
        with pyro.plate("data", 3):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            with pyro.poutine.mask(mask=mask):
                pyro.sample("x", dist.Normal(z, SIGMA), obs=x)

    def guide(x):
        with pyro.plate("data", 3):
            draws.append(pyro.sample("z", dist.Normal(0.0, 1.0)))

    f = VarianceELBO(num_particles=4, max_plate_nesting=1).log_weights(model, guide, x).values
    (z,) = draws
    torch.testing.assert_close(f, torch.where(mask, dist.Normal(z, SIGMA).log_prob(x), 0.0))


@pytest.mark.parametrize("validation", [True, False], ids=["validated", "unvalidated"])
def test_batch_dims_beyond_the_plates_are_refused_in_one_line(validation):
    """Pyro's model-guide check ignores the dims left of max_plate_nesting (there the guide's and the
    model's shapes agree), so with or without validation the log weights refuse them."""

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(3, 1, x.shape[0]), 1.0))  # dim -3: no plate, no .to_event

    with pyro.validation_enabled(validation), pytest.raises(ValueError, match=r"^model site 'z' has batch shape \(3, 2, 4\), "
                                                       r"more dims than max_plate_nesting=2; declare event dims with .to_event\(\)$"):
        VarianceELBO(num_particles=2, max_plate_nesting=1).loss(conjugate_model, guide, torch.full((4,), X))


def test_a_guide_site_outside_the_data_plate_is_refused_under_validation():
    """The traces go through Pyro's site-shape check: a guide ``z`` of batch shape (4,) with no plate
    would otherwise be summed into one log weight for the whole batch."""

    def guide(x):
        pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0))

    with pytest.raises(ValueError, match='at site "z", invalid log_prob shape'):
        ImportanceWeightedELBO(num_particles=1, max_plate_nesting=1).loss(conjugate_model, guide, torch.full((4,), X))


class ShiftedNormal(dist.Normal):
    """``N(loc + shift, scale^2)``, the shift given at the site: ``pyro.sample(name, d, shift, obs=x)``
    or ``pyro.sample(name, d, shift=s, obs=x)``, which Pyro's traces hand to ``log_prob``."""

    def log_prob(self, value, shift=0.0):
        return super().log_prob(value - shift)


def test_a_sites_extra_arguments_reach_its_log_density():
    """As in Pyro's ``Trace.compute_log_prob``, a site's ``args`` and ``kwargs`` are passed to ``log_prob``:
    the guide is the prior, so f = log N(x_1 - 2; z, 1) + log N(x_2 - 3; z, 1)."""
    x1, x2, draws = torch.tensor([0.5, 2.5]), torch.tensor([1.0, 4.0]), []

    def model():
        with pyro.plate("data", 2):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x1", ShiftedNormal(z, 1.0), 2.0, obs=x1)
            pyro.sample("x2", ShiftedNormal(z, 1.0), shift=3.0, obs=x2)

    def guide():
        with pyro.plate("data", 2):
            draws.append(pyro.sample("z", dist.Normal(0.0, 1.0)))

    f = VarianceELBO(num_particles=3, max_plate_nesting=1).log_weights(model, guide).values
    (z,) = draws
    torch.testing.assert_close(f, dist.Normal(z, 1.0).log_prob(x1 - 2.0) + dist.Normal(z, 1.0).log_prob(x2 - 3.0))


def test_a_subsampled_sequential_plate_stays_inside_the_log_weights():
    """Only vectorized plates shared by every site are kept and factored out (``scale``); a sequential
    plate of 10 elements subsampled to 1 is summed into f with its factor 10, as Pyro scales the site."""
    draws = []

    def model(x):
        for i in pyro.plate("chunks", 10, subsample_size=1):
            z = pyro.sample(f"z_{i}", dist.Normal(0.0, 1.0))
            pyro.sample(f"x_{i}", dist.Normal(z, SIGMA), obs=x[i])

    def guide(x):
        for i in pyro.plate("chunks", 10, subsample_size=1):
            draws.append((i, pyro.sample(f"z_{i}", dist.Normal(0.0, 1.0))))

    x = torch.linspace(-1.0, 1.0, 10)
    pyro.set_rng_seed(0)
    weights = VarianceELBO(num_particles=3, max_plate_nesting=1).log_weights(model, guide, x)
    ((i, z),) = draws
    assert weights.scale == 1.0
    torch.testing.assert_close(weights.values, 10 * dist.Normal(z, SIGMA).log_prob(x[i]))


def test_a_model_and_guide_without_sample_sites_have_log_weight_zero():
    def nothing():
        pass

    traces = [pyro.poutine.trace(nothing).get_trace() for _ in range(2)]
    weights = particle_log_weights(*traces, num_particles=1, max_plate_nesting=1)
    assert weights.scale == 1 and torch.equal(weights.values, torch.zeros(1))
