"""Enumerated objectives (``TraceEnum_ELBO``, ``TraceEnumMeanField_ELBO``) on the captured and compiled
engines: the captured graph reads no tensor's value (pyrovae.infer.dice) and gives eager's loss and
gradients on the same noise."""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

from pyrovae.capture import CapturedLoss
from pyrovae.engines import CompiledEngine
from pyrovae.experiment import Experiment, build
from pyrovae.infer import TraceEnumMeanField_ELBO

OBJECTIVES = {"enum": TraceEnum_ELBO, "enum_meanfield": TraceEnumMeanField_ELBO}


class ToyMixture(torch.nn.Module):
    """``y ~ Cat(1/3)``, ``z | y ~ N(loc_y, 1)``, ``x | z ~ N(z, 1)``; ``y`` a ``Categorical`` or a ``OneHotCategorical``."""

    max_plate_nesting = 1

    def __init__(self, one_hot: bool):
        super().__init__()
        self.one_hot = one_hot
        self.locs = torch.nn.Parameter(torch.tensor([-2.0, 0.0, 2.0]))

    def forward(self, x, num_data=None):
        with pyro.plate("data", x.shape[0]):
            logits = torch.zeros(x.shape[0], 3)
            if self.one_hot:
                y = pyro.sample("y", dist.OneHotCategorical(logits=logits))
                loc = (y * self.locs).sum(-1)
            else:
                loc = self.locs[pyro.sample("y", dist.Categorical(logits=logits))]
            z = pyro.sample("z", dist.Normal(loc, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)


class ToyMixtureGuide(torch.nn.Module):
    """``q(y | x)`` enumerated, ``q(z | x, y)`` Normal; ``impossible`` gives the last value of ``y``
    probability zero, so the expectation must leave its (infinite) cost out."""

    def __init__(self, one_hot: bool, impossible: bool = False):
        super().__init__()
        self.one_hot, self.impossible = one_hot, impossible
        self.classifier = torch.nn.Linear(1, 3)
        self.slope = torch.nn.Parameter(torch.tensor(0.5))
        self.offsets = torch.nn.Parameter(torch.tensor([-1.0, 0.0, 1.0]))

    @config_enumerate
    def forward(self, x, num_data=None):
        with pyro.plate("data", x.shape[0]):
            logits = self.classifier(x.unsqueeze(-1))
            if self.impossible:
                logits = torch.cat([logits[:, :2], torch.full_like(logits[:, 2:], -float("inf"))], -1)
            if self.one_hot:
                y = pyro.sample("y", dist.OneHotCategorical(logits=logits))
            else:
                y = torch.nn.functional.one_hot(pyro.sample("y", dist.Categorical(logits=logits)), 3).to(x.dtype)
            pyro.sample("z", dist.Normal(self.slope * x + y @ self.offsets, 0.5))


def toy(kind: str):
    torch.manual_seed(0)
    one_hot = kind.startswith("one-hot")
    return ToyMixture(one_hot), ToyMixtureGuide(one_hot, impossible=kind.endswith("impossible")), (torch.randn(20),)


def registered(name: str, **settings):
    experiment = Experiment.resolve({"model": name, "preset": "tiny", **settings})
    train, _, model, guide, _ = build(experiment)
    x, _ = next(train.batches(8, shuffle=False))
    return model, guide, (x,)


CASES = {
    "toy-categorical": lambda: toy("categorical"),
    "toy-one-hot": lambda: toy("one-hot"),
    "toy-categorical-impossible": lambda: toy("categorical-impossible"),
    "gmvae": lambda: registered("gmvae", estimator="enumerate"),
    "mixture-vae": lambda: registered("mixture-vae"),
}


def eager(elbo, model, guide, args, num_data):
    with pyro.validation_enabled(False), pyro.settings.context(pyrovae_register_modules=False):
        return elbo.differentiable_loss(model, guide, *args, num_data=num_data)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("case", CASES)
def test_captured_enumeration_gives_the_eager_loss_and_gradients_on_the_same_noise(case, objective):
    model, guide, args = CASES[case]()
    elbo = OBJECTIVES[objective](max_plate_nesting=1)
    captured = CapturedLoss(elbo, model, guide, compile=False)
    parameters = captured.trainable
    results = []
    for run in (lambda: captured(args, 100)[0], lambda: eager(elbo, model, guide, args, 100)):
        torch.manual_seed(3)
        loss = run()
        results.append((loss, torch.autograd.grad(loss, parameters, allow_unused=True)))
    (loss, gradients), (eager_loss, eager_gradients) = results
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(eager_loss.item(), rel=1e-5)
    for graph_grad, eager_grad in zip(gradients, eager_gradients, strict=True):
        assert (graph_grad is None) == (eager_grad is None)
        if graph_grad is not None:
            assert torch.allclose(graph_grad, eager_grad, rtol=1e-4, atol=1e-5)
    torch.manual_seed(4)
    assert captured(args, 100)[0].item() != loss.item()  # fresh noise per call: the z term is sampled


def test_the_impossible_value_gets_no_gradient():
    """The value of ``y`` with probability zero has an infinite cost; it must contribute neither to the
    loss nor, through the where, a NaN to the gradients."""
    model, guide, args = toy("categorical-impossible")
    captured = CapturedLoss(TraceEnum_ELBO(max_plate_nesting=1), model, guide, compile=False)
    loss = captured(args, 20)[0]
    gradients = torch.autograd.grad(loss, captured.trainable)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in gradients)


@pytest.mark.parametrize("case", ["toy-categorical", "toy-one-hot"])
def test_enumeration_trains_on_the_compiled_engine_without_falling_back(case):
    model, guide, args = toy(case)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager warns
        engine = CompiledEngine(model, guide, TraceEnum_ELBO(max_plate_nesting=1), lr=1e-2)
        before = [p.detach().clone() for p in engine.loss_module.parameters()]
        losses = [engine.step(args, 20)[0].item() for _ in range(2)]
    assert engine.fallback_reason is None and all(map(math.isfinite, losses))
    assert all(not torch.equal(b, p) for b, p in zip(before, engine.loss_module.parameters()))
    # Compiled, the graph draws eager's noise under the same seed: the same loss.
    torch.manual_seed(5)
    compiled = engine.captured(args, 20)[0].item()
    torch.manual_seed(5)
    assert compiled == pytest.approx(eager(TraceEnum_ELBO(max_plate_nesting=1), model, guide, args, 20).item(), rel=1e-5)
