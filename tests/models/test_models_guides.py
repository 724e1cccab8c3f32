import math

import pyro.poutine as poutine
import pytest
import torch

from pyrovae.data import Dataset
from pyrovae.guides import DiagonalNormalGuide, FullCovarianceNormalGuide, NormalizingFlowGuide
from pyrovae.models import VAE
from pyrovae.models.vae import VAEConfig, build_vae
from pyrovae.nn import mlp

X_DIM, Z_DIM = 12, 3


def binary_batch(n=5):
    return torch.bernoulli(torch.full((n, X_DIM), 0.5))


def continuous_bernoulli_log_normalizer(probs):
    """log C(lambda), C = 2 atanh(1 - 2 lambda) / (1 - 2 lambda), and C(1/2) = 2 (Loaiza-Ganem & Cunningham 2019, eq. 7)."""
    c = 1 - 2 * probs
    return torch.where(c.abs() < 1e-6, torch.full_like(c, 2.0), 2 * torch.atanh(c) / c).log()


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "continuous_bernoulli", "bernoulli_cross_entropy"])
def test_observation_log_density_is_the_likelihood_formula(likelihood):
    model, guide = VAE(X_DIM, Z_DIM, (8,), likelihood), DiagonalNormalGuide(X_DIM, Z_DIM, (8,))
    x = binary_batch() if likelihood == "bernoulli" else torch.rand(5, X_DIM)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    output = model.decoder(guide_trace.nodes["z"]["value"])
    probs = torch.sigmoid(output)
    if likelihood in ("bernoulli", "bernoulli_cross_entropy"):  # the cross-entropy of grey values x (eq. 3.3)
        expected = x * probs.log() + (1 - x) * (1 - probs).log()
    elif likelihood == "continuous_bernoulli":
        expected = continuous_bernoulli_log_normalizer(probs) + x * probs.log() + (1 - x) * (1 - probs).log()
    else:
        scale = torch.nn.functional.softplus(model.likelihood.raw_scale) + 1e-3
        expected = -0.5 * ((x - output) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)
    site = model_trace.nodes["x"]
    assert torch.allclose(site["fn"].log_prob(x), expected.sum(-1), atol=1e-4)


def test_grey_values_take_the_cross_entropy_only_by_name_and_it_is_not_a_density():
    grey = torch.rand(2, X_DIM)
    with pytest.raises(ValueError, match="must be binary"):
        VAE(X_DIM, Z_DIM, (8,), "bernoulli")(grey)
    VAE(X_DIM, Z_DIM, (8,), "bernoulli_cross_entropy")(grey)
    # Its integral over [0, 1] is below 1 (the continuous Bernoulli's normaliser is the missing factor).
    x = torch.linspace(0, 1, 20001, dtype=torch.float64)
    logits = torch.tensor([[-3.0], [0.0], [2.0]], dtype=torch.float64)
    density = VAE(1, Z_DIM, (8,), "bernoulli_cross_entropy").likelihood.distribution(logits).log_prob(x[:, None, None]).exp()
    mass = torch.trapezoid(density, x, dim=0)
    expected = 1 / continuous_bernoulli_log_normalizer(torch.sigmoid(logits[:, 0])).exp()
    assert torch.allclose(mass, expected, atol=1e-6) and (mass < 1).all()


def test_guides_swap_and_full_covariance_is_correlated():
    x = binary_batch(3)
    full = FullCovarianceNormalGuide(X_DIM, Z_DIM, (8,))
    torch.nn.init.normal_(full.encoder.head.tril.weight, std=1.0)
    covariance = full.posterior(x).covariance_matrix
    assert covariance.shape == (3, Z_DIM, Z_DIM)
    off_diagonal = covariance - torch.diag_embed(torch.diagonal(covariance, dim1=-2, dim2=-1))
    assert off_diagonal.abs().max() > 1e-3
    assert torch.all(torch.linalg.eigvalsh(covariance) > 0)


def test_custom_networks_are_used():
    decoder = mlp([Z_DIM, 5, X_DIM], "tanh")
    model = VAE(X_DIM, Z_DIM, decoder=decoder)
    assert model.decoder is decoder
    assert model.sample_images(7).shape == (7, X_DIM)


def test_gaussian_scale_learned_or_fixed():
    learned = VAE(X_DIM, Z_DIM, (8,), "gaussian")
    fixed = VAE(X_DIM, Z_DIM, (8,), "gaussian", likelihood_scale=0.5)
    assert learned.likelihood.raw_scale.requires_grad and learned.likelihood.scale().shape == (X_DIM,)
    assert fixed.likelihood.scale() == 0.5 and not list(fixed.likelihood.parameters())
    with pytest.raises(ValueError, match="scale must be positive"):
        VAE(X_DIM, Z_DIM, likelihood="gaussian", likelihood_scale=0.0)


