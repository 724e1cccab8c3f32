"""The Gaussian-mixture VAE (Yang 2022, §5.5): its enumerated bound is the tutorial's marginalised
bound, the Gumbel-softmax estimators train the discrete model, and the clustering evaluation."""

import math

import matplotlib
import pyro
import pytest
import torch
import torch.distributions as td
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

from pyrovae.clustering import (
    ClusterMetrics,
    cluster_entropy,
    cluster_sample_grid,
    cluster_usage,
    clustering_accuracy,
    enumerated_elbo,
    match_clusters,
    samples_per_cluster,
)
from pyrovae.data import Dataset, load_dataset
from pyrovae.experiment import Experiment
from pyrovae.guides import GMVAEGuide
from pyrovae.guides.gmvae import build_gmvae_guide
from pyrovae.models import GMVAE
from pyrovae.models.gmvae import (
    ESTIMATORS,
    GMVAEConfig,
    TemperatureAnnealing,
    annealed_temperature,
    build_gmvae,
    gmvae_callbacks,
)
from pyrovae.nn.initialization import glorot_normal_
from pyrovae.train import fit

C, L, D, B = 4, 3, 12, 5


def small_pair(**options):
    return GMVAE(D, C, L, (8,), **options), GMVAEGuide(D, C, L, (8,), **options)


def binary_batch(n=B):
    return torch.bernoulli(torch.full((n, D), 0.5))


def marginalised_bound(model, guide, x, eps):
    """Yang 2022, §5.5.3 eq. (5) with one draw z_y = mu(x, y) + sigma(x, y) * eps[y] per component, per example:
    sum_y q(y|x) [log p(x|z_y) + log p(z_y|y) - log q(z_y|x,y)] - KL(q(y|x) || Uniform(C)), written with
    torch.distributions and the tutorial's repeat-x layout."""
    eye = torch.eye(C)
    ys = eye.repeat_interleave(x.shape[0], dim=0)  # (C * B, C), y-major like the tutorial
    xs = x.repeat(C, 1)
    loc, scale = guide.encoder.z_params(xs, ys)
    zs = loc + scale * eps.reshape(C * x.shape[0], L)
    prior_loc, prior_scale = model.component_prior(ys)
    inner = (td.Bernoulli(logits=model.decoder(zs)).log_prob(xs).sum(-1)
             + td.Normal(prior_loc, prior_scale).log_prob(zs).sum(-1)
             - td.Normal(loc, scale).log_prob(zs).sum(-1))
    q_y = td.Categorical(logits=guide.encoder.logits(x))
    kl_y = td.kl_divergence(q_y, td.Categorical(logits=torch.zeros(C)))
    return (q_y.probs * inner.reshape(C, -1).T).sum(-1) - kl_y


def test_trace_enum_elbo_is_the_explicit_sum_over_y_of_the_marginalised_bound():
    model, guide = small_pair()
    x = binary_batch()
    pyro.set_rng_seed(3)
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x)
    # The guide draws z once per value of y: one (C, B, L) standard-normal tensor, the same noise here.
    pyro.set_rng_seed(3)
    eps = torch.randn(C, B, L)
    bound = marginalised_bound(model, guide, x, eps)
    assert loss.item() == pytest.approx(-bound.sum().item(), rel=1e-5)

    parameters = list(model.parameters()) + list(guide.parameters())
    enumerated = torch.autograd.grad(loss, parameters)
    explicit = torch.autograd.grad(-bound.sum(), parameters)
    for a, b in zip(enumerated, explicit):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_bound_includes_log_p_y_which_the_tutorial_leaves_out():
    # At a guide certain of y, the y-terms are log p(y) - log q(y|x) = -log C exactly.
    model, guide = small_pair()
    x = binary_batch()
    with torch.no_grad():
        guide.encoder.classifier.head.logits.bias.copy_(torch.tensor([60.0, 0, 0, 0]))
    pyro.set_rng_seed(0)
    enumerated = -TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, x)
    pyro.set_rng_seed(0)
    eps = torch.randn(C, B, L)
    with torch.no_grad():
        y = torch.eye(C)[:1].expand(B, C)
        loc, scale = guide.encoder.z_params(x, y)
        z = loc + scale * eps[0]
        prior_loc, prior_scale = model.component_prior(y)
        without_log_p_y = (td.Bernoulli(logits=model.decoder(z)).log_prob(x).sum(-1)
                           + td.Normal(prior_loc, prior_scale).log_prob(z).sum(-1)
                           - td.Normal(loc, scale).log_prob(z).sum(-1)).sum().item()
    assert enumerated == pytest.approx(without_log_p_y - B * math.log(C), rel=1e-4)


