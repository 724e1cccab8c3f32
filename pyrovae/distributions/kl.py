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

# --- StepLogistic -------------------------------------------------------------------------------
# Sadier-Gane (2020), §5.2, eq. (5.5) and appendix A.3. On each half line the StepLogistic density
# is the Logistic(0, 1) density times a constant (2 - alpha on z < 0, alpha on z > 0), so every
# log density ratio below is piecewise constant and each KL is the KL between the Bernoulli laws
# of the sign of z. SmoothStepLogistic has no closed-form KL, so none is registered for it.
import torch  # noqa: E402
from pyro.distributions import Logistic  # noqa: E402
from torch.distributions.utils import broadcast_all  # noqa: E402

from pyrovae.distributions.step_logistic import StepLogistic  # noqa: E402


def _check_standard_logistic(q):
    if not (bool((q.loc == 0).all()) and bool((q.scale == 1).all())):
        raise ValueError(
            "The StepLogistic KL has a closed form only against Logistic(0, 1); got Logistic "
            f"with loc={q.loc} and scale={q.scale}. Use a Monte Carlo estimate instead."
        )


def _bernoulli_kl_of_halves(p_halves, q_halves):
    """KL(Bernoulli(alpha_p / 2) || Bernoulli(alpha_q / 2)) from each side's
    ``(alpha, 2 - alpha, log alpha, log(2 - alpha))`` (:meth:`StepLogistic.halves`), with 0 log 0 = 0."""
    alpha_p, complement_p, log_alpha_p, log_complement_p = p_halves
    _, _, log_alpha_q, log_complement_q = q_halves

    def term(weight, log_p, log_q):
        return torch.where(weight > 0, weight * (log_p - log_q), torch.zeros_like(weight))

    return (term(alpha_p, log_alpha_p, log_alpha_q) + term(complement_p, log_complement_p, log_complement_q)) / 2


def _standard_halves(like):
    one, zero = torch.ones_like(like), torch.zeros_like(like)
    return one, one, zero, zero


@register_kl(StepLogistic, Logistic)
def _kl_step_logistic_logistic(p, q):
    """Eq. (5.5): [(2 - alpha) log(2 - alpha) + alpha log alpha] / 2, against Logistic(0, 1)."""
    _check_standard_logistic(q)
    halves = broadcast_all(*p.halves(), q.loc)[:4]
    return _bernoulli_kl_of_halves(halves, _standard_halves(halves[0]))


@register_kl(Logistic, StepLogistic)
def _kl_logistic_step_logistic(p, q):
    """KL(Logistic(0, 1) || StepLogistic(alpha)) = -[log alpha + log(2 - alpha)] / 2."""
    _check_standard_logistic(p)
    halves = broadcast_all(*q.halves(), p.loc)[:4]
    return _bernoulli_kl_of_halves(_standard_halves(halves[0]), halves)


@register_kl(StepLogistic, StepLogistic)
def _kl_step_logistic_step_logistic(p, q):
    """KL(Bernoulli(alpha_p / 2) || Bernoulli(alpha_q / 2))."""
    halves = broadcast_all(*p.halves(), *q.halves())
    return _bernoulli_kl_of_halves(halves[:4], halves[4:])


# --- end StepLogistic ---------------------------------------------------------------------------
