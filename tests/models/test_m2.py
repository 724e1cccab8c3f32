"""The semi-supervised VAE M2 (Kingma et al. 2014): in one batch, the enumerated loss is the explicit
sum over y on unlabelled rows and the labelled bound on labelled ones; the partial labels; a short
run on digits beats a classifier trained on its labels alone; bad input is one line."""

import dataclasses
import math

import pyro
import pytest
import torch
import torch.distributions as td
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from torch.nn import functional as F

from pyrovae.classification import ClassificationMetrics, classification_accuracy, model_accuracy
from pyrovae.data import UNLABELLED, load_dataset, with_labels
from pyrovae.experiment import Experiment
from pyrovae.guides import M2Guide
from pyrovae.models import M2
from pyrovae.models.m2 import analogies, style_grid
from pyrovae.nn.mixture import MixtureEncoder
from pyrovae.train import fit
from tests.cli.invocation import QUICK, refusal

C, L, D, B = 3, 2, 12, 6
WEIGHT = 0.7
LABELS = torch.tensor([-1, 2, -1, 0, -1, 1])


def small_pair(**options):
    return M2(D, C, L, (8,), **options), M2Guide(D, C, L, (8,), classification_weight=WEIGHT, **options)


def binary_batch(n=B):
    return torch.bernoulli(torch.full((n, D), 0.5))


def explicit_bound(model, guide, x, y, eps):
    """The bound written out with torch.distributions, z_k = mu(x, e_k) + sigma(x, e_k) * eps[k] for the
    k-th value of the enumerated y: on an unlabelled row sum_k q(k|x) [inner_k + log p(k) - log q(k|x)];
    on a labelled row log p(y) + the mean over k of inner_k at the observed y (the guide draws z once per
    enumerated value, weighted by the fixed p(y) = 1/C); plus w * log q(y|x) on labelled rows."""
    labelled = y >= 0
    log_q = torch.log_softmax(guide.encoder.logits(x), -1)
    log_prior = torch.full((C,), -torch.log(torch.tensor(float(C))).item())
    total = torch.zeros(x.shape[0])
    for k in range(C):
        label = torch.where(labelled, y, torch.full_like(y, k))
        code = F.one_hot(label, C).float()
        loc, scale = guide.encoder.z_params(x, code)
        z = loc + scale * eps[k]
        inner = (td.Bernoulli(logits=model.decoder(z, code)).log_prob(x).sum(-1)
                 + td.Normal(0.0, 1.0).log_prob(z).sum(-1) - td.Normal(loc, scale).log_prob(z).sum(-1))
        unlabelled_term = log_q[:, k].exp() * (inner + log_prior[k] - log_q[:, k])
        total = total + torch.where(labelled, inner / C, unlabelled_term)
    observed = log_q.gather(-1, y.clamp(min=0)[:, None]).squeeze(-1)
    return (total + labelled * (log_prior[0] + WEIGHT * observed)).sum()


def test_enumerated_loss_is_the_explicit_sum_on_unlabelled_rows_and_the_labelled_bound_on_labelled_rows():
    model, guide = small_pair()
    x = binary_batch()
    pyro.set_rng_seed(3)
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x, LABELS)
    # The guide draws z once per value of y: one (C, B, L) standard-normal tensor, the same noise here.
    pyro.set_rng_seed(3)
    bound = explicit_bound(model, guide, x, LABELS, torch.randn(C, B, L))
    assert loss.item() == pytest.approx(-bound.item(), rel=1e-5)

    parameters = list(model.parameters()) + list(guide.parameters())
    enumerated = torch.autograd.grad(loss, parameters)
    explicit = torch.autograd.grad(-bound, parameters)
    for a, b in zip(enumerated, explicit):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_fully_labelled_batch_is_the_labelled_bound_and_trains_the_classifier_only_through_its_term():
    model, guide = small_pair()
    x, y = binary_batch(), torch.tensor([0, 1, 2, 0, 1, 2])
    pyro.set_rng_seed(5)
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x, y)
    classifier = list(guide.encoder.classifier.parameters())
    gradient = torch.autograd.grad(loss, classifier)
    log_q = torch.log_softmax(guide.encoder.logits(x), -1).gather(-1, y[:, None]).sum()
    expected = torch.autograd.grad(-WEIGHT * log_q, classifier)
    for a, b in zip(gradient, expected):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("estimator", ["gumbel-a", "gumbel-b"])
