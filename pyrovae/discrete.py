r"""The discrete model a Bernoulli-latent model stands for: its exact log-likelihood by enumeration.

A :class:`~pyrovae.models.BernoulliVAE` (whatever its relaxation) stands for the discrete model
:math:`z \sim \mathrm{Bernoulli}(\lambda_p)^D`, :math:`x \mid z \sim` ``model.decode(z)`` at hard
:math:`z \in \{0, 1\}^D`. For :math:`D` up to about 20 its evidence is a finite sum,

.. math::

    \log p(x) = \operatorname{logsumexp}_{z \in \{0,1\}^D} \bigl[\log p(z) + \log p(x \mid z)\bigr],

computed here over chunks of states so that memory stays bounded, which turns "how loose is each
bound" (Sadier-Gane 2020, §4.5) into a measured number. A Bernoulli likelihood, whose log-mass
:math:`x \cdot \ell - \sum_d \operatorname{softplus}(\ell_d)` is linear in :math:`x`, is summed for
a whole batch and chunk with one matrix product; other likelihoods broadcast ``log_prob``.

The sum is written out rather than left to Pyro's enumeration: the :math:`D` units of site ``"z"``
are one event, which ``TraceEnum_ELBO`` cannot enumerate (it enumerates the support of a batch
of distributions, i.e. one site per unit), and a per-unit enumeration would still build the same
:math:`2^D` decoder inputs. The test compares it with a brute-force sum and with Pyro's
``TraceEnum_ELBO`` on a per-unit copy of the model.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from pyrovae.data import as_dataset
from pyrovae.nn.likelihoods import BernoulliLikelihood, ContinuousBernoulliLikelihood

#: 2^24 states (16.7 million decoder evaluations per pass over the data) is the most this enumerates.
MAX_UNITS = 24


def binary_states(start: int, stop: int, num_units: int, like: torch.Tensor) -> torch.Tensor:
    """Rows ``start`` to ``stop - 1`` of the ``2^D x D`` table of binary states (unit ``d`` is bit ``d``)."""
    index = torch.arange(start, stop, device=like.device)
    bits = torch.arange(num_units, device=like.device)
    return ((index[:, None] >> bits) & 1).to(like.dtype)


def _check_model(model) -> None:
    missing = [name for name in ("z_dim", "decode", "discrete_prior_probs") if not hasattr(model, name)]
    if missing:
        raise TypeError(f"exact_log_likelihood needs a Bernoulli-latent model (z_dim, decode, discrete_prior_probs); "
                        f"{type(model).__name__} lacks {', '.join(missing)}")
    if model.z_dim > MAX_UNITS:
        raise ValueError(f"exact log-likelihood enumerates 2^D latent states; D = {model.z_dim} is too many "
                         f"(at most {MAX_UNITS}); use pyrovae.evaluate.importance_log_likelihood")


def _log_likelihoods(model, x: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """``log p(x_b | z_s)`` for every example ``b`` and state ``s``: ``(B, S)``."""
    likelihood = getattr(model, "likelihood", None)
    if isinstance(likelihood, BernoulliLikelihood) and not isinstance(likelihood, ContinuousBernoulliLikelihood):
        logits = model.decoder(states).flatten(1)
        return x.flatten(1) @ logits.T - F.softplus(logits).sum(-1)
    return model.decode(states).log_prob(x.unsqueeze(1))


@torch.no_grad()
def exact_log_likelihood(model, data, batch_size: int = 100, max_rows: int = 1 << 16) -> torch.Tensor:
    r"""Per-example :math:`\log p(x)` in nats of the discrete model ``model`` stands for, summing
    :math:`p(z)\,p(x \mid z)` over all :math:`2^D` hard states.

    Args:
        model: a Bernoulli-latent model with ``z_dim``, ``decode(z)`` (a distribution over one
            example per row of ``z``) and ``discrete_prior_probs`` (:math:`\lambda_p`, per unit).
        data: a :class:`~pyrovae.data.Dataset` or a tensor of examples.
        batch_size: examples per pass.
        max_rows: at most this many (example, state) pairs at once (bounds memory).
    """
    _check_model(model)
    dataset = as_dataset(data)
    if batch_size < 1 or max_rows < 1:
        raise ValueError(f"batch_size and max_rows must be positive, got {batch_size} and {max_rows}")
    probs = model.discrete_prior_probs
    num_states = 1 << model.z_dim
    results = []
    spec = getattr(model, "inputs", None)
    for x, _ in dataset.batches(batch_size, shuffle=False):
        x = x.to(probs.device)
        if spec is not None:
            spec.check(x)  # shape, NaN, support: one line naming the problem
        chunk = max(1, min(num_states, max_rows // x.shape[0]))
        parts = []
        for start in range(0, num_states, chunk):
            states = binary_states(start, min(start + chunk, num_states), model.z_dim, probs)
            log_prior = (torch.xlogy(states, probs) + torch.xlogy(1 - states, 1 - probs)).sum(-1)
            parts.append(torch.logsumexp(_log_likelihoods(model, x, states) + log_prior, dim=-1))
        results.append(torch.logsumexp(torch.stack(parts, -1), dim=-1))
    return torch.cat(results)
