"""Evaluation of a trained model/guide pair: test ELBO, importance-sampled log-likelihood,
reconstruction error. All figures are in nats per example.

The importance-sampled estimate (Burda et al. 2016, eq. 8; seed 004) is

    log p(x) ~= logsumexp_k [log p(x, z_k) - log q(z_k | x)] - log K,   z_k ~ q(z | x),

a stochastic lower bound that increases with K to log p(x). The log-densities are read from Pyro
traces of the guide and of the model replayed on the guide's samples, so any pair whose latents
are local to the ``"data"`` plate works. The ``K`` samples are drawn as an outer plate (one
vectorised pass per chunk of samples) and chunks are combined with a running ``logsumexp``.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.poutine.util import site_is_subsample

from pyrovae.data import Dataset
from pyrovae.plates import DATA_PLATE

PARTICLE_PLATE = "importance_samples"


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


def _log_weights(model, guide, x: torch.Tensor, num_samples: int, max_plate_nesting: int) -> torch.Tensor:
    """``log p(x, z_k) - log q(z_k | x)`` of shape ``(num_samples, B)`` for ``z_k ~ q``."""
    particles = pyro.plate(PARTICLE_PLATE, num_samples, dim=-(max_plate_nesting + 1))
    with poutine.block(), particles:
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    missing = [name for name, site in model_trace.nodes.items()
               if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site) and name not in guide_trace.nodes]
    if missing:
        raise ValueError(f"the guide does not sample the model's latent sites {missing}")
    log_weight = x.new_zeros(num_samples, x.shape[0])
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for name, site in trace.nodes.items():
            if site["type"] == "sample" and not site_is_subsample(site):
                log_weight = log_weight + sign * _per_example(name, site, max_plate_nesting + 1)
    return log_weight


def _per_example(name: str, site: dict, num_dims: int) -> torch.Tensor:
    """A site's log-density summed over every plate but the particle and data plates: ``(K, B)``."""
    data_dim = next((frame.dim for frame in site["cond_indep_stack"] if frame.name == DATA_PLATE), None)
    if data_dim is None:
        raise ValueError(f"site {name!r} is outside the {DATA_PLATE!r} plate; importance sampling per "
                         "example needs every latent to be local to a data point")
    log_prob = site["log_prob"]
    log_prob = log_prob.reshape((1,) * (num_dims - log_prob.dim()) + log_prob.shape)
    keep = {0, num_dims + data_dim}
    others = [d for d in range(num_dims) if d not in keep]
    if others:  # torch sums over every dimension when given an empty list
        log_prob = log_prob.sum(others, keepdim=True)
    return log_prob.reshape(log_prob.shape[0], log_prob.shape[num_dims + data_dim])


@torch.no_grad()
def importance_log_likelihood(
    model,
    guide,
    dataset: Dataset,
    num_samples: int = 5000,
    chunk_size: int = 500,
    batch_size: int = 100,
    max_plate_nesting: int = 1,
    per_example: bool = False,
):
    """Importance-sampled ``log p(x)`` with ``num_samples`` proposals from the guide.

    Memory is bounded by ``chunk_size * batch_size`` decoder evaluations at a time.
    Returns the mean over the data set in nats (or the per-example tensor if ``per_example``).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    results = []
    for x, _ in _batches(dataset, batch_size):
        chunks = []
        remaining = num_samples
        while remaining > 0:
            k = min(chunk_size, remaining)
            chunks.append(torch.logsumexp(_log_weights(model, guide, x, k, max_plate_nesting), dim=0))
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
