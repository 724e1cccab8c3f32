"""The VQ-VAE (van den Oord et al. 2017): quantization, straight-through gradients, the EMA codebook,
the ELBO it reports, training, and its configuration checks. The registry-wide checks (one step
trains, sites agree, bad input, scaling, save/load) are in ``test_contract.py``."""

import math
import re

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovae.data import Dataset, load_dataset
from pyrovae.evaluate import mean_elbo
from pyrovae.experiment import Experiment, build
from pyrovae.guides import VQVAEGuide
from pyrovae.guides.vqvae import build_vqvae_guide
from pyrovae.models import VQVAE
from pyrovae.models.vqvae import (
    Codebook,
    CodebookMetrics,
    UniformCodes,
    VQVAEConfig,
    build_vqvae,
    codebook_metrics,
    image_shape,
)
from pyrovae.nn.likelihoods import BernoulliLikelihood
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


def test_a_far_away_vector_does_not_blur_the_other_distances():
    """Each vector's squared norm is the only constant added to its distances: a batch holding an
    outlier (1e4, whose square is 1e8, where float32 steps by 8) still quantizes 0.1 to the code +1."""
    codebook = Codebook(2, 1)
    codebook.vectors.data = torch.tensor([[-1.0], [1.0]])
    z = torch.tensor([1e4, 0.1]).reshape(1, 1, 1, 2)
    assert codebook.nearest(z).tolist() == [[[1, 1]]]


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


def test_the_defaults_are_the_mnist_preset_and_the_papers_loss_weights():
    """The constructors' defaults are the ``mnist`` preset's networks (the paper's at a quarter of its
    channels), K = 512 codes, beta = 0.25 and the EMA's gamma = 0.99 (van den Oord et al. 2017)."""
    config = Experiment.resolve({"model": "vqvae", "preset": "mnist"}).model
    data = Dataset.from_tensor(torch.rand(2, 784), image_shape=(28, 28))
    pyro.set_rng_seed(0)
    built = build_vqvae(config, data)
    built_guide = build_vqvae_guide(config, data, built)
    pyro.set_rng_seed(0)
    model = VQVAE((1, 28, 28))
    guide = VQVAEGuide(model)
    assert repr(model) == repr(built) and repr(guide) == repr(built_guide)
    assert (model.codebook.num_codes, model.codebook.code_dim, model.grid_shape) == (512, 16, (7, 7))
    assert type(model.likelihood) is BernoulliLikelihood and not model.codebook.ema
    assert guide.commitment_cost == config.commitment_cost == 0.25
    ema = Codebook(4, 2, ema=True)
    assert (ema.decay, ema.epsilon) == (0.99, 1e-5)


def test_every_config_setting_reaches_model_and_guide():
    config = VQVAEConfig(num_codes=5, code_dim=3, downsamplings=2, hidden_channels=6, residual_blocks=2,
                         residual_channels=7, commitment_cost=0.7, ema=True, ema_decay=0.9, ema_epsilon=1e-3,
                         likelihood="gaussian", likelihood_scale=0.3)
    data = Dataset.from_tensor(torch.rand(2, 3 * 8 * 8), image_shape=(3, 8, 8))
    pyro.set_rng_seed(0)
    model = build_vqvae(config, data)
    guide = build_vqvae_guide(config, data, model)
    pyro.set_rng_seed(0)
    expected = VQVAE((3, 8, 8), 5, 3, 2, 6, 2, 7, "gaussian", 0.3, True, 0.9, 1e-3)
    assert repr(model) == repr(expected)
    assert repr(guide) == repr(VQVAEGuide(expected, 6, 2, 7, 0.7))
    assert model.image_shape == (3, 8, 8) and model.grid_shape == (2, 2) and model.latent_shape == (3, 2, 2)
    assert (model.codebook.num_codes, model.codebook.code_dim, model.codebook.ema) == (5, 3, True)
    assert (model.codebook.decay, model.codebook.epsilon, model.likelihood.fixed_scale) == (0.9, 1e-3, 0.3)
    assert guide.commitment_cost == 0.7 and guide.codebook is model.codebook
    for network in (model.decoder, guide.encoder):  # two residual blocks of 7 channels inside 6
        blocks = [m for m in network.modules() if type(m).__name__ == "ResidualBlock"]
        inner = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 7]
        assert len(blocks) == 2 and [(m.in_channels, m.kernel_size) for m in inner] == [(6, (3, 3))] * 2
    assert VQVAEConfig(ema_decay=0.5).ema_decay == 0.5
    for decay in (0.0, 1.0):
        with pytest.raises(ValueError, match=rf"^--ema-decay must lie in \(0, 1\), got {decay}$"):
            VQVAEConfig(ema_decay=decay)


