r"""The smoothing transformations f1, f2, f3 written out from the lecture notes, independently of
pyrovae's distribution classes (Anonymous n.d., §2.3 and Figure 1; see docs/references.md).

Each maps a uniform :math:`\epsilon` to a relaxed Bernoulli(p) value and tends to the step
:math:`1_{[1-p, 1]}(\epsilon)` as :math:`\beta \to \infty`:

* :math:`f_1(\beta, p, \epsilon) = 1_{[1-p, 1]}(\epsilon)\, \frac1\beta
  \log_a\big(\frac{\epsilon + p - 1}{p} (a^\beta - 1) + 1\big)`, with base :math:`a = e`
  (spike-and-exponential, after Rolfe 2017);
* :math:`f_2(\beta, p, \epsilon) = 1_{[1-p, 1]}(\epsilon)\,
  \big(1 - \big(1 - \frac{\epsilon + p - 1}{p}\big)^\beta\big)`;
* :math:`f_3(\beta, p, \epsilon) = 1_{[0, 1-p]}(\epsilon)\, \frac12
  \big(\frac{\epsilon}{1 - p}\big)^\beta + 1_{(1-p, 1]}(\epsilon)\,
  \big(1 - \frac12 \big(\frac{1 - \epsilon}{p}\big)^\beta\big)`.

They are evaluated with mpmath at 30 significant digits, one point at a time, so the reference
carries no float rounding of its own: at a float input :math:`\epsilon` it is the exact value to
the float's precision.
"""

import mpmath
import torch

_CONTEXT = mpmath.mp.clone()
_CONTEXT.dps = 30


def f1(beta, p, eps):
    beta, p, eps = _CONTEXT.mpf(beta), _CONTEXT.mpf(p), _CONTEXT.mpf(eps)
    if eps < 1 - p:
        return _CONTEXT.mpf(0)
    return _CONTEXT.log((eps + p - 1) / p * _CONTEXT.expm1(beta) + 1) / beta


def f2(beta, p, eps):
    beta, p, eps = _CONTEXT.mpf(beta), _CONTEXT.mpf(p), _CONTEXT.mpf(eps)
    if eps < 1 - p:
        return _CONTEXT.mpf(0)
    return 1 - (1 - (eps + p - 1) / p) ** beta


def f3(beta, p, eps):
    beta, p, eps = _CONTEXT.mpf(beta), _CONTEXT.mpf(p), _CONTEXT.mpf(eps)
    if eps <= 1 - p:
        return (eps / (1 - p)) ** beta / 2
    return 1 - ((1 - eps) / p) ** beta / 2


def on_grid(smoothing, beta, p, eps):
    """``smoothing(beta, p, e)`` at every element ``e`` of the float tensor ``eps``, as float64."""
    values = [float(smoothing(beta, p, e)) for e in eps.reshape(-1).tolist()]
    return torch.tensor(values, dtype=torch.float64).reshape(eps.shape)


def mean_and_variance(smoothing, beta, p):
    r"""Mean and variance of :math:`f(\epsilon)`, :math:`\epsilon \sim U(0, 1)`, i.e. of the
    relaxation that has :math:`f` as its inverse cdf: mpmath quadrature split at :math:`1 - p`
    (where each :math:`f` has its step), the variance taken in 30-digit arithmetic."""
    split = 1 - _CONTEXT.mpf(p)
    pieces = [piece for piece in ([0, split], [split, 1]) if piece[0] < piece[1]]

    def integral(power):
        return sum(_CONTEXT.quad(lambda e: smoothing(beta, p, e) ** power, piece) for piece in pieces)

    mean = integral(1)
    return float(mean), float(integral(2) - mean**2)
