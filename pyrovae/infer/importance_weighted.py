r"""The importance weighted bound (IWAE) with the standard or the doubly reparameterized gradient."""

from __future__ import annotations

import math

import torch

from pyrovae.infer.log_weights import ParticleObjective, latent_sites, reject_non_reparameterized, site_log_density

ESTIMATORS = ("standard", "dreg")


def _density_without_parameter_gradient(role: str, site: dict) -> torch.Tensor:
    r"""Guide log-density whose gradient flows through the sample only, not the parameters.

    :math:`\log q_\phi(z) - \log q_\phi(\bar z) + \overline{\log q_\phi(\bar z)}` (bar = detach)
    has the value :math:`\log q_\phi(z)` and the gradient
    :math:`\partial_z \log q_\phi(z)\, \partial_\phi z`: the direct dependence on :math:`\phi`
    cancels between the first two terms.
    """
    log_q = site_log_density(role, site)
    if role == "model":
        return log_q
    detached = dict(site, value=site["value"].detach())
    log_q_detached = site_log_density(role, detached)
    return log_q - log_q_detached + log_q_detached.detach()


class ImportanceWeightedELBO(ParticleObjective):
    r"""The importance weighted bound of Burda et al. (2016), per data point

    .. math::

        \mathcal L_K(x) = \mathbb E_{z_{1:K} \sim q_\phi(\cdot \mid x)}
            \Bigl[\log \frac1K \sum_{k=1}^K w_k\Bigr], \qquad
        w_k = \frac{p_\theta(x, z_k)}{q_\phi(z_k \mid x)},

    summed over the data plate (times its subsampling factor :math:`N/B`). The loss is
    :math:`-\mathcal L_K`. :math:`\mathcal L_1` is the ELBO,
    :math:`\mathcal L_K \le \mathcal L_{K+1} \le \log p_\theta(x)`, and
    :math:`\mathcal L_K \to \log p_\theta(x)` as :math:`K \to \infty`. As with
    :class:`~pyro.infer.RenyiELBO`, a latent outside the data plate makes the weights those of the
    whole joint, so the bound is then taken over the whole data set at once.

    Gradients are reparameterized, so every latent guide site must have ``rsample``. With
    normalized weights :math:`\tilde w_k = w_k / \sum_j w_j`:

    - ``estimator="standard"``: autograd through :math:`\log \frac1K \sum_k w_k`, i.e.
      :math:`\sum_k \tilde w_k \nabla \log w_k` with the full (path and score) derivative.
    - ``estimator="dreg"``: the doubly reparameterized gradient of Tucker et al. (2019) for the
      guide, :math:`\sum_k \tilde w_k^2\, \partial_{z_k} \log w_k\, \partial_\phi z_k`, which has
      no score-function term and vanishes at the exact posterior; the model gets the standard
      :math:`\sum_k \tilde w_k \nabla_\theta \log p_\theta(x, z_k)`. Both are unbiased for
      :math:`\nabla \mathcal L_K`. The extra :math:`\tilde w_k` is applied by a gradient hook on
      each guide sample, which assumes a guide whose sites depend on :math:`x` and
      :math:`\phi` only, not on other latents (the amortized mean-field guides of Tucker et al.).

    :param int num_particles: ``K >= 1`` importance samples per data point, one vectorized pass.
    :param str estimator: ``"standard"`` or ``"dreg"``.
    :param max_plate_nesting: as for :class:`~pyro.infer.ELBO`; guessed if omitted.

    References (full entries in ``docs/references.md``): Burda, Grosse & Salakhutdinov 2016,
    "Importance Weighted Autoencoders"; Tucker, Lawson, Gu & Maddison 2019, "Doubly
    Reparameterized Gradient Estimators for Monte Carlo Objectives".
    """

    def __init__(self, num_particles: int = 5, estimator: str = "standard", max_plate_nesting: float = float("inf")):
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.estimator = estimator

    @property
    def gradient_hooks(self) -> bool:
        """Whether the gradient acts through hooks on the guide samples (DReG with K > 1): a captured
        graph must then hold the backward too (:mod:`pyrovae.capture`, ``gradients=True``)."""
        return self.estimator == "dreg" and self.num_particles > 1

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        r"""The loss :math:`-\mathcal L_K` as a tensor whose gradient is the chosen estimator's."""
        model_trace, guide_trace = self._vectorized_traces(model, guide, args, kwargs)
        reject_non_reparameterized(guide_trace, type(self).__name__)
        if self.estimator == "standard":
            log_weights = self._log_weights(model_trace, guide_trace)
            return -log_weights.total(torch.logsumexp(log_weights.values, 0) - math.log(self.num_particles))

        log_weights = self._log_weights(model_trace, guide_trace, _density_without_parameter_gradient)
        f = log_weights.values
        bound = log_weights.total(torch.logsumexp(f.detach(), 0) - math.log(self.num_particles))
        normalized = torch.softmax(f.detach(), 0)
        if self.num_particles > 1:
            for _, site in latent_sites(guide_trace):
                value = site["value"]
                if value.requires_grad:
                    weight = normalized.reshape(normalized.shape + (1,) * (value.dim() - normalized.dim()))
                    value.register_hook(lambda grad, weight=weight: grad * weight)
        surrogate = -log_weights.total((normalized * f).sum(0))
        return -bound + (surrogate - surrogate.detach())
