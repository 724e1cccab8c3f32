"""The conjugate Gaussian model the objective tests check against known answers.

Prior z ~ N(0, 1) and likelihood x | z ~ N(z, SIGMA^2), observed at x = X. In closed form:

* posterior   p(z | x) = N(z; x / (1 + SIGMA^2), SIGMA^2 / (1 + SIGMA^2)), i.e. N(POST_LOC, POST_SCALE^2);
* evidence    p(x) = N(x; 0, 1 + SIGMA^2), so
  log p(X) = -1/2 log(2 pi (1 + SIGMA^2)) - X^2 / (2 (1 + SIGMA^2)) = LOG_EVIDENCE.

``conjugate_model`` puts the likelihood in a data plate of independent copies, and ``NormalGuide``
is q(z_n | x_n) = N(loc, scale^2), so ``NormalGuide(POST_LOC, POST_SCALE)`` is the exact posterior
for every copy of X.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import ClippedAdam

SIGMA = 0.7
X = 1.3
POST_LOC = X / (1 + SIGMA**2)
POST_SCALE = math.sqrt(SIGMA**2 / (1 + SIGMA**2))
LOG_EVIDENCE = -0.5 * math.log(2 * math.pi * (1 + SIGMA**2)) - X**2 / (2 * (1 + SIGMA**2))


def conjugate_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, SIGMA), obs=x)


class NormalGuide(torch.nn.Module):
    """q(z_n | x_n) = N(loc, scale^2), the same for every data point."""

    def __init__(self, loc, scale):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.tensor(float(loc)))
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(scale)))

    def forward(self, x):
        pyro.module("guide", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.loc, self.log_scale.exp()))


def assert_trains_to_the_posterior(model, make_objective, x):
    """Train ``NormalGuide(-1, 2)`` on ``x`` for 400 steps of ``make_objective()``, in SVI and then
    as an nn.Module (a fresh guide, objective and param store), and check that both land within
    0.05 of POST_LOC and POST_SCALE."""
    guide = NormalGuide(-1.0, 2.0)
    # The learning rate decays 0.05 -> 0.001 so the last iterate is not dominated by SGD noise.
    svi = SVI(model, guide, ClippedAdam({"lr": 0.05, "lrd": 0.99}), loss=make_objective())
    for _ in range(400):
        svi.step(x)
    assert guide.loc.item() == pytest.approx(POST_LOC, abs=0.05), ("SVI", guide.loc.item())
    assert guide.log_scale.exp().item() == pytest.approx(POST_SCALE, abs=0.05), ("SVI", guide.log_scale.exp().item())

    pyro.clear_param_store()
    guide = NormalGuide(-1.0, 2.0)
    module = make_objective()(model, guide)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.05)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.99)
    for _ in range(400):
        optimizer.zero_grad()
        module(x).backward()
        optimizer.step()
        schedule.step()
    assert guide.loc.item() == pytest.approx(POST_LOC, abs=0.05), ("module", guide.loc.item())
    assert guide.log_scale.exp().item() == pytest.approx(POST_SCALE, abs=0.05), ("module", guide.log_scale.exp().item())
