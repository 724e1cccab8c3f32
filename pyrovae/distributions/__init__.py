"""Relaxations of Bernoulli variables as Pyro distributions, and :class:`~pyrovae.distributions.BernoulliLogits`, the
Bernoulli likelihood of pyrovae's decoders.

Importing this package registers their closed-form KL divergences with ``kl_divergence``, so
``TraceMeanField_ELBO`` uses them, and their Bernoulli views with :func:`register_bernoulli_view`
(read them with :func:`pyrovae.distributions.bernoulli_view.bernoulli_view`).
"""

from pyrovae.distributions import kl  # noqa: F401  (registers the closed-form KLs)
from pyrovae.distributions.bernoulli_logits import BernoulliLogits
from pyrovae.distributions.bernoulli_view import BernoulliView, register_bernoulli_view
from pyrovae.distributions.gaussian_relaxation import GaussianRelaxation
from pyrovae.distributions.logistic import Logistic
from pyrovae.distributions.smooth_step_logistic import SmoothStepLogistic
from pyrovae.distributions.smoothed_bernoulli import PowerSegment, SmoothedBernoulli, Spike, TruncatedExponential
from pyrovae.distributions.spike_and_exponential import SpikeAndExponential
from pyrovae.distributions.spike_and_power import SpikeAndPower
from pyrovae.distributions.step_logistic import StepLogistic
from pyrovae.distributions.straight_through import StraightThroughBernoulli
from pyrovae.distributions.symmetric_power_relaxation import SymmetricPowerRelaxation

__all__ = [
    "BernoulliLogits",
    "BernoulliView",
    "GaussianRelaxation",
    "Logistic",
    "PowerSegment",
    "SmoothStepLogistic",
    "SmoothedBernoulli",
    "Spike",
    "SpikeAndExponential",
    "SpikeAndPower",
    "StepLogistic",
    "StraightThroughBernoulli",
    "SymmetricPowerRelaxation",
    "TruncatedExponential",
    "register_bernoulli_view",
]
