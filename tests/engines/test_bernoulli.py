"""Bernoulli-latent VAEs on the captured engine, and the hand-written PyTorch steps of
``benchmarks/bernoulli_step.py`` against pyrovae's loss on the same noise."""

import pyro
import pytest
import torch

from benchmarks.bernoulli_step import ESTIMATORS, NUM_DATA, PlainBernoulliVAE
from pyrovae.capture import CapturedLoss
from pyrovae.data import Dataset
from pyrovae.experiment import Experiment, build, build_model_and_guide, build_objective
from pyrovae.relaxations import RELAXATIONS


def eager(objective, model, guide, x, num_data):
    with pyro.validation_enabled(False), pyro.settings.context(pyrovae_register_modules=False):
        if hasattr(objective, "loss_and_metrics"):
            return objective.loss_and_metrics(model, guide, x, num_data=num_data)[0]
        return objective.differentiable_loss(model, guide, x, num_data=num_data)


def loss_and_gradients(run, parameters, seed=3):
    torch.manual_seed(seed)
    loss = run()
    return loss, torch.autograd.grad(loss, parameters, allow_unused=True)


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_every_relaxation_is_captured_with_eager_loss_and_gradients(relaxation):
    """Every relaxation and estimator (DisARM, NVIL's baseline, straight-through included) is captured
    without falling back, and the graph gives eager's loss and gradients on the same noise."""
    settings = {"num_particles": 2} if relaxation == "variance-loss" else {}
    experiment = Experiment.resolve({"model": "bernoulli-vae", "preset": "tiny", "relaxation": relaxation, **settings})
    train, _, model, guide, objective = build(experiment)
    x, _ = next(train.batches(16, shuffle=False))
    captured = CapturedLoss(objective, model, guide, compile=False)
    parameters = captured.trainable
    loss, gradients = loss_and_gradients(lambda: captured((x,), 1000)[0], parameters)
    eager_loss, eager_gradients = loss_and_gradients(lambda: eager(objective, model, guide, x, 1000), parameters)
    assert loss.item() == pytest.approx(eager_loss.item(), rel=1e-6)
    assert any(g is not None and g.abs().sum() > 0 for g in gradients)
    for graph_grad, eager_grad in zip(gradients, eager_gradients, strict=True):
        assert (graph_grad is None) == (eager_grad is None)
        if graph_grad is not None:
            assert torch.allclose(graph_grad, eager_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("preset", ["arm-linear", "arm-nonlinear"])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_the_hand_written_step_computes_pyrovaes_loss_and_gradients_on_the_same_noise(preset, estimator):
    experiment = Experiment.resolve({"model": "bernoulli-vae", "preset": preset, "relaxation": estimator})
    config = experiment.model
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((50, 784), 0.3))
    model, guide = build_model_and_guide(experiment, Dataset.from_tensor(x))
    objective = build_objective(experiment, model)
    plain = PlainBernoulliVAE(config.z_dim, config.hidden_sizes, config.activation, estimator,
                              config.prior_temperature, config.posterior_temperature).load_networks(model, guide)
    theirs = [*guide.encoder.parameters(), *model.decoder.parameters()]
    theirs += list(guide.baseline.parameters()) if estimator == "reinforce" else []
    mine = [p for network in plain.networks() for p in network.parameters()]
    loss, gradients = loss_and_gradients(lambda: eager(objective, model, guide, x, NUM_DATA), theirs)
    plain_loss, plain_gradients = loss_and_gradients(lambda: plain.loss(x), mine)
    assert plain_loss.item() == pytest.approx(loss.item(), rel=1e-5)
    for pyrovae_grad, plain_grad in zip(gradients, plain_gradients, strict=True):
        assert torch.allclose(plain_grad, pyrovae_grad, rtol=1e-3, atol=1e-2 * pyrovae_grad.abs().max().item())
    other_loss, _ = loss_and_gradients(lambda: plain.loss(x), mine, seed=4)
    # Other noise moves the loss far more than the two implementations differ on the same noise.
    assert abs(other_loss.item() - loss.item()) > 10 * abs(plain_loss.item() - loss.item())
