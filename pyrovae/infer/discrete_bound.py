r"""Relaxed Bernoulli latents read as the Bernoulli variables they stand for (Sadier-Gane 2020,
§4.4–4.5).

A relaxed variable :math:`z_r` stands for a discrete :math:`z_d \in \{0, 1\}` with
:math:`P(z_d = 1) = \lambda`; :func:`~pyrovae.distributions.bernoulli_view.bernoulli_view` (one
registration per distribution class, see :mod:`pyrovae.distributions.bernoulli_view`) gives
:math:`\lambda` and the map :math:`z_r \mapsto z_d`. :class:`DiscreteBernoulliMessenger`,
:class:`TrueDiscreteBound` and :class:`RelaxedBernoulliELBO` are built on it; ``bernoulli_view``
and ``BernoulliView`` are re-exported here and from :mod:`pyrovae.infer`.
"""

from __future__ import annotations

import math
import warnings

import pyro.distributions as dist
import torch
from pyro.poutine.messenger import Messenger

from pyrovae.distributions.bernoulli_view import BernoulliView, bernoulli_view
from pyrovae.infer.log_weights import (
    ParticleObjective,
    importance_traces,
    latent_sites,
    reject_non_reparameterized,
    site_log_density,
)


def hard_points(fn, view: BernoulliView, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The values, in a relaxed site's own space, that stand for :math:`z_d = 0` and :math:`z_d = 1`.

    The ends of the support, where the relaxation becomes the step: 0 and 1 for a relaxation on
    :math:`[0, 1]` (Concrete, the smoothings, a sigmoid-transformed Logistic, a Bernoulli),
    :math:`\mp\infty` for one on the real line read by its sign (Logistic, StepLogistic, a
    Gaussian), in the order ``view.hard`` reads them. A model that squashes a real-valued sample
    with :math:`\sigma(\beta z)` thus sees exactly 0 or 1 at a hard sample. ``like`` gives dtype
    and device.
    """
    support = fn.support
    while hasattr(support, "base_constraint"):
        support = support.base_constraint
    if support is dist.constraints.boolean:
        ends = [0.0, 1.0]
    else:
        ends = [getattr(support, "lower_bound", -math.inf), getattr(support, "upper_bound", math.inf)]
    low, high = (like.new_tensor(float(end)) for end in ends)
    flipped = view.hard(low) > 0.5
    return torch.where(flipped, high, low), torch.where(flipped, low, high)


class HardRelaxed(dist.TorchDistribution):
    """The discrete variable a relaxed one stands for, on the relaxed variable's two hard points:
    ``high`` with probability ``probs``, else ``low``; ``log_prob`` is the Bernoulli log-mass."""

    arg_constraints = {"probs": dist.constraints.unit_interval}
    support = dist.constraints.real

    def __init__(self, probs, low, high, log_probs=None, validate_args=None):
        self.probs, self.low, self.high = probs, low, high
        self.log_probs = log_probs if log_probs is not None else (torch.log(probs), torch.log1p(-probs))
        super().__init__(probs.shape, validate_args=False)

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            ones = torch.bernoulli(self.probs.expand(shape)).bool()
            return torch.where(ones, self.high, self.low).to(self.probs.dtype)

    def log_prob(self, value):
        ones = value == self.high
        return torch.where(ones, self.log_probs[0], self.log_probs[1])


def _discrete_bernoulli(fn, view: BernoulliView):
    shape = fn.batch_shape + fn.event_shape
    low, high = hard_points(fn, view, view.probs)
    log_probs = tuple(log.expand(shape) for log in view.log_probs())
    return HardRelaxed(view.probs.expand(shape), low, high, log_probs).to_event(len(fn.event_shape))


class DiscreteBernoulliMessenger(Messenger):
    """Replace every relaxed Bernoulli latent site by the Bernoulli it stands for.

    At each unobserved sample site whose distribution has a :func:`bernoulli_view`, the
    distribution becomes the Bernoulli with ``view.probs`` (same batch and event shape) on the two
    :func:`hard_points` of the relaxation, so samples drawn there are hard values in the site's
    own units and the code after the site sees those: 0 or 1 for a relaxation on [0, 1],
    :math:`\\pm\\infty` for a Logistic or StepLogistic sample that the model squashes with a
    sigmoid (which then gives exactly 0 or 1). Applied to the guide and to the model replayed
    against it, this turns the relaxed model into the discrete model it approximates. Names of
    the replaced sites are collected in :attr:`replaced`.
    """

    def __init__(self):
        super().__init__()
        self.replaced: list[str] = []

    def _process_message(self, msg):
        if msg["type"] != "sample" or msg["is_observed"]:
            return
        view = bernoulli_view(msg["fn"])
        if view is not None:
            msg["fn"] = _discrete_bernoulli(msg["fn"], view)
            self.replaced.append(msg["name"])


class Discretized(torch.nn.Module):
    """The discrete model (or guide) a relaxed one stands for, as a module every evaluator accepts:
    ``forward`` runs the wrapped module under :class:`DiscreteBernoulliMessenger`, and ``inputs`` and
    ``max_plate_nesting`` are the wrapped module's. ``mean_elbo(Discretized(model), Discretized(guide), data)``
    is the true bound; ``importance_log_likelihood`` of the pair is the discrete model's evidence,
    importance-sampled with hard latents."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module
        self.inputs = getattr(module, "inputs", None)
        self.max_plate_nesting = getattr(module, "max_plate_nesting", float("inf"))

    def forward(self, *args, **kwargs):
        return DiscreteBernoulliMessenger()(self.module)(*args, **kwargs)


def _check_relaxed_sites_match(model_relaxed, guide_relaxed) -> None:
    if not guide_relaxed:
        raise ValueError(
            "found no relaxed Bernoulli latent site in the guide (a distribution with a registered "
            "Bernoulli view: RelaxedBernoulli, Logistic, a sigmoid-transformed Logistic, pyrovae's "
            "relaxations, or a class registered with register_bernoulli_view)"
        )
    mismatched = sorted(set(model_relaxed) ^ set(guide_relaxed))
    if mismatched:
        raise ValueError(
            f"site(s) {mismatched} are relaxed Bernoulli variables in only one of model and guide; "
            "both must relax the same Bernoulli latents"
        )


class TrueDiscreteBound(ParticleObjective):
    r"""The ELBO of the discrete model a relaxed model stands for, evaluated without gradients.

    Every relaxed Bernoulli latent site in guide and model is replaced by its Bernoulli
    (``DiscreteBernoulliMessenger``): the guide draws hard :math:`z_d \sim
    \mathrm{Bernoulli}(\lambda_\phi(x))`, the decoder sees :math:`z_d`, and

    .. math::

        \mathcal L_\text{discrete}(x) = \mathbb E_{z_d \sim q}\bigl[\log p_\theta(x \mid z_d)
            + \log \mathrm{Bernoulli}(z_d; \lambda_p) - \log \mathrm{Bernoulli}(z_d; \lambda_\phi(x))
        \bigr] \le \log p_\theta(x)

    is estimated with ``num_particles`` particles and summed over the data plate (times its
    subsampling factor). This is the "true bound" of Sadier-Gane (2020, §4.5), to be logged every
    epoch next to the training objective. Other latents (e.g. Gaussian ones) are left as they are.

    Like every Pyro objective, :meth:`loss` is the *negative* bound. No gradients are produced:
    :meth:`differentiable_loss` returns a tensor without a graph and :meth:`loss_and_grads` does
    not call backward.

    :param int num_particles: particles per data point, one vectorized pass.
    :param max_plate_nesting: as for :class:`~pyro.infer.ELBO`; guessed if omitted.
    """

    def _get_trace(self, model, guide, args, kwargs):
        model_discretizer, guide_discretizer = DiscreteBernoulliMessenger(), DiscreteBernoulliMessenger()
        traces = importance_traces(model_discretizer(model), guide_discretizer(guide), args, kwargs, self.max_plate_nesting)
        _check_relaxed_sites_match(model_discretizer.replaced, guide_discretizer.replaced)
        return traces

    @torch.no_grad()
    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The negative discrete ELBO as a tensor (without a gradient graph)."""
        log_weights = self.log_weights(model, guide, *args, **kwargs)
        return -log_weights.total(log_weights.values.mean(0))


def _is_unit_interval(support) -> bool:
    while hasattr(support, "base_constraint"):
        support = support.base_constraint
    lower, upper = getattr(support, "lower_bound", None), getattr(support, "upper_bound", None)
    # Bounds may be tensors with one value per batch element (a batched Uniform): all of them must be 0 and 1.
    return (lower is not None and upper is not None
            and bool(torch.all(torch.as_tensor(lower) == 0)) and bool(torch.all(torch.as_tensor(upper) == 1)))


class RelaxedBernoulliELBO(ParticleObjective):
    r"""The "Bernoulli ELBO" of Sadier-Gane (2020, §4.4, eqs. 4.11–4.12): relaxed samples scored
    by Bernoulli log-masses. **It is not a bound on** :math:`\log p(x)`.

    Particles are the relaxed samples :math:`z_r \in [0, 1]` of the guide (reparameterized), the
    decoder sees :math:`z_r`, and each relaxed latent site, in model and guide, is scored with the
    Bernoulli log-mass formula evaluated at the relaxed value,

    .. math::

        \log p(z) = z_r \log \lambda_p + (1 - z_r) \log(1 - \lambda_p), \qquad
        \log q_\phi(z \mid x) = z_r \log \lambda_\phi + (1 - z_r) \log(1 - \lambda_\phi),

    with :math:`\lambda` from :func:`bernoulli_view`; other sites keep their own log-densities.
    The objective is the mean over particles of :math:`\log p_\theta(x \mid z_r) + \log p(z) -
    \log q_\phi(z \mid x)`, summed over the data plate; the loss is its negative.

    Since :math:`z_r \notin \{0, 1\}`, these are neither the densities of the relaxed variables
    nor the masses of the discrete ones, so the value can exceed :math:`\log p(x)` of either
    model (Sadier-Gane 2020, §4.5, Figure 4.8). It exists so that comparison can be reproduced:
    train with it and watch :class:`TrueDiscreteBound`. A warning says so at construction.

    Relaxed sites must take values in :math:`[0, 1]` (e.g. ``RelaxedBernoulli``, or a Logistic
    through ``SigmoidTransform``), or ``relaxed_value`` must map a real-valued sample to the
    :math:`z_r \in [0, 1]` the model decodes (for a :class:`~pyrovae.models.BernoulliVAE`, its
    ``decoder_input``, :math:`\sigma(\beta l)`: the dissertation's Logistic model trained on the
    Bernoulli ELBO); otherwise a real-valued site is rejected.

    :param int num_particles: particles per data point, one vectorized pass.
    :param max_plate_nesting: as for :class:`~pyro.infer.ELBO`; guessed if omitted.
    :param relaxed_value: ``z -> z_r`` for relaxed sites on the real line (see above).
    """

    def __init__(self, num_particles: int = 1, max_plate_nesting: float = float("inf"), relaxed_value=None):
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.relaxed_value = relaxed_value
        warnings.warn(
            "RelaxedBernoulliELBO scores relaxed samples with Bernoulli log-masses and is not a lower "
            "bound on log p(x); use TrueDiscreteBound to monitor the discrete model's ELBO",
            UserWarning,
            stacklevel=2,
        )

    def _relaxed_views(self, trace, role: str) -> dict[str, BernoulliView]:
        views = {}
        for name, site in latent_sites(trace):
            view = bernoulli_view(site["fn"])
            if view is None:
                continue
            if not _is_unit_interval(site["fn"].support) and self.relaxed_value is None:
                raise ValueError(
                    f"{role} site '{name}' ({type(site['fn']).__name__}) is a relaxed Bernoulli with "
                    f"support {site['fn'].support}; RelaxedBernoulliELBO needs the relaxed value in [0, 1], "
                    "e.g. TransformedDistribution(Logistic(loc, scale), [AffineTransform(0, beta), "
                    "SigmoidTransform()])"
                )
            views[name] = view
        return views

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The negative "Bernoulli ELBO" as a tensor, differentiable through the relaxed samples."""
        model_trace, guide_trace = self._vectorized_traces(model, guide, args, kwargs)
        reject_non_reparameterized(guide_trace, type(self).__name__)
        views = {"model": self._relaxed_views(model_trace, "model"), "guide": self._relaxed_views(guide_trace, "guide")}
        _check_relaxed_sites_match(views["model"], views["guide"])

        def log_density(role, site):
            view = views[role].get(site["name"])
            if view is None:
                return site_log_density(role, site)
            value = site["value"]
            if not _is_unit_interval(site["fn"].support):
                value = self.relaxed_value(value)
            log_probs, log_complements = view.log_probs()
            log_mass = value * log_probs + (1 - value) * log_complements
            event_dim = len(site["fn"].event_shape)
            return log_mass.sum(list(range(-event_dim, 0))) if event_dim else log_mass

        log_weights = self._log_weights(model_trace, guide_trace, log_density)
        return -log_weights.total(log_weights.values.mean(0))
