r"""A Normal read as the Bernoulli variable of its sign (Sadier-Gane 2020, §4.1)."""

import functools

import torch
from pyro.distributions import Normal

from pyrovae.distributions.bernoulli_view import BernoulliView, register_bernoulli_view
from pyrovae.distributions.uniform_noise import hard_threshold


class GaussianRelaxation(Normal):
    r"""``Normal(loc, scale)`` whose sample :math:`z` stands for the Bernoulli value :math:`1[z > 0]`.

    Passed through a steep sigmoid :math:`\sigma(\beta z)`, a Gaussian sample is close to 0 or 1,
    and the Bernoulli it relaxes has :math:`\lambda = P(z > 0) = \Phi(\mathrm{loc} / \mathrm{scale})`
    (Sadier-Gane 2020, §4.1, the "Gaussian model" of that chapter). It is a ``Normal`` in every
    other respect (density, sampling, the closed-form KL to another Normal); a class of its own so
    that only the latents meant as relaxed Bernoulli variables have a Bernoulli view, not every
    Gaussian latent of every model.
    """


@register_bernoulli_view(GaussianRelaxation)
def _view_gaussian_relaxation(fn):
    x = fn.loc / fn.scale
    logits = torch.special.log_ndtr(x) - torch.special.log_ndtr(-x)
    return BernoulliView(torch.special.ndtr(x), functools.partial(hard_threshold, at=0.0), logits)
