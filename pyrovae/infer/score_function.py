r"""Pyro's ``TraceGraph_ELBO`` as a loss tensor, so it trains under any engine, not only ``SVI``."""

from __future__ import annotations

import torch
from pyro.infer import TraceGraph_ELBO


class DifferentiableTraceGraph_ELBO(TraceGraph_ELBO):
    r"""``TraceGraph_ELBO`` with :meth:`~pyrovae.infer.DifferentiableTraceGraph_ELBO.differentiable_loss`:
    the score-function estimator with Rao-Blackwellization over the dependency graph and the
    baselines the guide declares at each site (``infer={"baseline": {"nn_baseline": ...}}``: NVIL's
    input-dependent baseline, Mnih & Gregor 2014), as one tensor for ``elbo(model, guide)`` modules
    and pyrovae's engines.

    The returned tensor's *value* is the negative ELBO estimate :math:`-\hat{\mathcal L}` and its
    *gradient* is that of Pyro's surrogate loss (score-function terms with baselines subtracted,
    plus the baselines' squared-error regression), i.e.
    ``loss.detach() + surrogate - surrogate.detach()``: ``loss_and_grads`` (used by ``SVI``)
    backpropagates the same surrogate. Pyro's ``use_decaying_avg_baseline`` keeps its running
    average in the parameter store, outside the model and guide: prefer ``nn_baseline``, whose
    weights are checkpointed with the guide.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        r"""The loss tensor: value :math:`-\hat{\mathcal L}`, gradient that of Pyro's surrogate loss."""
        elbo, surrogate_loss = self._loss_and_surrogate_loss(model, guide, args, kwargs)
        return -elbo.detach() + (surrogate_loss - surrogate_loss.detach())
