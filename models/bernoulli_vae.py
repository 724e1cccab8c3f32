r"""A VAE with :math:`D` Bernoulli latent units, trainable by any relaxation or estimator of
:mod:`pyrovae.relaxations` (Sadier-Gane 2020; Yin & Zhou 2019; Dong, Mnih & Tucker 2020).

Generative model, for each data point ``i`` in the ``"data"`` plate::

    z_i ~ p(z)                                    (site "z"; the relaxation's prior, D units)
    x_i | z_i ~ p_theta(x | decoder(s(z_i)))      (site "x")

where ``s`` is what the decoder sees of a sample (``sigmoid(beta z)`` for a real-valued relaxation,
``z`` otherwise). Every relaxation stands for the same discrete model: ``z_d ~ Bernoulli(1/2)^D``
and ``x | z_d ~ decode(z_d)``, whose ELBO is :class:`~pyrovae.infer.TrueDiscreteBound`, logged
every epoch next to the training objective, and whose exact log-likelihood for small ``D`` is
:func:`pyrovae.evaluate.exact_log_likelihood`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.callbacks import Callback, Diagnostics
from pyrovae.infer import TrueDiscreteBound
from pyrovae.nn import (
    ACTIVATIONS,
    LIKELIHOODS,
    DecodesThroughLikelihood,
    PriorThenLikelihood,
    decoder_mlp,
    make_likelihood,
)
from pyrovae.registry import register_model
from pyrovae.relaxations import RELAXATIONS, RelaxationSettings, get_relaxation
from pyrovae.validation import InputSpec


def check_relaxation_settings(z_dim: int, beta: float, prior_temperature: float, posterior_temperature: float) -> None:
    """One-line ``ValueError``\\ s for settings no relaxation accepts."""
    if z_dim < 1:
        raise ValueError(f"z_dim must be at least 1, got {z_dim}")
    for name, value in (("beta", beta), ("prior_temperature", prior_temperature),
                        ("posterior_temperature", posterior_temperature)):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")


class BernoulliVAE(PriorThenLikelihood, DecodesThroughLikelihood, nn.Module):
    """The model: ``forward(x, num_data=None)`` is the Pyro model.

    Args:
        x_dim: number of pixels.
        z_dim: number of Bernoulli latent units ``D``.
        relaxation: a name of :data:`pyrovae.relaxations.RELAXATIONS`.
        hidden_sizes: decoder hidden layers (``[]``: a linear decoder).
        activation: hidden activation.
        likelihood: ``"bernoulli"``, ``"gaussian"`` or ``"continuous_bernoulli"``.
        beta: steepness of ``sigmoid(beta z)`` or sharpness of a smoothing (a buffer, so an
            annealing schedule's value is checkpointed).
        prior_temperature, posterior_temperature: Concrete temperatures (Maddison et al. 2017:
            1/2 and 2/3); the posterior one is also the straight-through estimator's.
    """

    max_plate_nesting = 1

    def __init__(self, x_dim: int, z_dim: int = 8, relaxation: str = "step-logistic",
                 hidden_sizes: Sequence[int] = (256, 128), activation: str = "relu", likelihood: str = "bernoulli",
                 beta: float = 10.0, prior_temperature: float = 0.5, posterior_temperature: float = 2 / 3):
        super().__init__()
        check_relaxation_settings(z_dim, beta, prior_temperature, posterior_temperature)
        self.relaxation = get_relaxation(relaxation)
        self.x_dim, self.z_dim, self.name = x_dim, z_dim, "bernoulli_vae"
        self.prior_temperature, self.posterior_temperature = prior_temperature, posterior_temperature
        self.likelihood = make_likelihood(likelihood, x_dim)
        self.inputs = InputSpec((x_dim,), support=self.likelihood.support)
        self.decoder = decoder_mlp(z_dim, hidden_sizes, x_dim, activation)
        self.register_buffer("beta", torch.tensor(float(beta)))

    def settings(self) -> RelaxationSettings:
        r"""The relaxation's settings: the model's :math:`\beta` and the prior's and posterior's temperatures."""
        return RelaxationSettings(self.beta, self.prior_temperature, self.posterior_temperature)

    def prior(self, batch_size: int) -> dist.TorchDistribution:
        """``p(z)`` of the relaxation, ``(batch_size, D)`` units."""
        like = self.beta.new_zeros(batch_size, self.z_dim)
        return self.relaxation.prior(self.settings(), like).to_event(1)

    def decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        """What the decoder sees of a latent sample (a hard sample gives exactly 0 or 1)."""
        return self.relaxation.decoder_input(z, self.beta)

    @property
    def discrete_prior_probs(self) -> torch.Tensor:
        """``P(z_d = 1)`` per unit of the discrete model every relaxation stands for: 1/2."""
        return self.beta.new_full((self.z_dim,), 0.5)

    @torch.no_grad()
    def sample_images(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images ``E[x | z_d]`` of the discrete model, ``z_d ~ Bernoulli(1/2)^D``."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        probs = self.discrete_prior_probs.expand(num_samples, self.z_dim)
        return self.decode_mean(torch.bernoulli(probs, generator=generator))


@dataclass
class BernoulliVAEConfig:
    """Hyperparameters of :class:`BernoulliVAE` and its guide."""

    z_dim: int = field(default=8, metadata={"help": "number of Bernoulli latent units D", "min": 1,
                                            "flags": ["--latent-dim"]})
    relaxation: str = field(default="step-logistic", metadata={
        "help": "how the Bernoulli latents are trained", "choices": list(RELAXATIONS)})
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 128], metadata={
        "help": "hidden layer sizes of the encoder and of the decoder (none: linear)", "min": 1, "allow_empty": True,
        "flags": ["--hidden"]})
    activation: str = field(default="relu", metadata={"help": "hidden activation", "choices": sorted(ACTIVATIONS)})
    likelihood: str = field(default="bernoulli", metadata={"help": "p(x | z)", "choices": sorted(LIKELIHOODS)})
    beta: float = field(default=10.0, metadata={
        "help": "steepness of sigmoid(beta z), or sharpness of a smoothing (its final value when annealed)",
        "positive": True})
    beta_start: float | None = field(default=None, metadata={
        "help": "anneal beta linearly from this value (smoothings only; none: fixed)", "positive": True})
    anneal_epochs: int = field(default=10, metadata={"help": "epochs over which beta is annealed", "min": 1})
    prior_temperature: float = field(default=0.5, metadata={"help": "Concrete temperature of the prior",
                                                            "positive": True})
    posterior_temperature: float = field(default=2 / 3, metadata={
        "help": "Concrete temperature of the guide (and of the straight-through gradient)", "positive": True})
    centred_logits: bool = field(default=False, metadata={
        "help": "standardise each unit's logits over the batch, times a learnt scale (against dead units)"})
    true_bound_particles: int = field(default=1, metadata={
        "help": "particles of the true (discrete) bound logged each epoch", "min": 1})


def annealed_beta(config: BernoulliVAEConfig, epochs_done: int) -> float:
    """``beta`` after ``epochs_done`` epochs: linear from ``beta_start`` to ``beta`` over
    ``anneal_epochs`` for a smoothing with ``beta_start`` set, else ``beta``."""
    if config.beta_start is None or not get_relaxation(config.relaxation).anneals:
        return config.beta
    fraction = min(1.0, epochs_done / config.anneal_epochs)
    return config.beta_start + (config.beta - config.beta_start) * fraction


def build_bernoulli_vae(config: BernoulliVAEConfig, data) -> BernoulliVAE:
    """The :class:`BernoulliVAE` of ``config`` (``beta`` at the start of its schedule)."""
    return BernoulliVAE(data.x_dim, config.z_dim, config.relaxation, config.hidden_sizes, config.activation,
                        config.likelihood, annealed_beta(config, 0), config.prior_temperature,
                        config.posterior_temperature)


class BetaAnnealing(Callback):
    """Anneal ``beta`` of ``model`` and ``guide`` between epochs (:func:`annealed_beta`), logging as
    ``row["beta"]`` the value each epoch trained with. ``beta`` is a buffer, so it is checkpointed
    and a resumed run continues with it."""

    def __init__(self, config: BernoulliVAEConfig, model: BernoulliVAE, guide):
        self.config, self.model, self.guide = config, model, guide

    def on_epoch_end(self, epoch: int, row: dict, run) -> None:
        row["beta"] = self.model.beta.item()
        value = annealed_beta(self.config, epoch)
        for module in (self.model, self.guide):
            module.beta.fill_(value)


def bernoulli_vae_callbacks(config: BernoulliVAEConfig, model: BernoulliVAE, guide, test=None) -> list:
    """Log the true (discrete) bound on the test set every epoch and anneal ``beta`` between epochs."""
    callbacks = [Diagnostics({"true_bound": TrueDiscreteBound(num_particles=config.true_bound_particles,
                                                              max_plate_nesting=model.max_plate_nesting)})]
    if config.beta_start is not None and model.relaxation.anneals:
        callbacks.append(BetaAnnealing(config, model, guide))
    return callbacks


# The dissertation's networks: MNIST, sigmoid(beta z) with beta = 10, 125 epochs (Sadier-Gane 2020, §4-5).
_DISSERTATION = dict(binarize="dynamic", hidden_sizes=[512, 256], activation="relu", beta=10.0,
                     batch_size=128, lr=1e-3, epochs=125)
# Yin & Zhou 2019 (ARM), Table 2: statically binarized MNIST, 200 Bernoulli latents, batch 50, Adam.
_ARM_LINEAR = dict(dataset="binarized-mnist", z_dim=200, hidden_sizes=[], batch_size=50, lr=1e-4, epochs=1000)
_ARM_NONLINEAR = dict(_ARM_LINEAR, hidden_sizes=[200, 200], activation="tanh")

register_model(
    "bernoulli-vae",
    BernoulliVAEConfig,
    build=build_bernoulli_vae,
    default_guide="amortized",
    description="VAE with D Bernoulli latents; every relaxation and estimator (--relaxation)",
    default_objective=lambda settings: get_relaxation(settings.get("relaxation", BernoulliVAEConfig.relaxation)).objective,
    callbacks=bernoulli_vae_callbacks,
    presets={
        "tiny": dict(dataset="digits", binarize="dynamic", z_dim=4, hidden_sizes=[16], epochs=1, batch_size=64),
        "digits": dict(dataset="digits", binarize="dynamic", z_dim=8, hidden_sizes=[128], epochs=60, batch_size=64,
                       lr=3e-3),
        "dissertation-8": dict(_DISSERTATION, dataset="mnist", z_dim=8),
        "dissertation-56": dict(_DISSERTATION, dataset="mnist", z_dim=56),
        "dissertation-fashion-8": dict(_DISSERTATION, dataset="fashion-mnist", z_dim=8),
        "arm-linear": _ARM_LINEAR,
        "arm-nonlinear": _ARM_NONLINEAR,
    },
)
