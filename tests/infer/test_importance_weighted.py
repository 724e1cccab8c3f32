"""ImportanceWeightedELBO against known answers on the conjugate Gaussian model."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import RenyiELBO

from pyrovae.infer import ImportanceWeightedELBO, gradient_statistics
from tests.support.conjugate import (
    LOG_EVIDENCE,
    POST_LOC,
    POST_SCALE,
    SIGMA,
    NormalGuide,
    X,
    assert_trains_to_the_posterior,
)

pytestmark = pytest.mark.usefixtures("float64")


class ConjugateModel(torch.nn.Module):
    """conjugate_model with x | z ~ N(z + offset, SIGMA^2); offset = 0 is the model of conjugate.py."""

    def __init__(self, offset=0.0, learn_offset=True):
        super().__init__()
        if learn_offset:
            self.offset = torch.nn.Parameter(torch.tensor(offset))
        else:
            self.register_buffer("offset", torch.tensor(offset))

    def forward(self, x):
        pyro.module("model", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z + self.offset, SIGMA), obs=x)


def perturbed_guide():
    return NormalGuide(POST_LOC + 0.6, POST_SCALE * 1.5)


def bound_per_point(num_particles, repeats=10, num_copies=1000):
    """Mean over ``repeats`` of the per-point bound on ``num_copies`` copies of x, and its SE."""
    model, guide, x = ConjugateModel(), perturbed_guide(), torch.full((num_copies,), X)
    objective = ImportanceWeightedELBO(num_particles=num_particles)
    with torch.no_grad():
        values = torch.tensor([-objective.loss(model, guide, x) / num_copies for _ in range(repeats)])
    return values.mean().item(), values.std().item() / math.sqrt(repeats)


def test_bound_is_the_elbo_for_one_particle_and_increases_to_log_evidence():
    guide = perturbed_guide()
    kl = torch.distributions.kl_divergence(
        dist.Normal(guide.loc.detach(), guide.log_scale.exp().detach()), dist.Normal(POST_LOC, POST_SCALE)
    )
    sizes = ((1, 2000), (5, 2000), (50, 2000), (1000, 200))
    bounds = {k: bound_per_point(k, repeats=20, num_copies=copies) for k, copies in sizes}
    elbo, elbo_se = bounds[1]
    # K = 1 is the ELBO, log p(x) - KL(q || p(z | x)), within 4 standard errors.
    assert abs(elbo - (LOG_EVIDENCE - kl.item())) < 4 * elbo_se
    for (k_small, (low, low_se)), (k_big, (high, high_se)) in zip(list(bounds.items()), list(bounds.items())[1:]):
        # Strictly increasing in K, by more than 4 combined standard errors.
        assert high - low > 4 * math.hypot(low_se, high_se), (k_small, k_big, low, high)
    for k, (value, se) in bounds.items():
        assert value < LOG_EVIDENCE + 4 * se, (k, value)
    # K = 1000 closes all but a sliver of the gap: tolerance 2% of the K = 1 gap (KL ~ 0.5 nats).
    assert LOG_EVIDENCE - bounds[1000][0] < 0.02 * kl.item()


def test_equals_renyi_alpha_zero_on_the_same_samples():
    model, guide, x = ConjugateModel(offset=0.2), perturbed_guide(), torch.linspace(-1.0, 2.0, 7)
    parameters = list(model.parameters()) + list(guide.parameters())

    pyro.set_rng_seed(3)
    loss = ImportanceWeightedELBO(num_particles=6, max_plate_nesting=1).loss_and_grads(model, guide, x)
    grads = [p.grad.clone() for p in parameters]
    for p in parameters:
        p.grad = None
    pyro.set_rng_seed(3)
    renyi = RenyiELBO(alpha=0, num_particles=6, vectorize_particles=True, max_plate_nesting=1)
    renyi_loss = renyi.loss_and_grads(model, guide, x)
    assert loss == pytest.approx(renyi_loss, rel=1e-12)
    for ours, theirs in zip(grads, (p.grad for p in parameters)):
        assert torch.allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_dreg_and_standard_gradients_agree_in_expectation():
    model, guide, x = ConjugateModel(), perturbed_guide(), torch.full((1000,), X)
    num_draws = 30
    stats = {
        estimator: gradient_statistics(
            model, guide, ImportanceWeightedELBO(num_particles=8, estimator=estimator), (x,), num_draws
        )
        for estimator in ("standard", "dreg")
    }
    for group in ("guide", "model"):
        standard, dreg = stats["standard"].groups[group], stats["dreg"].groups[group]
        standard_error = ((standard.variance + dreg.variance) / num_draws).sqrt()
        # 4 combined standard errors.
        assert ((standard.mean - dreg.mean).abs() < 4 * standard_error).all(), (group, standard.mean, dreg.mean)
    # DReG's advantage (Tucker et al. 2019): lower variance for the guide at the same K.
    assert (stats["dreg"].groups["guide"].variance < stats["standard"].groups["guide"].variance).all()


def test_dreg_leaves_the_model_gradient_standard_and_vanishes_at_the_posterior():
    model, guide, x = ConjugateModel(), NormalGuide(POST_LOC, POST_SCALE), torch.linspace(-1.0, 2.0, 7)
    gradients = {}
    for estimator in ("standard", "dreg"):
        pyro.set_rng_seed(5)
        loss = ImportanceWeightedELBO(num_particles=4, estimator=estimator).differentiable_loss(model, guide, x)
        gradients[estimator] = torch.autograd.grad(loss, [model.offset, guide.loc, guide.log_scale])
    # Same samples: the model gradient sum_k w_k grad log p(x, z_k) is identical.
    assert torch.allclose(gradients["standard"][0], gradients["dreg"][0], rtol=1e-12)
    # Not the exact posterior for every x (the guide is shared), but for x = X it is: check that case.
    x_posterior = torch.full((7,), X)
    loss = ImportanceWeightedELBO(num_particles=4, estimator="dreg").differentiable_loss(model, guide, x_posterior)
    guide_grads = torch.autograd.grad(loss, [guide.loc, guide.log_scale])
    assert all(g.abs() < 1e-10 for g in guide_grads)
    loss = ImportanceWeightedELBO(num_particles=4).differentiable_loss(model, guide, x_posterior)
    assert any(g.abs() > 1e-3 for g in torch.autograd.grad(loss, [guide.loc, guide.log_scale]))


@pytest.mark.parametrize("estimator", ["standard", "dreg"])
@pytest.mark.parametrize("num_particles", [1, 2, 5])
def test_at_the_exact_posterior_every_weight_is_the_evidence(estimator, num_particles):
    """q = p(z | x) makes every w_k = p(x): the bound is log p(x) for every K, with and without a data plate."""
    objective = ImportanceWeightedELBO(num_particles=num_particles, estimator=estimator)
    x = torch.full((6,), X)
    loss = objective.differentiable_loss(ConjugateModel(learn_offset=False), NormalGuide(POST_LOC, POST_SCALE), x)
    assert loss.item() == pytest.approx(-6 * LOG_EVIDENCE, abs=1e-10)

    # No plate at all: p(x, z) = N(z; 0, 1), so p(x) = 1, and q = N(0, 1) is its posterior. A fresh
    # objective guesses max_plate_nesting = 1, so f has the particle dim only.
    objective = ImportanceWeightedELBO(num_particles=num_particles, estimator=estimator)
    loc = torch.nn.Parameter(torch.tensor(0.0))
    loss = objective.differentiable_loss(
        lambda: pyro.sample("z", dist.Normal(0.0, 1.0)), lambda: pyro.sample("z", dist.Normal(loc, 1.0))
    )
    assert abs(loss.item()) < 1e-12
    if estimator == "dreg":  # no score term: the guide gradient vanishes at the posterior
        assert abs(torch.autograd.grad(loss, [loc])[0].item()) < 1e-12


def test_loss_and_metrics_is_the_loss_without_metrics():
    model, guide, x = ConjugateModel(offset=0.2), perturbed_guide(), torch.linspace(-1.0, 2.0, 7)
    objective = ImportanceWeightedELBO(num_particles=3, max_plate_nesting=1)  # a guess would draw noise first
    pyro.set_rng_seed(4)
    expected = objective.loss(model, guide, x)
    for args, kwargs in (((x,), {}), ((), {"x": x})):
        pyro.set_rng_seed(4)
        loss, metrics = objective.loss_and_metrics(model, guide, *args, **kwargs)
        assert loss.item() == pytest.approx(expected, rel=1e-12) and metrics == {}


def test_five_particles_by_default():
    objective = ImportanceWeightedELBO()
    assert objective.log_weights(ConjugateModel(), perturbed_guide(), torch.full((3,), X)).values.shape == (5, 3)


def test_a_plate_the_guide_does_not_share_is_summed_into_f():
    """x_{p,n} ~ N(z_n, SIGMA^2) under a pixel plate that only the model has: with one particle, f has
    one entry per data point, log p(z_n) + sum_p log N(x_{p,n}; z_n) - log q(z_n)."""
    x = torch.tensor([[0.3, -1.0], [1.2, 0.4], [-0.5, 2.0]])  # (pixels, data)
    draws = []

    def model(x):
        with pyro.plate("data", 2, dim=-1):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            with pyro.plate("pixels", 3, dim=-2):
                pyro.sample("x", dist.Normal(z, SIGMA), obs=x)

    def guide(x):
        with pyro.plate("data", 2, dim=-1):
            draws.append(pyro.sample("z", dist.Normal(0.4, 0.9)))

    f = ImportanceWeightedELBO(num_particles=1, max_plate_nesting=2).log_weights(model, guide, x).values
    (z,) = draws
    expected = dist.Normal(0.0, 1.0).log_prob(z) + dist.Normal(z, SIGMA).log_prob(x).sum(0) - dist.Normal(0.4, 0.9).log_prob(z)
    assert f.shape == (1, 1, 2)
    torch.testing.assert_close(f.reshape(2), expected.reshape(2))


def test_dreg_loss_is_the_standard_loss_on_the_same_samples():
    model, guide, x = ConjugateModel(offset=0.2), perturbed_guide(), torch.linspace(-1.0, 2.0, 7)
    losses = []
    for estimator in ("standard", "dreg"):
        pyro.set_rng_seed(4)
        losses.append(ImportanceWeightedELBO(num_particles=3, estimator=estimator).loss(model, guide, x))
    assert losses[1] == pytest.approx(losses[0], rel=1e-12)


class VectorGuide(torch.nn.Module):
    """q(z_n) = N(loc, diag(scale^2)) over 2 dims (an event dim), recording each draw."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.tensor([0.3, -0.4]))
        self.log_scale = torch.nn.Parameter(torch.tensor([0.2, -0.5]))
        self.draws = []

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(self.loc, self.log_scale.exp()).to_event(1))
        self.draws.append(z.detach())


