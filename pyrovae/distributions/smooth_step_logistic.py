import functools
import math

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.autograd.function import once_differentiable
from torch.distributions.utils import broadcast_all

from pyrovae.distributions.bernoulli_view import BernoulliView, register_bernoulli_view
from pyrovae.distributions.constraints import check_floating_point, open_interval
from pyrovae.distributions.log_sigmoid import log_logistic_density, log_sigmoid
from pyrovae.distributions.uniform_noise import hard_threshold, open_uniform

# Quadrature on [0, inf) for integrands decaying like exp(-t): the double-exponential substitution
# t = exp(s - exp(-s)) for exponentially decaying integrands (the DE rules of Takahasi & Mori
# 1974; this one as listed by Mori 2005) and the trapezoidal rule in s with step 0.2 on [-4, 4].
# Outside that range the integrand times dt/ds is below 1e-22 of the integral; against 30-digit
# references the rule is accurate to ~2e-14 relative for every integral below, for beta from
# 1e-6 to 1e6 and x from -700 to 0.
_QUADRATURE_STEP = 0.2
_QUADRATURE_RANGE = (-4.0, 4.0)

# The safeguarded Newton solve in ``icdf`` stops an element once its step is below the
# tolerance; the cap is about twice the worst count seen (11, for beta = 0.1 and alpha near 0)
# over alpha in [1e-6, 2 - 1e-6], beta in [0.1, 100] and u down to 1e-308.
_NEWTON_TOLERANCE = 1e-11
_NEWTON_MAX_ITERATIONS = 24


@functools.cache
def _quadrature_rule(device):
    step = _QUADRATURE_STEP
    low, high = _QUADRATURE_RANGE
    s = torch.arange(math.floor(low / step), math.ceil(high / step) + 1, dtype=torch.float64)
    s = (s * step).to(device)
    nodes = torch.exp(s - torch.exp(-s))
    weights = step * (1 + torch.exp(-s)) * nodes
    return nodes, weights


def _half_line_integral(log_integrand, scale):
    """``int_0^inf exp(log_integrand(t)) dt`` for integrands decaying like ``exp(-t / scale)``.

    ``log_integrand`` maps a tensor of nodes with a trailing quadrature dimension to the log of
    the integrand; ``scale`` (broadcastable to the batch) rescales the rule to the decay length.
    """
    nodes, weights = _quadrature_rule(scale.device)
    t = scale.unsqueeze(-1) * nodes
    return scale * (weights * torch.exp(log_integrand(t))).sum(-1)


def _sigmoid_weighted_share(x, beta):
    r"""``h(x) = \int_{-\infty}^x l(z) \sigma(\beta z) dz / \sigma(x)`` for ``x <= 0``, in (0, 1/2].

    ``l = \sigma(z)\sigma(-z)`` is the Logistic(0, 1) density. The integrand, written as a
    function of ``t = x - z``, decays like ``exp(-(1 + beta) t)``, which sets the scale.
    """
    x, beta = x.unsqueeze(-1), beta.unsqueeze(-1)

    def log_integrand(t):
        z = x - t
        return log_logistic_density(z) + log_sigmoid(beta * z) - log_sigmoid(x)

    return _half_line_integral(log_integrand, 1 / (1 + beta.squeeze(-1)))


def _log_lower_tail(x, a, beta):
    r"""``log F(x; a, beta)`` for ``x <= 0``.

    Since :math:`\sigma(-\beta z) = 1 - \sigma(\beta z)`, :math:`F(x) = \sigma(x)[(2 - a)(1 - h) +
    a h]` with ``h = _sigmoid_weighted_share(x, beta)`` in (0, 1/2]: both terms are positive, so
    nothing cancels, and the ``\sigma(x)`` factor is carried in log space for the far tail.
    """
    # F(-inf) = 0; the quadrature sees x = 0 there instead of -inf - (-inf) in its integrand.
    infinite = x == -math.inf
    x = torch.where(infinite, 0.0, x)
    h = _sigmoid_weighted_share(x, beta)
    log_f = log_sigmoid(x) + torch.log((2 - a) * (1 - h) + a * h)
    return torch.where(infinite, -math.inf, log_f)


