r"""Evaluation of the models with a categorical latent ``y`` (:class:`~pyrovae.models.GMVAE`,
:class:`~pyrovae.models.MixtureVAE`): how their clusters agree with the classes, how certain
:math:`q(y \mid x)` is, the exact ELBO with ``y`` enumerated, and samples per cluster.

A guide here has ``cluster_probabilities(x)`` (:math:`q(y \mid x)`, shape ``(B, C)``), a model
``sample_components(components, generator)``; batches are shaped as the model's
:class:`~pyrovae.validation.InputSpec` says. Clustering accuracy is Yang 2022, §5.5.4's: each
cluster :math:`\arg\max_y q(y \mid x)` is matched to at most one class so that the most examples
agree (the Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`, on the
cluster-by-class count table), and the accuracy is the fraction of examples whose class is their
cluster's match.

The model's own posterior over ``y`` given a code ``z`` drawn from the guide,
:math:`p(y \mid x, z) \propto p(y)\, p(z \mid y)\, p(x \mid y, z)`, is Pyro's to compute:
:func:`infer_assignments` runs ``infer_discrete`` (the most probable ``y``, or a posterior draw) and
:func:`posterior_assignment_probabilities` ``TraceEnum_ELBO.compute_marginals`` on the model with ``z``
conditioned and ``y`` enumerated.
"""

from __future__ import annotations

import numpy as np
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, config_enumerate, infer_discrete
from scipy.optimize import linear_sum_assignment

from pyrovae.callbacks import Callback
from pyrovae.data import as_dataset
from pyrovae.evaluate import mean_elbo
from pyrovae.placement import input_spec


def match_clusters(clusters, labels) -> tuple[float, dict[int, int]]:
    """The best one-to-one matching of cluster indices to class labels (non-negative integers).

    Returns ``(accuracy, matching)``: the fraction of examples whose label is the class matched to
    their cluster, and ``{cluster: class}``. With more clusters than classes (or fewer), the surplus
    clusters (classes) stay unmatched and their examples count as errors.
    """
    clusters = np.asarray(clusters.cpu() if isinstance(clusters, torch.Tensor) else clusters)
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if clusters.shape != labels.shape or clusters.ndim != 1 or clusters.size == 0:
        raise ValueError(f"clusters and labels must be non-empty 1-d arrays of one shape, got {clusters.shape} and {labels.shape}")
    if clusters.min() < 0 or labels.min() < 0:
        raise ValueError("clusters and labels must be non-negative integers")
    counts = np.zeros((clusters.max() + 1, labels.max() + 1), dtype=np.int64)
    np.add.at(counts, (clusters, labels), 1)
    rows, columns = linear_sum_assignment(counts, maximize=True)
    return counts[rows, columns].sum() / clusters.size, {int(r): int(c) for r, c in zip(rows, columns)}


@torch.no_grad()
def cluster_probabilities(model, guide, data, batch_size: int = 1000) -> torch.Tensor:
    """:math:`q(y \\mid x)` for every example of ``data``: ``(N, C)``."""
    dataset = as_dataset(data)
    spec = input_spec(model, dataset)
    return torch.cat([guide.cluster_probabilities(spec.shape_batch(x)) for x, _ in dataset.batches(batch_size, shuffle=False)])


def _labels(dataset):
    if dataset.y is None:
        raise ValueError(f"clustering accuracy compares clusters with class labels; data set {dataset.name!r} has none")
    return dataset.y


def clustering_accuracy(model, guide, data, batch_size: int = 1000) -> float:
    """The fraction of ``data`` whose class is the one matched (one to one, best matching) to its
    most probable cluster :math:`\\arg\\max_y q(y \\mid x)`; ``data`` needs labels."""
    dataset = as_dataset(data)
    labels = _labels(dataset)
    clusters = cluster_probabilities(model, guide, dataset, batch_size).argmax(-1)
    return float(match_clusters(clusters, labels)[0])


def cluster_entropy(model, guide, data, batch_size: int = 1000) -> float:
    """The mean conditional entropy :math:`\\frac1N \\sum_i \\mathbb H(q(y \\mid x_i))` in nats
    (:math:`\\log C` for a guide that cannot tell the clusters apart, 0 for a certain one)."""
    return _mean_entropy(cluster_probabilities(model, guide, data, batch_size))


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-30).log()).sum(-1)


def _mean_entropy(probs: torch.Tensor) -> float:
    return float(_entropy(probs).mean())


def cluster_usage(probs: torch.Tensor) -> tuple[int, float]:
    """How many of the ``C`` components a guide uses, from :math:`q(y \\mid x_i)` of ``N`` examples ``(N, C)``:
    the number of components that are the most probable one for at least one example, and the
    perplexity :math:`\\exp \\mathbb H(\\bar q)` of the average assignment :math:`\\bar q = \\frac1N \\sum_i
    q(y \\mid x_i)`, the effective number of components (1 when every example goes to one component,
    ``C`` when they spread evenly). A mixture whose examples all fall in one component has collapsed:
    its cluster entropy can still be near 0 (each example certain of its one component)."""
    if probs.dim() != 2 or probs.shape[0] == 0 or not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()):
        raise ValueError(f"cluster_usage needs q(y | x) of N >= 1 examples as finite non-negative probabilities of "
                         f"shape (N, C), got shape {tuple(probs.shape)}")
    used = int(probs.argmax(-1).unique().numel())
    return used, float(_entropy(probs.mean(0)).exp())


