r"""The log-sigmoid and the Logistic(0, 1) log density, as the Logistic-based distributions
(:class:`~pyrovae.distributions.step_logistic.StepLogistic`,
:class:`~pyrovae.distributions.smooth_step_logistic.SmoothStepLogistic`) need them.

Both are written with ``softplus`` rather than ``torch.nn.functional.logsigmoid``. torch's CPU
``log_sigmoid`` kernel splits its work with ``parallel_for`` at a grain size of 1 element, so with
two or more intra-op threads every call on a tensor of two or more elements opens a parallel
region. Where waking the second worker is slow (a loaded or virtualised machine), each such call
can wait milliseconds; ``SmoothStepLogistic`` makes dozens of small calls per sample, so it
stalled. ``softplus`` is an ordinary elementwise kernel that runs inline below torch's grain
size of 32768 elements, and it is as accurate (``log1p(exp(x))``; the same values as
``logsigmoid`` against 40-digit references).
"""

import torch
from torch.nn.functional import softplus

# softplus returns its input above this threshold; the error there, log1p(exp(-t)) < exp(-40),
# is below float64 rounding (exp(-40) / 40 < 2^-53), and exp(40) does not overflow float32.
_SOFTPLUS_THRESHOLD = 40.0


def log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    r""":math:`\log \sigma(x) = -\log(1 + e^{-x})`, finite for finite ``x``; ``-inf`` at ``-inf``."""
    return -softplus(-x, threshold=_SOFTPLUS_THRESHOLD)


def log_logistic_density(z: torch.Tensor) -> torch.Tensor:
    r"""Log of the Logistic(0, 1) density, :math:`\log(\operatorname{sech}^2(z/2)/4)
    = -|z| - 2\log(1 + e^{-|z|})`.

    In terms of :math:`|z|` nothing cancels, so it is accurate for large :math:`|z|` and is
    ``-inf`` (not ``-inf + inf``) at :math:`z = \pm\infty`.
    """
    magnitude = z.abs()
    return -magnitude - 2 * softplus(-magnitude)
