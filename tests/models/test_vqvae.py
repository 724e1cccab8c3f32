"""The VQ-VAE (van den Oord et al. 2017): quantization, straight-through gradients, the EMA codebook,
the ELBO it reports, training, and its configuration checks. The registry-wide checks (one step
trains, sites agree, bad input, scaling, save/load) are in ``test_contract.py``."""

import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovae.data import load_dataset
from pyrovae.evaluate import mean_elbo
from pyrovae.experiment import Experiment, build
from pyrovae.guides import VQVAEGuide
from pyrovae.models import VQVAE
from pyrovae.models.vqvae import Codebook, UniformCodes, codebook_metrics
from pyrovae.train import fit

SMALL = dict(image_shape=(1, 8, 8), num_codes=16, code_dim=4, downsamplings=1, hidden_channels=8,
             residual_blocks=0, residual_channels=4)


def small_pair(**options):
    pyro.set_rng_seed(0)
    model = VQVAE(**{**SMALL, **options})
    return model, VQVAEGuide(model, hidden_channels=8, residual_blocks=0, residual_channels=4)


def digits_batch(size=16):
    x = load_dataset("digits", "train", binarize="static").x[:size]
    return x.reshape(size, 1, 8, 8)


def test_quantization_picks_the_nearest_code():
    torch.manual_seed(0)
    codebook = Codebook(10, 3)
    z = torch.randn(4, 3, 2, 5)
    indices = codebook.nearest(z)
    vectors = z.movedim(1, -1).reshape(-1, 3)
    brute_force = torch.cdist(vectors, codebook.vectors.detach()).argmin(1).reshape(4, 2, 5)
    assert torch.equal(indices, brute_force)
    assert torch.equal(codebook.lookup(indices).movedim(1, -1).reshape(-1, 3), codebook.vectors[brute_force.reshape(-1)])


def test_guide_site_is_the_nearest_code_with_the_encoders_gradient():
    model, guide = small_pair()
    model.eval(), guide.eval()  # no factor: the only path from the loss to the encoder is the straight-through one
    x = digits_batch()
    trace = pyro.poutine.trace(guide).get_trace(x)
    z = trace.nodes["z"]["value"]
    codes = model.codebook.lookup(model.codebook.nearest(guide.encoder(x)))
    assert torch.allclose(z, codes, atol=1e-6)
    assert type(trace.nodes["z"]["fn"]).__name__ == "Delta" and "vq_loss" not in trace.nodes

    Trace_ELBO().differentiable_loss(model, guide, x).backward()
    encoder_grads = [p.grad for p in guide.encoder.parameters()]
    assert all(g is not None for g in encoder_grads) and any(g.abs().sum() > 0 for g in encoder_grads)
    # The reconstruction's gradient stops at the codes (they learn from the codebook loss or the EMA).
    assert model.codebook.vectors.grad is None or not model.codebook.vectors.grad.any()
    # Straight through: the encoder output receives exactly d(-log p(x | z))/dz at z = z_q(x).
    z_leaf = codes.detach().requires_grad_()
    (grad_at_code,) = torch.autograd.grad(-model.decode(z_leaf).log_prob(x).sum(), z_leaf)
    encoded = guide.encoder(x)
    encoded.retain_grad()
    quantized = encoded + (codes.detach() - encoded).detach()
    (-model.decode(quantized).log_prob(x).sum()).backward()
    assert torch.allclose(encoded.grad, grad_at_code, atol=1e-6)


def test_training_factor_is_the_codebook_and_commitment_loss():
    model, guide = small_pair()
    x = digits_batch()
    model.train(), guide.train()
    pyro.set_rng_seed(1)
    with torch.no_grad():
        training = Trace_ELBO().loss(model, guide, x)
        guide.eval()
        evaluation = Trace_ELBO().loss(model, guide, x)
        encoded = guide.encoder(x)
        codes = model.codebook.lookup(model.codebook.nearest(encoded))
    squared = (encoded - codes).pow(2).sum().item()
    assert training - evaluation == pytest.approx((1 + 0.25) * squared, rel=1e-4)


def test_reported_elbo_is_reconstruction_minus_hw_log_m():
    model, guide = small_pair()
    model.eval(), guide.eval()
    data = load_dataset("digits", "test", binarize="static")
    metrics = codebook_metrics(model, guide, data)
    kl = 4 * 4 * math.log(16)  # a 4x4 grid of codes out of M = 16
    assert mean_elbo(model, guide, data) == pytest.approx(-metrics["reconstruction_nll"] - kl, rel=1e-5)
    prior = model.prior(3)
    sample = prior.sample()
    assert sample.shape == (3, 4, 4, 4) and torch.allclose(prior.log_prob(sample), torch.full((3,), -kl))
    is_code = (sample.movedim(1, -1).reshape(-1, 1, 4) == model.codebook.vectors).all(-1).any(-1)
    assert is_code.all()