def _log_density(z, alpha, beta):
    """Log of eq. (5.8), with the sigmoid mixture weights combined in log space."""
    log_weight = torch.logaddexp(
        torch.log(2 - alpha) + log_sigmoid(-beta * z), torch.log(alpha) + log_sigmoid(beta * z)
    )
    return log_logistic_density(z) + log_weight


def _log_tail(z, alpha, beta):
    """``log P(Z <= z)`` for ``z <= 0`` and ``log P(Z > z)`` for ``z > 0``.

    The density is mirrored by ``alpha -> 2 - alpha``, ``f(-z; alpha) = f(z; 2 - alpha)``, so
    the upper tail at ``z`` is the lower tail at ``-z`` with ``2 - alpha``; each is computed
    directly, which keeps relative accuracy in both tails.
    """
    upper = z > 0
    return _log_lower_tail(torch.where(upper, -z, z), torch.where(upper, 2 - alpha, alpha), beta)


def _logit_of_log_sigmoid(log_p):
    """The ``x <= 0`` with ``log sigmoid(x) = log_p``, for ``log_p <= log(1/2)``."""
    return log_p - torch.log(-torch.expm1(log_p))


def _solve_lower_tail(log_u, a, beta):
    r"""The ``x <= 0`` with ``log F(x; a, beta) = log_u``, where ``log_u <= log F(0)``.

    Newton's method on ``log F``, whose slope ``f / F`` is known in closed form, safeguarded by
    a bracket: ``F(x) / \sigma(x)`` lies between ``min(2 - a, 1)`` and ``max(2 - a, 1)``, which
    brackets the root, and a Newton step leaving the bracket is replaced by bisection. Elements
    leave the iteration once their step is below ``_NEWTON_TOLERANCE`` (relative to ``1 + |x|``;
    Newton's quadratic convergence puts the returned value at rounding level by then).
    """
    log_u, a, beta = broadcast_all(log_u, a, beta)
    shape = log_u.shape
    log_u, a, beta = log_u.reshape(-1), a.reshape(-1), beta.reshape(-1)
    log_left = torch.log(2 - a)
    half = math.log(0.5)
    lo = _logit_of_log_sigmoid((log_u - log_left.clamp(min=0)).clamp(max=half))
    hi = _logit_of_log_sigmoid((log_u - log_left.clamp(max=0)).clamp(max=half))
    # Start from the x -> -inf asymptote F ~ (2 - a) sigma(x), clipped into the bracket.
    x = _logit_of_log_sigmoid((log_u - log_left).clamp(max=half)).clamp(min=lo, max=hi)
    active = torch.arange(x.numel(), device=x.device)
    for _ in range(_NEWTON_MAX_ITERATIONS):
        x_a, lo_a, hi_a, a_a, beta_a = x[active], lo[active], hi[active], a[active], beta[active]
        log_f = _log_lower_tail(x_a, a_a, beta_a)
        residual = log_f - log_u[active]
        slope = torch.exp(_log_density(x_a, a_a, beta_a) - log_f)
        lo_a = torch.where(residual < 0, x_a, lo_a)
        hi_a = torch.where(residual > 0, x_a, hi_a)
        newton = x_a - residual / slope
        inside = (newton >= lo_a) & (newton <= hi_a)
        x_next = torch.where(inside, newton, (lo_a + hi_a) / 2)
        converged = (x_next - x_a).abs() <= _NEWTON_TOLERANCE * (1 + x_a.abs())
        x[active], lo[active], hi[active] = x_next, lo_a, hi_a
        active = active[~converged]
        if active.numel() == 0:
            break
    return x.reshape(shape)


def _icdf(u, alpha, beta):
    """Inverse cdf in float64: solve in whichever tail ``u`` falls, mirrored onto ``x <= 0``."""
    alpha, beta = broadcast_all(alpha.double(), beta.double())
    log_cdf_at_zero = _log_lower_tail(torch.zeros_like(alpha), alpha, beta)
    u, alpha, beta, log_cdf_at_zero = broadcast_all(u.double(), alpha, beta, log_cdf_at_zero)
    upper = u.log() > log_cdf_at_zero
    log_tail = torch.where(upper, torch.log1p(-u), u.log())
    x = _solve_lower_tail(log_tail, torch.where(upper, 2 - alpha, alpha), beta)
    return torch.where(upper, -x, x)