def test_gumbel_estimators_give_finite_gradients_for_every_parameter(estimator):
    model, guide = small_pair(estimator=estimator, temperature=0.7)
    Trace_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, binary_batch(), LABELS).backward()
    for name, p in [*model.named_parameters(), *guide.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_with_labels_shows_the_same_number_per_class_chosen_by_the_seed():
    digits = load_dataset("digits", "train")
    shown = with_labels(digits, 50, seed=1)
    assert torch.equal(torch.bincount(digits.y[shown.labelled], minlength=10), torch.full((10,), 5))
    assert torch.equal(shown.labelled, with_labels(digits, 50, seed=1).labelled)
    assert not torch.equal(shown.labelled, with_labels(digits, 50, seed=2).labelled)
    # Batches carry the hidden labels as UNLABELLED, and the data set keeps the true ones.
    labels = torch.cat([y for _, y in shown.batches(100, shuffle=False)])
    assert torch.equal(labels, torch.where(shown.labelled, digits.y, UNLABELLED)) and torch.equal(shown.y, digits.y)
    assert torch.equal(shown.subset(30).labelled, shown.labelled[:30])
    assert with_labels(digits, None).labelled is None and with_labels(digits, 0).labelled.sum() == 0


def test_the_labelled_examples_are_spread_over_the_batches_of_a_run_with_the_same_seed():
    digits = with_labels(load_dataset("digits", "train"), 100, seed=0)
    first = next(digits.batches(64, torch.Generator().manual_seed(0)))[1]
    # 100 of 1,437 labelled: about 4.5 in a batch of 64, not most of the first batch.
    assert (first >= 0).sum() <= 15


@pytest.mark.parametrize("count, message", [
    (2000, "2000 labels asked for, but digits/train has only 1437 examples"),
    (105, "105 labels cannot be balanced over 10 classes: give a multiple of 10"),
    (1430, "fewer than the 143 labels per class asked for"),
])
def test_bad_label_counts_are_refused_with_one_line(count, message):
    with pytest.raises(ValueError, match=message) as error:
        with_labels(load_dataset("digits", "train"), count)
    assert "\n" not in str(error.value)


def test_the_cli_refuses_bad_labels_with_one_line(tmp_path, capsys):
    message = refusal(["train", "--model", "m2", "--out", tmp_path / "run", *QUICK, "--labels", "105"], capsys)
    assert "105 labels cannot be balanced over 10 classes" in message
    assert not (tmp_path / "run").exists()


def test_a_label_outside_the_classes_is_refused_where_it_enters():
    model, guide = small_pair()
    for bad in (torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([0, -2, 0, 0, 0, 0])):
        for module in (model, guide):
            with pytest.raises(ValueError, match=r"labels in 0..2 or -1 \(unknown\)"):
                module(binary_batch(), bad)


def test_generation_holds_the_style_along_a_row():
    model, guide = small_pair()
    x = binary_batch(4)
    images = analogies(model, guide, x)
    assert images.shape == (4, C, D)
    z = guide.encode(x)
    assert torch.allclose(images[:, 1], model.generate(z, torch.ones(4, dtype=torch.long)))
    figure = style_grid(model, (3, 4), rows=5, generator=torch.Generator().manual_seed(0))
    assert len(figure.axes) >= 1


def test_the_presets_are_the_papers_network_with_its_references():
    for labels in (100, 600, 1000, 3000):
        experiment = Experiment.resolve({"model": "m2", "preset": f"labels-{labels}"})
        run, config = experiment.run, experiment.model
        assert (run.dataset, run.objective, run.batch_size, config.labels) == ("mnist", "enum", 100, labels)
        assert (config.z_dim, config.hidden_sizes, config.activation, config.alpha) == (50, [500], "softplus", 0.1)
        reference = experiment.entry.references[f"labels-{labels}"]  # Kingma et al. 2014, Table 1
        assert reference["metric"] == "test_error_percent" and 3 < reference["value"] < 13


@pytest.mark.slow
def test_a_short_run_on_digits_beats_a_classifier_trained_on_its_labels_alone():
    """10 labels per class of the 8x8 digits: M2 (y summed out on the other 1,337 training images)
    after 50 epochs against the same classifier network trained on the 100 labelled images alone,
    at the best of its test accuracies over 1,000 steps (a baseline favoured by choosing on the test set).
    Measured: 0.853 against 0.833 (the baseline's best over seeds 0-2 is also 0.833)."""
    pyro.set_rng_seed(0)
    train = with_labels(load_dataset("digits", "train", binarize="dynamic"), 100, seed=0)
    test = with_labels(load_dataset("digits", "test", binarize="dynamic").realize(seed=1), 0)
    model, guide = M2(64, 10, 4, [64]), M2Guide(64, 10, 4, [64], classification_weight=1.0 * len(train) / 100)
    history = fit(model, guide, TraceEnum_ELBO(), train, test, epochs=50, batch_size=64, lr=3e-3,
                  callbacks=[ClassificationMetrics(guide, test)])
    semi_supervised = history.rows[-1]["test_accuracy"]
    assert semi_supervised == pytest.approx(classification_accuracy(guide, test))
    assert 0.5 < model_accuracy(model, guide, test) <= 1.0  # infer_discrete on the trained model

    pyro.set_rng_seed(0)
    alone = MixtureEncoder(64, 10, 4, [64])
    optimizer = torch.optim.Adam(alone.classifier.parameters(), lr=3e-3)
    x, y = train.x[train.labelled], train.y[train.labelled]
    supervised = 0.0
    for step in range(1, 1001):
        loss = F.cross_entropy(alone.logits(torch.bernoulli(x)), y)
        optimizer.zero_grad(), loss.backward(), optimizer.step()
        if step % 100 == 0:
            with torch.no_grad():
                supervised = max(supervised, (alone.logits(test.x).argmax(-1) == test.y).double().mean().item())
    assert semi_supervised > supervised, (semi_supervised, supervised)

def test_a_gumbel_run_logs_its_accuracy_and_the_elbo_with_y_summed_out():
    from pyrovae.clustering import enumerated_elbo
    from pyrovae.experiment import build

    experiment = Experiment.resolve({"model": "m2", "preset": "tiny", "estimator": "gumbel-b"})
    train, test, model, guide, objective = build(experiment)
    assert test.labelled.sum() == 0 and test.y is not None  # the test ELBO sums y out; accuracy reads the labels
    test = test.subset(100)
    callbacks = experiment.entry.training_callbacks(experiment.model, model, guide, test)
    row = fit(model, guide, objective, train.subset(256), test, epochs=1, batch_size=64, callbacks=callbacks).rows[0]
    assert 0 <= row["test_accuracy"] <= 1
    assert row["enumerated_elbo"] == pytest.approx(enumerated_elbo(model, guide, test), abs=1.0)  # one z draw


def test_infer_discrete_finds_the_class_that_explains_each_image_best_at_the_guides_style():
    from pyrovae.classification import model_predictions
    from pyrovae.data import Dataset

    model, guide = small_pair()
    x = binary_batch(20)
    data = Dataset.from_tensor(x, torch.zeros(20, dtype=torch.long), num_classes=C)
    z = guide.encode(x)
    with torch.no_grad():  # p(y) is uniform, so the argmax of p(y) p(x | y, z) is that of p(x | y, z)
        log_px = torch.stack([model.decode(z, F.one_hot(torch.full((20,), k), C).float()).log_prob(x) for k in range(C)], -1)
    # The same answer every time: z is fixed in infer_discrete's enumeration pass too (no draw from p(z)).
    for _ in range(3):
        assert torch.equal(model_predictions(model, guide, data, batch_size=7), log_px.argmax(-1))


def test_the_labels_alone_baseline_learns_from_the_labelled_examples_only():
    """The supervised baseline: trained on 100 labelled digits it classifies the test set far above chance,
    leaves the guide it copies untouched, ignores unlabelled examples (their labels shuffled: the same
    accuracy) and refuses a data set without labels."""
    from pyrovae.classification import labels_alone_accuracy

    train = with_labels(load_dataset("digits", "train", binarize="dynamic"), 100, seed=0)
    test = with_labels(load_dataset("digits", "test", binarize="dynamic").realize(seed=1), 0)
    guide = M2Guide(64, 10, 4, [64])
    before = [p.detach().clone() for p in guide.parameters()]
    accuracy = labels_alone_accuracy(guide, train, test, steps=300, lr=3e-3, batch_size=64)
    assert 0.6 < accuracy <= 1.0, accuracy
    assert all(torch.equal(a, b) for a, b in zip(before, guide.parameters())), "the guide itself is not trained"
    untrained = classification_accuracy(guide, test)
    assert accuracy > untrained + 0.3

    hidden = ~train.labelled
    shuffled = train.y.clone()
    shuffled[hidden] = shuffled[hidden][torch.randperm(int(hidden.sum()))]
    other = dataclasses.replace(train, y=shuffled)
    assert labels_alone_accuracy(guide, other, test, steps=300, lr=3e-3, batch_size=64) == accuracy
    with pytest.raises(ValueError, match="needs labelled training examples"):
        labels_alone_accuracy(guide, with_labels(train, 0), test, steps=1, lr=1e-3)


def test_the_page_says_when_m2_does_worse_than_its_labels_alone_baseline():
    from benchmarks import m2

    row = {"preset": "labels-100", "labels": 100, "seed": 0, "epochs_done": 36, "epoch_budget": 100,
           "test_accuracy": 0.61, "model_accuracy": 0.58, "test_elbo": -98.2, "command": "python -m benchmarks.m2"}
    alone = {"accuracy": 0.775, "steps": 3000, "lr": 3e-4, "batch_size": 100, "labels": 100, "seed": 0,
             "command": "python -m benchmarks.m2 --baselines --presets labels-100"}
    page = "\n".join(m2._render({"rows": [row], "baselines": {"labels-100-seed0": alone}}))
    assert "0.7750" in page and "*less* accurate" in page
    better = "\n".join(m2._render({"rows": [{**row, "test_accuracy": 0.9}], "baselines": {"labels-100-seed0": alone}}))
    assert "0.7750" in better and "*less* accurate" not in better


def test_grey_values_need_a_likelihood_named_for_them():
    """The paper's Bernoulli refuses grey pixels; the likelihoods named for them (Pyro's example's
    cross-entropy, the continuous Bernoulli) score them, and with the same networks and noise the
    continuous Bernoulli's bound exceeds the cross-entropy's by its normaliser, log C >= log 2 per pixel."""
    x = torch.rand(6, 64)
    y = torch.tensor([0, 1, UNLABELLED, UNLABELLED, 2, UNLABELLED])
    guide = pyro.infer.config_enumerate(M2Guide(64, 10, 4, [16]))
    scores = {}
    for likelihood in ("continuous_bernoulli", "bernoulli_cross_entropy"):
        pyro.set_rng_seed(0)
        model = M2(64, 10, 4, [16], likelihood=likelihood)
        pyro.set_rng_seed(1)
        scores[likelihood] = -TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, x, y)
    assert scores["continuous_bernoulli"] - scores["bernoulli_cross_entropy"] > 6 * 64 * math.log(2) - 1e-3
    with pytest.raises(ValueError, match="binary"):
        TraceEnum_ELBO(max_plate_nesting=1).loss(M2(64, 10, 4, [16]), guide, x, y)
    with pytest.raises(ValueError, match="M2's likelihood must be one of"):
        M2(64, 10, 4, [16], likelihood="gaussian")