@pytest.mark.parametrize("estimator", ["gumbel-a", "gumbel-b"])
@pytest.mark.parametrize("straight_through", [False, True])
def test_gumbel_estimators_give_finite_gradients_for_every_parameter(estimator, straight_through):
    model, guide = small_pair(estimator=estimator, straight_through=straight_through, temperature=0.7)
    loss = Trace_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, binary_batch())
    loss.backward()
    for name, p in [*model.named_parameters(), *guide.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("straight_through", [False, True])
def test_gumbel_a_scores_the_relaxed_y_with_both_concrete_densities(straight_through):
    """Estimator A's single-sample bound has log p(y~) - log q(y~ | x), both Concrete densities at the
    temperature (Jang et al. 2017), read at the relaxed sample even when the forward value is one-hot."""
    model, guide = small_pair(estimator="gumbel-a", temperature=0.6, straight_through=straight_through)
    x = binary_batch()
    guide_trace = pyro.poutine.trace(guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(model, trace=guide_trace)).get_trace(x)
    site = guide_trace.nodes["y"]
    relaxed = site["value"]._unquantize if straight_through else site["value"]
    assert torch.equal(model_trace.nodes["y"]["value"], site["value"])
    assert straight_through == bool(((site["value"] == 0) | (site["value"] == 1)).all())
    for trace in (guide_trace, model_trace):
        trace.compute_log_prob()
    prior = td.RelaxedOneHotCategorical(torch.tensor(0.6), logits=torch.zeros(C))
    posterior = td.RelaxedOneHotCategorical(torch.tensor(0.6), logits=guide.encoder.logits(x))
    assert torch.allclose(model_trace.nodes["y"]["log_prob"], prior.log_prob(relaxed))
    assert torch.allclose(guide_trace.nodes["y"]["log_prob"], posterior.log_prob(relaxed))
    assert "y_kl" not in guide_trace.nodes


@pytest.mark.parametrize("estimator", ["gumbel-a", "gumbel-b"])
def test_the_relaxed_estimators_gradient_is_the_pathwise_gradient_of_the_traced_bound(estimator):
    """Every term of a relaxed bound is reparameterised (y~, z) or a differentiable function of the
    parameters (gumbel-b's KL factor): Trace_ELBO's gradient is that of log p - log q over the very
    traces it draws, with no score-function term."""
    model, guide = small_pair(estimator=estimator, temperature=0.7)
    x = binary_batch()
    pyro.set_rng_seed(2)
    loss = Trace_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x)
    pyro.set_rng_seed(2)
    guide_trace = pyro.poutine.trace(guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(model, trace=guide_trace)).get_trace(x)
    bound = model_trace.log_prob_sum() - guide_trace.log_prob_sum()
    assert loss.item() == pytest.approx(-bound.item(), rel=1e-5)
    parameters = list(guide.parameters())
    for a, b in zip(torch.autograd.grad(loss, parameters), torch.autograd.grad(-bound, parameters)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_gumbel_b_replaces_the_y_densities_by_the_closed_form_kl():
    model, guide = small_pair(estimator="gumbel-b")
    x = binary_batch()
    guide_trace = pyro.poutine.trace(guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(model, trace=guide_trace)).get_trace(x)
    for trace in (guide_trace, model_trace):
        trace.compute_log_prob()
        assert torch.equal(trace.nodes["y"]["log_prob"], torch.zeros(B))
    q_y = td.Categorical(logits=guide.encoder.logits(x))
    expected = td.kl_divergence(q_y, td.Categorical(logits=torch.zeros(C)))
    assert torch.allclose(guide_trace.nodes["y_kl"]["log_prob"], expected)


@pytest.fixture(scope="module")
def digits():
    train = load_dataset("digits", "train", binarize="dynamic")
    return train, load_dataset("digits", "test", binarize="dynamic").realize(seed=1)


class InputIgnoringGuide:
    """q(y | x) the same for every x: its clusters are one, matched to the largest class."""

    def cluster_probabilities(self, x):
        return torch.full((x.shape[0], 10), 0.1)


DIGITS_PAIR = dict(num_components=10, z_dim=4, hidden_sizes=[64])
DIGITS_RUN = dict(epochs=5, batch_size=64, lr=3e-3)


def digits_pair(**options):
    return glorot_normal_(GMVAE(64, **DIGITS_PAIR, **options)), glorot_normal_(GMVAEGuide(64, **DIGITS_PAIR, **options))


@pytest.fixture(scope="module")
def enumerated_run(digits):
    """The enumerated estimator (TraceEnum_ELBO) trained 5 epochs on digits: (true test ELBO, accuracy)."""
    train, test = digits
    pyro.set_rng_seed(0)
    model, guide = digits_pair()
    fit(model, guide, TraceEnum_ELBO(), train, test, **DIGITS_RUN)
    return enumerated_elbo(model, guide, test), clustering_accuracy(model, guide, test)


def test_a_short_run_on_digits_clusters_far_better_than_a_guide_that_ignores_its_input(digits, enumerated_run):
    """q(y | x) must read each example: a guide computing it from anything shared by the batch (its
    mean, say) clusters every example alike, as the input-ignoring guide does (accuracy 0.10 on
    this test set). Measured: 0.26-0.28 over init seeds 0-2 (enum_meanfield 0.27-0.28)."""
    _, test = digits
    chance = clustering_accuracy(None, InputIgnoringGuide(), test)
    assert chance == pytest.approx(0.103, abs=0.01)
    accuracy = enumerated_run[1]
    assert accuracy > chance + 0.1, (accuracy, chance)


@pytest.mark.parametrize("estimator, straight_through, anneal", [("gumbel-a", False, True), ("gumbel-b", True, False)])
def test_gumbel_training_improves_the_true_enumerated_elbo(digits, enumerated_run, estimator, straight_through, anneal):
    """The Gumbel estimators optimise the discrete model: its true (enumerated) ELBO rises by about
    20 nats in 5 epochs and ends within 2 nats of the enumerated estimator's at the same budget
    (measured 0.3-1.0 nats behind over seeds 0-2), and its clusters beat an input-ignoring guide's
    (accuracy 0.18-0.26 against 0.10)."""
    train, test = digits
    model, guide = digits_pair(estimator=estimator, straight_through=straight_through)
    before = enumerated_elbo(model, guide, test)
    metrics = ClusterMetrics(model, guide, test, elbo=True)
    schedule = [TemperatureAnnealing(model, guide, rate=0.3)] if anneal else []
    history = fit(model, guide, Trace_ELBO(), train, test, **DIGITS_RUN, callbacks=[*schedule, metrics])
    rows = history.rows
    reference_elbo, _ = enumerated_run
    assert rows[-1]["enumerated_elbo"] > before + 15, (before, [row["enumerated_elbo"] for row in rows])
    assert rows[-1]["enumerated_elbo"] > reference_elbo - 2, (reference_elbo, rows[-1]["enumerated_elbo"])
    assert rows[-1]["enumerated_elbo"] == pytest.approx(enumerated_elbo(model, guide, test), abs=0.5)  # one z draw
    chance = clustering_accuracy(None, InputIgnoringGuide(), test)
    assert rows[-1]["cluster_accuracy"] > chance + 0.05, [row["cluster_accuracy"] for row in rows]
    assert rows[-1]["cluster_accuracy"] == clustering_accuracy(model, guide, test)
    assert 0 <= rows[-1]["cluster_entropy"] <= math.log(10) + 1e-6
    assert 1 <= rows[-1]["clusters_used"] <= 10 and 1 - 1e-6 <= rows[-1]["cluster_perplexity"] <= 10 + 1e-6
    if anneal:
        assert [row["temperature"] for row in rows] == pytest.approx([math.exp(-0.3 * e) for e in (1, 2)] + [0.5] * 3)
        assert float(model.temperature) == float(guide.temperature) == 0.5


def test_annealed_temperature_follows_jang_et_al():
    assert annealed_temperature(0, 1e-4) == 1.0
    assert annealed_temperature(10**6, 0.0) == 1.0  # rate 0: a fixed temperature
    assert annealed_temperature(1000, 1e-4) == pytest.approx(math.exp(-0.1))
    assert annealed_temperature(10**6, 1e-4) == 0.5
    with pytest.raises(ValueError, match="rate"):
        TemperatureAnnealing(*small_pair(estimator="gumbel-a"), rate=-1.0)


def test_temperature_annealing_counts_training_steps_and_stops_at_its_minimum():
    model, guide = small_pair(estimator="gumbel-b")
    annealing = TemperatureAnnealing(model, guide, rate=1e-3, minimum=0.7, steps_per_epoch=100)
    for epoch, expected in ((1, math.exp(-0.1)), (3, math.exp(-0.3)), (4, 0.7)):  # exp(-0.4) = 0.67 < 0.7
        row = {}
        annealing.on_epoch_end(epoch, row, None)
        assert row["temperature"] == pytest.approx(expected)
        assert float(model.temperature) == float(guide.temperature) == pytest.approx(expected)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_cluster_metrics_need_a_labelled_test_set_and_add_the_enumerated_elbo_for_a_relaxation(estimator):
    model, guide = small_pair(estimator=estimator)
    config = GMVAEConfig(num_components=C, z_dim=L, hidden_sizes=[8], estimator=estimator)
    labelled = Dataset.from_tensor(binary_batch(12), torch.arange(12) % C)
    assert gmvae_callbacks(config, model, guide, None) == []
    assert gmvae_callbacks(config, model, guide, Dataset.from_tensor(labelled.x)) == []
    [metrics] = gmvae_callbacks(config, model, guide, labelled)
    row = {}
    metrics.on_epoch_end(0, row, None)
    assert row["cluster_accuracy"] == clustering_accuracy(model, guide, labelled)
    assert ("enumerated_elbo" in row) == (estimator != "enumerate")
    if estimator != "enumerate":
        pyro.set_rng_seed(4)
        expected = enumerated_elbo(model, guide, labelled)
        pyro.set_rng_seed(4)
        metrics.on_epoch_end(0, row, None)
        assert row["enumerated_elbo"] == pytest.approx(expected)


def test_defaults_are_the_config_defaults_and_every_setting_reaches_model_and_guide():
    """A GMVAE built with no options is the tutorial's network, as GMVAEConfig's defaults; a config's
    settings (the estimator's, the activation, the initialisation) all reach the modules it builds."""
    default, config = GMVAE(D), GMVAEConfig()
    default_guide = GMVAEGuide(D)
    for module, network, out in ((default, default.decoder, D), (default_guide, default_guide.encoder.classifier, config.num_components)):
        assert (module.num_components, module.z_dim, module.estimator, float(module.temperature),
                module.straight_through) == (config.num_components, config.z_dim, config.estimator,
                                             config.temperature, config.straight_through)
        assert [m.out_features for m in network.modules() if isinstance(m, torch.nn.Linear)] == [*config.hidden_sizes, out]
        assert torch.nn.ReLU in {type(m) for m in module.modules()}

    shape_only = Dataset.from_tensor(torch.zeros(1, D))
    config = GMVAEConfig(num_components=C, z_dim=L, hidden_sizes=[8], activation="tanh", estimator="gumbel-b",
                         temperature=0.3, straight_through=True, glorot_init=False)
    pyro.set_rng_seed(0)
    model = build_gmvae(config, shape_only)
    guide = build_gmvae_guide(config, shape_only, model)
    for module in (model, guide):
        assert (module.num_components, module.z_dim, module.estimator, module.straight_through) == (C, L, "gumbel-b", True)
        assert float(module.temperature) == pytest.approx(0.3)
        kinds = {type(m) for m in module.modules()}
        assert torch.nn.Tanh in kinds and torch.nn.ReLU not in kinds
        # PyTorch's default initialisation, not Glorot's zero biases.
        assert all(m.bias.abs().sum() > 0 for m in module.modules() if isinstance(m, torch.nn.Linear))
    glorot = build_gmvae_guide(GMVAEConfig(num_components=C, z_dim=L, hidden_sizes=[8]), shape_only, model)
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in glorot.modules() if isinstance(m, torch.nn.Linear))


