r"""Relaxed distributions read as the Bernoulli variables they stand for, one registration per class.

A relaxed variable :math:`z_r` (a Concrete/RelaxedBernoulli sample, a StepLogistic or
SpikeAndExponential sample, a Logistic sample read through a sigmoid) stands for a discrete
:math:`z_d \in \{0, 1\}` with :math:`P(z_d = 1) = \lambda`, its *Bernoulli probability*
(Sadier-Gane 2020, §4.2 and §4.4). Its :class:`BernoulliView` holds :math:`\lambda` and the map
:math:`z_r \mapsto z_d`.

Views are registered per distribution class, as ``register_kl`` registers KL divergences::

    @register_bernoulli_view(MyRelaxation)
    def _view_my_relaxation(fn):
        return BernoulliView(fn.probs, lambda value: hard_threshold(value, 0.5))

and :func:`bernoulli_view` dispatches on the class of its argument along its method resolution
order, so a subclass uses its nearest registered ancestor's view unless it registers its own.
pyrovae's relaxations register themselves in their own modules; the torch and Pyro classes are
registered here:

- ``Bernoulli`` itself (an exact latent, e.g. one trained by a score-function estimator):
  :math:`\lambda = ` ``probs``, :math:`z_d = z`;
- ``RelaxedBernoulli`` (and ``RelaxedBernoulliStraightThrough``): :math:`\lambda = ` ``probs``,
  :math:`z_d = 1[z_r > 1/2]` (Maddison et al. 2017);
- ``Logistic(loc, scale)``, read through a sigmoid: :math:`\lambda = \sigma(\mathrm{loc}/
  \mathrm{scale}) = P(l > 0)`, :math:`z_d = 1[l > 0]` (Sadier-Gane 2020, §4.2, eq. 4.4);
- ``Independent`` and ``ExpandedDistribution``: the view of the base distribution;
- ``TransformedDistribution`` by elementwise bijections (e.g. ``Logistic`` then
  ``AffineTransform(0, beta)`` then ``SigmoidTransform``, Sadier-Gane's
  :math:`z_r = \sigma(\beta l)`): the base's :math:`\lambda`, and :math:`z_d` is that of the
  transformed-back value. Other transforms have no view.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch
from pyro.distributions import Logistic
from pyro.distributions.torch_distribution import ExpandedDistribution
from torch.nn import functional as F

from pyrovae.distributions.uniform_noise import hard_threshold


class BernoulliView(NamedTuple):
    """The Bernoulli a relaxed distribution stands for.

    ``probs`` is :math:`P(z_d = 1)` (broadcastable to the distribution's
    ``batch_shape + event_shape``); ``hard(value)`` is the :math:`\\{0, 1\\}` float tensor a
    relaxed sample stands for, so ``hard(fn.sample())`` is distributed as ``Bernoulli(probs)``.
    """

    probs: torch.Tensor
    hard: Callable[[torch.Tensor], torch.Tensor]
    #: :math:`\log(\lambda / (1 - \lambda))` when the distribution has it exactly; ``probs`` rounds to
    #: 0 or 1 in float32 beyond about :math:`\pm 17`, where these logits stay finite.
    logits: torch.Tensor | None = None

    def log_probs(self) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(\log\lambda, \log(1 - \lambda))`, from the logits when the view has them."""
        if self.logits is not None:
            return F.logsigmoid(self.logits), F.logsigmoid(-self.logits)
        return torch.log(self.probs), torch.log1p(-self.probs)


@functools.singledispatch
def _view(fn) -> BernoulliView | None:
    return None


def register_bernoulli_view(cls: type):
    """Decorator registering ``view(fn) -> BernoulliView | None`` for instances of ``cls``.

    The view applies to subclasses of ``cls`` too, unless one of them (or a nearer ancestor)
    registers its own; a view may return ``None`` for instances that stand for no Bernoulli.

    :raises TypeError: if ``cls`` is not a class.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_bernoulli_view needs a distribution class, got {cls!r}")

    def decorator(view: Callable[[object], BernoulliView | None]):
        _view.register(cls, view)
        return view

    return decorator


def bernoulli_view(fn) -> BernoulliView | None:
    """The Bernoulli that the relaxed distribution ``fn`` stands for, or ``None`` if it is not one.

    Looks up the view registered for the nearest class in ``type(fn).__mro__``.
    """
    return _view(fn)


@register_bernoulli_view(torch.distributions.Bernoulli)
def _view_bernoulli(fn):
    return BernoulliView(fn.probs, lambda value: value, fn.logits)


@register_bernoulli_view(torch.distributions.RelaxedBernoulli)
def _view_relaxed_bernoulli(fn):
    return BernoulliView(fn.probs, functools.partial(hard_threshold, at=0.5), fn.logits)


@register_bernoulli_view(Logistic)
def _view_logistic(fn):
    logits = fn.loc / fn.scale
    return BernoulliView(torch.sigmoid(logits), functools.partial(hard_threshold, at=0.0), logits)


@register_bernoulli_view(torch.distributions.Independent)
@register_bernoulli_view(ExpandedDistribution)
def _view_of_base(fn):
    return bernoulli_view(fn.base_dist)


def _is_elementwise_bijection(transform) -> bool:
    return transform.bijective and transform.domain.event_dim == 0 and transform.codomain.event_dim == 0


@register_bernoulli_view(torch.distributions.TransformedDistribution)
def _view_transformed(fn):
    if not all(_is_elementwise_bijection(t) for t in fn.transforms):
        return None
    base = bernoulli_view(fn.base_dist)
    if base is None:
        return None

    def hard(value):
        for transform in reversed(fn.transforms):
            value = transform.inv(value)
        return base.hard(value)

    return BernoulliView(base.probs, hard, base.logits)
