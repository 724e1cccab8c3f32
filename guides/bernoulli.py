r"""The amortised guide of :class:`~pyrovae.models.BernoulliVAE`: ``q(z | x)`` of the model's
relaxation (:mod:`pyrovae.relaxations`) from an MLP encoder.

The encoder ends in logits (``(loc, scale)`` for ``gaussian-sigmoid``). For ``reinforce`` the
guide also holds the input-dependent baseline :math:`b_\psi(x)` of NVIL (Mnih & Gregor 2014), an MLP
that Pyro's ``TraceGraph_ELBO`` trains by regression on the downstream cost and subtracts from the
score-function term. Pyro's downstream cost carries the data plate's subsampling scale :math:`N/B`
(Pyro issue 555), so the guide hands Pyro :math:`\tfrac{N}{B} b_\psi(x)`: the network predicts one
example's cost, :math:`\log p(x, z) - \log q(z | x)`, whatever the batch size. A network asked to output
the scaled cost itself (about :math:`-2 \times 10^5` nats for MNIST at batch 50, from an output near 0
at initialisation, with Adam's step of :math:`10^{-4}`) lags it by thousands of nats for the whole run,
and the score-function term keeps nearly all its variance.

**Dead units and** ``centred_logits``. A logit :math:`a` gets every gradient through
:math:`\sigma(a)\sigma(-a)`, and the StepLogistic KL is capped at :math:`\log 2` (Sadier-Gane 2020,
eq. 5.5), so nothing in the StepLogistic ELBO holds the logits back: certainty only helps the
reconstruction, and they run off to tens or hundreds. A unit whose logits all land on one side early
in training stays there, carrying nothing and costing up to :math:`\log 2` nats per image: a dead unit
(see :mod:`pyrovae.unit_activity`). With ``centred_logits`` each unit's logits are standardised over
the batch (a batch normalisation without shift, with its running mean and variance at evaluation;
Ioffe & Szegedy 2015) and multiplied by a learnt per-unit scale, so that no unit can take the same
value for every image; Zhu et al. (2020) normalise a Gaussian guide's means in the same way against
posterior collapse. Bounding the logits instead (:math:`c \tanh(a/c)`, :math:`c = 5`) was tried and did
not help: as many units died in the first epochs.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.amortized import AmortizedGuide
from pyrovae.infer import bernoulli_view
from pyrovae.models.bernoulli_vae import BernoulliVAE
from pyrovae.nn import Encoder, LocScaleHead, LogitsHead, mlp, open_data_plate
from pyrovae.registry import register_guide
from pyrovae.relaxations import RelaxationSettings


class BernoulliLatentGuide(AmortizedGuide):
    """``q(z | x)`` of ``model``'s relaxation; ``beta`` is a buffer of its own (the guide does not
    own the model's modules), set with the model's by the annealing schedule."""

    def __init__(self, model: BernoulliVAE, hidden_sizes: Sequence[int] = (256, 128), activation: str = "relu",
                 centred_logits: bool = False):
        if centred_logits and model.relaxation.head != "logits":
            raise ValueError(f"centred_logits applies to logits; relaxation {model.relaxation.name!r} has a "
                             "(loc, scale) encoder")
        self.relaxation = model.relaxation
        self.temperatures = (model.prior_temperature, model.posterior_temperature)
        hidden = list(hidden_sizes)
        width = hidden[-1] if hidden else model.x_dim
        head = LocScaleHead(width, model.z_dim) if self.relaxation.head == "loc_scale" else LogitsHead(width, model.z_dim)
        super().__init__(model.x_dim, model.z_dim, hidden, activation,
                         encoder=Encoder(model.x_dim, hidden, head, activation))
        self.register_buffer("beta", model.beta.clone())
        self.centring = nn.BatchNorm1d(model.z_dim, affine=False) if centred_logits else None
        self.logit_scale = nn.Parameter(torch.ones(model.z_dim)) if centred_logits else None
        # b_psi(x): one number per example, the shape of the site's batch.
        self.baseline = (nn.Sequential(mlp([model.x_dim, *hidden, 1], activation), nn.Flatten(-2))
                         if self.relaxation.baseline else None)

    def encoder_output(self, x: torch.Tensor):
        """The encoder's logits (or ``(loc, scale)``), centred if ``centred_logits``."""
        output = self.encoder(x)
        if self.centring is not None:
            output = self.centring(output.reshape(-1, output.shape[-1])).reshape(output.shape) * self.logit_scale
        return output

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        settings = RelaxationSettings(self.beta, *self.temperatures)
        return self.relaxation.posterior(settings, self.encoder_output(x)).to_event(1)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        plate = open_data_plate(self, x, num_data=num_data)
        infer = {}
        if self.baseline is not None:
            # Pyro's downstream cost is scaled by the plate's N / B; the network predicts one example's.
            infer["baseline"] = {"baseline_value": self.baseline(x) * (plate.size / plate.subsample_size)}
        with plate:
            return pyro.sample("z", self.posterior(x), infer=infer)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``P(z_d = 1 | x)`` per unit: the Bernoulli the posterior stands for."""
        return bernoulli_view(self.posterior(x)).probs


register_guide("bernoulli-vae", "amortized",
               lambda config, data, model: BernoulliLatentGuide(model, config.hidden_sizes, config.activation,
                                                                config.centred_logits))