def test_a_decoder_or_encoder_given_is_the_one_used():
    decoder = torch.nn.Linear(L, D)
    model = GMVAE(D, C, L, decoder=decoder)
    assert model.decoder is decoder
    encoder = GMVAEGuide(D, C, L, (8,)).encoder
    guide = GMVAEGuide(D, C, L, (16,), encoder=encoder)
    assert guide.encoder is encoder
    x = binary_batch()
    assert torch.equal(guide.cluster_probabilities(x), encoder.cluster_probabilities(x))
    y_star, z_star = encoder.most_probable_code(x)
    assert torch.equal(guide.encode(x), z_star)
    assert torch.equal(y_star.argmax(-1), guide.cluster_probabilities(x).argmax(-1))


def test_with_estimator_shares_parameters_and_generation_uses_discrete_y():
    model, guide = small_pair(estimator="gumbel-a")
    view = model.with_estimator("enumerate")
    assert view.estimator == "enumerate" and model.estimator == "gumbel-a"
    assert all(a is b for a, b in zip(view.parameters(), model.parameters()))
    first = model.sample_images(6, torch.Generator().manual_seed(2))
    assert first.shape == (6, D) and torch.equal(first, view.sample_images(6, torch.Generator().manual_seed(2)))
    with pytest.raises(ValueError, match="estimator must be one of"):
        model.with_estimator("reinforce")


