import math

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.utils import broadcast_all, lazy_property

from pyrovae.distributions.bernoulli_view import BernoulliView, register_bernoulli_view
from pyrovae.distributions.constraints import check_floating_point, open_interval
from pyrovae.distributions.log_sigmoid import log_logistic_density, log_sigmoid
from pyrovae.distributions.uniform_noise import hard_threshold, open_uniform

_LOG2 = math.log(2)


class StepLogistic(TorchDistribution):
    r"""
    Logistic(0, 1) density with its two halves rescaled: a continuous relaxation of
    Bernoulli(alpha / 2) whose sign carries the discrete value.

    .. math::

        f(z; \alpha) = \frac{2 - \alpha}{4} \operatorname{sech}^2\left(\frac{z}{2}\right) \Theta(-z)
            + \frac{\alpha}{4} \operatorname{sech}^2\left(\frac{z}{2}\right) \Theta(z),

    so :math:`\Pr(z > 0) = \alpha / 2`. The cdf and inverse cdf are closed form,

    .. math::

        F(z) = \begin{cases} (2 - \alpha)\,\sigma(z) & z \le 0 \\
                             (2 - \alpha + \alpha \tanh(z / 2)) / 2 & z > 0 \end{cases}, \qquad
        F^{-1}(u) = \begin{cases} \operatorname{logit}\frac{u}{2 - \alpha} & u < 1 - \alpha / 2 \\
                                  -\operatorname{logit}\frac{1 - u}{\alpha} & u \ge 1 - \alpha/2
                    \end{cases},

    and ``rsample`` is the inverse cdf of uniform noise, differentiable in ``alpha``. Where
    Sadier-Gane (2020, §5.2) clamps u to [1e-6, 1 - 1e-6], here u only avoids 0 and 1 (see
    ``open_uniform``)
    and the inverse cdf is evaluated as ``log1p`` of ratios that never cancel, so samples and
    their gradients are finite and accurate out to the float tails. At ``z = 0`` the density
    takes its left value, matching ``hard(0) = 0``. The
    divergence from the Logistic(0, 1) prior equals the Bernoulli one,
    :math:`KL = \tfrac12[(2-\alpha)\log(2-\alpha) + \alpha\log\alpha]
    = KL(\mathrm{Bern}(\alpha/2) \,\|\, \mathrm{Bern}(1/2))`; it is registered in
    ``pyrovae.distributions.kl``. Mean and variance are closed form:
    :math:`2\log 2\,(\alpha - 1)` and :math:`\pi^2/3 - \text{mean}^2`.

    Reference: Sadier-Gane 2020, §5.2, eqs. (5.4)–(5.7), and appendices A.2–A.3 (full entries in
    ``docs/references.md``).

    **Logits, and why the dissertation's 56-D model diverged.** Sadier-Gane (2020, §5.3) found the
    StepLogistic VAE numerically unstable and left the cause as future work. It is the
    parameterization: an encoder that outputs :math:`\alpha = 2\sigma(a)` rounds
    :math:`\alpha` to exactly 2 in float32 once :math:`a \gtrsim 17` (or to 0 far below), and then
    :math:`\log(2 - \alpha) = -\infty` in the half of the density a sample does not fall in,
    whose infinite derivative, multiplied by the zero that ``torch.where`` passes to the unused
    branch, is NaN; the encoder's weights turn NaN within the first epoch on MNIST (step 14 of
    ``bernoulli-vae/dissertation-8``, with the largest logit at 18.4). Give ``logits`` :math:`a`
    instead: every quantity is then computed from :math:`2\sigma(\pm a)` and
    :math:`\log 2 + \log\sigma(\pm a)` (:meth:`halves`), finite for every finite :math:`a`.
    More units make a saturated one likelier, which is why 56 latents failed before 8.

    :param alpha: Twice the probability of a positive sample, in the open interval (0, 2).
    :param logits: Instead of ``alpha``: :math:`a` with :math:`\alpha = 2\sigma(a)`.
    """

    arg_constraints = {"alpha": open_interval(0.0, 2.0), "logits": constraints.real}
    support = constraints.real
    has_rsample = True

    def __init__(self, alpha=None, logits=None, *, validate_args=None):
        if (alpha is None) == (logits is None):
            raise ValueError("StepLogistic takes exactly one of alpha and logits")
        if logits is not None:
            check_floating_point(logits=logits)
            (self.logits,) = broadcast_all(logits)
            shape = self.logits.shape
        else:
            check_floating_point(alpha=alpha)
            (self.alpha,) = broadcast_all(alpha)
            shape = self.alpha.shape
        super().__init__(shape, validate_args=validate_args)

    @property
    def _parameterized_by_logits(self) -> bool:
        return "logits" in self.__dict__

    @lazy_property
    def alpha(self):
        r"""Twice the probability of a positive sample, :math:`2\sigma(a)` when built from logits."""
        return 2 * torch.sigmoid(self.logits)

    @lazy_property
    def logits(self):
        r""":math:`a = \log(\alpha / (2 - \alpha))`, the log-odds of a positive sample."""
        return torch.log(self.alpha) - torch.log(2 - self.alpha)

    def halves(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""The scale factors of the two halves and their logs: :math:`(\alpha, 2 - \alpha,
        \log\alpha, \log(2 - \alpha))`. From logits :math:`a` they are :math:`2\sigma(\pm a)` and
        :math:`\log 2 + \log\sigma(\pm a)`, finite and accurate for every finite :math:`a`, where
        :math:`2 - 2\sigma(a)` would round to 0 for :math:`a \gtrsim 17` in float32."""
        if self._parameterized_by_logits:
            a = self.logits
            return (2 * torch.sigmoid(a), 2 * torch.sigmoid(-a), _LOG2 + log_sigmoid(a), _LOG2 + log_sigmoid(-a))
        alpha = self.alpha
        return alpha, 2 - alpha, alpha.log(), torch.log(2 - alpha)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(StepLogistic, _instance)
        batch_shape = torch.Size(batch_shape)
        if self._parameterized_by_logits:
            new.logits = self.logits.expand(batch_shape)
        else:
            new.alpha = self.alpha.expand(batch_shape)
        super(StepLogistic, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def bernoulli_probs(self):
        """Probability of a positive sample, the Bernoulli probability being relaxed."""
        return self.halves()[0] / 2

    def hard(self, value):
        """The discrete value a sample stands for: 1.0 where ``value > 0``, else 0.0."""
        return hard_threshold(value, 0.0)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        _, _, log_alpha, log_complement = self.halves()
        return log_logistic_density(value) + torch.where(value > 0, log_alpha, log_complement)

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        # Eq. (5.6) above 0 is a sum of two non-negative terms: accurate even when alpha is
        # near 2 and the cdf just above 0 is tiny, where 1 - alpha * sigmoid(-z) would cancel.
        alpha, complement, _, _ = self.halves()
        return torch.where(
            value > 0,
            (complement + alpha * torch.tanh(value / 2)) / 2,
            complement * torch.sigmoid(value),
        )

    def icdf(self, value):
        alpha, complement, _, _ = self.halves()
        u = value
        v = 1 - u
        # Eq. (5.7) as z = -log1p(e / u) for z <= 0 and z = log1p(e / v) for z > 0, with
        # e = |2u - (2 - alpha)| = |alpha - 2(1 - u)|: its sign picks the branch, and each form
        # is exact in floating point on its side of alpha = 1. Far from 0, where e exceeds the
        # denominator, the equivalent difference of logs avoids overflowing e / u.
        excess = torch.where(alpha < 1, alpha - 2 * v, 2 * u - complement)
        positive = excess > 0
        # Each branch sees a harmless stand-in where it is not selected, so that torch.where
        # does not pick up a NaN gradient from the unused branch.
        e_neg = torch.where(positive, torch.zeros_like(excess), -excess)
        e_pos = torch.where(positive, excess, torch.zeros_like(excess))
        near_neg = e_neg <= u
        near_pos = e_pos <= v
        z_neg = torch.where(
            near_neg,
            -torch.log1p(torch.where(near_neg, e_neg, 0.0) / u),
            u.log() - torch.log(u + torch.where(near_neg, 0.0, e_neg)),
        )
        z_pos = torch.where(
            near_pos,
            torch.log1p(torch.where(near_pos, e_pos, 0.0) / v),
            torch.log(v + torch.where(near_pos, 0.0, e_pos)) - v.log(),
        )
        return torch.where(positive, z_pos, z_neg)

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        return self.icdf(open_uniform(shape, self.logits if self._parameterized_by_logits else self.alpha))

    @property
    def mean(self):
        alpha, complement, _, _ = self.halves()
        return (alpha - complement) * math.log(2)

    @property
    def variance(self):
        return math.pi**2 / 3 - self.mean**2

    def entropy(self):
        r"""Closed form :math:`2 - \tfrac12[(2-\alpha)\log(2-\alpha) + \alpha\log\alpha]`.

        The log density is the even Logistic(0, 1) log density, whose mean is -2 (the Logistic
        entropy) under either half, plus the log of the half's scale factor.
        """
        alpha, complement, log_alpha, log_complement = self.halves()
        if self._parameterized_by_logits:
            return 2 - (complement * log_complement + alpha * log_alpha) / 2
        return 2 - (torch.xlogy(complement, complement) + torch.xlogy(alpha, alpha)) / 2


@register_bernoulli_view(StepLogistic)
def _view_step_logistic(fn):
    return BernoulliView(fn.bernoulli_probs, fn.hard, fn.logits)
