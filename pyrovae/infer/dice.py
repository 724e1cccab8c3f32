r"""Pyro's DiCE expectation (``pyro.infer.util.Dice``) without a branch on a tensor's value.

``TraceEnum_ELBO`` sums the costs :math:`c` of each plate ordinal against the marginal
probabilities :math:`p` of the enumerated values they depend on (Foerster et al. 2018; Obermeyer
et al. 2019), :math:`\sum p\, c`. Pyro leaves out the entries where :math:`p = 0`, whose cost may
be infinite (a value outside a site's support), with ``masked_select``, and only after asking
``mask.all()``: a read of a tensor's value, which a captured graph cannot hold (and
``masked_select`` has a data-dependent shape). :class:`MaskFreeDice` zeroes those costs instead,

.. math::

    \sum p \cdot \operatorname{where}(p > 0,\ c,\ 0),

which has the same value and the same gradients (none reach a left-out entry, through
:math:`p` or :math:`c`), with shapes fixed by the trace alone. :mod:`pyrovae.capture` puts it in
``TraceEnum_ELBO``'s place while it captures a loss, so enumerated objectives
(``TraceEnum_ELBO``, :class:`~pyrovae.infer.TraceEnumMeanField_ELBO`) train on the captured and
compiled engines. References in ``docs/references.md``.
"""

from __future__ import annotations

import math

import torch
from opt_einsum import shared_intermediates
from opt_einsum.sharing import count_cached_ops
from pyro.infer.util import LAST_CACHE_SIZE, Dice
from pyro.ops import packed
from pyro.ops.einsum.adjoint import require_backward
from pyro.ops.rings import MarginalRing


def _expected_cost(prob: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
    """:math:`\\sum p\\, c` over all dims, with the entries where :math:`p = 0` contributing nothing."""
    cost, prob = packed.broadcast_all(cost, prob)
    cost = torch.where(prob > 0, cost, cost.new_zeros(()))
    return prob * cost if prob.dim() == 0 else torch.tensordot(prob, cost, dims=prob.dim())


class MaskFreeDice(Dice):
    """``pyro.infer.util.Dice`` whose :meth:`compute_expectation` reads no tensor's value (see the module
    docstring); the marginals are computed exactly as Pyro computes them."""

    def compute_expectation(self, costs):
        with shared_intermediates() as cache:
            ring = MarginalRing(cache=cache)
            expected_cost = 0.0
            for ordinal, cost_terms in costs.items():
                log_factors = self._get_log_factors(ordinal)
                scale = math.exp(sum(x for x in log_factors if not isinstance(x, torch.Tensor)))
                log_factors = [x for x in log_factors if isinstance(x, torch.Tensor)]

                # One marginal query per set of dims a cost depends on: a log factor with those dims,
                # or a zero tensor added to the factors.
                queries = {frozenset(cost._pyro_dims): None for cost in cost_terms}
                for log_factor in log_factors:
                    key = frozenset(log_factor._pyro_dims)
                    if queries.get(key, False) is None:
                        queries[key] = log_factor
                for cost in cost_terms:
                    key = frozenset(cost._pyro_dims)
                    if queries[key] is None:
                        query = torch.zeros_like(cost)
                        query._pyro_dims = cost._pyro_dims
                        log_factors.append(query)
                        queries[key] = query

                sum_dims = set().union(*(x._pyro_dims for x in log_factors)) - ordinal
                for query in queries.values():
                    require_backward(query)
                root = ring.sumproduct(log_factors, sum_dims)
                root._pyro_backward()
                probs = {key: query._pyro_backward_result.exp() for key, query in queries.items()}
                for cost in cost_terms:
                    key = frozenset(cost._pyro_dims)
                    prob = probs[key]
                    prob._pyro_dims = queries[key]._pyro_dims
                    expected_cost = expected_cost + scale * _expected_cost(prob, cost)

        LAST_CACHE_SIZE[0] = count_cached_ops(cache)
        return expected_cost
