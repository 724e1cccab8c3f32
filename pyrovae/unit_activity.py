r"""Which Bernoulli latent units a trained guide still uses: dead and saturated units.

A unit :math:`u` of a Bernoulli-latent guide is *active* when its posterior mean moves with the input.
Burda, Grosse & Salakhutdinov (2016, §5.2) measure a unit's activity as

.. math::

    A_u = \operatorname{Var}_x\bigl(\mathbb{E}_{q(z \mid x)}[z_u]\bigr)

over the test set, and call it active when :math:`A_u > 10^{-2}`. Here :math:`z_u` is the discrete
unit the relaxed one stands for (its :func:`~pyrovae.infer.bernoulli_view`), so
:math:`\mathbb{E}_q[z_u \mid x] = \lambda_u(x) = \sigma(a_u(x))`, the guide's probability of a 1,
whatever the relaxation; a unit that is not active is *dead*. (:math:`A_u \le 1/4`, the variance of
the Bernoulli(1/2) prior, against 1 for Burda et al.'s Gaussian units: the threshold is the same
number, which is stricter here.)

A unit is *saturated* when :math:`|a_u(x)| > c` for every test image (default :math:`c = 10`): its
logit's every gradient carries the factor :math:`\sigma(a)\sigma(-a) < 4.6 \cdot 10^{-5}`, and a
StepLogistic unit's KL, :math:`\mathrm{KL}(\mathrm{Bern}(\sigma(a)) \,\|\, \mathrm{Bern}(1/2))`, is
within :math:`10^{-3}` of its cap :math:`\log 2`, so nothing pulls it back (Sadier-Gane 2020, §5.2,
eq. 5.5). A dead unit costs up to :math:`\log 2` nats of KL per image and carries no information.
The *saturated fraction* is the share of all (image, unit) logits beyond :math:`c`: how far the
guide's logits have run off, which a unit being saturated for every image is the extreme of.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrovae.callbacks import Callback
from pyrovae.data import as_dataset
from pyrovae.infer import bernoulli_view

#: Burda et al. (2016, §5.2): a unit is active when the variance of its posterior mean exceeds this.
ACTIVITY_THRESHOLD = 1e-2
#: A logit beyond this for every image is saturated: sigma(a) sigma(-a) < 4.6e-5.
SATURATION_LOGIT = 10.0


@dataclass(frozen=True)
class UnitActivity:
    """Per-unit statistics of a guide over a data set (tensors of shape ``(D,)``)."""

    #: :math:`A_u`, the variance over the images of :math:`P(z_u = 1 \mid x)`.
    activity: torch.Tensor
    #: Units whose logit exceeds the saturation threshold in absolute value for every image.
    saturated: torch.Tensor
    #: The share of (image, unit) logits beyond the threshold, per unit.
    saturated_fraction: torch.Tensor

    @property
    def dead(self) -> torch.Tensor:
        """Which units are inactive: activity at most :data:`ACTIVITY_THRESHOLD` (Burda et al. 2016, §5.2)."""
        return self.activity <= ACTIVITY_THRESHOLD


@torch.no_grad()
def unit_activity(guide, data, batch_size: int = 1000, saturation_logit: float = SATURATION_LOGIT) -> UnitActivity:
    """:class:`UnitActivity` of ``guide`` (anything with ``posterior(x)``, a distribution over the
    ``D`` units whose :func:`~pyrovae.infer.bernoulli_view` exists) on ``data`` (a
    :class:`~pyrovae.data.Dataset` or a tensor of examples)."""
    if not saturation_logit > 0:
        raise ValueError(f"saturation_logit must be positive, got {saturation_logit}")
    probs, logits = [], []
    for x, _ in as_dataset(data).batches(batch_size, shuffle=False):
        view = bernoulli_view(guide.posterior(x))
        if view is None:
            raise TypeError(f"unit_activity needs a guide over Bernoulli units; {type(guide).__name__}'s posterior "
                            "has no Bernoulli view")
        probs.append(view.probs.expand(x.shape[0], -1))
        logits.append(view.logits if view.logits is not None else torch.logit(view.probs))
    probs, logits = torch.cat(probs), torch.cat(logits)
    # Two passes over the float64 probabilities: the variance of near-constant columns stays exact.
    activity = probs.double().var(dim=0, unbiased=False).to(probs.dtype)
    beyond = logits.abs() > saturation_logit
    return UnitActivity(activity, beyond.all(dim=0), beyond.to(probs.dtype).mean(dim=0))


class DeadUnitsLog(Callback):
    """A callback of :func:`pyrovae.train.fit` logging per epoch ``row["dead_units"]`` and
    ``row["saturated_units"]``: how many of the guide's units are dead (:math:`A_u \\le 10^{-2}`) and
    saturated on ``data`` (the test set), and ``row["saturated_logits"]``, the share of all its logits
    beyond the threshold."""

    def __init__(self, guide, data, saturation_logit: float = SATURATION_LOGIT):
        self.guide, self.data, self.saturation_logit = guide, as_dataset(data), saturation_logit

    def on_epoch_end(self, epoch: int, row: dict, run) -> None:
        stats = unit_activity(self.guide, self.data, saturation_logit=self.saturation_logit)
        row["dead_units"] = int(stats.dead.sum())
        row["saturated_units"] = int(stats.saturated.sum())
        row["saturated_logits"] = float(stats.saturated_fraction.mean())
