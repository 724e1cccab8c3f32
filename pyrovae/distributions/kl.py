"""Closed-form KL divergences of pyrovae's distributions, registered with ``register_kl`` so that
``kl_divergence`` and ``TraceMeanField_ELBO`` use them."""

from torch.distributions.kl import register_kl

# --- SpikeAndExponential, SpikeAndPower, SymmetricPowerRelaxation ------------------------------
from pyrovae.distributions.smoothed_bernoulli import smoothed_bernoulli_kl
from pyrovae.distributions.spike_and_exponential import SpikeAndExponential
from pyrovae.distributions.spike_and_power import SpikeAndPower
from pyrovae.distributions.symmetric_power_relaxation import SymmetricPowerRelaxation

for _relaxation in (SpikeAndExponential, SpikeAndPower, SymmetricPowerRelaxation):
    register_kl(_relaxation, _relaxation)(smoothed_bernoulli_kl)
# --- end SpikeAndExponential, SpikeAndPower, SymmetricPowerRelaxation --------------------------