def vector_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, SIGMA).to_event(1), obs=x)


@pytest.mark.parametrize("num_particles", [2, 3])
def test_dreg_guide_gradient_is_tucker_et_al_estimator_on_the_drawn_samples(num_particles):
    """Tucker et al. (2019), eq. 7: the loss -L_K gets the guide gradient
    -sum_k w~_k^2 d log w_k / dz_k dz_k / dphi, with z = loc + scale eps, so dz/dloc = 1 and
    dz/dlog_scale = z - loc; for this model d log w / dz = -z + (x - z) / SIGMA^2 + (z - loc) / scale^2."""
    guide, x = VectorGuide(), torch.tensor([[1.0, -0.5], [0.2, 0.8], [-1.5, 0.3]])
    objective = ImportanceWeightedELBO(num_particles=num_particles, estimator="dreg", max_plate_nesting=1)
    loss = objective.differentiable_loss(vector_model, guide, x)
    grad_loc, grad_log_scale = torch.autograd.grad(loss, [guide.loc, guide.log_scale])

    (z,) = guide.draws  # (K, N, 2): the one draw
    loc, scale = guide.loc.detach(), guide.log_scale.detach().exp()
    log_w = (dist.Normal(0.0, 1.0).log_prob(z) + dist.Normal(z, SIGMA).log_prob(x) - dist.Normal(loc, scale).log_prob(z)).sum(-1)
    weights = torch.softmax(log_w, 0).unsqueeze(-1) ** 2
    score = -z + (x - z) / SIGMA**2 + (z - loc) / scale**2
    torch.testing.assert_close(grad_loc, -(weights * score).sum((0, 1)))
    torch.testing.assert_close(grad_log_scale, -(weights * score * (z - loc)).sum((0, 1)))


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["standard", "dreg"])
def test_trains_in_svi_and_as_module(estimator):
    # The exact posterior attains the bound's maximum log p(x).
    model, x = ConjugateModel(learn_offset=False), torch.full((20,), X)
    assert_trains_to_the_posterior(model, lambda: ImportanceWeightedELBO(num_particles=5, estimator=estimator), x)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="num_particles >= 1"):
        ImportanceWeightedELBO(num_particles=0)
    with pytest.raises(ValueError, match="estimator must be one of"):
        ImportanceWeightedELBO(num_particles=3, estimator="vimco")

    def bernoulli_model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def bernoulli_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(0.3))

    with pytest.raises(ValueError, match="ImportanceWeightedELBO needs reparameterized guide sites, but guide site 'z' is Bernoulli.*VarianceELBO"):
        ImportanceWeightedELBO(num_particles=3).loss(bernoulli_model, bernoulli_guide, torch.zeros(4))