def test_match_clusters_finds_a_known_permutation():
    labels = torch.arange(10).repeat(7)
    permutation = torch.randperm(10)
    accuracy, matching = match_clusters(permutation[labels], labels)
    assert accuracy == 1.0 and matching == {int(permutation[k]): k for k in range(10)}
    # Cluster 1 holds class 0, cluster 0 one example of class 1, cluster 2 the rest: 5 of 6 match.
    accuracy, matching = match_clusters([1, 1, 0, 2, 2, 2], [0, 0, 1, 1, 2, 2])
    assert accuracy == pytest.approx(5 / 6) and matching == {0: 1, 1: 0, 2: 2}
    # More clusters than classes: the surplus cluster's examples count as errors.
    assert match_clusters([0, 1, 2, 2], [0, 1, 1, 1])[0] == pytest.approx(3 / 4)


class LabelReadingGuide:
    """q(y | x) certain of the cluster ``permutation[label]``, the label being stored in x[:, 0]."""

    def __init__(self, permutation):
        self.permutation = permutation

    def cluster_probabilities(self, x):
        return torch.nn.functional.one_hot(self.permutation[x[:, 0].long()], len(self.permutation)).float()


def test_clustering_accuracy_and_entropy_of_a_known_assignment():
    labels = torch.arange(10).repeat(5)
    data = Dataset.from_tensor(torch.cat([labels[:, None].float(), torch.zeros(50, 3)], 1), labels)
    model = GMVAE(4, 10, 2, (4,))
    guide = LabelReadingGuide(torch.randperm(10))
    assert clustering_accuracy(model, guide, data, batch_size=7) == 1.0
    assert cluster_entropy(model, guide, data) == pytest.approx(0.0, abs=1e-6)
    uniform = GMVAEGuide(4, 10, 2, (4,))
    with torch.no_grad():
        uniform.encoder.classifier.head.logits.weight.zero_()
        uniform.encoder.classifier.head.logits.bias.zero_()
    assert cluster_entropy(model, uniform, data) == pytest.approx(math.log(10))


