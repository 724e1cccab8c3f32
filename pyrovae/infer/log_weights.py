r"""Per-particle log importance weights, the quantity every pyrovae objective is built from.

For a model :math:`p(x, z)` and a guide :math:`q(z \mid x)`, one particle :math:`z^{(s)}` drawn
from the guide has the log weight

.. math::

    f^{(s)} = \log p(x, z^{(s)}) - \log q(z^{(s)} \mid x).

The ELBO is :math:`\mathbb{E}_q[f]`, the IWAE bound is :math:`\mathbb{E}[\log \frac1K \sum_k e^{f_k}]`
and the variance loss is :math:`\mathrm{Var}_r[f]`. This module draws the particles (all at once,
under an outermost particle plate as ``vectorize_particles=True`` does in Pyro) and returns
:math:`f` per particle and per element of the data plate, so each objective is a reduction over
the particle dimension of one tensor.

Which dimensions are kept follows :class:`~pyro.infer.RenyiELBO`: a plate shared by every sample
site of the model and the guide (the data plate of an amortized model) is kept, one :math:`f` per
data point; every other plate is summed into :math:`f`. A latent outside the data plate (a global
latent) makes that plate no longer shared, so :math:`f` becomes the log weight of the whole joint,
:math:`\log p(x_{1:N}, z_\text{global}, z_{1:N}) - \log q(\cdot)`, one number per particle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_if_enumerated, check_model_guide_match, check_site_shape

#: Name Pyro gives the outermost plate over vectorized particles.
PARTICLE_PLATE = "num_particles_vectorized"

#: ``log_density(role, site) -> Tensor``: the log-density of a trace site, unscaled and unmasked,
#: with the site's batch shape. ``role`` is ``"model"`` or ``"guide"``.
LogDensity = Callable[[str, dict], torch.Tensor]


def site_log_density(role: str, site: dict) -> torch.Tensor:
    """The site's own ``log_prob`` at its value."""
    return site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])


class LogWeights(NamedTuple):
    r"""Log weights :math:`f` of a set of particles.

    ``values`` has shape ``(S, *plate_dims)``: particles on dim 0, then one dim per plate
    position up to ``max_plate_nesting``, of size 1 except for the plates shared by all sites.
    ``scale`` is the subsampling factor :math:`N / B` of the shared plates: a sum over the kept
    elements times ``scale`` estimates the sum over the whole data set.
    """

    values: torch.Tensor
    scale: float

    def total(self, per_element: torch.Tensor) -> torch.Tensor:
        """Sum a per-data-point quantity (``values`` reduced over particles) over the data set."""
        return per_element.sum() * self.scale


def importance_traces(model, guide, args, kwargs, max_plate_nesting):
    """Run the guide, then the model replayed against it; return ``(model_trace, guide_trace)``
    with subsample sites pruned.

    :raises ValueError: if a latent site of the model is not sampled by the guide.
    """
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    missing = [
        name
        for name, site in model_trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and type(site["fn"]).__name__ != "_Subsample"
        and name not in guide_trace.nodes
    ]
    if missing:
        raise ValueError(
            f"the guide does not sample the model's latent site(s) {missing}; every latent site of "
            "the model needs a guide site of the same name"
        )
    if is_validation_enabled():
        check_model_guide_match(model_trace, guide_trace, max_plate_nesting)
        check_if_enumerated(guide_trace)
    model_trace = prune_subsample_sites(model_trace)
    guide_trace = prune_subsample_sites(guide_trace)
    if is_validation_enabled():
        for trace in (model_trace, guide_trace):
            trace.compute_log_prob()
            for site in trace.nodes.values():
                if site["type"] == "sample":
                    check_site_shape(site, max_plate_nesting)
    return model_trace, guide_trace


def sample_sites(trace):
    """The sample sites of a trace, as ``(name, site)`` pairs."""
    return [(name, site) for name, site in trace.nodes.items() if site["type"] == "sample"]


def latent_sites(trace):
    """The sample sites of a trace that are not observed."""
    return [(name, site) for name, site in sample_sites(trace) if not site["is_observed"]]


def _shared_frames(model_trace, guide_trace):
    stacks = [
        {frame for frame in site["cond_indep_stack"] if frame.vectorized and frame.name != PARTICLE_PLATE}
        for trace in (model_trace, guide_trace)
        for _, site in sample_sites(trace)
    ]
    return set.intersection(*stacks) if stacks else set()


