"""Evaluation of a trained model/guide pair: test ELBO, importance-sampled log-likelihood,
reconstruction error. All figures are in nats per example.

The importance-sampled estimate (Burda et al. 2016, eq. 8; seed 004) is

    log p(x) ~= logsumexp_k [log p(x, z_k) - log q(z_k | x)] - log K,   z_k ~ q(z | x),

a stochastic lower bound that increases with K to log p(x). The log-densities are read from Pyro
traces of the guide and of the model replayed on the guide's samples, so any pair whose latents
are local to the ``"data"`` plate works. The ``K`` samples are drawn as an outer plate (one
vectorised pass per chunk of samples) and chunks are combined with ``logsumexp``.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyrovae.data import Dataset
from pyrovae.infer import ImportanceWeightedELBO
from pyrovae.plates import DATA_PLATE


def _batches(dataset: Dataset, batch_size: int):
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return dataset.batches(batch_size, shuffle=False)


@torch.no_grad()
def mean_elbo(model, guide, dataset: Dataset, elbo: pyro.infer.ELBO | None = None, batch_size: int = 1000) -> float:
    """``(1/N) sum_i ELBO(x_i)`` in nats per example (a single-sample estimate per point by default).

    ``dataset`` should hold fixed data (see :meth:`Dataset.realize` for dynamically binarized sets).
    """
    elbo = elbo or Trace_ELBO()
    total = 0.0
    for x, _ in _batches(dataset, batch_size):
        total += elbo.loss(model, guide, x)
    return -total / len(dataset)


def _log_weights(objective: ImportanceWeightedELBO, model, guide, x: torch.Tensor) -> torch.Tensor:
    """``log p(x, z_k) - log q(z_k | x)`` of shape ``(K, B)`` for ``z_k ~ q``, K = ``objective.num_particles``."""
    num_samples = objective.num_particles
    with poutine.block():
        values = objective.log_weights(model, guide, x).values
    if values.numel() != num_samples * x.shape[0]:
        raise ValueError(
            f"importance sampling per example needs every latent local to the {DATA_PLATE!r} plate; "
            f"got log weights of shape {tuple(values.shape)} for a batch of {x.shape[0]}"
        )
    return values.reshape(num_samples, x.shape[0])


@torch.no_grad()
def importance_log_likelihood(
    model,
    guide,
    dataset: Dataset,
    num_samples: int = 5000,
    chunk_size: int = 500,
    batch_size: int = 100,
    max_plate_nesting: float = float("inf"),
    per_example: bool = False,
):
    """Importance-sampled ``log p(x)`` with ``num_samples`` proposals from the guide.

    Memory is bounded by ``chunk_size * batch_size`` decoder evaluations at a time. The log weights
    come from :class:`~pyrovae.infer.ImportanceWeightedELBO` (one vectorised pass per chunk);
    ``max_plate_nesting`` is guessed from a trace when not given.
    Returns the mean over the data set in nats (or the per-example tensor if ``per_example``).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    # One objective per chunk size (at most two), so Pyro guesses max_plate_nesting once, not per chunk.
    objectives = {}
    results = []
    for x, _ in _batches(dataset, batch_size):
        chunks = []
        remaining = num_samples
        while remaining > 0:
            k = min(chunk_size, remaining)
            if k not in objectives:
                objectives[k] = ImportanceWeightedELBO(num_particles=k, max_plate_nesting=max_plate_nesting)
            chunks.append(torch.logsumexp(_log_weights(objectives[k], model, guide, x), dim=0))
            remaining -= k
        results.append(torch.logsumexp(torch.stack(chunks), dim=0) - math.log(num_samples))
    log_px = torch.cat(results)
    if not torch.isfinite(log_px).all():
        raise ValueError("importance weights are not finite; check the model and guide log-densities")
    return log_px if per_example else log_px.mean().item()


@torch.no_grad()
def reconstruction_error(model, guide, dataset: Dataset, batch_size: int = 1000, observed_site: str = "x") -> float:
    """Mean squared error per example, ``E_q ||x - E[x | z]||^2`` with one ``z ~ q(z | x)`` per point.

    ``E[x | z]`` is the mean of the model's observation distribution at ``observed_site``.
    """
    total = 0.0
    for x, _ in _batches(dataset, batch_size):
        with poutine.block():
            guide_trace = poutine.trace(guide).get_trace(x)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
        if observed_site not in model_trace.nodes:
            raise ValueError(f"the model has no site {observed_site!r}")
        mean = model_trace.nodes[observed_site]["fn"].mean
        total += ((x - mean) ** 2).sum().item()
    return total / len(dataset)
