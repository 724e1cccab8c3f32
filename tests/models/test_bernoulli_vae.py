"""BernoulliVAE: every relaxation trains and improves the true bound; the exact log-likelihood
against brute force and against Pyro's enumeration; objectives chosen per relaxation; bad settings."""

import itertools
import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, config_enumerate
from pyro.optim import Adam

from pyrovae.callbacks import Checkpoint
from pyrovae.data import load_dataset
from pyrovae.discrete import exact_log_likelihood
from pyrovae.evaluate import importance_log_likelihood, mean_elbo
from pyrovae.experiment import Experiment, build
from pyrovae.guides import BernoulliLatentGuide
from pyrovae.infer import DifferentiableTraceGraph_ELBO, TrueDiscreteBound
from pyrovae.infer.discrete_bound import Discretized
from pyrovae.models import BernoulliVAE
from pyrovae.models.bernoulli_vae import BernoulliVAEConfig
from pyrovae.nn import ACTIVATIONS, make_likelihood
from pyrovae.registry import get
from pyrovae.relaxations import RELAXATIONS
from pyrovae.train import fit


def tiny_run(relaxation: str, **settings):
    options = {"model": "bernoulli-vae", "preset": "tiny", "relaxation": relaxation, **settings}
    if RELAXATIONS[relaxation].objective == "variance" and "num_particles" not in settings:
        options["num_particles"] = 4
    experiment = Experiment.resolve(options)
    return experiment, *build(experiment)


@pytest.mark.parametrize("relaxation", list(RELAXATIONS))
def test_every_relaxation_trains_and_its_true_bound_improves(relaxation):
    experiment, train, test, model, guide, objective = tiny_run(relaxation, lr=3e-3)
    train, test = train.subset(640), test.subset(128)
    before = mean_elbo(Discretized(model), Discretized(guide), test)
    callbacks = get("bernoulli-vae").training_callbacks(experiment.model, model, guide, test)
    # 300 steps of 64 examples.
    history = fit(model, guide, objective, train, test, epochs=30, batch_size=64, lr=3e-3, callbacks=callbacks)
    after = history.rows[-1]["true_bound"]
    assert all(math.isfinite(row["true_bound"]) for row in history.rows)
    if relaxation == "variance-loss":
        # The variance loss is zero wherever q is the exact posterior, including a decoder that
        # ignores z (Stojanovič n.d.; pyrovae.infer.VarianceELBO): it does not push log p(x) up
        # much (+0.45 nats here), but it drives the variance of the log weights (0.082 -> 0.0002
        # over the run) and with it the gap log p(x) - ELBO (0.07 -> 0.001 nats) to zero.
        losses = history.column("train_loss")
        assert losses[-1] < 0.05 * losses[0], losses
        assert after > before + 0.2, (before, after)
        assert float(exact_log_likelihood(model, test).mean()) - after < 0.02
    else:
        assert after > before + 3.0, (before, after)


@pytest.mark.parametrize("relaxation", ["logistic", "step-logistic", "concrete", "gaussian-sigmoid"])
def test_the_decoder_sees_exactly_zero_or_one_in_the_discrete_model(relaxation):
    _, train, _, model, guide, _ = tiny_run(relaxation)
    x, _ = next(train.batches(16, shuffle=False))
    seen = []
    handle = model.decoder.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    guide_trace = pyro.poutine.trace(Discretized(guide)).get_trace(x)
    pyro.poutine.replay(Discretized(model), trace=guide_trace)(x)
    handle.remove()
    assert set(seen[-1].unique().tolist()) == {0.0, 1.0}


def test_default_objectives_follow_the_relaxation_and_an_explicit_one_wins():
    assert Experiment.resolve({"model": "bernoulli-vae", "relaxation": "reinforce"}).run.objective == "graph"
    assert Experiment.resolve({"model": "bernoulli-vae", "relaxation": "disarm"}).run.objective == "disarm"
    assert Experiment.resolve({"model": "bernoulli-vae", "relaxation": "logistic"}).run.objective == "trace"
    chosen = Experiment.resolve({"model": "bernoulli-vae", "relaxation": "disarm", "objective": "graph"})
    assert chosen.run.objective == "graph"


@pytest.mark.parametrize("settings, message", [
    ({"relaxation": "gumbel"}, "unknown relaxation 'gumbel'; expected one of gaussian-sigmoid"),
    ({"beta": 0.0}, "--beta must be positive"),
    ({"beta": -2.0}, "--beta must be positive"),
    ({"z_dim": 0}, "--z-dim or --latent-dim must be at least 1"),
    ({"posterior_temperature": 0.0}, "--posterior-temperature must be positive"),
])
def test_bad_settings_give_one_line_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        Experiment.resolve({"model": "bernoulli-vae", **settings})


