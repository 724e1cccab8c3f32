r"""Relaxed Bernoulli variables made by smoothing a uniform: the machinery shared by
:class:`~pyrovae.distributions.spike_and_exponential.SpikeAndExponential`,
:class:`~pyrovae.distributions.spike_and_power.SpikeAndPower` and
:class:`~pyrovae.distributions.symmetric_power_relaxation.SymmetricPowerRelaxation`.

Each of these relaxes a Bernoulli(:math:`q`) variable :math:`z = 1_{[1-q, 1]}(\epsilon)`,
:math:`\epsilon \sim U(0, 1)`, into :math:`\zeta = f(\beta, q, \epsilon)` with an increasing
smoothing :math:`f` that splits at :math:`\epsilon = 1 - q`:

.. math::

    f(\beta, q, \epsilon) = \begin{cases}
        L_\beta\big(\epsilon / (1 - q)\big) & \epsilon \le 1 - q, \\
        U_\beta\big((\epsilon - 1 + q) / q\big) & \epsilon > 1 - q,
    \end{cases}

where :math:`L_\beta` and :math:`U_\beta` are the quantile functions of a *lower* and an *upper*
component that depend on :math:`\beta` but not on :math:`q`, with ranges on either side of a
split point :math:`s` (:math:`s = 0` when the lower component is a spike at 0, :math:`s = 1/2`
for the symmetric relaxation). So :math:`\zeta` is the mixture

.. math::

    \zeta \sim (1 - q)\, \mathcal{L}_\beta + q\, \mathcal{U}_\beta,
    \qquad \mathcal{L}_\beta \text{ on } [0, s], \quad \mathcal{U}_\beta \text{ on } (s, 1],

and everything follows from the components: :math:`f` is the inverse CDF,
:math:`F = (1 - q) F_L + q F_U`, the mean and variance are those of a two-component mixture, and
the density (with respect to the sum of the components' base measures, e.g.
:math:`\delta_0 + \mathrm{Lebesgue}` with a spike) is
:math:`(1 - q)\, \ell_\beta(\zeta)` for :math:`\zeta \le s` and :math:`q\, u_\beta(\zeta)` for
:math:`\zeta > s`. Because the components do not depend on :math:`q` and live on disjoint
regions, the KL divergence between two members is the Bernoulli KL plus the components' KLs
weighted by the first member's probabilities (:func:`smoothed_bernoulli_kl`); with equal
:math:`\beta` it *is* the Bernoulli KL.

**References** (full entries in ``docs/references.md``)

- Rolfe 2017, eq. 9: the spike-and-exponential relaxation.
- Anonymous n.d., lecture notes "Variational Autoencoders", §2.3 "Smoothing Transformations" and
  Figure 1: the smoothings :math:`f_1, f_2, f_3`.
"""

import math
from fractions import Fraction

import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch.distributions import Bernoulli, constraints
from torch.distributions.kl import kl_divergence
from torch.distributions.utils import broadcast_all

from pyrovae.distributions.bernoulli_view import BernoulliView, register_bernoulli_view
from pyrovae.distributions.constraints import check_floating_point
from pyrovae.distributions.uniform_noise import hard_threshold, open_uniform

# Below this beta the closed-form mean and variance of TruncatedExponential cancel (they are
# differences of terms of size 1/beta and 1/beta^2; at beta = 0.1 the variance loses three
# digits, 7e-5 relative in float32), so their Taylor series are used instead. The series come
# from the Bernoulli-number expansion of coth, converge for beta < 2 pi, and with the ten terms
# below their truncation error at beta = 1 is below 1e-17; above 1 the closed forms lose less
# than four bits.
_SERIES_BELOW_BETA = 1.0
_BERNOULLI_NUMBERS = (  # B_2, B_4, ..., B_20
    Fraction(1, 6), Fraction(-1, 30), Fraction(1, 42), Fraction(-1, 30), Fraction(5, 66),
    Fraction(-691, 2730), Fraction(7, 6), Fraction(-3617, 510), Fraction(43867, 798), Fraction(-174611, 330),
)
# mean = 1/2 + sum_n B_2n beta^(2n-1) / (2n)!, variance = sum_n (2n - 1) B_2n beta^(2n-2) / (2n)!.
_MEAN_SERIES = tuple(float(b / math.factorial(2 * n)) for n, b in enumerate(_BERNOULLI_NUMBERS, 1))
_VARIANCE_SERIES = tuple(float((2 * n - 1) * b / math.factorial(2 * n)) for n, b in enumerate(_BERNOULLI_NUMBERS, 1))