def test_image_shape_gives_grey_images_one_channel_and_refuses_other_ranks():
    assert image_shape((8, 8)) == (1, 8, 8) and image_shape((3, 8, 6)) == (3, 8, 6)
    assert image_shape(torch.Size([28, 28])) == (1, 28, 28)
    with pytest.raises(ValueError, match=r"^the VQ-VAE takes images \(H, W\) or \(C, H, W\); got examples of shape "
                       r"\(1, 2, 3, 4\)$"):
        image_shape((1, 2, 3, 4))


def test_the_codebook_starts_uniform_in_plus_minus_one_over_m():
    torch.manual_seed(0)
    vectors = Codebook(4, 5000).vectors.detach()
    assert vectors.abs().max() <= 0.25 and vectors.max() > 0.24 and vectors.min() < -0.24
    assert vectors.mean().abs() < 0.01  # U(-1/4, 1/4): mean 0, standard error 0.14 / sqrt(20000)


def test_decoding_takes_grids_or_flattened_codes_with_any_leading_dims():
    model, _ = small_pair()
    grids = torch.randn(2, 3, 4, 4, 4)  # (S, B, d, h, w)
    flat = grids.reshape(2, 3, 64)
    assert torch.equal(model.latent_grid(grids), grids) and torch.equal(model.latent_grid(flat), grids)
    assert torch.equal(model.latent_grid(flat[0, 0]), grids[0, 0])
    logits = model.decoder(grids)
    torch.testing.assert_close(model.decode(flat).base_dist.logits, logits)
    torch.testing.assert_close(model.decode_mean(flat), torch.sigmoid(logits))  # a Bernoulli's mean
    torch.testing.assert_close(model.decode_mean(grids), torch.sigmoid(logits))
    with pytest.raises(ValueError, match=r"^z must have shape \(\.\.\., 4, 4, 4\) or \(\.\.\., 64\), got \(3, 63\)$"):
        model.latent_grid(torch.zeros(3, 63))


def test_the_uniform_prior_broadcasts_expands_and_has_entropy_hw_log_m():
    codebook = torch.randn(16, 4)
    prior = UniformCodes(codebook, (2, 3), (5,), validate_args=True)
    kl = 2 * 3 * math.log(16)
    assert torch.allclose(prior.entropy(), torch.full((5,), kl))
    assert prior.log_prob(prior.sample((2,))).shape == (2, 5)  # sample dims on the left of the batch
    assert prior.log_prob(torch.zeros(4, 2, 3)).shape == (5,)  # one grid, broadcast over the batch
    expanded = prior.expand((7, 5))
    assert expanded.batch_shape == (7, 5) and expanded.event_shape == (4, 2, 3) and expanded.codebook is codebook
    assert torch.allclose(expanded.log_prob(torch.zeros(4, 2, 3)), torch.full((7, 5), -kl))
    with pytest.raises(ValueError, match="support"):
        expanded.log_prob(torch.full((4, 2, 3), math.nan))  # the copy validates as the original does
    # Validation off is kept too: a non-finite codebook is neither checked by expand nor by log_prob.
    unchecked = UniformCodes(torch.full((16, 4), math.nan), (2, 3), validate_args=False).expand((2,))
    assert unchecked.log_prob(torch.full((4, 2, 3), math.nan)).shape == (2,)

    class Tagged(UniformCodes):
        """A subclass with its own constructor extends ``expand`` through ``_instance``, as torch's distributions do."""

        def __init__(self, codebook, grid_shape, tag="a", batch_shape=torch.Size()):
            super().__init__(codebook, grid_shape, batch_shape)
            self.tag = tag

        def expand(self, batch_shape, _instance=None):
            new = self._get_checked_instance(Tagged, _instance)
            return super().expand(batch_shape, _instance=new)

    assert type(Tagged(codebook, (2, 3)).expand((3,))) is Tagged


def test_the_codebook_metrics_callback_adds_prefixed_metrics_of_its_data():
    model, guide = small_pair()
    model.eval(), guide.eval()
    data = Dataset.from_tensor(digits_batch(8).reshape(8, 64), image_shape=(8, 8))
    metrics = codebook_metrics(model, guide, data)
    rows = [{}, {}]
    CodebookMetrics(model, guide, data).on_epoch_end(1, rows[0], None)
    CodebookMetrics(model, guide, data, prefix="train_").on_epoch_end(1, rows[1], None)
    assert rows[0] == {f"test_{key}": value for key, value in metrics.items()}
    assert rows[1] == {f"train_{key}": value for key, value in metrics.items()}