@pytest.mark.parametrize("arguments, message", [
    (dict(relaxation="gumbel"), "unknown relaxation 'gumbel'"),
    (dict(beta=0.0), "beta must be positive"),
    (dict(z_dim=0), "z_dim must be at least 1"),
    (dict(prior_temperature=0.0), "prior_temperature must be positive, got 0.0"),
    (dict(posterior_temperature=-1.0), "posterior_temperature must be positive, got -1.0"),
])
def test_the_model_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        BernoulliVAE(6, **{"z_dim": 3, **arguments})


def test_beta_anneals_between_epochs_in_model_and_guide_and_is_checkpointed(tmp_path):
    experiment, train, test, model, guide, objective = tiny_run("spike-exp", beta=8.0, beta_start=2.0, anneal_epochs=2)
    assert model.beta.item() == guide.beta.item() == 2.0
    callbacks = get("bernoulli-vae").training_callbacks(experiment.model, model, guide, test)
    history = fit(model, guide, objective, train.subset(64), test.subset(32), epochs=3, batch_size=64,
                  callbacks=[*callbacks, Checkpoint(tmp_path)])
    assert [row["beta"] for row in history.rows] == [2.0, 5.0, 8.0]
    assert model.beta.item() == guide.beta.item() == 8.0
    assert "beta" in dict(model.named_buffers()) and "beta" in dict(guide.named_buffers())


@pytest.mark.parametrize("relaxation, settings, anneals", [
    ("spike-exp", {"beta_start": 2.0}, True), ("spike-exp", {}, False), ("logistic", {"beta_start": 2.0}, False)])
def test_the_callbacks_log_the_true_bound_and_anneal_a_smoothing_given_a_start(relaxation, settings, anneals):
    experiment, _, test, model, guide, _ = tiny_run(relaxation, true_bound_particles=3, **settings)
    callbacks = get("bernoulli-vae").training_callbacks(experiment.model, model, guide, test)
    assert [type(c).__name__ for c in callbacks] == ["Diagnostics"] + (["BetaAnnealing"] if anneals else [])
    [(name, bound)] = callbacks[0].objectives.items()
    assert name == "true_bound" and isinstance(bound, TrueDiscreteBound)
    # Declared, so Pyro neither guesses the nesting nor logs that it did.
    declared = TrueDiscreteBound(num_particles=3, max_plate_nesting=model.max_plate_nesting)
    assert (bound.num_particles, bound.max_plate_nesting) == (3, declared.max_plate_nesting)


def _linear_widths(module):
    return [m.out_features for m in module.modules() if isinstance(m, torch.nn.Linear)]


def test_defaults_are_the_configs():
    config = BernoulliVAEConfig()
    model = BernoulliVAE(12)
    guide = BernoulliLatentGuide(model)
    assert (model.z_dim, model.relaxation.name, model.beta.item(), model.prior_temperature,
            model.posterior_temperature) == (config.z_dim, config.relaxation, config.beta, config.prior_temperature,
                                             config.posterior_temperature)
    assert type(model.likelihood) is type(make_likelihood(config.likelihood, 12))
    assert _linear_widths(model.decoder) == [*config.hidden_sizes, 12]
    assert _linear_widths(guide.encoder) == [*config.hidden_sizes, config.z_dim]
    assert guide.centring is None and guide.logit_scale is None
    for module in (model, guide):
        assert ACTIVATIONS[config.activation] in {type(m) for m in module.modules()}


def test_the_config_temperatures_reach_model_and_guide():
    _, _, _, model, guide, _ = tiny_run("concrete", prior_temperature=0.3, posterior_temperature=0.9)
    assert (model.prior_temperature, model.posterior_temperature) == guide.temperatures == (0.3, 0.9)


# The exact log-likelihood ----------------------------------------------------------------------


def brute_force_log_likelihood(model, x):
    """log sum_z p(z) p(x | z) over all 2^D states, one state at a time."""
    terms = []
    for bits in itertools.product([0.0, 1.0], repeat=model.z_dim):
        z = torch.tensor(bits, dtype=x.dtype)
        log_prior = model.z_dim * math.log(0.5)
        terms.append(log_prior + model.decode(z.expand(x.shape[0], -1)).log_prob(x))
    return torch.logsumexp(torch.stack(terms), 0)