def test_bad_input_is_rejected_and_labels_are_not_needed():
    model, guide = small_pair()
    with pytest.raises(ValueError, match="binary"):
        model(torch.full((B, D), 0.5))
    with pytest.raises(ValueError, match="shape"):
        guide(torch.zeros(B, D + 1))
    unlabelled = Dataset.from_tensor(torch.bernoulli(torch.full((40, D), 0.3)))
    history = fit(model, guide, TraceEnum_ELBO(), unlabelled, unlabelled, epochs=1, batch_size=20)
    assert math.isfinite(history.rows[0]["test_elbo"])
    with pytest.raises(ValueError, match="labels"):
        clustering_accuracy(model, guide, unlabelled)
    with pytest.raises(ValueError, match="estimator must be one of enumerate, gumbel-a, gumbel-b; got 'gumbel'"):
        GMVAE(D, estimator="gumbel")
    with pytest.raises(ValueError, match="temperature"):
        GMVAEGuide(D, temperature=0.0)


def test_fifteen_samples_per_cluster():
    model = GMVAE(64, 10, 2, (8,))
    images, clusters = samples_per_cluster(model, per_cluster=15, generator=torch.Generator().manual_seed(0))
    assert images.shape == (150, 64) and torch.equal(clusters, torch.arange(10).repeat_interleave(15))
    figure = cluster_sample_grid(model, (8, 8), per_cluster=15, generator=torch.Generator().manual_seed(0))
    assert isinstance(figure, matplotlib.figure.Figure)