def particle_log_weights(
    model_trace,
    guide_trace,
    num_particles: int,
    max_plate_nesting: int,
    log_density: LogDensity = site_log_density,
) -> LogWeights:
    r"""The log weights :math:`f = \log p(x, z) - \log q(z \mid x)` of the traced particles.

    ``num_particles > 1`` means the traces were run under the particle plate at dim
    ``-max_plate_nesting``; with one particle there is no particle plate and dim 0 is added.
    Each site's log-density is masked and multiplied by its scale divided by the shared plates'
    subsampling factor, which is returned separately (it multiplies the reduced objective once,
    not :math:`f` inside a nonlinear reduction such as a variance).

    :raises ValueError: if a site has more batch dims than ``max_plate_nesting``, or (when Pyro's
        validation is enabled) a non-finite log-density.
    """
    rank = max_plate_nesting
    shared = _shared_frames(model_trace, guide_trace)
    scale = math.prod(frame.full_size / frame.size for frame in shared if frame.full_size is not None)
    kept_dims = {frame.dim for frame in shared}
    if num_particles > 1:
        kept_dims.add(-rank)
    summed_dims = [dim for dim in range(-rank, 0) if dim not in kept_dims]

    total = 0.0
    for role, trace, sign in (("model", model_trace, 1.0), ("guide", guide_trace, -1.0)):
        for name, site in sample_sites(trace):
            log_p = scale_and_mask(log_density(role, site), site["scale"] / scale, site["mask"])
            # A value check syncs with the host and cannot be captured in a graph (pyrovae.capture):
            # it runs under Pyro's validation, which fit keeps on for the first batch.
            if is_validation_enabled() and not torch.isfinite(log_p).all():
                raise ValueError(
                    f"{role} site '{name}' ({type(site['fn']).__name__}) has a non-finite log-density "
                    "at the sampled/observed value; check its parameters and support"
                )
            if log_p.dim() > rank:
                raise ValueError(
                    f"{role} site '{name}' has batch shape {tuple(log_p.shape)}, more dims than "
                    f"max_plate_nesting={rank}; declare event dims with .to_event()"
                )
            log_p = log_p.reshape((1,) * (rank - log_p.dim()) + log_p.shape)
            if summed_dims:
                log_p = log_p.sum(summed_dims, keepdim=True)
            total = total + sign * log_p
    values = torch.as_tensor(total)
    if num_particles == 1:
        values = values.unsqueeze(0)
    return LogWeights(values, scale)


def reject_non_reparameterized(guide_trace, objective_name: str) -> None:
    """Raise if a latent guide site cannot be reparameterized."""
    for name, site in latent_sites(guide_trace):
        if not site["fn"].has_rsample:
            raise ValueError(
                f"{objective_name} needs reparameterized guide sites, but guide site '{name}' is "
                f"{type(site['fn']).__name__} (has_rsample=False); VarianceELBO handles such latents"
            )


class ParticleObjective(ELBO):
    """Base of the pyrovae objectives: vectorized particles, and ``loss``/``loss_and_grads``
    derived from the subclass's ``differentiable_loss``.

    The particles are drawn in one pass under an outermost particle plate, as
    ``vectorize_particles=True`` does for Pyro's objectives; models and guides must therefore
    have static structure and put batch dims under plates.
    """

    #: Fewest particles the objective is defined for.
    min_particles = 1

    def __init__(self, num_particles: int, max_plate_nesting: float = float("inf")):
        if isinstance(num_particles, bool) or not isinstance(num_particles, int):
            raise TypeError(f"{type(self).__name__}: num_particles must be an int, got {num_particles!r}")
        if num_particles < self.min_particles:
            raise ValueError(
                f"{type(self).__name__} needs num_particles >= {self.min_particles}, got {num_particles}"
            )
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=True,
        )

    def _get_trace(self, model, guide, args, kwargs):
        return importance_traces(model, guide, args, kwargs, self.max_plate_nesting)

    def _vectorized_traces(self, model, guide, args, kwargs):
        """``(model_trace, guide_trace)`` holding all particles."""
        (traces,) = self._get_traces(model, guide, args, kwargs)
        return traces

    def _log_weights(self, model_trace, guide_trace, log_density: LogDensity = site_log_density) -> LogWeights:
        return particle_log_weights(model_trace, guide_trace, self.num_particles, self.max_plate_nesting, log_density)

    def log_weights(self, model, guide, *args, **kwargs) -> LogWeights:
        """Draw this objective's particles and return their log weights :math:`f`, e.g. for
        diagnostics such as the effective sample size."""
        return self._log_weights(*self._vectorized_traces(model, guide, args, kwargs))

    def loss_and_metrics(self, model, guide, *args, **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The differentiable loss and the objective's metrics (tensors, detached), e.g. the ELBO
        that a variance loss's particles estimate; the training engines log them per epoch."""
        return self.differentiable_loss(model, guide, *args, **kwargs), {}

    @torch.no_grad()
    def loss(self, model, guide, *args, **kwargs) -> float:
        """The objective's value (no gradients)."""
        return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """The objective's value; gradients are accumulated into the parameters' ``.grad``."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return loss.item()