@pytest.fixture
def small_models():
    torch.manual_seed(3)
    bernoulli = BernoulliVAE(10, z_dim=5, relaxation="logistic", hidden_sizes=[7])
    gaussian = BernoulliVAE(10, z_dim=5, relaxation="disarm", hidden_sizes=[7], likelihood="gaussian")
    for parameter in [*bernoulli.parameters(), *gaussian.parameters()]:
        parameter.data.normal_(0, 1.5)
    binary = torch.bernoulli(torch.full((9, 10), 0.4))
    return {"bernoulli": (bernoulli, binary), "gaussian": (gaussian, torch.randn(9, 10))}


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("max_rows", [1 << 16, 7])
def test_exact_log_likelihood_equals_a_brute_force_sum(small_models, likelihood, max_rows):
    model, x = small_models[likelihood]
    exact = exact_log_likelihood(model, x, batch_size=4, max_rows=max_rows)
    assert exact.shape == (9,)
    torch.testing.assert_close(exact, brute_force_log_likelihood(model, x), rtol=1e-5, atol=1e-4)


def test_exact_log_likelihood_equals_pyro_enumeration_of_a_per_unit_model(small_models):
    model, x = small_models["bernoulli"]

    @config_enumerate
    def per_unit_model(x):
        with pyro.plate("data", x.shape[0]):
            units = [pyro.sample(f"z{d}", dist.Bernoulli(torch.tensor(0.5))) for d in range(model.z_dim)]
            shape = torch.broadcast_shapes(*(u.shape for u in units))
            z = torch.stack([u.expand(shape) for u in units], -1)
            pyro.sample("x", model.decode(z), obs=x)

    with torch.no_grad():
        evidence = -TraceEnum_ELBO(max_plate_nesting=1).loss(per_unit_model, lambda x: None, x)
    assert exact_log_likelihood(model, x).sum().item() == pytest.approx(evidence, rel=1e-5)


def test_bounds_sit_below_the_exact_log_likelihood_and_importance_sampling_approaches_it():
    experiment, train, test, model, guide, objective = tiny_run("step-logistic")
    fit(model, guide, objective, train.subset(640), epochs=10, batch_size=64, lr=3e-3)
    data = test.subset(100)
    exact = exact_log_likelihood(model, data).mean().item()
    true_bound = -TrueDiscreteBound(num_particles=200).loss(model, guide, data.x) / 100
    sampled = importance_log_likelihood(Discretized(model), Discretized(guide), data, num_samples=2000, engine="eager")
    # Importance sampling is a stochastic lower bound that tightens with more samples: between the
    # one-sample bound and the exact value.
    assert true_bound < sampled < exact + 0.02, (true_bound, sampled, exact)
    assert exact - sampled < 0.5


def test_exact_log_likelihood_refuses_too_many_units_and_other_models():
    with pytest.raises(ValueError, match="D = 30 is too many"):
        exact_log_likelihood(BernoulliVAE(4, z_dim=30), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="needs a Bernoulli-latent model"):
        exact_log_likelihood(torch.nn.Linear(2, 2), torch.zeros(2, 2))


# The score-function objective -------------------------------------------------------------------


def test_differentiable_trace_graph_elbo_matches_pyro_in_value_and_gradient():
    dataset = load_dataset("digits", "train", binarize="static").subset(32)
    model = BernoulliVAE(dataset.x_dim, z_dim=3, relaxation="reinforce", hidden_sizes=[8])
    guide = BernoulliLatentGuide(model, hidden_sizes=[8])
    parameters = [*model.parameters(), *guide.parameters()]

    def run(objective_step):
        pyro.set_rng_seed(5)
        for p in parameters:
            p.grad = None
        value = objective_step()
        return value, [p.grad.clone() for p in parameters]

    ours, our_grads = run(lambda: _backward(DifferentiableTraceGraph_ELBO().differentiable_loss(model, guide, dataset.x)))
    theirs, their_grads = run(lambda: TraceGraph_ELBO().loss_and_grads(model, guide, dataset.x))
    assert ours == pytest.approx(theirs, rel=1e-6)
    for mine, pyros in zip(our_grads, their_grads):
        torch.testing.assert_close(mine, pyros)
    # The baseline network is trained too.
    assert guide.baseline[0][0].weight.grad is not None and guide.baseline[0][0].weight.grad.abs().sum() > 0


