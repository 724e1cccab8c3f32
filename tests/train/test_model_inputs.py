"""fit and the evaluators hand each model its inputs as its InputSpec declares: labels to a model
that takes them, ``(B, C, H, W)`` batches to a model of images, from a Dataset or a plain tensor."""

import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovae.data import Dataset
from pyrovae.evaluate import importance_log_likelihood, mean_elbo, reconstruction_error
from pyrovae.train import fit
from tests.support.toy_models import ImageGaussian, ImageGuide, LabelledGuide, LabelledLinearGaussian

NUM_CLASSES = 3


def labelled(num_data, seed):
    """Examples whose first value is their label (so a test can pair each x with its y) and whose
    other values are offset by twice the label."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(NUM_CLASSES, (num_data,), generator=generator)
    x = 0.3 * torch.randn(num_data, 6, generator=generator) + 2.0 * y[:, None]
    x[:, 0] = y
    return Dataset.from_tensor(x, y)


def assert_labels_match(calls):
    assert calls and all(torch.equal(x[:, 0].long(), y) for x, y in calls)


def test_a_labelled_model_receives_the_labels_of_its_examples():
    train, test = labelled(120, seed=0), labelled(45, seed=1)
    model, guide = LabelledLinearGaussian(6, 2, NUM_CLASSES), LabelledGuide(6, 2, NUM_CLASSES)
    fit(model, guide, Trace_ELBO(), train, epochs=20, batch_size=32, lr=0.1)
    for module in (model, guide):
        assert_labels_match(module.calls)
        # every example was served, in batches of 32 and the remainder
        seen = torch.cat([x for x, _ in module.calls[-4:]])
        assert torch.equal(seen[seen[:, 1].argsort()], train.x[train.x[:, 1].argsort()])

    model.calls.clear()
    elbo = mean_elbo(model, guide, test, batch_size=20)
    assert_labels_match(model.calls)
    assert [len(y) for _, y in model.calls] == [20, 20, 5]
    # The labels reach the likelihood: with each example's label replaced, the ELBO drops.
    wrong = Dataset.from_tensor(test.x, (test.y + 1) % NUM_CLASSES)
    assert elbo > mean_elbo(model, guide, wrong) + 10.0  # about 21 nats


def test_a_labelled_model_without_labels_is_refused():
    model, guide = LabelledLinearGaussian(6, 2, NUM_CLASSES), LabelledGuide(6, 2, NUM_CLASSES)
    data = labelled(10, seed=0)
    with pytest.raises(ValueError, match="needs labels"):
        fit(model, guide, Trace_ELBO(), Dataset.from_tensor(data.x))
    with pytest.raises(ValueError, match="needs labels"):
        mean_elbo(model, guide, data.x)
    too_many_classes = Dataset.from_tensor(data.x, data.y + 1)  # labels 1..3, the model knows 0..2
    with pytest.raises(ValueError, match=r"labels in 0\.\.2"):
        fit(model, guide, Trace_ELBO(), too_many_classes)


def test_an_image_model_receives_batches_of_images():
    images = torch.rand(50, 1, 4, 5)
    model, guide = ImageGaussian((1, 4, 5), 2), ImageGuide((1, 4, 5), 2)
    fit(model, guide, Trace_ELBO(), Dataset.from_tensor(images), epochs=1, batch_size=16)
    for module in (model, guide):
        assert sorted(x.shape[0] for x in module.calls[-4:]) == [2, 16, 16, 16]
        assert all(x.shape[1:] == (1, 4, 5) for x in module.calls)

    # The evaluators take the plain tensor and pass the images themselves (one batch: 50 < batch_size).
    for evaluate in (mean_elbo, reconstruction_error, lambda *a: importance_log_likelihood(*a, num_samples=3)):
        model.calls.clear()
        assert torch.isfinite(torch.tensor(evaluate(model, guide, images)))
        assert model.calls and all(torch.equal(x, images) for x in model.calls)
