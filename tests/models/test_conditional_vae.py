"""The conditional VAE (Yang 2022, §5.4): labels checked where they enter, a prior that depends on
the label and is used, class-conditional samples, and a bound that beats the best model that has
only the label.

The training test uses the ``digits`` preset (continuous Bernoulli on dequantized 8x8 digits) for
30 epochs. Its reference is the **label-only baseline**: independent continuous-Bernoulli pixels
per class, fitted by maximum likelihood, whose exact test log-likelihood is 74.2 nats. Any decoder
that ignores ``z`` is at best this, so a test ELBO (a lower bound) above it shows the latents in
use. Measured on 3 seeds: 75.9 to 76.2 nats; the test asks for 1 nat above the baseline.
"""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from matplotlib.figure import Figure

from pyrovae import plots
from pyrovae.data import Dataset
from pyrovae.evaluate import mean_elbo
from pyrovae.experiment import Experiment, build
from pyrovae.guides import ConditionalGuide
from pyrovae.guides.conditional import build_conditional_guide
from pyrovae.models import ConditionalVAE
from pyrovae.models.conditional_vae import ConditionalVAEConfig, build_conditional_vae, class_conditional_grid
from pyrovae.nn import LocScaleHead
from pyrovae.nn.likelihoods import BernoulliLikelihood, ContinuousBernoulliLikelihood
from pyrovae.train import fit

X_DIM, CLASSES, Z_DIM = 12, 4, 3
MARGIN_OVER_BASELINE = 1.0


def with_labels(data: Dataset, y: torch.Tensor) -> Dataset:
    return Dataset.from_tensor(data.x, y, name=data.name, split=data.split, image_shape=data.image_shape,
                               num_classes=data.num_classes)


def continuous_bernoulli_logits_with_mean(mean: torch.Tensor, steps: int = 80) -> torch.Tensor:
    """The logits whose continuous Bernoulli has mean ``mean`` (the maximum-likelihood estimate for
    data with that mean: the distribution is an exponential family in ``x``), by bisection."""
    low, high = torch.full_like(mean, -50.0), torch.full_like(mean, 50.0)
    for _ in range(steps):
        middle = (low + high) / 2
        below = dist.ContinuousBernoulli(logits=middle).mean < mean
        low, high = torch.where(below, middle, low), torch.where(below, high, middle)
    return (low + high) / 2


def label_only_log_likelihood(train: Dataset, test: Dataset) -> float:
    """Exact test log-likelihood per example of independent continuous-Bernoulli pixels per class."""
    total = 0.0
    for label in range(train.num_classes):
        mean = train.x[train.y == label].double().mean(0).clamp(1e-3, 1 - 1e-3)
        logits = continuous_bernoulli_logits_with_mean(mean)
        total += dist.ContinuousBernoulli(logits=logits).log_prob(test.x[test.y == label].double()).sum().item()
    return total / len(test)


@pytest.fixture(scope="module")
def trained():
    """The ``digits`` preset after 30 epochs, with its data, the label-only baseline and its ELBO before training."""
    pyro.clear_param_store()
    experiment = Experiment.resolve({"model": "cvae", "preset": "digits", "epochs": 30})
    train, test, model, guide, objective = build(experiment)
    before = mean_elbo(model, guide, test)
    run = experiment.run
    history = fit(model, guide, objective, train, test, epochs=run.epochs, batch_size=run.batch_size, lr=run.lr,
                  seed=run.seed, engine="module")
    # The baseline is fitted to the dequantized training set, as the model is.
    baseline = label_only_log_likelihood(train.realize(seed=run.seed), test)
    return train, test, model, guide, history, baseline, before


