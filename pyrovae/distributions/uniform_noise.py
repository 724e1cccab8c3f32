r"""The two ends of a relaxed Bernoulli variable: the uniform noise it is drawn from and the
threshold that reads a relaxed sample back as a Bernoulli value.

A Bernoulli(:math:`q`) variable is :math:`z = 1[\epsilon > 1 - q]` with
:math:`\epsilon \sim U(0, 1)`; a relaxation replaces the step by a smooth map of
:math:`\epsilon` (an inverse cdf), and its sample stands for the Bernoulli value
:math:`1[\zeta > s]` at the relaxation's split point :math:`s`. Every relaxation draws its noise
with :func:`open_uniform` and reads its samples with :func:`hard_threshold`.
"""

import torch


def open_uniform(shape, like: torch.Tensor) -> torch.Tensor:
    """Uniform(0, 1) samples guaranteed to lie in the open interval (0, 1).

    ``uniform_`` draws from ``[0, 1)``; a draw of 0 is moved to the smallest normal number
    ``finfo.tiny`` and the upper end is clamped to ``1 - finfo.eps / 2``, the largest number
    below 1, so inverse cdfs and their pathwise gradients stay finite. ``like`` fixes dtype and
    device.
    """
    finfo = torch.finfo(like.dtype)
    return like.new_empty(shape).uniform_().clamp_(min=finfo.tiny, max=1 - finfo.eps / 2)


def hard_threshold(value: torch.Tensor, at: float) -> torch.Tensor:
    """The Bernoulli value a relaxed sample stands for: 1.0 where ``value > at``, else 0.0.

    A sample exactly at the split ``at`` counts as 0, in ``value``'s dtype.
    """
    return (value > at).to(value.dtype)
