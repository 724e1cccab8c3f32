r"""The guide of the semi-supervised VAE M2: :math:`q(y \mid x)\, q(z \mid x, y)` (Kingma et al. 2014, §2.2).

* :math:`q(y \mid x) = \mathrm{Categorical}(\operatorname{softmax} f(x))`, the classifier. On an
  unlabelled row it is the distribution of ``"y_unobserved"`` (enumerated for the estimator
  ``enumerate``, a Gumbel-softmax sample otherwise); on a labelled row ``"y_unobserved"`` is masked,
  as in the model, and drawn from the fixed :math:`p(y)` (see :mod:`pyrovae.models.m2`).
* :math:`q(z \mid x, y) = \mathcal N(\mu(x, e_y), \operatorname{diag}\sigma(x, e_y)^2)`, reading the
  observed label on labelled rows.
* The classification term of Kingma et al. (eq. 9), :math:`\alpha \log q(y \mid x)` on each labelled
  example, is the guide factor ``"classification"`` with log-density :math:`-w \log q(y \mid x)`
  (a guide factor enters the ELBO with a minus sign), ``has_rsample=True`` since it is a
  differentiable function of the classifier's logits. Inside the data plate a batch of ``B`` out of
  ``N`` is scaled by ``N / B``, so a weight :math:`w = \alpha / N_l` per labelled example gives, in
  expectation over batches, :math:`\alpha` times the mean over the :math:`N_l` labelled examples.

The networks are a :class:`~pyrovae.nn.mixture.MixtureEncoder`, as the GMVAE's guide's.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import kl_divergence

from pyrovae.models.gmvae import check_estimator
from pyrovae.models.m2 import label_code, unobserved_y
from pyrovae.nn import open_data_plate
from pyrovae.nn.initialization import small_normal_
from pyrovae.nn.mixture import MixtureEncoder
from pyrovae.registry import register_guide
from pyrovae.validation import InputSpec


class M2Guide(nn.Module):
    """``forward(x, y, num_data=None)``: ``"y_unobserved"``, ``"z"`` and the factor ``"classification"``
    in the data plate, ``y`` holding -1 where the label is unknown.

    Args:
        x_dim: number of inputs ``D``.
        num_classes: number of classes ``C``.
        z_dim: dimension ``L`` of ``z``.
        hidden_sizes, activation: both networks' hidden layers (used when ``encoder`` is not given).
        estimator, temperature, straight_through: as :class:`~pyrovae.models.M2`'s (model and guide must agree).
        classification_weight: ``w``, the weight of :math:`-\\log q(y \\mid x)` per labelled example in
            the loss, relative to the ELBO's weight of one example: :math:`\\alpha / N_l` for Kingma et
            al.'s :math:`\\alpha` and :math:`N_l` labelled examples; 0 leaves the term out.
        encoder: a :class:`~pyrovae.nn.mixture.MixtureEncoder` (or a module with its ``logits`` and ``z_params``).
        name: the prefix of its parameters in Pyro's parameter store.
    """

    max_plate_nesting = 1

    def __init__(self, x_dim: int, num_classes: int = 10, z_dim: int = 50, hidden_sizes: Sequence[int] = (500,),
                 activation: str = "softplus", estimator: str = "enumerate", temperature: float = 1.0,
                 straight_through: bool = False, classification_weight: float = 0.0,
                 encoder: nn.Module | None = None, name: str = "m2_guide"):
        super().__init__()
        check_estimator(estimator, temperature)
        if not classification_weight >= 0:
            raise ValueError(f"classification_weight must be non-negative, got {classification_weight}")
        self.x_dim, self.num_classes, self.z_dim, self.name = x_dim, num_classes, z_dim, name
        self.estimator, self.straight_through = estimator, straight_through
        self.classification_weight = float(classification_weight)
        self.inputs = InputSpec((x_dim,), num_classes=num_classes, partially_labelled=True)
        self.encoder = encoder if encoder is not None else MixtureEncoder(x_dim, num_classes, z_dim, hidden_sizes,
                                                                          activation)
        # The model's uniform p(y): the labelled rows' y_unobserved, and the closed-form KL of gumbel-b.
        self.register_buffer("prior_logits", torch.zeros(num_classes))
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def with_estimator(self, estimator: str) -> M2Guide:
        """A view of this guide with another ``estimator``, sharing every parameter and buffer."""
        check_estimator(estimator, float(self.temperature))
        view = copy.copy(self)
        view.estimator = estimator
        return view

    def forward(self, x: torch.Tensor, y: torch.Tensor, num_data: int | None = None):
        labelled = y >= 0
        shown = y.clamp(min=0)
        with open_data_plate(self, x, y, num_data):
            logits = self.encoder.logits(x)
            if self.classification_weight > 0:
                log_q = dist.Categorical(logits=logits).log_prob(shown)
                pyro.factor("classification", -self.classification_weight * log_q * labelled, has_rsample=True)
            # Labelled rows: masked, drawn from the fixed p(y), so that the classifier gets no gradient there.
            unobserved_logits = torch.where(labelled.unsqueeze(-1), self.prior_logits, logits)
            if self.estimator == "gumbel-b":
                prior = dist.Categorical(logits=self.prior_logits.expand_as(logits))
                kl = kl_divergence(dist.Categorical(logits=unobserved_logits), prior)
                pyro.factor("y_kl", kl, has_rsample=True)
            distribution = unobserved_y(self.estimator, unobserved_logits, self.temperature, self.straight_through)
            infer = {"enumerate": "parallel"} if self.estimator == "enumerate" else {}
            unobserved = pyro.sample("y_unobserved", distribution.mask(~labelled), infer=infer)
            loc, scale = self.encoder.z_params(x, label_code(labelled, shown, unobserved, self.num_classes))
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    @torch.no_grad()
    def class_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`q(y \\mid x)`, shape ``(B, C)``."""
        return self.encoder.cluster_probabilities(x)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The style :math:`\\mathbb E_q[z \\mid x, \\hat y]` at :math:`\\hat y = \\arg\\max_y q(y \\mid x)`."""
        return self.encoder.most_probable_code(x)[1]


def build_m2_guide(config, data, model) -> M2Guide:
    """The guide of ``config``, with Kingma et al.'s :math:`\\alpha = ` ``config.alpha`` :math:`\\cdot N`
    spread over the labelled examples of ``data``."""
    labelled = len(data) if data.labelled is None else int(data.labelled.sum())
    weight = config.alpha * len(data) / labelled if labelled else 0.0
    guide = M2Guide(data.x_dim, data.num_classes, config.z_dim, config.hidden_sizes, config.activation,
                    config.estimator, config.temperature, config.straight_through, weight)
    return guide if config.init_scale is None else small_normal_(guide, config.init_scale)


register_guide("m2", "classifier", build_m2_guide)