def test_labels_out_of_range_or_missing_are_rejected_where_they_enter():
    model, guide = ConditionalVAE(X_DIM, CLASSES, Z_DIM, (8,)), ConditionalGuide(X_DIM, CLASSES, Z_DIM, (8,))
    x = torch.rand(5, X_DIM)
    for module in (model, guide):
        with pytest.raises(ValueError, match=r"labels in 0\.\.3, got values in \[0, 4\]"):
            module(x, torch.tensor([0, 1, 2, 3, 4]))
        with pytest.raises(ValueError, match=r"labels in 0\.\.3, got values in \[-1, 2\]"):
            module(x, torch.tensor([-1, 0, 1, 2, 2]))
        with pytest.raises(TypeError, match="integer tensor of class labels"):
            module(x, torch.zeros(5))
        with pytest.raises(ValueError, match="needs labels"):
            module(x, None)
        with pytest.raises(ValueError, match=r"shape \(5,\)"):
            module(x, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"labels must hold labels in 0\.\.3"):
        model.sample_images(2, labels=torch.tensor([1, 4]))
    with pytest.raises(ValueError, match="needs labels"):
        build_conditional_vae(Experiment.resolve({"model": "cvae", "preset": "tiny"}).model,
                              Dataset.from_tensor(torch.rand(10, X_DIM)))


def linear_sizes(module):
    return [(layer.in_features, layer.out_features) for layer in module.modules() if isinstance(layer, torch.nn.Linear)]


def test_the_defaults_are_yangs_networks_and_bad_sizes_are_refused_in_one_line():
    """Yang 2022, §5.4.4: z = 20, 500-500 ReLU layers, a continuous-Bernoulli decoder (the ``yang`` preset)."""
    yang = Experiment.resolve({"model": "cvae", "preset": "yang"}).model
    assert (yang.z_dim, yang.hidden_sizes, yang.likelihood, yang.activation) == (20, [500, 500], "continuous_bernoulli", "relu")
    model, guide = ConditionalVAE(X_DIM, CLASSES), ConditionalGuide(X_DIM, CLASSES)
    assert model.z_dim == guide.z_dim == 20 and type(model.likelihood) is ContinuousBernoulliLikelihood
    assert linear_sizes(model.decoder) == [(CLASSES + 20, 500), (500, 500), (500, X_DIM)]
    assert linear_sizes(model.prior_head) == [(CLASSES, 20)] * 2
    assert linear_sizes(guide.encoder) == [(X_DIM + CLASSES, 500), (500, 500), (500, 20), (500, 20)]
    for module in (model.decoder, guide.encoder):
        assert {type(m) for m in module.modules()} & {torch.nn.Tanh, torch.nn.ELU, torch.nn.ReLU} == {torch.nn.ReLU}

    ConditionalVAE(X_DIM, 2, z_dim=1), ConditionalGuide(X_DIM, 2, z_dim=1)  # the smallest allowed
    for make in (lambda: ConditionalVAE(X_DIM, CLASSES, z_dim=0), lambda: ConditionalGuide(X_DIM, CLASSES, z_dim=0)):
        with pytest.raises(ValueError, match=r"^z_dim must be at least 1, got 0$"):
            make()
    with pytest.raises(ValueError, match=r"^a conditional VAE needs at least 2 classes, got num_classes=1$"):
        ConditionalVAE(X_DIM, 1)
    with pytest.raises(ValueError, match=r"^likelihood must be one of \('continuous_bernoulli', 'bernoulli'\), "
                       r"got 'gaussian'$"):
        ConditionalVAE(X_DIM, CLASSES, likelihood="gaussian")


def test_given_networks_are_used_and_the_likelihood_sets_the_input_support():
    prior, decoder = LocScaleHead(CLASSES, Z_DIM), torch.nn.Linear(CLASSES + Z_DIM, X_DIM)
    model = ConditionalVAE(X_DIM, CLASSES, Z_DIM, prior=prior, decoder=decoder)
    assert model.prior_head is prior and model.decoder is decoder
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        model(torch.full((2, X_DIM), 1.5), y)  # continuous Bernoulli: intensities
    with pytest.raises(ValueError, match=r"x must be binary"):
        ConditionalVAE(X_DIM, CLASSES, Z_DIM, likelihood="bernoulli")(torch.full((2, X_DIM), 0.5), y)


