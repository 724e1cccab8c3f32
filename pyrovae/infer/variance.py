r"""The variance loss and the log-variance loss (VarGrad).

Both minimise the spread of the log weight :math:`f = \log p(x, z) - \log q(z \mid x)` under a
sampling distribution :math:`r`; when :math:`q` is the exact posterior, :math:`f = \log p(x)` for
every :math:`z` and the spread is zero.
"""

from __future__ import annotations

import torch
from pyro.poutine.messenger import Messenger

from pyrovae.infer.log_weights import ParticleObjective, importance_traces


class StopGradientMessenger(Messenger):
    """Draw every latent sample without a gradient path back to its distribution's parameters.

    The distribution stays attached to the site, so log-densities evaluated at the (detached)
    value still depend on the parameters: this is the :math:`r = \\mathrm{stop\\_gradient}(q)` of
    Algorithm 1 of Stojanovič (n.d.). Unlike detaching values after the fact, it also cuts the path through
    guide code that uses one sample to parameterize the next.
    """

    def _process_message(self, msg):
        if msg["type"] == "sample" and not msg["is_observed"] and msg["value"] is None:
            # detach(), not torch.no_grad(): a captured graph (pyrovae.capture) replays the draw's
            # operations with autograd on and keeps a detach, but not a no_grad block.
            msg["value"] = msg["fn"](*msg["args"], **msg["kwargs"]).detach()


class VarianceELBO(ParticleObjective):
    r"""The variance loss: the sample variance of the log weights of ``S`` detached particles.

    Per data point :math:`x`, draw :math:`z^{(1)}, \dots, z^{(S)} \sim r = q_\phi(\cdot \mid x)`
    with the gradient stopped, and let

    .. math::

        f^{(s)} = \log p_\theta(x \mid z^{(s)}) + \log p(z^{(s)}) - \log q_\phi(z^{(s)} \mid x),
        \qquad
        \widehat{\mathcal L}(x) = \frac{1}{S - 1} \sum_{s=1}^S \bigl(f^{(s)} - \bar f\bigr)^2,

    an unbiased estimate of :math:`\mathrm{Var}_{z \sim r}[f]` (Stojanovič n.d., §2, eqs. 18–21
    and Algorithm 1). Gradients flow through the log-densities only, never through the samples, so
    no reparameterization is needed and discrete latents (Bernoulli, Categorical) work as well as
    continuous ones. The loss is :math:`\sum_x \widehat{\mathcal L}(x)` over the data plate, times
    the plate's subsampling factor :math:`N/B`.

    Its expected gradient in :math:`\phi` at :math:`r = q_\phi` is
    :math:`2\,\nabla_\phi \mathrm{KL}(q_\phi \,\|\, p_\theta(z \mid x))`
    (:math:`-2\,\mathbb E_q[f \nabla_\phi \log q_\phi]`), and in :math:`\theta` it is
    :math:`2\,\mathrm{Cov}_q(f, \nabla_\theta \log p_\theta(x, z))`. The loss is zero at every
    :math:`(\theta, \phi)` where :math:`q_\phi` is the exact posterior of :math:`p_\theta`,
    including a decoder that ignores :math:`z` with :math:`q_\phi` equal to the prior: it does not
    push :math:`\log p_\theta(x)` up by itself (on the 8x8 digits a small VAE collapses this way
    within a few hundred steps, and its ELBO improves by ~2 nats where the IWAE gains ~20).

    The same particles give the ELBO estimate :math:`\sum_x \bar f(x)`, which
    :meth:`loss_and_metrics` returns next to the loss (as ``"elbo"``), so a training step logs the
    bound at no extra cost.

    **Global latents.** The variance is taken per element of the plates shared by every sample
    site (the data plate). A latent outside the data plate couples the data points, so
    :math:`f` is then the log weight of the whole joint (global and all local latents) and the
    loss is the variance of that single number over the ``S`` particles; it is still zero at the
    exact posterior, but it no longer decomposes over data points.

    :param int num_particles: ``S >= 2`` particles per data point, drawn in one vectorized pass.
    :param max_plate_nesting: as for :class:`~pyro.infer.ELBO`; guessed if omitted.

    References (full entries in ``docs/references.md``): Stojanovič n.d., §2 (the variance loss);
    Richter et al. 2020 (the log-variance loss).
    """

    #: A sample variance needs at least two particles.
    min_particles = 2
    #: Multiplies the sample variance; 1 for the variance loss.
    variance_weight = 1.0

    def __init__(self, num_particles: int = 8, max_plate_nesting: float = float("inf")):
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)

    def _get_trace(self, model, guide, args, kwargs):
        return importance_traces(model, StopGradientMessenger()(guide), args, kwargs, self.max_plate_nesting)

    def loss_and_metrics(self, model, guide, *args, **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss, and ``{"elbo": ...}``: the ELBO estimated from the same particles (summed over the data)."""
        log_weights = self.log_weights(model, guide, *args, **kwargs)
        f = log_weights.values
        loss = self.variance_weight * log_weights.total(f.var(0, correction=1))
        return loss, {"elbo": log_weights.total(f.detach().mean(0))}

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The loss as a differentiable tensor."""
        return self.loss_and_metrics(model, guide, *args, **kwargs)[0]


class LogVarianceELBO(VarianceELBO):
    r"""The log-variance loss of Richter et al. (2020), half the variance loss (Stojanovič n.d., eq. 16):

    .. math::

        \mathcal L_\text{LV}(x) = \tfrac12 \,\mathrm{Var}_{z \sim r}\!\left[
            \log \frac{q_\phi(z \mid x)}{p_\theta(x, z)}\right].

    With :math:`r = q_\phi` (detached), its expected :math:`\phi`-gradient equals
    :math:`\nabla_\phi \mathrm{KL}(q_\phi \,\|\, p_\theta(z \mid x))`, the gradient of the
    negative ELBO; with :math:`S` particles the estimator is VarGrad, a score-function estimator
    with a leave-one-out control variate. Everything else is as in :class:`VarianceELBO`.

    Reference: Richter et al. 2020, "VarGrad: A Low-Variance Gradient Estimator for Variational
    Inference" (full entry in ``docs/references.md``).
    """

    variance_weight = 0.5
