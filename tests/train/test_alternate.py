"""Alternating guide-only and model-only updates (stochastic variational EM) in fit and the engines."""

import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovae.callbacks import Alternate, alternation
from pyrovae.data import load_dataset
from pyrovae.engines import ModuleEngine
from pyrovae.guides import DiagonalNormalGuide
from pyrovae.models import VAE
from pyrovae.train import fit


def pair():
    torch.manual_seed(0)
    return VAE(64, 3, (16,)), DiagonalNormalGuide(64, 3, (16,))


def flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train", binarize="static").subset(256)


def test_phases_follow_the_step_counts():
    phase = alternation(2, 3)
    assert [phase(step) for step in range(7)] == ["guide", "guide", "model", "model", "model", "guide", "guide"]
    with pytest.raises(ValueError, match="positive"):
        alternation(0, 3)


@pytest.mark.parametrize("which, moves, stays", [("guide", "guide", "model"), ("model", "model", "guide")])
def test_an_engine_updates_only_the_chosen_side(digits, which, moves, stays):
    model, guide = pair()
    modules = {"model": model, "guide": guide}
    before = {name: flat(module) for name, module in modules.items()}
    engine = ModuleEngine(model, guide, Trace_ELBO(max_plate_nesting=1), lr=1e-2)
    engine.update_only(which)
    engine.step((digits.x[:32],), len(digits))
    assert not torch.equal(flat(modules[moves]), before[moves])
    assert torch.equal(flat(modules[stays]), before[stays])
    engine.update_only("both")
    engine.step((digits.x[:32],), len(digits))
    assert not torch.equal(flat(modules[stays]), before[stays])


def test_fit_alternates_over_the_whole_run(digits):
    # 4 steps per epoch, 2 epochs: with 6 guide steps first, the model moves only in the last 2 steps.
    model, guide = pair()
    start = flat(model)
    fit(model, guide, Trace_ELBO(), digits, epochs=1, batch_size=64, lr=1e-2, callbacks=[Alternate(6, 2)])
    assert torch.equal(flat(model), start)  # steps 0-3: guide only
    model, guide = pair()
    fit(model, guide, Trace_ELBO(), digits, epochs=2, batch_size=64, lr=1e-2, callbacks=[Alternate(6, 2)])
    assert not torch.equal(flat(model), start)  # steps 6-7 update the model
    with pytest.raises(ValueError, match="module, captured or compiled engine"):
        fit(model, guide, Trace_ELBO(), digits, epochs=1, engine="svi", callbacks=[Alternate(1, 1)])