def test_the_builder_needs_labels_of_two_classes_or_more():
    config = ConditionalVAEConfig(z_dim=2, hidden_sizes=[4])
    x = torch.rand(4, X_DIM)
    assert build_conditional_vae(config, Dataset.from_tensor(x, torch.tensor([0, 1, 1, 0]), num_classes=2)).num_classes == 2
    for data in (Dataset.from_tensor(x), Dataset.from_tensor(x, torch.zeros(4, dtype=torch.int64), num_classes=1)):
        with pytest.raises(ValueError, match=r"^the conditional VAE models p\(x \| y\) and needs labels; data set "
                           r"'tensor' has none$"):
            build_conditional_vae(config, data)


def test_the_config_reaches_model_and_guide():
    config = ConditionalVAEConfig(z_dim=3, hidden_sizes=[5, 6], activation="tanh", likelihood="bernoulli")
    data = Dataset.from_tensor(torch.rand(10, X_DIM), torch.arange(10) % CLASSES, num_classes=CLASSES)
    model = build_conditional_vae(config, data)
    guide = build_conditional_guide(config, data, model)
    assert (model.x_dim, model.num_classes, model.z_dim, guide.z_dim) == (X_DIM, CLASSES, 3, 3)
    assert type(model.likelihood) is BernoulliLikelihood
    assert linear_sizes(model.decoder) == [(CLASSES + 3, 5), (5, 6), (6, X_DIM)]
    assert linear_sizes(guide.encoder) == [(X_DIM + CLASSES, 5), (5, 6), (6, 3), (6, 3)]
    for module in (model.decoder, guide.encoder):
        assert {type(m) for m in module.modules()} & {torch.nn.Tanh, torch.nn.ReLU} == {torch.nn.Tanh}


def test_a_guide_without_hidden_layers_is_linear_in_the_example_then_its_one_hot_label():
    guide = ConditionalGuide(X_DIM, CLASSES, Z_DIM, hidden_sizes=())
    x, y = torch.rand(5, X_DIM), torch.tensor([0, 3, 1, 2, 3])
    posterior = guide.posterior(x, y)
    head = guide.encoder.head
    features = torch.cat([x, torch.eye(CLASSES)[y]], dim=-1)
    torch.testing.assert_close(posterior.mean, features @ head.loc.weight.T + head.loc.bias)
    torch.testing.assert_close(posterior.base_dist.scale, torch.nn.functional.softplus(
        features @ head.raw_scale.weight.T + head.raw_scale.bias) + head.min_scale)