def test_shapes_that_cannot_be_quantized_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^grid_shape must be \(h, w\), got \(2, 2, 2\)$"):
        UniformCodes(torch.zeros(3, 2), (2, 2, 2))
    codebook = Codebook(10, 3)
    for z in (torch.zeros(4, 2, 2, 5), torch.zeros(4, 3, 5)):  # the wrong code dimension; no grid
        with pytest.raises(ValueError, match=rf"^z must have shape \(batch, 3, h, w\), got {re.escape(str(tuple(z.shape)))}$"):
            codebook.nearest(z)
    with pytest.raises(ValueError, match=r"^downsamplings must be at least 1, got 0$"):
        VQVAE((1, 8, 8), downsamplings=0)
    with pytest.raises(ValueError, match=r"^images of 8x6 cannot be halved 2 times \(height and width must be "
                       r"divisible by 4\)$"):
        VQVAE((1, 8, 6), downsamplings=2)
    assert VQVAE((1, 24, 24), downsamplings=3, hidden_channels=4, residual_blocks=0).grid_shape == (3, 3)  # 24 / 2^3


def test_given_decoder_defaults_and_input_support_of_the_model():
    decoder = torch.nn.Conv2d(4, 1, kernel_size=1)
    model = VQVAE(**{**SMALL, "decoder": decoder})
    assert model.decoder is decoder
    ema = VQVAE(**{**SMALL, "ema": True}).codebook
    assert (ema.decay, ema.epsilon) == (0.99, 1e-5)
    with pytest.raises(ValueError, match="x must be binary"):  # the Bernoulli likelihood's support
        model(torch.full((2, 1, 8, 8), 0.5))


def test_the_training_factor_is_scaled_with_the_data_plate():
    """``num_data = 4 B`` multiplies every term of a training step's loss, the guide's factor included, by 4."""
    model, guide = small_pair()
    x = digits_batch(8)
    model.train(), guide.train()
    with torch.no_grad():
        batch, full = Trace_ELBO().loss(model, guide, x), Trace_ELBO().loss(model, guide, x, num_data=32)
    assert "vq_loss" in pyro.poutine.trace(guide).get_trace(x).nodes
    assert full == pytest.approx(4 * batch, rel=1e-5)


def test_the_codebook_sizes_and_commitment_cost_at_their_bounds():
    assert not Codebook(4, 2).ema and isinstance(Codebook(4, 2).vectors, torch.nn.Parameter)  # learned by default
    Codebook(1, 1)  # one code of one dimension: the smallest allowed
    with pytest.raises(ValueError, match=r"^the codebook needs at least one code \(num_codes M >= 1\), got 0$"):
        Codebook(0, 2)
    with pytest.raises(ValueError, match=r"^code_dim d must be at least 1, got 0$"):
        Codebook(4, 0)
    model = VQVAE(**SMALL)
    assert VQVAEGuide(model, commitment_cost=0.0).commitment_cost == 0.0  # no commitment term is allowed
    encoder = torch.nn.Conv2d(1, 4, kernel_size=2, stride=2)
    assert VQVAEGuide(model, encoder=encoder).encoder is encoder


def test_the_codebook_learns_from_the_codebook_loss_alone():
    """The reconstruction's gradient stops at the codes, so in a training step the gradient of code k is
    that of sum_j ||sg[E_j] - e_k||^2 over the positions j quantized to k: 2 (n_k e_k - sum_j E_j)."""
    model, guide = small_pair()
    x = digits_batch(8)
    model.train(), guide.train()
    Trace_ELBO().differentiable_loss(model, guide, x).backward()
    with torch.no_grad():
        encoded = guide.encoder(x).movedim(1, -1).reshape(-1, 4)
        indices = model.codebook.nearest(guide.encoder(x)).reshape(-1)
        counts = torch.bincount(indices, minlength=16).to(encoded.dtype)
        sums = torch.zeros(16, 4).index_add_(0, indices, encoded)
    expected = 2 * (counts[:, None] * model.codebook.vectors.detach() - sums)
    assert counts.sum() == 8 * 16 and expected.abs().max() > 0
    torch.testing.assert_close(model.codebook.vectors.grad, expected, rtol=1e-4, atol=1e-5)
