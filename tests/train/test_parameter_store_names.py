"""Two models built with the same name both train under SVI: the module being called owns the name
in Pyro's parameter store (pyrovae.nn.plates.take_over_name)."""

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrovae.experiment import Experiment, build


def weights(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_a_second_model_with_the_same_name_trains_under_svi_and_so_does_the_first_again():
    experiment = Experiment.resolve({"model": "vae", "preset": "tiny"})
    train, _, first_model, first_guide, _ = build(experiment)
    x, _ = next(train.batches(32))
    first = SVI(first_model, first_guide, Adam({"lr": 1e-2}), Trace_ELBO())
    first.step(x)
    _, _, second_model, second_guide, _ = build(experiment)
    assert second_model.name == first_model.name
    before = {"model": weights(second_model), "guide": weights(second_guide)}
    second = SVI(second_model, second_guide, Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(2):
        second.step(x)
    assert changed(before["model"], second_model) and changed(before["guide"], second_guide)
    names = dict(pyro.get_param_store().named_parameters())
    assert any(value is next(second_model.parameters()) for value in names.values())
    before = weights(first_model)
    first.step(x)
    assert changed(before, first_model)