def enumerated_elbo(model, guide, data, batch_size: int = 1000) -> float:
    """The ELBO per example with ``y`` summed out exactly (``TraceEnum_ELBO``), including
    :math:`\\log p(y) = -\\log C`. For a pair trained with a Gumbel-softmax estimator this is the
    true ELBO of the discrete model: it is evaluated on ``with_estimator("enumerate")`` views of
    model and guide (same parameters)."""
    if hasattr(model, "with_estimator"):
        model, guide = model.with_estimator("enumerate"), guide.with_estimator("enumerate")
    elbo = TraceEnum_ELBO(max_plate_nesting=model.max_plate_nesting)
    return mean_elbo(model, guide, data, elbo, batch_size=batch_size, engine="eager")


def _enumerated_and_conditioned(model, guide, x: torch.Tensor):
    """The model with ``y`` marked for enumeration and ``z`` conditioned on a draw of the guide."""
    if hasattr(model, "with_estimator"):  # a relaxed y cannot be enumerated: the discrete model's view
        model = model.with_estimator("enumerate")
    with poutine.block():
        z = poutine.trace(guide).get_trace(x).nodes["z"]["value"]
    return config_enumerate(poutine.condition(model, data={"z": z}), default="parallel")


@torch.no_grad()
def infer_assignments(model, guide, x: torch.Tensor, temperature: int = 0) -> torch.Tensor:
    """Components ``(B,)`` for a batch ``x`` from the model's posterior :math:`p(y \\mid x, z)` given a
    code ``z`` drawn from the guide, by Pyro's ``infer_discrete``: with ``temperature=0`` the most
    probable ``y``, with ``1`` a draw from the posterior."""
    conditioned = _enumerated_and_conditioned(model, guide, x)
    sampler = infer_discrete(conditioned, first_available_dim=-1 - model.max_plate_nesting, temperature=temperature)
    return poutine.trace(sampler).get_trace(x).nodes["y"]["value"]


def _no_guide(*args, **kwargs) -> None:
    """A guide with no sites: every latent of the model is either conditioned or enumerated."""


@torch.no_grad()
def posterior_assignment_probabilities(model, guide, x: torch.Tensor) -> torch.Tensor:
    """:math:`p(y \\mid x, z)`, shape ``(B, C)``, for a batch ``x`` and a code ``z`` drawn from the
    guide, by ``TraceEnum_ELBO.compute_marginals`` (the exact sum over ``y``)."""
    conditioned = _enumerated_and_conditioned(model, guide, x)
    elbo = TraceEnum_ELBO(max_plate_nesting=model.max_plate_nesting)
    return elbo.compute_marginals(conditioned, _no_guide, x)["y"].probs


class ClusterMetrics(Callback):
    """Log, on ``data`` (e.g. the test set), each epoch: ``cluster_accuracy``
    (:func:`clustering_accuracy`), ``cluster_entropy`` (:func:`cluster_entropy`), ``clusters_used`` and
    ``cluster_perplexity`` (:func:`cluster_usage`) and, with ``elbo``,
    ``enumerated_elbo`` (:func:`enumerated_elbo`; the test ELBO of a Gumbel-softmax run is otherwise
    its relaxed objective). ``data`` needs labels."""

    def __init__(self, model, guide, data, elbo: bool = False):
        self.model, self.guide, self.elbo = model, guide, elbo
        self.data = as_dataset(data)
        _labels(self.data)

    def on_epoch_end(self, epoch: int, row: dict, run) -> None:
        probs = cluster_probabilities(self.model, self.guide, self.data)
        row["cluster_accuracy"] = float(match_clusters(probs.argmax(-1), self.data.y)[0])
        row["cluster_entropy"] = _mean_entropy(probs)
        row["clusters_used"], row["cluster_perplexity"] = cluster_usage(probs)
        if self.elbo:
            row["enumerated_elbo"] = enumerated_elbo(self.model, self.guide, self.data)


def samples_per_cluster(model, per_cluster: int = 15, generator: torch.Generator | None = None):
    """``(images, clusters)``: ``per_cluster`` mean images :math:`\\mathbb E[x \\mid z]`,
    :math:`z \\sim p(z \\mid y = k)`, for every component ``k`` in order; ``images`` is ``(C * per_cluster, D)``."""
    if per_cluster < 1:
        raise ValueError(f"per_cluster must be at least 1, got {per_cluster}")
    clusters = torch.arange(model.num_components).repeat_interleave(per_cluster)
    return model.sample_components(clusters.to(model.prior_logits.device), generator), clusters


def cluster_sample_grid(model, image_shape, per_cluster: int = 15, generator: torch.Generator | None = None,
                        title: str | None = None):
    """A figure with one row of ``per_cluster`` samples per cluster (Yang 2022, Fig. 11: 15 per cluster)."""
    from pyrovae.plots import labelled_grid

    images, clusters = samples_per_cluster(model, per_cluster, generator)
    return labelled_grid(images.clamp(0, 1), clusters, image_shape, columns=per_cluster, title=title,
                         row_axis_label="cluster")
