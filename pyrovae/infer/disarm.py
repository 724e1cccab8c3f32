r"""The DisARM gradient estimator for Bernoulli latents (Dong, Mnih & Tucker 2020).

For a guide :math:`q_\alpha(z \mid x) = \prod_i \mathrm{Bernoulli}(z_i; \sigma(\alpha_i))` and
:math:`f(z) = \log p_\theta(x, z) - \log q_\alpha(z \mid x)`, ARM (Yin & Zhou 2019) draws
:math:`u_i \sim U(0, 1)` and the antithetic pair

.. math::

    b_i = \mathbb 1[u_i < \sigma(\alpha_i)], \qquad \tilde b_i = \mathbb 1[1 - u_i < \sigma(\alpha_i)],

both marginally :math:`\mathrm{Bernoulli}(\sigma(\alpha_i))`. DisARM integrates out the noise
that ARM leaves in its weight and gets, unbiased for :math:`\partial_{\alpha_i} \mathbb E_q[f(z)]`
(Dong et al. 2020),

.. math::

    g_i = \tfrac12 \bigl(f(b) - f(\tilde b)\bigr)\, (-1)^{\tilde b_i}\,
        \mathbb 1[b_i \ne \tilde b_i]\, \sigma(|\alpha_i|).

It is zero for every unit where the pair agrees, and a constant added to :math:`f` cancels in
the difference, so no baseline is needed.
"""

from __future__ import annotations

import torch
from pyro.distributions.torch_distribution import ExpandedDistribution, MaskedDistribution
from pyro.infer.inspect import get_dependencies
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample

from pyrovae.infer.log_weights import ParticleObjective, importance_traces, latent_sites, site_log_density

#: Distributions that wrap a Bernoulli without changing what its units are.
_WRAPPERS = (torch.distributions.Independent, MaskedDistribution, ExpandedDistribution)


def bernoulli_logits(fn) -> torch.Tensor | None:
    """The logits :math:`\\alpha` of a (possibly ``Independent``, masked or expanded) Bernoulli,
    with the shape ``batch_shape + event_shape`` of ``fn``; ``None`` for any other distribution."""
    base = fn
    while isinstance(base, _WRAPPERS):
        base = base.base_dist
    if not isinstance(base, torch.distributions.Bernoulli):
        return None
    return base.logits.expand(fn.batch_shape + fn.event_shape)


class AntitheticBernoulliMessenger(Messenger):
    r"""Draw every latent Bernoulli site of a guide as antithetic pairs under the particle plate.

    The guide runs under a particle plate of ``2 * num_pairs`` at dim ``-rank``, outermost, so
    each site's value has the particles on dim 0. Particles ``s`` and ``num_pairs + s`` are the
    pair :math:`b = \mathbb 1[u < \sigma(\alpha)]`, :math:`\tilde b = \mathbb 1[1 - u < \sigma(\alpha)]`
    with one :math:`u` per unit. Any other latent site is refused where it is drawn.
    """

    def __init__(self, num_pairs: int, rank: int):
        super().__init__()
        self.num_pairs = num_pairs
        self.rank = rank

    def _process_message(self, msg):
        if msg["type"] != "sample" or msg["is_observed"] or msg["value"] is not None:
            return
        fn = msg["fn"]
        if isinstance(fn, _Subsample):
            return
        logits = bernoulli_logits(fn)
        if logits is None:
            kind = "a reparameterized" if fn.has_rsample else "a non-reparameterized"
            raise ValueError(
                f"DisARM_ELBO handles Bernoulli guide sites only, but guide site '{msg['name']}' is "
                f"{kind} {type(fn).__name__}; use Trace_ELBO/TraceGraph_ELBO for models with other latents"
            )
        shape = logits.shape
        if len(fn.batch_shape) != self.rank:
            raise ValueError(
                f"guide site '{msg['name']}' has batch shape {tuple(fn.batch_shape)}, more dims than "
                f"max_plate_nesting={self.rank} (particle plate included); declare event dims with .to_event()"
            )
        u = torch.rand((self.num_pairs,) + shape[1:], dtype=logits.dtype, device=logits.device)
        probs = torch.sigmoid(logits.detach())
        msg["value"] = (torch.cat([u, 1 - u]) < probs).to(probs.dtype)


def _guide_density_without_gradient(role: str, site: dict) -> torch.Tensor:
    # The score of log q has zero expectation; DisARM's g carries the guide's whole gradient.
    log_density = site_log_density(role, site)
    return log_density.detach() if role == "guide" else log_density


def check_conditionally_independent(guide, args, kwargs, names) -> None:
    """Raise if a guide site in ``names`` has parameters computed from another latent site's value
    (found by tracking which sample values each site's log-density is computed from)."""
    dependencies = get_dependencies(guide, args, kwargs)["prior_dependencies"]
    for name in names:
        upstream = sorted((set(dependencies.get(name, ())) - {name}) & set(names))
        if upstream:
            raise ValueError(
                f"guide site '{name}' depends on latent site(s) {upstream}: DisARM_ELBO needs Bernoulli "
                "sites that are conditionally independent given the data (one stochastic layer)"
            )


