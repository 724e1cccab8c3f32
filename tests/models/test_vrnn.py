"""The VRNN (Yang 2022, §5.6): sites and shapes, input errors, its ELBO against computations written
out by hand, the tutorial's detached-sample gradient, and a short training run on the digits.
The registry's contract (``test_contract.py``) covers training steps, site agreement and save/load."""

import math

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.nn import functional as F

from pyrovae.data import Dataset, load_dataset
from pyrovae.evaluate import mean_elbo
from pyrovae.experiment import Experiment, build_model_and_guide
from pyrovae.guides import VRNNGuide
from pyrovae.models import VRNN
from pyrovae.models.vrnn import VRNNRecurrence, check_sequence_length, concat, generation_figure
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
        with pytest.raises(ValueError, match=rf"^x holds sequences of {T + 2} steps; this VRNN models sequences of "
                           rf"T = {T} steps of {D} values, so x must have shape \(batch, {T}, {D}\), got "
                           rf"\(4, {T + 2}, {D}\)$"):
            module(binary_sequences(seq_len=T + 2))
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


def test_the_defaults_are_the_tutorials_networks_and_bad_sizes_are_refused_in_one_line():
    """Yang 2022, §5.6.4: z = 2, an LSTM of 256 units in two layers, 500-500 ReLU heads (the ``yang`` preset)."""
    yang = Experiment.resolve({"model": "vrnn", "preset": "yang"}).model
    model = VRNN(8, 8)
    guide = VRNNGuide(model)
    built, built_guide = build_model_and_guide(Experiment.resolve({"model": "vrnn", "preset": "yang"}),
                                               Dataset.from_tensor(torch.zeros(2, 64), image_shape=(8, 8)))
    assert repr(model) == repr(built) and repr(guide) == repr(built_guide)
    assert (model.z_dim, model.recurrence.hidden_dim, model.recurrence.lstm.num_layers) == (yang.z_dim, 256, 2) == (2, 256, 2)
    assert [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)] == [500, 500, 8]
    assert guide.reparameterize is True and built_guide.reparameterize is True and yang.reparameterize
    assert VRNNRecurrence(3, 2, 4).lstm.num_layers == 1  # one layer unless asked
    VRNN(3, 4, z_dim=1, hidden_dim=1, num_layers=1)  # the smallest allowed
    for sizes in ((0, 5, 1), (2, 0, 1), (2, 5, 0)):
        with pytest.raises(ValueError, match=rf"^z_dim, hidden_dim and num_layers must be at least 1, got "
                           rf"{sizes[0]}, {sizes[1]}, {sizes[2]}$"):
            VRNN(3, 4, *sizes)
    with pytest.raises(ValueError, match=r"^a VRNN reads an example as a sequence \(T, D\); tensor has examples of "
                       r"shape \(1, 8, 8\)$"):
        build_model_and_guide(Experiment.resolve({"model": "vrnn", "preset": "tiny"}),
                              Dataset.from_tensor(torch.zeros(2, 64), image_shape=(1, 8, 8)))


def test_every_config_setting_reaches_model_and_guide():
    experiment = Experiment.resolve({"model": "vrnn", "preset": "tiny", "z_dim": 3, "hidden_dim": 5, "num_layers": 2,
                                     "hidden_sizes": [6, 7], "activation": "tanh", "reparameterize": False})
    model, guide = build_model_and_guide(experiment, Dataset.from_tensor(torch.zeros(2, 4 * 9), image_shape=(4, 9)))
    pyro.set_rng_seed(0)
    expected = VRNN(4, 9, 3, 5, 2, [6, 7], "tanh")
    assert repr(model) == repr(expected) and repr(guide) == repr(VRNNGuide(expected, [6, 7], "tanh", False))
    assert (model.seq_len, model.x_dim, guide.seq_len, guide.z_dim) == (4, 9, 4, 3) and not guide.reparameterize


