r"""Evaluation of a semi-supervised classifier (:class:`~pyrovae.models.M2`): the test accuracy of
:math:`\arg\max_y q(y \mid x)`, and of the model's own posterior over ``y`` through Pyro's
``infer_discrete``.

A guide here has ``class_probabilities(x)`` (:math:`q(y \mid x)`, ``(B, C)``) and ``encode(x)``; the
data set's ``y`` holds the true labels (hidden from the model or not: the evaluation reads them). The
data set is moved to the guide's device, where training may have put it.
"""

from __future__ import annotations

import copy

import pyro
import torch
from pyro import poutine
from pyro.infer import infer_discrete
from torch.nn import functional as F

from pyrovae.callbacks import Callback
from pyrovae.data import UNLABELLED, Dataset, as_dataset
from pyrovae.devices import module_device


def _true_labels(dataset: Dataset) -> torch.Tensor:
    if dataset.y is None:
        raise ValueError(f"accuracy compares predictions with labels; data set {dataset.name!r} has none")
    return dataset.y


@torch.no_grad()
def classifier_predictions(guide, data, batch_size: int = 1000) -> torch.Tensor:
    """:math:`\\arg\\max_y q(y \\mid x)` for every example of ``data``: ``(N,)``."""
    dataset = as_dataset(data).to(module_device(guide))
    return torch.cat([guide.class_probabilities(x).argmax(-1) for x, _ in dataset.batches(batch_size, shuffle=False)])


def classification_accuracy(guide, data, batch_size: int = 1000) -> float:
    """The fraction of ``data`` whose label is :math:`\\arg\\max_y q(y \\mid x)`."""
    dataset = as_dataset(data)
    labels = _true_labels(dataset)
    predictions = classifier_predictions(guide, dataset, batch_size)
    return float((predictions == labels.to(predictions.device)).double().mean())


@torch.no_grad()
def model_predictions(model, guide, data, batch_size: int = 1000) -> torch.Tensor:
    """The most probable class under the model, :math:`\\arg\\max_y p(y)\\, p(x \\mid y, z)` at the
    guide's style :math:`z = \\mathbb E_q[z \\mid x, \\hat y]`, found by ``infer_discrete`` (temperature 0,
    ``"y_unobserved"`` enumerated in the model) with every label hidden: ``(N,)``. It asks the
    generative model which class explains each image best in the style the guide reads from it."""
    dataset = as_dataset(data).to(module_device(model))
    enumerated = pyro.infer.config_enumerate(model, default="parallel")
    predictions = []
    for x, _ in dataset.batches(batch_size, shuffle=False):
        hidden = torch.full((x.shape[0],), UNLABELLED, dtype=torch.long, device=x.device)
        # Conditioned inside infer_discrete, whose enumeration pass blocks the handlers around it.
        conditioned = poutine.condition(enumerated, data={"z": guide.encode(x)})
        trace = poutine.trace(infer_discrete(conditioned, first_available_dim=-2, temperature=0)).get_trace(x, hidden)
        predictions.append(trace.nodes["y_unobserved"]["value"].reshape(-1))
    return torch.cat(predictions)


def model_accuracy(model, guide, data, batch_size: int = 1000) -> float:
    """The fraction of ``data`` whose label is :func:`model_predictions`'s class."""
    dataset = as_dataset(data)
    labels = _true_labels(dataset)
    predictions = model_predictions(model, guide, dataset, batch_size)
    return float((predictions == labels.to(predictions.device)).double().mean())


class ClassificationMetrics(Callback):
    """Log each epoch ``test_accuracy`` (:func:`classification_accuracy` on ``data``, e.g. the test
    set), ``test_error_percent`` (the figure Kingma et al. 2014 report) and, given the ``model`` of a
    pair trained with a relaxed ``y``, ``enumerated_elbo``: the ELBO with ``y`` summed out
    (:func:`pyrovae.clustering.enumerated_elbo`), as the test ELBO of such a run is its relaxed objective."""

    def __init__(self, guide, data, model=None):
        self.guide, self.model = guide, model
        self.data = as_dataset(data)
        _true_labels(self.data)

    def on_epoch_end(self, epoch: int, row: dict, run) -> None:
        from pyrovae.clustering import enumerated_elbo

        row["test_accuracy"] = accuracy = classification_accuracy(self.guide, self.data)
        row["test_error_percent"] = 100 * (1 - accuracy)
        if self.model is not None:
            row["enumerated_elbo"] = enumerated_elbo(self.model, self.guide, self.data)


def labels_alone_accuracy(guide, train: Dataset, test, steps: int, lr: float, batch_size: int = 100,
                          seed: int = 0) -> float:
    r"""The baseline a semi-supervised classifier must beat: a copy of ``guide``'s classifier
    :math:`q(y \mid x)` (its ``encoder.logits``; pass an untrained guide for a fresh one) trained by Adam
    on the cross-entropy of ``train``'s labelled examples alone, ``steps`` minibatches of ``batch_size``
    drawn with replacement (each batch as training sees it: fresh binarization noise), and its test
    accuracy after the last step (not the best over steps, which would choose on the test set).

    Kingma et al. 2014 (§4.1) compare M2 with such supervised baselines (their NN row); an M2 whose
    :math:`\arg\max_y q(y \mid x)` is less accurate than this has been pulled away from the labels by the
    unlabelled term.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if train.labelled is None or not bool(train.labelled.any()):
        raise ValueError("a labels-alone baseline needs labelled training examples; this data set shows none")
    classifier = copy.deepcopy(guide)
    generator = torch.Generator().manual_seed(seed)
    labelled = train.subset(torch.nonzero(train.labelled.cpu()).flatten())
    optimizer = torch.optim.Adam(classifier.encoder.classifier.parameters(), lr=lr)
    for _ in range(steps):
        index = torch.randint(len(labelled), (min(batch_size, len(labelled)),), generator=generator)
        x = labelled.transform(labelled.x[index], generator)
        loss = F.cross_entropy(classifier.encoder.logits(x), labelled.y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return classification_accuracy(classifier, test)