def _even_power_series(coefficients, x):
    """``sum_k coefficients[k] x^(2k)`` by Horner's rule in ``x^2``."""
    x2 = x * x
    total = torch.zeros_like(x)
    for coefficient in reversed(coefficients):
        total = total * x2 + coefficient
    return total


class Spike:
    r"""The point mass at 0: quantile :math:`L(v) = 0`, density 1 with respect to
    :math:`\delta_0` (the lower component of the spike-and-slab relaxations)."""

    def icdf(self, beta, log_u, log1m_u):
        """The quantile: 0 at every :math:`u`."""
        return torch.zeros_like(log_u)

    def cdf(self, beta, value):
        """The mass below ``value`` within the component: all of it (the component sits at 0)."""
        return torch.ones_like(value)

    def log_prob(self, beta, value):
        r"""0: the density with respect to :math:`\delta_0` is 1."""
        return torch.zeros_like(value)

    def mean(self, beta, origin=0.0):
        """The mean 0, minus ``origin``."""
        return torch.zeros_like(beta) - origin

    def variance(self, beta):
        """The variance 0."""
        return torch.zeros_like(beta)

    def kl(self, beta_p, beta_q):
        """0: a point mass does not depend on the exponent."""
        return torch.zeros_like(beta_p + beta_q)


class TruncatedExponential:
    r"""The exponential slab of Rolfe's spike-and-exponential (Rolfe 2017, eq. 9) on :math:`[0, 1]`:

    .. math::

        u_\beta(\zeta) = \frac{\beta e^{\beta \zeta}}{e^\beta - 1}, \qquad
        F_U(\zeta) = \frac{e^{\beta \zeta} - 1}{e^\beta - 1}, \qquad
        U_\beta(u) = \frac{1}{\beta} \log\big(1 + u (e^\beta - 1)\big),

    mean :math:`1 / (1 - e^{-\beta}) - 1/\beta`, variance
    :math:`1/\beta^2 - e^{-\beta} / (1 - e^{-\beta})^2`. Every formula is evaluated through
    :math:`e^{-\beta}` or :math:`\log(e^\beta - 1) = \beta + \log(1 - e^{-\beta})`, so nothing
    overflows at :math:`\beta = 100` in float32.
    """

    def icdf(self, beta, log_u, log1m_u):
        r""":math:`U_\beta(u) = \log\big(1 + u (e^\beta - 1)\big) / \beta`, from :math:`\log u` (a softplus)."""
        log_expm1_beta = beta + torch.log(-torch.expm1(-beta))
        return torch.nn.functional.softplus(log_u + log_expm1_beta) / beta

    def cdf(self, beta, value):
        r""":math:`F_U(\zeta) = (e^{\beta \zeta} - 1) / (e^\beta - 1)`."""
        return torch.exp(beta * (value - 1)) * torch.expm1(-beta * value) / torch.expm1(-beta)

    def log_prob(self, beta, value):
        r""":math:`\log u_\beta(\zeta) = \log \beta + \beta (\zeta - 1) - \log(1 - e^{-\beta})`."""
        return beta.log() + beta * (value - 1) - torch.log(-torch.expm1(-beta))

    def mean(self, beta, origin=0.0):
        r"""The mean :math:`1 / (1 - e^{-\beta}) - 1/\beta` minus ``origin``; a series below
        :math:`\beta = 1`, where the closed form cancels (the limit at 0 is 1/2)."""
        # Each branch sees a harmless stand-in where it is not taken, so neither overflows into
        # the gradient of the other.
        small = beta < _SERIES_BELOW_BETA
        b, s = torch.where(small, 1.0, beta), torch.where(small, beta, 0.0)
        closed_form = 1 / (-torch.expm1(-b)) - 1 / b
        series = 0.5 + s * _even_power_series(_MEAN_SERIES, s)
        return torch.where(small, series, closed_form) - origin

    def variance(self, beta):
        r"""The variance :math:`1/\beta^2 - e^{-\beta} / (1 - e^{-\beta})^2`; a series below
        :math:`\beta = 1`, where the closed form cancels (the limit at 0 is 1/12)."""
        small = beta < _SERIES_BELOW_BETA
        b, s = torch.where(small, 1.0, beta), torch.where(small, beta, 0.0)
        closed_form = 1 / b**2 - torch.exp(-b) / torch.expm1(-b) ** 2
        return torch.where(small, _even_power_series(_VARIANCE_SERIES, s), closed_form)

    def kl(self, beta_p, beta_q):
        r""":math:`\log(\beta_p/\beta_q) + (\beta_p - \beta_q)(\mathbb{E}_p[\zeta] - 1)
        + \log(1 - e^{-\beta_q}) - \log(1 - e^{-\beta_p})`."""
        return (
            torch.log(beta_p / beta_q)
            + (beta_p - beta_q) * (self.mean(beta_p) - 1)
            + torch.log(-torch.expm1(-beta_q))
            - torch.log(-torch.expm1(-beta_p))
        )