class _ImplicitIcdf(torch.autograd.Function):
    r"""``z = F^{-1}(u; alpha, beta)`` with implicit reparameterization gradients.

    Differentiating ``F(z; theta) = u`` gives ``dz/dtheta = -(dF/dtheta) / f(z)`` and
    ``dz/du = 1 / f(z)``, so the Newton solver is never differentiated. In log-tail form,
    ``dz/dtheta = -(d log T / dtheta) / (d log T / dz)`` with ``T`` the tail of ``_log_tail``,
    which stays accurate far in the tails; ``d log T / dtheta`` is taken by autograd through the
    quadrature.
    """

    @staticmethod
    def forward(ctx, u, alpha, beta):
        z = _icdf(u, alpha, beta).to(u.dtype)
        ctx.save_for_backward(z, alpha, beta)
        return z

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_z):
        z, alpha, beta = ctx.saved_tensors
        with torch.enable_grad():
            alpha_ = alpha.detach().requires_grad_(ctx.needs_input_grad[1])
            beta_ = beta.detach().requires_grad_(ctx.needs_input_grad[2])
            z64 = z.double()
            log_tail = _log_tail(z64, alpha_.double(), beta_.double())
        log_density = _log_density(z64, alpha.double(), beta.double())
        sign = torch.where(z64 > 0, -1.0, 1.0)
        slope = sign * torch.exp(log_density - log_tail.detach())
        grad_u = grad_alpha = grad_beta = None
        if ctx.needs_input_grad[0]:
            grad_u = (grad_z.double() * torch.exp(-log_density)).to(z.dtype)
        wanted = [p for p, needed in zip((alpha_, beta_), ctx.needs_input_grad[1:]) if needed]
        if wanted:
            grads = iter(
                torch.autograd.grad(log_tail, wanted, grad_outputs=-grad_z.double() / slope)
            )
            grad_alpha = next(grads) if ctx.needs_input_grad[1] else None
            grad_beta = next(grads) if ctx.needs_input_grad[2] else None
        return grad_u, grad_alpha, grad_beta