def test_ema_update_matches_a_hand_computation():
    codebook = Codebook(3, 2, ema=True, decay=0.5, epsilon=0.1)
    codebook.vectors.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    codebook.code_sum.copy_(codebook.vectors)  # N_i = 1 pseudo-observation of each code
    # Four encoder outputs (one example, a 1x4 grid): two nearest code 0, two nearest code 1, none code 2.
    z = torch.tensor([[0.2, 0.0], [0.0, 0.2], [1.0, 1.4], [1.2, 1.0]]).T.reshape(1, 2, 1, 4)
    indices = codebook.nearest(z)
    assert indices.tolist() == [[[0, 0, 1, 1]]]
    codebook.update(z, indices)
    # N = 0.5 * 1 + 0.5 * (2, 2, 0); m = 0.5 * e + 0.5 * (sums of assigned outputs).
    assert torch.allclose(codebook.cluster_size, torch.tensor([1.5, 1.5, 0.5]))
    m = torch.tensor([[0.1, 0.1], [1.6, 1.7], [2.5, 2.5]])
    assert torch.allclose(codebook.code_sum, m)
    # Laplace smoothing: (N + eps) / (sum N + M eps) * sum N, sum N = 3.5.
    smoothed = torch.tensor([1.6, 1.6, 0.6]) / 3.8 * 3.5
    assert torch.allclose(codebook.vectors, m / smoothed[:, None])


def test_ema_codebook_updates_in_training_steps_only():
    model, guide = small_pair(ema=True)
    assert not any(p is model.codebook.vectors for p in model.parameters())
    x = digits_batch()
    before = model.codebook.vectors.clone()
    with torch.no_grad():  # fit's first-batch check and evaluation run without gradients
        guide(x)
    model.eval(), guide.eval()
    guide(x)
    assert torch.equal(model.codebook.vectors, before)
    model.train(), guide.train()
    trace = pyro.poutine.trace(guide).get_trace(x)
    assert not torch.equal(model.codebook.vectors, before)
    # The codebook term is dropped: the factor is the commitment term alone.
    encoded = guide.encoder(x).detach()
    codes = trace.nodes["z"]["value"].detach()
    assert torch.allclose(trace.nodes["vq_loss"]["fn"].log_factor, 0.25 * (encoded - codes).pow(2).sum((1, 2, 3)),
                          rtol=1e-4)


@pytest.mark.parametrize("ema", [False, True], ids=["gradient", "ema"])
def test_training_uses_several_codes_and_improves_reconstruction(ema):
    experiment = Experiment.resolve({"model": "vqvae", "preset": "tiny", "num_codes": 16, "ema": ema})
    train, test, model, guide, objective = build(experiment)
    model.eval(), guide.eval()
    before = codebook_metrics(model, guide, test)
    fit(model, guide, objective, train, epochs=10, batch_size=64, lr=3e-3)  # 230 steps
    after = codebook_metrics(model, guide, test)
    assert after["codes_used"] > 1 and after["perplexity"] > 2
    assert after["reconstruction_nll"] < 0.6 * before["reconstruction_nll"]
    assert after["reconstruction_mse"] < before["reconstruction_mse"]


def test_bad_configurations_are_rejected_with_their_names():
    with pytest.raises(ValueError, match="num_codes"):
        VQVAE((1, 8, 8), num_codes=0)
    for decay in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"decay must lie in \(0, 1\)"):
            VQVAE((1, 8, 8), ema=True, ema_decay=decay)
    with pytest.raises(ValueError, match="epsilon"):
        Codebook(4, 2, ema=True, epsilon=0.0)
    model = VQVAE((1, 8, 8), downsamplings=1)
    with pytest.raises(ValueError, match="commitment cost beta"):
        VQVAEGuide(model, commitment_cost=-0.5)
    with pytest.raises(ValueError, match="divisible by 4"):
        VQVAE((1, 6, 6), downsamplings=2)
    with pytest.raises(ValueError, match="--num-codes must be at least 1"):
        Experiment.resolve({"model": "vqvae", "preset": "tiny", "num_codes": 0})
    with pytest.raises(ValueError, match="--commitment-cost must be at least 0"):
        Experiment.resolve({"model": "vqvae", "preset": "tiny", "commitment_cost": -1.0})
    with pytest.raises(ValueError, match=r"--ema-decay must lie in \(0, 1\)"):
        Experiment.resolve({"model": "vqvae", "preset": "tiny", "ema": True, "ema_decay": 1.0})
    with pytest.raises(ValueError, match="codebook must have shape"):
        UniformCodes(torch.zeros(3), (2, 2))