def test_the_nvil_baseline_learns_one_examples_cost_whatever_the_subsampling_scale():
    """Regressed on the cost, the baseline tends to E_q[log p(x, z) - log q(z | x)] of each example
    (Mnih & Gregor 2014), summed here over the 2^3 states: not N / B times it, although Pyro's
    downstream cost under a subsampled plate is scaled by N / B (Pyro issue 555)."""
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    dataset = load_dataset("digits", "train", binarize="static").subset(16)
    model = BernoulliVAE(dataset.x_dim, z_dim=3, relaxation="reinforce", hidden_sizes=[8])
    guide = BernoulliLatentGuide(model, hidden_sizes=[8])
    optimiser = torch.optim.Adam(guide.baseline.parameters(), lr=0.1)
    for _ in range(300):
        optimiser.zero_grad()
        DifferentiableTraceGraph_ELBO().differentiable_loss(model, guide, dataset.x, num_data=20 * 16).backward()
        optimiser.step()
    with torch.no_grad():
        posterior, expected_cost = guide.posterior(dataset.x), 0.0
        for bits in itertools.product([0.0, 1.0], repeat=3):
            z = torch.tensor(bits).expand(16, 3)
            log_q = posterior.log_prob(z)
            expected_cost += log_q.exp() * (3 * math.log(0.5) + model.decode(z).log_prob(dataset.x) - log_q)
        learnt = guide.baseline(dataset.x)
    assert (learnt - expected_cost).abs().mean() < 0.1 * expected_cost.abs().mean(), (learnt, expected_cost)


def _backward(loss):
    loss.backward()
    return loss.item()


def test_reinforce_runs_in_pyro_svi():
    _, train, _, model, guide, _ = tiny_run("reinforce")
    x, _ = next(train.batches(32))
    svi = SVI(model, guide, Adam({"lr": 1e-3}), TraceGraph_ELBO())
    assert math.isfinite(svi.step(x))