def test_the_class_grid_shows_each_class_samples_in_its_own_row():
    """Row c of the grid holds the ``per_class`` samples drawn for class c, in the order drawn."""
    pyro.set_rng_seed(0)
    model = ConditionalVAE(X_DIM, CLASSES, Z_DIM, (8,))
    figure = class_conditional_grid(model, (3, 4), per_class=2, generator=torch.Generator().manual_seed(1), title="t")
    expected = model.sample_images(8, torch.Generator().manual_seed(1), labels=torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    axes = figure.axes[0]
    grid = np.asarray(axes.get_images()[0].get_array())
    assert grid.shape == (1 + CLASSES * (3 + 1), 1 + 2 * (4 + 1))  # one pixel of padding for small images
    for k, image in enumerate(expected.reshape(8, 3, 4)):
        row, column = divmod(k, 2)
        top, left = 1 + row * 4, 1 + column * 5
        np.testing.assert_allclose(grid[top:top + 3, left:left + 4], image.numpy(), rtol=1e-6)
    assert [tick.get_text() for tick in axes.get_yticklabels()] == ["0", "1", "2", "3"]
    assert (axes.get_title(), axes.get_ylabel()) == ("t", "class")
    assert plots.PAD_VALUE == grid[0, 0]
    one = np.asarray(class_conditional_grid(model, (3, 4), per_class=1).axes[0].get_images()[0].get_array())
    default = np.asarray(class_conditional_grid(model, (3, 4)).axes[0].get_images()[0].get_array())
    assert one.shape[1] == 1 + 1 * (4 + 1) and default.shape[1] == 1 + 15 * (4 + 1)  # 15 per class by default
    with pytest.raises(ValueError, match=r"^per_class must be at least 1, got 0$"):
        class_conditional_grid(model, (3, 4), per_class=0)


def test_prior_is_a_linear_function_of_the_one_hot_label():
    model = ConditionalVAE(X_DIM, CLASSES, Z_DIM, (8,))
    y = torch.tensor([0, 1, 2, 3])
    trace = pyro.poutine.trace(model).get_trace(torch.rand(4, X_DIM), y)
    prior = trace.nodes["z"]["fn"].base_dist
    head = model.prior_head
    assert torch.allclose(prior.loc, head.loc.weight.T + head.loc.bias)
    assert torch.allclose(prior.scale, torch.nn.functional.softplus(head.raw_scale.weight.T + head.raw_scale.bias)
                          + head.min_scale)


@pytest.mark.parametrize("particles", [1, 3])
def test_vectorized_particles_broadcast_the_labels(particles):
    """Each of S particles z_s = mu(x, y) + sigma(x, y) eps_s, eps one (S, B, L) draw, is scored
    against its own example's label: -loss = sum_b mean_s [log p(x|y,z) + log p(z|y) - log q(z|x,y)]."""
    model, guide = ConditionalVAE(X_DIM, CLASSES, Z_DIM, (8,)), ConditionalGuide(X_DIM, CLASSES, Z_DIM, (8,))
    x, y = torch.bernoulli(torch.full((5, X_DIM), 0.5)), torch.tensor([0, 1, 2, 3, 0])
    elbo = pyro.infer.Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(2)
    loss = elbo.loss(model, guide, x, y)
    pyro.set_rng_seed(2)
    eps = torch.randn(particles, 5, Z_DIM)
    with torch.no_grad():
        posterior = guide.posterior(x, y)
        z = posterior.mean + posterior.stddev * eps
        label = torch.nn.functional.one_hot(y, CLASSES).float()
        output = model.decoder(torch.cat([label.expand(particles, -1, -1), z], dim=-1))
        log_weights = (model.likelihood.distribution(output).log_prob(x) + model.prior(label).log_prob(z)
                       - posterior.log_prob(z))
    assert log_weights.shape == (particles, 5)
    assert loss == pytest.approx(-log_weights.mean(0).sum().item(), rel=1e-5)


def test_training_beats_the_label_only_baseline(trained):
    _, _, _, _, history, baseline, before = trained
    after = history.rows[-1]["test_elbo"]
    assert after > before + 50
    assert after > baseline + MARGIN_OVER_BASELINE, (after, baseline)


def test_the_labels_and_the_learned_prior_are_used(trained):
    _, test, model, guide, history, _, _ = trained
    shifted = with_labels(test, (test.y + 1) % test.num_classes)  # every label wrong
    # Measured drop: 26 nats per example; a model that ignored the labels would lose nothing.
    assert mean_elbo(model, guide, shifted) < history.rows[-1]["test_elbo"] - 5

    # The prior alone: guide samples for the true labels are more probable under p(z | y) than p(z | y').
    with torch.no_grad():
        z = guide.posterior(test.x, test.y).sample()
        own = model.prior(torch.nn.functional.one_hot(test.y, 10).float()).log_prob(z).mean()
        other = model.prior(torch.nn.functional.one_hot((test.y + 1) % 10, 10).float()).log_prob(z).mean()
    assert own > other + 2, (own, other)


def test_class_conditional_samples_and_grid(trained):
    _, test, model, _, _, _, _ = trained
    generator = torch.Generator().manual_seed(0)
    images = model.sample_images(100, generator)
    assert images.shape == (100, 64) and ((images >= 0) & (images <= 1)).all()
    chosen = model.sample_images(6, torch.Generator().manual_seed(0), labels=torch.full((6,), 3))
    class_means = torch.stack([test.x[test.y == label].mean(0) for label in range(10)])
    nearest = torch.cdist(chosen.mean(0, keepdim=True), class_means).argmin().item()
    assert nearest == 3  # samples of class 3 look most like the 3s

    figure = class_conditional_grid(model, test.image_shape, per_class=5, generator=generator)
    assert isinstance(figure, Figure)
    assert [tick.get_text() for tick in figure.axes[0].get_yticklabels()] == [str(c) for c in range(10)]