def test_the_data_check_can_be_switched_off():
    model, guide = small_pair()
    x = binary_sequences(seq_len=T + 1)
    with pyro.settings.context(pyrovae_check_data=False):
        check_sequence_length(x, model.inputs)  # nothing checked
    check_sequence_length(x[:, :T], model.inputs)
    check_sequence_length(x.reshape(4, -1), model.inputs)  # not a (B, T', D) batch: InputSpec's to refuse


def test_the_generation_figure_shows_each_image_row_by_row():
    """Panel (r, k) is image r with its rows from t_k on left blank: t_k = round(k T / steps), k = 1..steps."""
    model, _ = small_pair()
    figure = generation_figure(model, (T, D), num_samples=2, steps=T, generator=torch.Generator().manual_seed(3),
                               title="run")
    images = model.sample_images(2, torch.Generator().manual_seed(3)).reshape(2, T, D)
    axes = figure.axes[0]
    grid = np.asarray(axes.get_images()[0].get_array())
    assert grid.shape == (1 + 2 * (T + 1), 1 + T * (D + 1))
    for r in range(2):
        for k in range(T):
            top, left = 1 + r * (T + 1), 1 + k * (D + 1)
            expected = images[r].clone()
            expected[k + 1:] = 0
            np.testing.assert_allclose(grid[top:top + T, left:left + D], expected.numpy(), rtol=1e-6)
    assert axes.get_title() == f"run\neach row one image, after t = 1, 2, 3, 4, 5 of its {T} rows"
    assert [tick.get_text() for tick in axes.get_yticklabels()] == ["0", "1"] and axes.get_ylabel() == "sample"
    one = generation_figure(small_pair(seq_len=8)[0], (8, D), num_samples=1, steps=1)
    assert one.axes[0].get_title() == "each row one image, after t = 8 of its 8 rows"
    default = generation_figure(small_pair(seq_len=8)[0], (8, D)).axes[0]
    assert default.get_title() == "each row one image, after t = 1, 2, 3, 5, 6, 7, 8 of its 8 rows"  # round(8k / 7)
    assert len(default.get_yticklabels()) == 6
    for steps in (0, T + 1):
        with pytest.raises(ValueError, match=rf"^steps must be between 1 and the sequence length {T}, got {steps}$"):
            generation_figure(model, (T, D), steps=steps)


def test_particle_dims_broadcast_through_the_state_and_the_lstm():
    """Under a vectorized particle plate z_t is (S, B, L) while h_1 is (B, H): ``concat`` broadcasts the
    batch dims, and the recurrence runs the LSTM on each (particle, example) pair as on its own."""
    model, _ = small_pair()
    h, z = torch.randn(4, H), torch.randn(3, 4, L)
    joined = concat(h, z)
    assert torch.equal(joined, torch.cat([h.expand(3, 4, H), z], dim=-1))
    x = binary_sequences()
    first, state = model.recurrence.initial(x)
    assert torch.equal(first, torch.zeros(4, H)) and state is None
    output, state = model.recurrence(x[:, 0], z, None)
    assert output.shape == (3, 4, H)
    for s in range(3):
        alone, _ = model.recurrence.lstm(torch.cat([x[:, 0], z[s]], dim=-1).unsqueeze(1))
        torch.testing.assert_close(output[s], alone[:, 0])


def test_without_hidden_layers_the_heads_are_linear_in_the_state():
    """``hidden_sizes=[]``: p(z_t | h_t) and q(z_t | x_t, h_t) read h_t (and x_t) through one linear head each."""
    model = VRNN(T, D, z_dim=L, hidden_dim=H, num_layers=1, hidden_sizes=[])
    guide = VRNNGuide(model, [])
    assert [(m.in_features, m.out_features) for m in model.prior_net.modules() if isinstance(m, torch.nn.Linear)] == [(H, L)] * 2
    assert [(m.in_features, m.out_features) for m in guide.encoder.modules() if isinstance(m, torch.nn.Linear)] == [(H + D, L)] * 2
    guide_trace, model_trace = traces(model, guide, binary_sequences())
    assert model_trace.nodes["x"]["fn"].event_shape == (T, D) and guide_trace.nodes[f"z_{T}"]["value"].shape == (4, L)