class DisARM_ELBO(ParticleObjective):
    r"""The ELBO of a model with Bernoulli latents, with DisARM gradients for the guide.

    Every latent guide site must be a Bernoulli (``Bernoulli(logits=...)`` or
    ``Bernoulli(probs=...)``, any batch shape, ``.to_event`` allowed), and the sites must be
    conditionally independent given the data: their parameters may depend on :math:`x` and on
    parameters, not on another latent's value (a single stochastic layer). All units of all sites
    form one factorized vector :math:`z`, with one :math:`f` per element of the data plate (as in
    :class:`~pyrovae.infer.ParticleObjective`; a latent outside the data plate makes :math:`f` the log
    weight of the whole joint). Per pair :math:`(b, \tilde b)` (see the module docstring of ``pyrovae.infer.disarm``)
    the loss is the surrogate

    .. math::

        -\sum_i \operatorname{sg}(g_i)\, \alpha_i
        - \tfrac12 \bigl(\log p_\theta(x, b) + \log p_\theta(x, \tilde b)\bigr),

    whose gradient is DisARM's :math:`-g` for the logits :math:`\alpha` (and, through them, for
    an encoder; ``probs`` are read as logits) and the average of
    :math:`-\nabla_\theta \log p_\theta(x, \cdot)` over the pair for the model; the guide's
    :math:`\log q` enters :math:`f` without gradient. Its value is the ELBO estimate
    :math:`-\tfrac12 (f(b) + f(\tilde b))`. Both are averaged over the pairs and summed over the
    data plate, times its subsampling factor :math:`N/B`.

    Other latent guide sites (Normal or any non-Bernoulli, reparameterized or not) are refused
    with a ``ValueError``: mixing them in would need a pathwise estimator for them, which this
    objective does not provide. Dependent Bernoulli sites are detected, under Pyro's validation
    (which :func:`pyrovae.train.fit` keeps for its first batch), by tracking which sample values
    each guide site's parameters are computed from; without validation they are not checked.
    A mask on a guide site is not applied to :math:`g`; the estimate stays unbiased (a unit that
    :math:`f` ignores gets zero expected gradient) but noisier.

    :param int num_particles: number of antithetic pairs per data point, drawn in one vectorized
        pass. The attribute ``num_particles`` holds Pyro's count, the ``2 * num_particles``
        samples under the particle plate; ``num_pairs`` holds the pairs.
    :param max_plate_nesting: as for :class:`~pyro.infer.ELBO` (the particle plate is added
        to a given value); guessed if omitted.

    References (full entries in ``docs/references.md``): Dong, Mnih & Tucker 2020, "DisARM: An
    Antithetic Gradient Estimator for Binary Latent Variables"; Yin & Zhou 2019, "ARM:
    Augment-REINFORCE-Merge Gradient for Stochastic Binary Networks".
    """

    def __init__(self, num_particles: int = 1, max_plate_nesting: float = float("inf")):
        if isinstance(num_particles, bool) or not isinstance(num_particles, int):
            raise TypeError(f"DisARM_ELBO: num_particles (pairs) must be an int, got {num_particles!r}")
        if num_particles < 1:
            raise ValueError(f"DisARM_ELBO needs num_particles >= 1 antithetic pair, got {num_particles}")
        self.num_pairs = num_particles
        super().__init__(num_particles=2 * num_particles, max_plate_nesting=max_plate_nesting)

    def _get_trace(self, model, guide, args, kwargs):
        antithetic = AntitheticBernoulliMessenger(self.num_pairs, self.max_plate_nesting)
        model_trace, guide_trace = importance_traces(model, antithetic(guide), args, kwargs, self.max_plate_nesting)
        # Tracking provenance reruns the guide: done only under validation, as the value checks are.
        if is_validation_enabled():
            check_conditionally_independent(guide, args, kwargs, [name for name, _ in latent_sites(guide_trace)])
        return model_trace, guide_trace

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The surrogate loss: its value is minus the ELBO estimate, its gradient DisARM's."""
        model_trace, guide_trace = self._vectorized_traces(model, guide, args, kwargs)
        log_weights = self._log_weights(model_trace, guide_trace, _guide_density_without_gradient)
        f = log_weights.values
        pairs = self.num_pairs
        half_difference = 0.5 * (f[:pairs] - f[pairs:]).detach()
        score = 0.0
        for _, site in latent_sites(guide_trace):
            logits = bernoulli_logits(site["fn"])[:pairs]
            value = site["value"]
            b, b_antithetic = value[:pairs], value[pairs:]
            event_dim = value.dim() - half_difference.dim()
            weight = half_difference.reshape(half_difference.shape + (1,) * event_dim)
            g = weight * (1 - 2 * b_antithetic) * (b != b_antithetic) * torch.sigmoid(logits.detach().abs())
            score = score + (g * logits).sum()
        surrogate = log_weights.total(f.mean(0)) + log_weights.scale * score / pairs
        elbo = log_weights.total(f.detach().mean(0))
        return -(elbo + surrogate - surrogate.detach())
