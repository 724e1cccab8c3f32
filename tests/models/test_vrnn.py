"""The VRNN (Yang 2022, §5.6): sites and shapes, input errors, its ELBO against computations written
out by hand, the tutorial's detached-sample gradient, and a short training run on the digits.
The registry's contract (``test_contract.py``) covers training steps, site agreement and save/load."""

import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.nn import functional as F

from pyrovae.data import load_dataset
from pyrovae.evaluate import mean_elbo
from pyrovae.experiment import Experiment, build_model_and_guide
from pyrovae.guides import VRNNGuide
from pyrovae.models import VRNN
from pyrovae.train import fit

T, D, L, H = 5, 6, 2, 8


def small_pair(seq_len=T, reparameterize=True, num_layers=2):
    model = VRNN(seq_len, D, z_dim=L, hidden_dim=H, num_layers=num_layers, hidden_sizes=[7])
    return model, VRNNGuide(model, [7], reparameterize=reparameterize)


def binary_sequences(n=4, seq_len=T):
    return torch.bernoulli(torch.full((n, seq_len, D), 0.4))


def traces(model, guide, x):
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    return guide_trace, model_trace


def normal_log_density(z, loc, scale):
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def bernoulli_log_density(x, logits):
    return (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(-1)


def normal_kl(loc_q, scale_q, loc_p, scale_p):
    return (scale_p.log() - scale_q.log() + (scale_q**2 + (loc_q - loc_p) ** 2) / (2 * scale_p**2) - 0.5).sum(-1)


def test_sites_shapes_and_a_shared_lstm():
    model, guide = small_pair()
    x = binary_sequences()
    guide_trace, model_trace = traces(model, guide, x)
    latents = [name for name, site in model_trace.nodes.items()
               if site["type"] == "sample" and not site["is_observed"] and name != "data"]
    assert latents == [f"z_{t}" for t in range(1, T + 1)]
    for name in latents:
        assert guide_trace.nodes[name]["value"].shape == (4, L)
        assert model_trace.nodes[name]["fn"].event_shape == (L,)
    site = model_trace.nodes["x"]
    assert site["is_observed"] and site["fn"].batch_shape == (4,) and site["fn"].event_shape == (T, D)
    # The guide reads the model's LSTM and does not own it: one copy of its weights, in the model.
    assert guide.recurrence is model.recurrence
    assert not any("lstm" in key for key in guide.state_dict()) and any("lstm" in key for key in model.state_dict())

    images = model.sample_images(3, torch.Generator().manual_seed(5))
    assert images.shape == (3, T * D) and ((images >= 0) & (images <= 1)).all()
    assert torch.equal(images, model.sample_images(3, torch.Generator().manual_seed(5)))


def test_wrong_sequence_length_and_non_binary_rows_are_rejected():
    model, guide = small_pair()
    for module in (model, guide):
        with pytest.raises(ValueError, match=rf"sequences of {T + 1} steps; this VRNN models sequences of T = {T}"):
            module(binary_sequences(seq_len=T + 1))
    with pytest.raises(ValueError, match="binary"):
        model(torch.full((4, T, D), 0.5))


def test_single_step_elbo_is_the_hand_computed_one():
    """T = 1: h_1 = 0, so ELBO = log p(x_1 | 0, z) + log p(z | 0) - log q(z | x_1, 0) at the guide's z,
    and with the closed-form KL, log p(x_1 | 0, z) - KL(q || p)."""
    model, guide = small_pair(seq_len=1)
    x = binary_sequences(seq_len=1)
    h = torch.zeros(4, H)
    with torch.no_grad():
        for elbo, closed_form_kl in ((Trace_ELBO(), False), (TraceMeanField_ELBO(), True)):
            pyro.set_rng_seed(3)
            loss = elbo.loss(model, guide, x)
            pyro.set_rng_seed(3)
            z = poutine.trace(guide).get_trace(x).nodes["z_1"]["value"]  # the same noise as the loss
            loc_p, scale_p = model.prior_net(h)
            loc_q, scale_q = guide.encoder(torch.cat([h, x[:, 0]], -1))
            reconstruction = bernoulli_log_density(x[:, 0], model.decoder(torch.cat([h, z], -1)))
            if closed_form_kl:
                expected = reconstruction - normal_kl(loc_q, scale_q, loc_p, scale_p)
            else:
                expected = reconstruction + normal_log_density(z, loc_p, scale_p) - normal_log_density(z, loc_q, scale_q)
            assert -loss == pytest.approx(expected.sum().item(), rel=1e-5)


def test_sequence_elbo_is_the_tutorial_loop():
    """The tutorial's estimator (Yang 2022, §5.6.3), its loop written out at the guide's z_t:
    sum_t log p(x_t | h_t, z_t) - KL(q(z_t | x_t, h_t) || p(z_t | h_t)), h_1 = 0,
    (h_t, c_t) = LSTM([x_{t-1}, z_{t-1}], state_{t-1})."""
    model, guide = small_pair()
    x = binary_sequences()
    with torch.no_grad():
        pyro.set_rng_seed(4)
        loss = TraceMeanField_ELBO().loss(model, guide, x)
        pyro.set_rng_seed(4)
        guide_trace = poutine.trace(guide).get_trace(x)
        elbo, h, state = torch.zeros(4), torch.zeros(4, H), None
        for t in range(T):
            if t > 0:
                inputs = torch.cat([x[:, t - 1], guide_trace.nodes[f"z_{t}"]["value"]], -1).unsqueeze(1)
                output, state = model.recurrence.lstm(inputs, state)
                h = output[:, 0]
            z = guide_trace.nodes[f"z_{t + 1}"]["value"]
            loc_p, scale_p = model.prior_net(h)
            loc_q, scale_q = guide.encoder(torch.cat([h, x[:, t]], -1))
            elbo += bernoulli_log_density(x[:, t], model.decoder(torch.cat([h, z], -1)))
            elbo -= normal_kl(loc_q, scale_q, loc_p, scale_p)
    assert -loss == pytest.approx(elbo.sum().item(), rel=1e-5)


def encoder_gradients(reparameterize, terms):
    """Gradients of the encoder's weights of ``terms`` (reconstruction, KL or both) of the
    closed-form-KL ELBO, on fixed noise."""
    pyro.set_rng_seed(0)
    model, guide = small_pair(reparameterize=reparameterize)
    x = binary_sequences()
    pyro.set_rng_seed(1)
    guide_trace, model_trace = traces(model, guide, x)
    reconstruction = model_trace.nodes["x"]["fn"].log_prob(x).sum()
    kl = sum(torch.distributions.kl_divergence(guide_trace.nodes[name]["fn"], model_trace.nodes[name]["fn"]).sum()
             for name in (f"z_{t}" for t in range(1, T + 1)))
    objective = {"reconstruction": reconstruction, "kl": -kl, "both": reconstruction - kl}[terms]
    weights = list(guide.encoder.parameters())
    return torch.cat([g.flatten() for g in torch.autograd.grad(objective, weights, allow_unused=True, materialize_grads=True)])


def test_detached_samples_cut_the_reconstruction_gradient_to_the_encoder():
    # Reparameterized: the reconstruction terms reach the encoder through z_t.
    assert encoder_gradients(True, "reconstruction").abs().max() > 1e-3
    # The tutorial's .sample(): they do not, and the encoder learns from the KL terms alone.
    assert encoder_gradients(False, "reconstruction").abs().max() == 0
    assert encoder_gradients(False, "kl").abs().max() > 1e-3
    assert torch.equal(encoder_gradients(False, "both"), encoder_gradients(False, "kl"))


def test_detached_samples_give_pyro_the_tutorial_gradient():
    """Under TraceMeanField_ELBO a detached guide adds no score-function term: the encoder's
    gradient of the loss is exactly that of the KL terms."""
    expected = -encoder_gradients(False, "kl")
    pyro.set_rng_seed(0)
    model, guide = small_pair(reparameterize=False)
    x = binary_sequences()
    pyro.set_rng_seed(1)
    loss = TraceMeanField_ELBO().differentiable_loss(model, guide, x)
    gradient = torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(guide.encoder.parameters()))])
    assert torch.allclose(gradient, expected, atol=1e-6)