def test_yang_preset_is_the_tutorial_network():
    experiment = Experiment.resolve({"model": "gmvae", "preset": "yang"})
    run, config = experiment.run, experiment.model
    assert (run.dataset, run.binarize, run.objective, run.batch_size, run.lr) == ("mnist", "threshold", "enum_meanfield", 100, 1e-3)
    assert (config.num_components, config.z_dim, config.hidden_sizes, config.glorot_init) == (10, 64, [512, 512], True)
    shape_only = Dataset.from_tensor(torch.zeros(1, 784))
    model = build_gmvae(config, shape_only)
    first = model.decoder[0]
    assert (first.in_features, first.out_features) == (64, 512) and torch.equal(first.bias, torch.zeros(512))
    assert first.weight.std().item() == pytest.approx(math.sqrt(2 / (64 + 512)), rel=0.05)


def test_importance_log_likelihood_samples_the_enumerated_y_silently_and_bounds_the_elbo():
    """The guide marks y for enumeration; the importance-sampled log p(x) samples it from q(y|x)
    without Pyro's "configured for enumeration" warning, and lies above the exactly enumerated ELBO."""
    import warnings

    from pyrovae.evaluate import importance_log_likelihood

    pyro.set_rng_seed(0)
    model, guide = small_pair()
    data = binary_batch(20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log_px = importance_log_likelihood(model, guide, data, num_samples=400, engine="eager")
    assert not [w for w in caught if "TraceEnum_ELBO" in str(w.message)]
    assert log_px >= enumerated_elbo(model, guide, data) - 0.05


def test_cluster_usage_tells_a_collapsed_mixture_from_a_spread_one():
    one_hot = torch.nn.functional.one_hot
    collapsed = one_hot(torch.full((40,), 3), 5).float()
    assert cluster_usage(collapsed) == (1, pytest.approx(1.0))
    spread = one_hot(torch.arange(5).repeat(8), 5).float()
    assert cluster_usage(spread) == (5, pytest.approx(5.0))
    two = one_hot(torch.tensor([0] * 30 + [4] * 10), 5).float()
    used, perplexity = cluster_usage(two)
    assert used == 2 and perplexity == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    # Each example unsure between all five: argmax picks one component, the average assignment is even.
    assert cluster_usage(torch.full((40, 5), 0.2)) == (1, pytest.approx(5.0))


@pytest.mark.parametrize("probs", [torch.full((5,), 0.2), torch.zeros(0, 5), torch.tensor([[0.5, float("nan")]]),
                                   torch.tensor([[1.5, -0.5]])])
def test_cluster_usage_rejects_what_is_not_a_table_of_probabilities(probs):
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        cluster_usage(probs)
