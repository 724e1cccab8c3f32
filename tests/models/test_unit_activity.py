"""Dead and saturated Bernoulli latent units against a brute-force count over a table of logits."""

from __future__ import annotations

import math

import pyro.distributions as dist
import pytest
import torch

from pyrovae.distributions import StepLogistic
from pyrovae.guides.bernoulli import BernoulliLatentGuide
from pyrovae.models import BernoulliVAE
from pyrovae.unit_activity import ACTIVITY_THRESHOLD, DeadUnitsLog, unit_activity

# One row per image, one column per unit: always on and saturated; constant 1/2; on or off, but
# always saturated (active); spread (active); a small spread (dead, not saturated).
LOGITS = torch.tensor([[30.0, 0.0, 12.0, -3.0, -0.2],
                       [30.0, 0.0, -12.0, -1.0, -0.1],
                       [30.0, 0.0, 12.0, 0.0, 0.0],
                       [30.0, 0.0, -12.0, 1.0, 0.1],
                       [30.0, 0.0, 12.0, 2.0, 0.2],
                       [30.0, 0.0, -11.0, 3.0, 0.2]])


class TableGuide:
    """``q(z | x)`` of image ``i`` (``x`` the one-hot row ``i``): StepLogistic units with logits ``LOGITS[i]``."""

    def posterior(self, x):
        return StepLogistic(logits=x @ LOGITS).to_event(1)


def brute_force(logits: list[list[float]]) -> tuple[list[float], list[bool], list[bool], list[float]]:
    """Activity Var_x(sigmoid(a_u(x))), dead (activity <= 0.01), saturated (|a_u(x)| > 10 for all x) and the
    share of images with |a_u(x)| > 10, per unit."""
    activity, saturated, fraction = [], [], []
    for column in zip(*logits):
        probs = [1 / (1 + math.exp(-a)) for a in column]
        mean = sum(probs) / len(probs)
        activity.append(sum((p - mean) ** 2 for p in probs) / len(probs))
        saturated.append(all(abs(a) > 10 for a in column))
        fraction.append(sum(abs(a) > 10 for a in column) / len(column))
    return activity, [a <= ACTIVITY_THRESHOLD for a in activity], saturated, fraction


def test_dead_and_saturated_units_of_a_table_of_logits():
    stats = unit_activity(TableGuide(), torch.eye(len(LOGITS)), batch_size=4)
    activity, dead, saturated, fraction = brute_force(LOGITS.tolist())
    assert torch.allclose(stats.activity, torch.tensor(activity), atol=1e-6)
    assert torch.allclose(stats.saturated_fraction, torch.tensor(fraction)) and fraction[2] == 1.0
    assert stats.dead.tolist() == dead == [True, True, False, False, True]
    assert stats.saturated.tolist() == saturated == [True, False, True, False, False]


def test_the_epoch_log_counts_the_dead_units_of_a_trained_guide():
    torch.manual_seed(0)
    model = BernoulliVAE(6, 4, "step-logistic", (5,))
    guide = BernoulliLatentGuide(model, (5,))
    head = guide.encoder.head.logits
    with torch.no_grad():
        head.weight.mul_(20)
        head.weight[0].zero_(), head.bias[0].fill_(25.0)  # unit 0: always on
        head.weight[1].zero_(), head.bias[1].fill_(0.0)  # unit 1: a coin flip whatever the image
    x = torch.bernoulli(torch.full((200, 6), 0.5))
    with torch.no_grad():
        logits = guide.encoder(x)
    _, dead, saturated, fraction = brute_force(logits.tolist())
    row = {}
    DeadUnitsLog(guide, x).on_epoch_end(1, row, None)
    assert dead[:2] == [True, True] and saturated[:2] == [True, False]
    assert row == {"dead_units": sum(dead), "saturated_units": sum(saturated),
                   "saturated_logits": pytest.approx(sum(fraction) / len(fraction))}


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="saturation_logit must be positive"):
        unit_activity(TableGuide(), torch.eye(len(LOGITS)), saturation_logit=0.0)

    class NormalGuide:
        def posterior(self, x):
            return dist.Normal(x, 1.0).to_event(1)

    with pytest.raises(TypeError, match="no Bernoulli view"):
        unit_activity(NormalGuide(), torch.zeros(3, 2))
