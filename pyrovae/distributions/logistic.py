r"""Pyro's Logistic distribution with its samples kept finite.

``pyro.distributions.Logistic.rsample`` is :math:`\mathrm{loc} + \mathrm{scale}\,\mathrm{logit}(u)`
with ``u`` from ``uniform_``, which draws from :math:`[0, 1)`: in float32 it returns exactly 0 once in
:math:`2^{24}` draws (6 in :math:`2 \cdot 10^8` here), and then the sample is :math:`-\infty` and its
log density :math:`\log\sigma(z) \cdot 2 - z = -\infty + \infty`, NaN. A Bernoulli-latent VAE with 8
Logistic units and batch 128 makes :math:`3 \cdot 10^7` draws in 64 epochs of MNIST, and the
``logistic`` relaxation of Sadier-Gane (2020)'s 8-D model trained 64 epochs and then stopped on a NaN
loss. This class draws ``u`` with ``open_uniform`` (``pyrovae.distributions.uniform_noise``), as every
relaxation in pyrovae does, so samples lie within about :math:`\pm 88\,\mathrm{scale}` of ``loc`` in
float32. Everything else (density, cdf, registered KLs and Bernoulli views) is Pyro's class's.
"""

import pyro.distributions as dist
import torch

from pyrovae.distributions.uniform_noise import open_uniform


class Logistic(dist.Logistic):
    """``pyro.distributions.Logistic`` whose ``rsample`` never returns ``±inf`` (see the module)."""

    def rsample(self, sample_shape=torch.Size()):
        return self.icdf(open_uniform(self._extended_shape(sample_shape), self.loc))