def test_the_registry_builds_a_guide_on_its_model():
    experiment = Experiment.resolve({"model": "vrnn", "preset": "tiny"})
    train = load_dataset("digits", "train", binarize="dynamic")
    model, guide = build_model_and_guide(experiment, train)
    assert guide.recurrence is model.recurrence and model.inputs.shape == (8, 8)
    assert Experiment.resolve({"model": "vrnn", "preset": "yang"}).run.binarize == "threshold"


def test_a_short_training_run_on_the_digits_improves_the_test_elbo():
    """Ten epochs (230 steps, about 7 s) on the 8x8 digits, rows as a sequence: the test ELBO rises
    by more than 15 nats (-44.9 to -25.8 when written) and passes, by more than a nat, the exact
    log-likelihood of independent pixels with the training set's means (-27.3): it has learned how
    pixels depend on each other."""
    train = load_dataset("digits", "train", binarize="dynamic")
    test = load_dataset("digits", "test", binarize="dynamic").realize(seed=1)
    pyro.set_rng_seed(0)
    model = VRNN(8, 8, z_dim=2, hidden_dim=32, num_layers=1, hidden_sizes=[32])
    guide = VRNNGuide(model, [32])
    before = mean_elbo(model, guide, test)
    fit(model, guide, Trace_ELBO(max_plate_nesting=1), train, epochs=10, batch_size=64, lr=3e-3, seed=0, engine="module")
    after = mean_elbo(model, guide, test)
    mean = train.x.mean(0).clamp(1e-3, 1 - 1e-3)
    independent_pixels = (test.x * mean.log() + (1 - test.x) * (1 - mean).log()).sum(1).mean().item()
    assert after - before > 15, (before, after)
    assert after > independent_pixels + 1, (after, independent_pixels)