@pytest.mark.parametrize(
    "x,error,match",
    [
        (torch.zeros(X_DIM), ValueError, r"shape \(batch, 12\)"),
        (torch.zeros(4, X_DIM, dtype=torch.int64), TypeError, "floating-point"),
        (torch.full((4, X_DIM), float("nan")), ValueError, "NaN"),
        (torch.zeros(0, X_DIM), ValueError, "empty"),
        ([[0.0] * X_DIM], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_is_rejected_by_model(x, error, match):
    with pytest.raises(error, match=match):
        VAE(X_DIM, Z_DIM, (8,))(x)


def test_bad_input_is_rejected_by_guide_and_other_likelihoods():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        VAE(X_DIM, Z_DIM, (8,), "continuous_bernoulli")(torch.full((2, X_DIM), 1.5))
    VAE(X_DIM, Z_DIM, (8,), "gaussian")(torch.full((2, X_DIM), 1.5))  # any real value is valid
    with pytest.raises(ValueError, match="unknown likelihood"):
        VAE(X_DIM, Z_DIM, likelihood="poisson")
    with pytest.raises(ValueError, match="unknown activation"):
        VAE(X_DIM, Z_DIM, activation="swish")
    with pytest.raises(ValueError, match="positive layer sizes"):
        mlp([3, 0, 2])


def test_flow_guide_density_matches_change_of_variables():
    guide = NormalizingFlowGuide(X_DIM, Z_DIM, (8,), num_flows=2)
    for flow in guide.flows:  # move the flows away from the identity they start near
        for parameter in flow.parameters():
            torch.nn.init.normal_(parameter, std=0.3)
    x = binary_batch(4)
    q = guide.posterior(x)
    z = q.rsample()
    base_loc, base_scale = guide.encoder(x)
    # Invert the flows by hand and apply log q(z) = log N(e) - sum log|det J|.
    value, log_det = z, torch.zeros(4)
    for transform in reversed(q.transforms):
        previous = transform.inv(value)
        log_det = log_det + transform.log_abs_det_jacobian(previous, value)
        value = previous
    expected = torch.distributions.Normal(base_loc, base_scale).log_prob(value).sum(-1) - log_det
    assert torch.allclose(q.log_prob(z), expected, atol=1e-4)
    # encode(x) is the flows applied to the base mean: inverting them gives the encoder's mean back.
    value = guide.encode(x)
    for transform in reversed(q.transforms):
        value = transform.inv(value)
    assert torch.allclose(value, base_loc, atol=1e-4)
    with pytest.raises(ValueError, match="num_flows"):
        NormalizingFlowGuide(X_DIM, Z_DIM, num_flows=0)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_output_bias_from_data_starts_the_decoder_at_the_mean_image(likelihood):
    """With the last layer's weights at zero the decoder's mean is the data's mean image, each
    pixel kept inside [1e-3, 1 - 1e-3] (a pixel always off or on would give an infinite logit)."""
    x = torch.rand(40, X_DIM)
    x[:, 0], x[:, 1] = 0.0, 1.0
    data = Dataset.from_tensor(x)
    model = build_vae(VAEConfig(z_dim=Z_DIM, hidden_sizes=[5], likelihood=likelihood, likelihood_scale=0.3,
                                output_bias_from_data=True), data)
    with torch.no_grad():
        model.decoder[-1].weight.zero_()
    expected = x.mean(0).clamp(1e-3, 1 - 1e-3)
    assert torch.allclose(model.decode_mean(torch.randn(4, Z_DIM)), expected.expand(4, -1), atol=1e-6)
    if likelihood == "gaussian":
        assert torch.allclose(model.decode(torch.randn(4, Z_DIM)).base_dist.scale, torch.tensor(0.3))
    untouched = build_vae(VAEConfig(z_dim=Z_DIM, hidden_sizes=[5], likelihood=likelihood), data)
    assert not torch.allclose(untouched.decoder[-1].bias, model.decoder[-1].bias)


def test_flows_reverse_the_latent_order_between_them_and_have_the_hidden_layers_asked_for():
    guide = NormalizingFlowGuide(X_DIM, Z_DIM, (5,))
    assert [type(t).__name__ for t in guide.transforms()] == ["AffineAutoregressive", "Permute", "AffineAutoregressive"]
    assert all([layer.out_features for layer in flow.arn.layers[:-1]] == [4 * Z_DIM] for flow in guide.flows)
    one = NormalizingFlowGuide(X_DIM, Z_DIM, (5,), num_flows=1, flow_hidden_sizes=[7, 9])
    assert [type(t).__name__ for t in one.transforms()] == ["AffineAutoregressive"]
    assert [layer.out_features for layer in one.flows[0].arn.layers[:-1]] == [7, 9]
    with pytest.raises(ValueError, match="num_flows must be at least 1, got 0"):
        NormalizingFlowGuide(X_DIM, Z_DIM, (5,), num_flows=0)


def test_a_vae_of_one_latent_dimension_and_the_refusal_of_none():
    assert VAE(X_DIM, z_dim=1).prior(2).event_shape == (1,)
    with pytest.raises(ValueError, match="z_dim must be at least 1, got 0"):
        VAE(X_DIM, z_dim=0)