class SmoothStepLogistic(TorchDistribution):
    r"""
    StepLogistic with the step at 0 smoothed by sigmoids of inverse temperature ``beta``.

    .. math::

        f(z; \alpha, \beta) = \frac{2 - \alpha}{4} \operatorname{sech}^2\left(\frac{z}{2}\right)
            \sigma(-\beta z) + \frac{\alpha}{4} \operatorname{sech}^2\left(\frac{z}{2}\right)
            \sigma(\beta z).

    It is a density for every ``beta > 0``: ``sech^2(z/2)/4`` is even and
    :math:`\sigma(\beta z) + \sigma(-\beta z) = 1`, so each term integrates to ``alpha / 2`` and
    ``(2 - alpha) / 2`` (Sadier-Gane 2020, appendix A.4). As ``beta -> inf`` it tends to
    :class:`~pyrovae.distributions.step_logistic.StepLogistic` ``(alpha)``; as ``beta -> 0``, to
    Logistic(0, 1).

    The cdf has no closed form. With ``l`` the Logistic(0, 1) density and
    :math:`h(x) = \int_{-\infty}^x l(z)\sigma(\beta z)\,dz / \sigma(x) \in (0, 1/2]` for
    ``x <= 0``, :math:`F(x) = \sigma(x)[(2-\alpha)(1-h(x)) + \alpha h(x)]`, and the upper tail
    follows from the mirror symmetry ``f(-z; alpha) = f(z; 2 - alpha)``. ``h`` is computed by
    double-exponential quadrature to about 1e-14 relative error (in float64, whatever the
    distribution's dtype). ``icdf`` solves ``F(z) = u`` by bracketed Newton iterations on
    ``log F``, and ``rsample`` is ``icdf`` of uniform noise with implicit reparameterization
    gradients ``dz/dtheta = -(dF/dtheta) / f(z)`` for ``alpha`` and ``beta``.

    The sign of ``z`` is the relaxed Bernoulli variable, but unlike the StepLogistic its
    probability is not ``alpha / 2``:
    :math:`\Pr(z > 0) = \tfrac12[\alpha(1 - h_0) + (2 - \alpha)h_0]` with ``h_0 = h(0)``, which
    goes from 1/2 at ``beta -> 0`` (``h_0 = 1/2``) to ``alpha / 2`` at ``beta -> inf``
    (``h_0 ~ log(2) / (2 beta)``); ``h_0 = 1/4`` at ``beta = 1``. The mean is
    :math:`2(\alpha - 1)\int_0^\infty z\,l(z)\tanh(\beta z/2)\,dz`, by the same quadrature, and
    :math:`E[z^2] = \pi^2/3` for every ``alpha, beta``, so the variance is
    :math:`\pi^2/3 - \text{mean}^2`. No closed-form KL divergence is known, so none is
    registered.

    Reference: Sadier-Gane 2020, §5.4.1, eq. (5.8), and appendix A.4 (full entries in
    ``docs/references.md``).

    :param alpha: Area scale of the positive half, in the open interval (0, 2).
    :param beta: Inverse temperature of the smoothing sigmoids, positive.
    """

    arg_constraints = {"alpha": open_interval(0.0, 2.0), "beta": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, alpha, beta, *, validate_args=None):
        check_floating_point(alpha=alpha, beta=beta)
        self.alpha, self.beta = broadcast_all(alpha, beta)
        super().__init__(self.alpha.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(SmoothStepLogistic, _instance)
        batch_shape = torch.Size(batch_shape)
        new.alpha = self.alpha.expand(batch_shape)
        new.beta = self.beta.expand(batch_shape)
        super(SmoothStepLogistic, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _share_at_zero(self):
        beta = self.beta.double()
        return _sigmoid_weighted_share(torch.zeros_like(beta), beta)

    @property
    def bernoulli_probs(self):
        """``Pr(z > 0)``, the Bernoulli probability being relaxed (not ``alpha / 2``)."""
        h0 = self._share_at_zero()
        alpha = self.alpha.double()
        return ((alpha * (1 - h0) + (2 - alpha) * h0) / 2).to(self.alpha.dtype)

    def hard(self, value):
        """The discrete value a sample stands for: 1.0 where ``value > 0``, else 0.0."""
        return hard_threshold(value, 0.0)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return _log_density(value, self.alpha, self.beta)

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        value, alpha, beta = broadcast_all(value, self.alpha, self.beta)
        log_tail = _log_tail(value.double(), alpha.double(), beta.double())
        cdf = torch.where(value > 0, -torch.expm1(log_tail), torch.exp(log_tail))
        return cdf.to(value.dtype)

    def icdf(self, value):
        value, _ = broadcast_all(value, self.alpha)
        return _ImplicitIcdf.apply(value, self.alpha, self.beta)

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        return _ImplicitIcdf.apply(open_uniform(shape, self.alpha), self.alpha, self.beta)

    @property
    def mean(self):
        # int_0^inf z l(z) tanh(beta z / 2) dz is log 2 = int_0^inf z l(z) dz minus the part cut
        # off by tanh(beta z / 2) = 1 - 2 sigmoid(-beta z); that part decays like
        # exp(-(1 + beta) z), the scale the quadrature needs.
        beta = self.beta.double()
        beta_node = beta.unsqueeze(-1)

        def log_integrand(z):
            return torch.log(2 * z) + log_logistic_density(z) + log_sigmoid(-beta_node * z)

        half_mean = math.log(2) - _half_line_integral(log_integrand, 1 / (1 + beta))
        return (2 * (self.alpha.double() - 1) * half_mean).to(self.alpha.dtype)

    @property
    def variance(self):
        return math.pi**2 / 3 - self.mean**2


@register_bernoulli_view(SmoothStepLogistic)
def _view_smooth_step_logistic(fn):
    return BernoulliView(fn.bernoulli_probs, fn.hard)