def test_the_cli_logs_the_true_bound_and_reports_the_exact_log_likelihood(tmp_path):
    from tests.cli.invocation import QUICK, cli_env, run_cli

    result = run_cli("train", "--model", "bernoulli-vae", "--preset", "tiny", "--relaxation", "step-logistic",
                     "--epochs", "2", "--out", tmp_path / "run", *QUICK, env=cli_env(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [sorted(row) for row in rows] == [["epoch", "seconds", "test_elbo", "train_loss", "true_bound"]] * 2
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    # The exact evidence of the discrete model is above its ELBO, the true bound (up to Monte Carlo noise).
    assert results["test_exact_log_likelihood"] > rows[-1]["true_bound"] - 0.5


@pytest.mark.parametrize("relaxation", ["logistic", "concrete", "step-logistic", "gaussian-sigmoid"])
def test_saturated_encoder_logits_keep_the_bernoulli_elbo_and_true_bound_finite(relaxation):
    # An encoder output of 30 rounds sigmoid(30) to 1 in float32: the Bernoulli log-masses must come
    # from the logits (BernoulliView.log_probs), or log(1 - lambda) = -inf turns the gradients NaN.
    from pyrovae.infer import RelaxedBernoulliELBO

    _, train, _, model, guide, _ = tiny_run(relaxation)
    with torch.no_grad():
        head = guide.encoder.head
        (head.loc if relaxation == "gaussian-sigmoid" else head.logits).bias.fill_(30.0)
    x, _ = next(train.batches(16))
    with pytest.warns(UserWarning, match="not a lower bound"):
        objective = RelaxedBernoulliELBO(max_plate_nesting=1, relaxed_value=model.decoder_input)
    loss = objective.differentiable_loss(model, guide, x)
    loss.backward()
    gradients = [p.grad for p in [*model.parameters(), *guide.parameters()] if p.grad is not None]
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in gradients)
    assert math.isfinite(TrueDiscreteBound(num_particles=1, max_plate_nesting=1).loss(model, guide, x))


@pytest.mark.parametrize("x, message", [
    (torch.full((3, 10), 0.5), "must be binary"),
    (torch.zeros(3, 7), "must have shape"),
    (torch.full((3, 10), float("nan")), "NaN"),
])
def test_exact_log_likelihood_rejects_bad_data_in_one_line(small_models, x, message):
    model, _ = small_models["bernoulli"]
    with pytest.raises(ValueError, match=message):
        exact_log_likelihood(model, x)


def test_symmetric_power_trains_by_the_closed_form_kl_which_survives_samples_near_zero(monkeypatch):
    # A symmetric-power sample 1e-37 from 0 is common (beta = 10: eps/(1 - q) < 2.5e-4); there
    # d log p / d zeta ~ 1/zeta, which Trace_ELBO scales by num_data / batch for prior and guide
    # separately: inf - inf = NaN. The default objective takes the KL in closed form instead.
    import pyrovae.distributions.smoothed_bernoulli as smoothed

    experiment, train, _, model, guide, _ = tiny_run("symmetric-power", beta=10.0)
    assert experiment.run.objective == "meanfield"
    with torch.no_grad():
        guide.encoder.head.logits.weight.zero_()
        guide.encoder.head.logits.bias.zero_()  # q = 1/2 for every unit

    def uniform_with_one_value_near_zero(shape, like):
        eps = torch.full(shape, 0.75, dtype=like.dtype)
        eps[0, 0] = 1.1e-4  # zeta = 0.5 * (2.2e-4)**10 = 1.3e-37, a normal float32
        return eps

    monkeypatch.setattr(smoothed, "open_uniform", uniform_with_one_value_near_zero)
    x, _ = next(train.batches(16, shuffle=False))

    def gradients_are_finite(objective):
        model.zero_grad()
        guide.zero_grad()
        objective.differentiable_loss(model, guide, x, num_data=60000).backward()
        return all(torch.isfinite(p.grad).all() for p in [*model.parameters(), *guide.parameters()] if p.grad is not None)

    assert not gradients_are_finite(pyro.infer.Trace_ELBO(max_plate_nesting=1))
    assert gradients_are_finite(pyro.infer.TraceMeanField_ELBO(max_plate_nesting=1))


# Against dead units ------------------------------------------------------------------------------


def test_centred_logits_are_standardised_over_the_batch():
    torch.manual_seed(0)
    model = BernoulliVAE(6, 3, "step-logistic", (5,))
    x = torch.bernoulli(torch.full((64, 6), 0.5))
    centred = BernoulliLatentGuide(model, (5,), centred_logits=True)
    with torch.no_grad():
        centred.encoder.head.logits.bias.fill_(40.0)  # every unit on for every image, before centring
        centred.logit_scale.copy_(torch.tensor([1.0, 2.0, 3.0]))
        logits = centred.posterior(x).base_dist.logits
    raw = centred.encoder(x).double()
    expected = (raw - raw.mean(0)) / (raw.var(0, unbiased=False) + 1e-5).sqrt() * centred.logit_scale.double()
    torch.testing.assert_close(logits.double(), expected, atol=1e-3, rtol=0)  # float32 around 40
    assert torch.allclose(logits.std(0, unbiased=False), torch.tensor([1.0, 2.0, 3.0]), rtol=1e-3)
    centred.eval()  # the running statistics: logits no longer depend on the rest of the batch
    with torch.no_grad():
        assert torch.equal(centred.posterior(x[:1]).base_dist.logits, centred.posterior(x).base_dist.logits[:1])


def test_centred_logits_are_refused_where_there_are_no_logits():
    message = "centred_logits applies to logits; relaxation 'gaussian-sigmoid' has a \\(loc, scale\\) encoder"
    with pytest.raises(ValueError, match=message):
        BernoulliLatentGuide(BernoulliVAE(6, 3, "gaussian-sigmoid", (5,)), (5,), centred_logits=True)


def test_centred_logits_stay_centred_through_training():
    """A batch normalisation without shift: training rescales a unit's logits but cannot move their
    batch mean off zero (a learnt shift would let a unit take one value for every image again)."""
    torch.manual_seed(0)
    model = BernoulliVAE(6, 3, "step-logistic", (5,))
    guide = BernoulliLatentGuide(model, (5,), centred_logits=True)
    x = torch.bernoulli(torch.full((32, 6), 0.5))
    svi = SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO(max_plate_nesting=1))
    for _ in range(5):
        svi.step(x)
    logits = guide.encoder_output(x)
    assert not torch.allclose(guide.logit_scale, torch.ones(3))  # it trained
    assert torch.allclose(logits.mean(0), torch.zeros(3), atol=1e-5)


def test_only_reinforce_carries_a_baseline_network_with_the_activation_asked_for():
    guide = tiny_run("reinforce", activation="tanh")[4]
    assert {type(m) for m in guide.baseline.modules()} & set(ACTIVATIONS.values()) == {torch.nn.Tanh}
    other = tiny_run("logistic")[4]
    assert set(other.parameters()) == set(other.encoder.parameters())


def test_linear_networks_as_the_arm_linear_preset_builds_them():
    """Yin & Zhou (2019)'s linear model: no hidden layer in the decoder or the encoder."""
    assert BernoulliVAE(6, 1).z_dim == 1
    model = BernoulliVAE(6, 3, "disarm", [])
    guide = BernoulliLatentGuide(model, [])
    assert _linear_widths(model.decoder) == [6] and _linear_widths(guide.encoder) == [3]
    assert guide.posterior(torch.zeros(2, 6)).batch_shape == (2,)
