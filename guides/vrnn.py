"""The VRNN's guide ``q(z_{1:T} | x_{1:T}) = prod_t q(z_t | x_t, h_t)`` (Chung et al. 2015; Yang 2022, §5.6.2).

The exact posterior factorises as ``prod_t p(z_t | z_{<t}, x_{1:T})``. The tutorial drops the
dependence on the future rows ``x_{>t}`` and keeps a diagonal Normal, so each factor reads the
current row and the model's state ``h_t`` (which summarises ``x_{<t}, z_{<t}``)::

    q(z_t | x_t, h_t) = N(mu_phi(h_t || x_t), diag sigma_phi(h_t || x_t)^2),   sites "z_1", ..., "z_T",

with ``h_t`` from the model's LSTM run on this guide's own samples ``z_{<t}``.

**Sharing the LSTM.** :class:`VRNNGuide` is built from the model (``VRNNGuide(model)``) and reads
the model's :class:`~pyrovae.models.vrnn.VRNNRecurrence` without owning it: the LSTM defines ``h_t`` in
``p(x, z)``, so its weights are generative parameters, saved once in the model's ``state_dict``,
frozen with the model in alternating (EM) updates, and counted with the model in gradient
statistics. The guide's own parameters are its encoder ``phi``. The registry's guide builder
receives the model it pairs with (``build(config, data, model)``), as
:func:`pyrovae.experiment.build_model_and_guide` passes it.

**The tutorial's gradient.** Its code draws ``z_t`` with ``.sample()``: the reconstruction terms
``log p(x_t | h_t, z_t)`` then carry no gradient to the encoder, which learns only through the
closed-form KL terms (a biased gradient of the ELBO). ``reparameterize=False`` reproduces that: the
sample is detached but still counts as reparameterized, so Pyro adds no score-function term. Train it
with ``TraceMeanField_ELBO`` (objective ``meanfield``), as the tutorial does: with ``Trace_ELBO``'s
sampled KL the encoder's expected gradient would then be zero. The default ``reparameterize=True``
gives the unbiased reparameterized gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.models.vrnn import VRNN, VRNNRecurrence, check_sequence_length, concat, latent_site
from pyrovae.nn import Encoder, LocScaleHead, open_data_plate
from pyrovae.registry import register_guide


class DetachedSampleNormal(dist.Normal):
    """A Normal whose (reparameterized) samples are detached from ``loc`` and ``scale``; its
    ``log_prob`` and KL are the Normal's. The tutorial's ``.sample()`` as a Pyro site."""

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return super().rsample(sample_shape).detach()


class VRNNGuide(nn.Module):
    """``q(z_t | x_t, h_t)`` for ``t = 1, ..., T``: ``forward(x, num_data=None)`` is the Pyro guide.

    Args:
        model: the :class:`~pyrovae.models.VRNN` whose LSTM state ``h_t`` the guide reads (not a
            submodule of the guide: see the module docstring).
        hidden_sizes: hidden layers of the encoder ``h_t || x_t -> (mu, sigma)``.
        activation: their activation.
        reparameterize: ``False`` detaches ``z_t`` as the tutorial's code does.
        name: the prefix of its parameters in Pyro's parameter store.
    """

    max_plate_nesting = 1
    recurrence: VRNNRecurrence

    def __init__(
        self,
        model: VRNN,
        hidden_sizes: Sequence[int] = (500, 500),
        activation: str = "relu",
        reparameterize: bool = True,
        name: str = "vrnn_guide",
    ):
        super().__init__()
        hidden = list(hidden_sizes)
        self.seq_len, self.z_dim, self.name = model.seq_len, model.z_dim, name
        self.inputs = model.inputs
        self.reparameterize = reparameterize
        # object.__setattr__ keeps nn.Module from registering the model's LSTM as the guide's own.
        object.__setattr__(self, "recurrence", model.recurrence)
        hidden_dim = model.recurrence.hidden_dim
        head = LocScaleHead(hidden[-1] if hidden else hidden_dim + model.x_dim, model.z_dim)
        self.encoder = Encoder(hidden_dim + model.x_dim, hidden, head, activation)

    def posterior(self, h: torch.Tensor, x_t: torch.Tensor) -> dist.TorchDistribution:
        """``q(z_t | x_t, h_t)``."""
        loc, scale = self.encoder(concat(h, x_t))
        family = dist.Normal if self.reparameterize else DetachedSampleNormal
        return family(loc, scale).to_event(1)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        check_sequence_length(x, self.inputs)
        with open_data_plate(self, x, num_data=num_data):
            h, state = self.recurrence.initial(x)
            for t in pyro.markov(range(self.seq_len)):
                z = pyro.sample(latent_site(t + 1), self.posterior(h, x[:, t]))
                if t + 1 < self.seq_len:
                    h, state = self.recurrence(x[:, t], z, state)
        return z


def build_vrnn_guide(config, data, model: VRNN) -> VRNNGuide:
    """The guide of ``config``, sharing the LSTM of ``model``."""
    return VRNNGuide(model, config.hidden_sizes, config.activation, config.reparameterize)


register_guide("vrnn", "recurrent", build_vrnn_guide)