class PowerSegment:
    r"""A power of a uniform laid on a segment of length :math:`\ell` at an anchor :math:`a`:
    :math:`\zeta = \ell\, V^\beta` (anchor 0) or :math:`\zeta = 1 - \ell\, V^\beta` (anchor 1),
    :math:`V \sim U(0, 1)`, so the mass piles up at the anchor as :math:`\beta` grows.

    :math:`W = V^\beta` is Beta(:math:`1/\beta`, 1): :math:`P(W \le w) = w^{1/\beta}`. With
    :math:`d = |\zeta - a| / \ell` the distance to the anchor in units of :math:`\ell`,

    .. math::

        \text{density} = \frac{1}{\beta \ell}\, d^{1/\beta - 1}, \quad
        \text{mean} = a \pm \frac{\ell}{1 + \beta}, \quad
        \text{variance} = \frac{\ell^2 \beta^2}{(1 + \beta)^2 (1 + 2\beta)},

    and between two exponents :math:`\mathrm{KL} = \log(\beta_q/\beta_p) - 1 + \beta_p/\beta_q`
    (the Beta(:math:`1/\beta`, 1) KL, unchanged by the affine map). For :math:`\beta > 1` the
    density is infinite at the anchor, and samples do land on it after rounding (at
    :math:`\beta = 100`, most float32 samples of an anchor-1 segment are exactly 1). A float
    :math:`\zeta` equal to the anchor stands for the true values that round to it, so
    ``log_prob`` evaluates it at a distance from the anchor that floats cannot resolve there:
    a quarter of the machine epsilon below 1 (half the float spacing), the smallest normal
    number above 0. That keeps it finite, and leaves the same-:math:`\beta` log-ratios that
    ELBOs use unaffected.
    """

    def __init__(self, anchor, length):
        if anchor not in (0.0, 1.0):
            raise ValueError(f"anchor must be 0.0 or 1.0, got {anchor!r}")
        self.anchor = anchor
        self.length = length

    def _distance(self, value):
        distance = value if self.anchor == 0.0 else 1 - value
        return distance / self.length

    def _rounding_radius(self, dtype):
        """The distance, in units of the length, that floats do not resolve at the anchor."""
        finfo = torch.finfo(dtype)
        return (finfo.tiny if self.anchor == 0.0 else finfo.eps / 4) / self.length

    def icdf(self, beta, log_u, log1m_u):
        r"""The sample :math:`\zeta` at the uniform :math:`u`, given as :math:`\log u` and :math:`\log(1 - u)`
        (:math:`V = u` for anchor 0, :math:`V = 1 - u` for anchor 1: :math:`\zeta` increases with :math:`u`)."""
        if self.anchor == 0.0:
            return self.length * torch.exp(beta * log_u)
        # (1 - l) - l * expm1(.) rather than 1 - l * exp(.): exact near zeta = 1 - l.
        return (1 - self.length) - self.length * torch.expm1(beta * log1m_u)

    def cdf(self, beta, value):
        r"""The segment's mass below ``value``: :math:`d^{1/\beta}` (anchor 0) or :math:`1 - d^{1/\beta}`
        (anchor 1), with :math:`d` clamped to [0, 1]."""
        mass_within = self._distance(value).clamp(0, 1).pow(1 / beta)
        return mass_within if self.anchor == 0.0 else 1 - mass_within

    def log_prob(self, beta, value):
        r"""The log-density :math:`-\log(\beta \ell) + (1/\beta - 1) \log d`, with :math:`d` at least the
        rounding radius at the anchor (see the class docstring)."""
        distance = self._distance(value).clamp(min=self._rounding_radius(value.dtype))
        return (1 / beta - 1) * distance.log() - beta.log() - math.log(self.length)

    def mean(self, beta, origin=0.0):
        r"""The mean :math:`a \pm \ell / (1 + \beta)` minus ``origin``, computed without cancellation."""
        # Mean minus origin, as one fraction (c0 + c1 beta) / (1 + beta) with c0, c1 Python
        # floats: 1 - l / (1 + beta) - origin, computed as written, cancels for small beta (3e-5
        # relative at beta = 1e-3 in float32 for l = 1, origin = 0), and so does the gap between
        # the two segments of the symmetric relaxation, measured from their common end.
        if self.anchor == 0.0:
            c0, c1 = self.length - origin, -origin
        else:
            c0, c1 = 1 - self.length - origin, 1 - origin
        return (c0 + c1 * beta) / (1 + beta)

    def variance(self, beta):
        r"""The variance :math:`\ell^2 \beta^2 / ((1 + \beta)^2 (1 + 2\beta))`."""
        return (self.length * beta / (1 + beta)) ** 2 / (1 + 2 * beta)

    def kl(self, beta_p, beta_q):
        r""":math:`\mathrm{KL} = \log(\beta_q/\beta_p) - 1 + \beta_p/\beta_q` between two exponents on this segment."""
        return torch.log(beta_q / beta_p) - 1 + beta_p / beta_q


