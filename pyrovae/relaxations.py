r"""Ways to train a VAE whose latents are :math:`D` Bernoulli units, chosen by name.

Each :class:`Relaxation` fixes, for one way of training, the prior of site ``"z"``, the family of
the guide's ``q(z | x)`` (built from the encoder's output), what the decoder sees of a sample,
and the objective it is trained with by default. :class:`~pyrovae.models.BernoulliVAE` and its
guide (:class:`~pyrovae.guides.BernoulliLatentGuide`) read them from :data:`RELAXATIONS`, so a relaxation is
written once here and nowhere else.

Every relaxed sample stands for a hard :math:`z_d \in \{0, 1\}^D` (its
:func:`~pyrovae.distributions.bernoulli_view.bernoulli_view`), and
:class:`~pyrovae.infer.TrueDiscreteBound` evaluates the ELBO of the discrete model they all
approximate: prior Bernoulli(1/2) per unit, likelihood ``model.decode(z_d)``.

======================  ==========================  ==========================  ==================
name                    guide ``q(z | x)``          prior ``p(z)``              decoder sees
======================  ==========================  ==========================  ==================
``gaussian-sigmoid``    Normal(mu, sigma)           Normal(0, 1)                sigmoid(beta z)
``logistic``            Logistic(mu, 1)             Logistic(0, 1)              sigmoid(beta z)
``concrete``            Logistic(a/t_q, 1/t_q)      Logistic(0, 1/t_p)          sigmoid(z)
``step-logistic``       StepLogistic(2 sigmoid(a))  Logistic(0, 1)              sigmoid(beta z)
``spike-exp``           SpikeAndExponential(q, b)   SpikeAndExponential(.5, b)  z
``spike-power``         SpikeAndPower(q, b)         SpikeAndPower(.5, b)        z
``symmetric-power``     SymmetricPower(q, b)        SymmetricPower(.5, b)       z
``straight-through``    hard, Gumbel gradient       Bernoulli(1/2)              z
``reinforce``           Bernoulli(sigmoid(a))       Bernoulli(1/2)              z
``disarm``              Bernoulli(sigmoid(a))       Bernoulli(1/2)              z
``variance-loss``       Bernoulli(sigmoid(a))       Bernoulli(1/2)              z
======================  ==========================  ==========================  ==================

Each trains by default with Pyro's ``Trace_ELBO`` (objective ``trace``), except ``reinforce``
(``graph``), ``disarm`` (``disarm``), ``variance-loss`` (``variance``) and ``symmetric-power``
(``meanfield``: its KL in closed form, see
:class:`~pyrovae.distributions.SymmetricPowerRelaxation`).

The binary Concrete (Maddison, Mnih & Teh 2017) is written in its logit space, where it is a
Logistic with location ``logits / t`` and scale ``1 / t`` and the decoder sees ``sigmoid(z)``:
the same distribution as ``RelaxedBernoulli(t, logits)``, with log-densities that stay finite where a
sample in [0, 1] would round to 0 or 1 (Maddison et al. 2017, appendix C). References, in
``docs/references.md``: Sadier-Gane 2020 (§4.1–4.3, §5.2); Rolfe 2017 and the VAE lecture notes
(§2.3) for the smoothings; Bengio, Léonard & Courville 2013 and Jang, Gu & Poole 2017 for the
straight-through estimator; Mnih & Gregor 2014 (NVIL) for the baseline of ``reinforce``; Dong,
Mnih & Tucker 2020 for DisARM; Richter et al. 2020 and Stojanovič (n.d.) for the variance loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyro.distributions as dist
import torch

from pyrovae.distributions import (
    GaussianRelaxation,
    Logistic,
    SpikeAndExponential,
    SpikeAndPower,
    StepLogistic,
    StraightThroughBernoulli,
    SymmetricPowerRelaxation,
)


@dataclass(frozen=True)
class RelaxationSettings:
    """The numbers a relaxation reads: ``beta`` (sigmoid steepness or smoothing sharpness) and the
    Concrete/straight-through temperatures of the prior and the guide."""

    beta: torch.Tensor | float
    prior_temperature: float
    posterior_temperature: float


@dataclass(frozen=True)
class Relaxation:
    """One way to train Bernoulli latents.

    ``prior(settings, like)`` is ``p(z)`` with one unit per element of ``like`` (a ``(B, D)``
    tensor giving shape, dtype and device); ``posterior(settings, output)`` is ``q(z | x)`` from the
    encoder's output (``(loc, scale)`` when ``head == "loc_scale"``, else logits); ``squash`` says
    what the decoder sees of a real-valued sample;
    ``objective`` is the registered objective it trains with unless another is chosen.
    """

    name: str
    prior: Callable
    posterior: Callable
    head: str = "logits"
    #: ``"beta"``: the decoder sees sigmoid(beta z); ``"unit"``: sigmoid(z); ``None``: z itself.
    squash: str | None = None
    objective: str = "trace"
    #: A guide for this relaxation also learns an input-dependent baseline (NVIL).
    baseline: bool = False
    #: beta anneals on a schedule (the smoothings); the others keep it fixed.
    anneals: bool = False

    def decoder_input(self, z: torch.Tensor, beta) -> torch.Tensor:
        r"""What the decoder sees of a sample: :math:`\sigma(\beta z)` or :math:`\sigma(z)` for a
        real-valued relaxation (a hard sample, :math:`\pm\infty`, becomes exactly 0 or 1), else ``z``."""
        if self.squash == "beta":
            return torch.sigmoid(beta * z)
        return torch.sigmoid(z) if self.squash == "unit" else z


def _like(like: torch.Tensor, value: float) -> torch.Tensor:
    return like.new_full(like.shape, value)


def _smoothing(name: str, cls, objective: str = "trace") -> Relaxation:
    return Relaxation(
        name,
        prior=lambda s, like: cls(_like(like, 0.5), _like(like, 1.0) * s.beta),
        posterior=lambda s, logits: cls(torch.sigmoid(logits), torch.ones_like(logits) * s.beta),
        objective=objective,
        anneals=True,
    )


def _bernoulli_prior(s, like):
    return dist.Bernoulli(probs=_like(like, 0.5))


def _exact(name: str, objective: str, baseline: bool = False) -> Relaxation:
    return Relaxation(name, prior=_bernoulli_prior, posterior=lambda s, logits: dist.Bernoulli(logits=logits),
                      objective=objective, baseline=baseline)


#: Every :class:`Relaxation` by its name, the ``relaxation`` setting of :class:`~pyrovae.models.BernoulliVAE`.
RELAXATIONS: dict[str, Relaxation] = {
    "gaussian-sigmoid": Relaxation(
        "gaussian-sigmoid",
        prior=lambda s, like: GaussianRelaxation(_like(like, 0.0), _like(like, 1.0)),
        posterior=lambda s, output: GaussianRelaxation(*output),
        head="loc_scale", squash="beta"),
    "logistic": Relaxation(
        "logistic",
        prior=lambda s, like: Logistic(_like(like, 0.0), _like(like, 1.0)),
        posterior=lambda s, loc: Logistic(loc, torch.ones_like(loc)),
        squash="beta"),
    "concrete": Relaxation(
        "concrete",
        prior=lambda s, like: Logistic(_like(like, 0.0), _like(like, 1.0 / s.prior_temperature)),
        posterior=lambda s, logits: Logistic(logits / s.posterior_temperature,
                                                  torch.full_like(logits, 1.0 / s.posterior_temperature)),
        squash="unit"),
    "step-logistic": Relaxation(
        "step-logistic",
        prior=lambda s, like: Logistic(_like(like, 0.0), _like(like, 1.0)),
        posterior=lambda s, logits: StepLogistic(logits=logits),
        squash="beta"),
    "spike-exp": _smoothing("spike-exp", SpikeAndExponential),
    "spike-power": _smoothing("spike-power", SpikeAndPower),
    # The closed-form KL (TraceMeanField_ELBO): the symmetric power puts samples within 1e-36 of 0,
    # where d log p(zeta) / d zeta ~ 1/zeta of prior and guide cancel exactly but, once Trace_ELBO
    # scales each by num_data / batch, overflow float32 to inf - inf = NaN (see SymmetricPowerRelaxation).
    "symmetric-power": _smoothing("symmetric-power", SymmetricPowerRelaxation, objective="meanfield"),
    "straight-through": Relaxation(
        "straight-through",
        prior=_bernoulli_prior,
        posterior=lambda s, logits: StraightThroughBernoulli(logits=logits, temperature=s.posterior_temperature)),
    "reinforce": _exact("reinforce", "graph", baseline=True),
    "disarm": _exact("disarm", "disarm"),
    "variance-loss": _exact("variance-loss", "variance"),
}


def get_relaxation(name: str) -> Relaxation:
    """The relaxation called ``name``, or a one-line ``ValueError`` listing the known ones."""
    try:
        return RELAXATIONS[name]
    except KeyError:
        raise ValueError(f"unknown relaxation {name!r}; expected one of {', '.join(RELAXATIONS)}") from None