class SmoothedBernoulli(TorchDistribution):
    r"""Base class of the relaxations :math:`\zeta = f(\beta, q, \epsilon)` described in this
    module's docstring: a mixture :math:`(1 - q)\mathcal{L}_\beta + q\,\mathcal{U}_\beta` of a
    lower component on :math:`[0, s]` and an upper component on :math:`(s, 1]`.

    A subclass sets three class attributes: ``lower`` and ``upper`` (component objects such as
    :class:`Spike`, :class:`TruncatedExponential`, :class:`PowerSegment`) and ``split``
    (:math:`s`). The sample :math:`\zeta` stands for the Bernoulli value
    :math:`1[\zeta > s]`, which is 1 with probability :math:`q`. A component offers ``icdf``,
    ``cdf``, ``log_prob``, ``variance`` and ``kl`` in :math:`\beta`, and ``mean(beta, origin)``,
    its mean measured from ``origin``: the variance takes the gap between the two components'
    means from the split, which each component can compute without cancellation.

    :param probs: :math:`q \in [0, 1]`, the probability of the relaxed Bernoulli variable.
    :param beta: :math:`\beta > 0`, the sharpness; :math:`f` tends to the step
        :math:`1_{[1-q, 1]}` as :math:`\beta \to \infty`.
    """

    arg_constraints = {"probs": constraints.unit_interval, "beta": constraints.positive}
    support = constraints.unit_interval
    has_rsample = True

    def __init__(self, probs, beta, *, validate_args=None):
        self.probs, self.beta = broadcast_all(probs, beta)
        check_floating_point(type(self).__name__, probs=self.probs, beta=self.beta)
        super().__init__(self.probs.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        new.probs = self.probs.expand(batch_shape)
        new.beta = self.beta.expand(batch_shape)
        super(SmoothedBernoulli, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def bernoulli_probs(self):
        """The probability :math:`q` that the relaxed variable stands for 1."""
        return self.probs

    def hard(self, value):
        r"""The Bernoulli value :math:`1[\zeta > s]` that a sample stands for, as a float tensor."""
        return hard_threshold(value, self.split)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        upper = value > self.split
        # Each log sees 1 or 0 where its branch is not taken, so no NaN reaches the gradient.
        log_q = torch.where(upper, self.probs, 1.0).log()
        log1m_q = torch.log1p(-torch.where(upper, 0.0, self.probs))
        return torch.where(
            upper,
            log_q + self.upper.log_prob(self.beta, value),
            log1m_q + self.lower.log_prob(self.beta, value),
        )

    def rsample(self, sample_shape=torch.Size()):
        return self.icdf(open_uniform(self._extended_shape(sample_shape), self.probs))

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return (1 - self.probs) * self.lower.cdf(self.beta, value) + self.probs * self.upper.cdf(
            self.beta, value
        )

    def icdf(self, value):
        r"""The smoothing :math:`f(\beta, q, \epsilon)` at :math:`\epsilon` = ``value``."""
        q = self.probs
        # At q = 1 the lower branch is empty, even for epsilon = 0.
        upper = (value > 1 - q) | (q == 1)
        # The conditional uniform of the taken branch, in log space, and its complement; the
        # branch not taken sees epsilon = 1/2 and a harmless q, so its logs stay finite.
        eps_upper = torch.where(upper, value, 0.5)
        q_upper = torch.where(upper, q, 1.0)
        log_u = (torch.log(eps_upper - (1 - q_upper)) - q_upper.log()).clamp(max=0)
        log1m_u = (torch.log1p(-eps_upper) - q_upper.log()).clamp(max=0)
        eps_lower = torch.where(upper, 0.5, value)
        q_lower = torch.where(upper, 0.0, q)
        log_v = (eps_lower.log() - torch.log1p(-q_lower)).clamp(max=0)
        log1m_v = (torch.log((1 - q_lower) - eps_lower) - torch.log1p(-q_lower)).clamp(max=0)
        # Rounding may land an upper sample on the split; it must stay on the upper side.
        one = q.new_tensor(1.0)
        above_split = torch.nextafter(q.new_tensor(self.split), one)
        zeta_upper = self.upper.icdf(self.beta, log_u, log1m_u).clamp(min=above_split, max=one)
        zeta_lower = self.lower.icdf(self.beta, log_v, log1m_v)
        return torch.where(upper, zeta_upper, zeta_lower)

    @property
    def mean(self):
        q = self.probs
        return (1 - q) * self.lower.mean(self.beta) + q * self.upper.mean(self.beta)

    @property
    def variance(self):
        q = self.probs
        # Both means measured from the split, on either side of it, so nothing cancels.
        gap = self.upper.mean(self.beta, self.split) - self.lower.mean(self.beta, self.split)
        return (
            (1 - q) * self.lower.variance(self.beta)
            + q * self.upper.variance(self.beta)
            + q * (1 - q) * gap**2
        )


# Registered on the base class: SpikeAndExponential, SpikeAndPower and SymmetricPowerRelaxation
# (and any further subclass) inherit it through the method resolution order.
@register_bernoulli_view(SmoothedBernoulli)
def _view_smoothed_bernoulli(fn):
    return BernoulliView(fn.bernoulli_probs, fn.hard)


def smoothed_bernoulli_kl(p, q):
    r"""KL divergence between two relaxations of the same class (same components):

    .. math::

        \mathrm{KL}(p \,\|\, q) = \mathrm{KL}\big(\mathrm{Bern}(q_p) \,\|\, \mathrm{Bern}(q_q)\big)
            + (1 - q_p)\, \mathrm{KL}(\mathcal{L}_{\beta_p} \,\|\, \mathcal{L}_{\beta_q})
            + q_p\, \mathrm{KL}(\mathcal{U}_{\beta_p} \,\|\, \mathcal{U}_{\beta_q}),

    since on each region the log-ratio is :math:`\log(q_p/q_q)` (or with :math:`1 - q`) plus the
    components' log-ratio. With :math:`\beta_p = \beta_q` it is exactly the Bernoulli KL.
    """
    if type(p) is not type(q):
        raise TypeError(
            f"smoothed_bernoulli_kl needs two distributions of one class, "
            f"got {type(p).__name__} and {type(q).__name__}"
        )
    probs_p, probs_q = broadcast_all(p.probs, q.probs)
    bernoulli = kl_divergence(
        Bernoulli(probs=probs_p, validate_args=False), Bernoulli(probs=probs_q, validate_args=False)
    )
    return (
        bernoulli
        + (1 - p.probs) * p.lower.kl(p.beta, q.beta)
        + p.probs * p.upper.kl(p.beta, q.beta)
    )
