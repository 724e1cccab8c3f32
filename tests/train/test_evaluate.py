
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

import pyrovae.evaluate
from pyrovae.capture import CaptureError
from pyrovae.data import Dataset, load_dataset
from pyrovae.evaluate import _Evaluator, importance_log_likelihood, mean_elbo, reconstruction_error, set_plate_nesting
from pyrovae.guides import DiagonalNormalGuide, GMVAEGuide
from pyrovae.models import GMVAE, VAE
from pyrovae.nn import data_plate
from pyrovae.train import fit
from tests.support.linear_gaussian import ExactPosteriorGuide
from tests.support.linear_gaussian import linear_gaussian as make_linear_gaussian
from tests.support.toy_models import ImageGaussian, ImageGuide


@pytest.fixture
def linear_gaussian():
    return make_linear_gaussian()


def test_exact_posterior_gives_the_exact_evidence_for_any_k(linear_gaussian):
    model, data = linear_gaussian
    exact = model.log_evidence(data.x)
    for k, chunk in ((1, 1), (7, 3), (50, 50)):
        estimate = importance_log_likelihood(model, ExactPosteriorGuide(model), data, k, chunk_size=chunk, per_example=True)
        assert torch.allclose(estimate, exact, atol=1e-9)


def test_estimate_with_a_poor_guide_converges_to_the_evidence(linear_gaussian):
    model, data = linear_gaussian
    guide = ExactPosteriorGuide(model, inflate=1.5, shift=0.1)
    exact = model.log_evidence(data.x)
    elbo = mean_elbo(model, guide, data, pyro.infer.Trace_ELBO(num_particles=2000, vectorize_particles=True))
    large = importance_log_likelihood(model, guide, data, 5000, chunk_size=700, per_example=True)
    # The guide is poor enough that the ELBO is visibly loose, and importance sampling closes the gap.
    assert exact.mean().item() - elbo > 0.05
    assert elbo < large.mean().item()
    # Per point the K = 5000 estimate has a Monte Carlo error of ~0.01 nats here; 0.05 is ~5 sigma.
    assert (large - exact).abs().max() < 0.05
    assert abs(large.mean().item() - exact.mean().item()) < 0.01


def test_importance_estimate_is_at_least_the_elbo_for_a_trained_vae():
    train = load_dataset("digits", "train", binarize="static").subset(400)
    test = load_dataset("digits", "test", binarize="static").subset(100)
    model, guide = VAE(64, 4, (32,)), DiagonalNormalGuide(64, 4, (32,))
    fit(model, guide, pyro.infer.Trace_ELBO(), train, epochs=5, batch_size=50, lr=3e-3)
    elbo = mean_elbo(model, guide, test, pyro.infer.Trace_ELBO(num_particles=50, vectorize_particles=True))
    log_likelihood = importance_log_likelihood(model, guide, test, 500)
    assert log_likelihood > elbo
    assert log_likelihood - elbo < 10.0  # a sane gap, not a broken estimator


def test_reconstruction_error_is_the_posterior_expectation():
    # E_q ||x - E[x | z]||^2 = ||x - W m - b||^2 + tr(W S W^T) under the exact posterior N(m, S);
    # one z per example, so the Monte Carlo error of the mean over N examples is known too.
    model, data = make_linear_gaussian(num_data=2000)
    expected, variance = model.reconstruction_error(data.x)
    standard_error = variance.sum().sqrt().item() / len(data)
    error = reconstruction_error(model, ExactPosteriorGuide(model), data, batch_size=300)
    assert error == pytest.approx(expected.mean().item(), abs=4 * standard_error)
    # The test can tell a sample from the posterior mean: that would miss tr(W S W^T).
    spread = torch.trace(model.weight @ model.posterior(data.x)[1] @ model.weight.T).item()
    assert spread > 10 * standard_error


def test_guide_missing_a_latent_is_rejected(linear_gaussian):
    model, data = linear_gaussian

    def empty_guide(x, num_data=None):
        pass

    with pytest.raises(ValueError, match="latent site"):
        importance_log_likelihood(model, empty_guide, data, 3)
    with pytest.raises(ValueError, match="num_samples"):
        importance_log_likelihood(model, ExactPosteriorGuide(model), data, 0)


def global_mean_model(x, num_data=None):
    """``mu ~ N(0, I)`` shared by every example (a global latent), ``x_i ~ N(mu, I)``."""
    mu = pyro.sample("mu", dist.Normal(torch.zeros(x.shape[1], dtype=x.dtype), 1.0).to_event(1))
    with data_plate(x.shape[0], num_data):
        pyro.sample("x", dist.Normal(mu, 1.0).to_event(1), obs=x)


def global_mean_guide(x, num_data=None):
    pyro.sample("mu", dist.Normal(x.mean(0), 1.0).to_event(1))


@pytest.mark.parametrize("batch_size", [10, 1])
def test_a_global_latent_is_rejected_by_importance_sampling(linear_gaussian, batch_size):
    _, data = linear_gaussian
    with pytest.raises(ValueError, match="every latent local to the 'data' plate"):
        importance_log_likelihood(global_mean_model, global_mean_guide, data, 3, batch_size=batch_size)


def test_evaluators_reject_bad_settings(linear_gaussian):
    model, data = linear_gaussian
    guide = ExactPosteriorGuide(model)
    for evaluate in (mean_elbo, importance_log_likelihood, reconstruction_error):
        with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
            evaluate(model, guide, data, batch_size=0)
        with pytest.raises(TypeError, match="Dataset or a tensor, got list"):
            evaluate(model, guide, data.x.tolist())
    for num_samples in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="num_samples must be a positive integer"):
            importance_log_likelihood(model, guide, data, num_samples)
    with pytest.raises(ValueError, match="chunk_size"):
        importance_log_likelihood(model, guide, data, 10, chunk_size=0)
    with pytest.raises(ValueError, match="no site 'y'"):
        reconstruction_error(model, guide, data, observed_site="y")


def test_evaluators_take_a_plain_tensor(linear_gaussian):
    # At the exact posterior every log weight is log p(x): the ELBO and the importance estimate are exact.
    model, data = linear_gaussian
    guide = ExactPosteriorGuide(model)
    exact = model.log_evidence(data.x)
    assert mean_elbo(model, guide, data.x, batch_size=7) == pytest.approx(exact.mean().item(), abs=1e-9)
    assert torch.allclose(importance_log_likelihood(model, guide, data.x, 4, per_example=True), exact, atol=1e-9)
    pyro.set_rng_seed(3)
    from_tensor = reconstruction_error(model, guide, data.x)
    pyro.set_rng_seed(3)
    assert from_tensor == reconstruction_error(model, guide, data)


def test_reconstructions_reject_a_non_positive_count():
    import pytest
    import torch

    from pyrovae.evaluate import reconstructions

    with pytest.raises(ValueError, match="count must be a positive integer"):
        reconstructions(None, None, torch.zeros(2, 4), 0)


def test_mean_elbo_sums_out_a_site_the_guide_enumerates_and_draws_nothing_to_choose():
    # The GMVAE's guide enumerates y: by default its bound is TraceEnum_ELBO's sum over y (no Pyro warning;
    # pyproject turns warnings into errors), with the same draws of z as an explicit TraceEnum_ELBO.
    model, guide = GMVAE(12, 4, 3, (8,)), GMVAEGuide(12, 4, 3, (8,))
    x = torch.bernoulli(torch.full((20, 12), 0.5), generator=torch.Generator().manual_seed(1))
    pyro.set_rng_seed(3)
    default = mean_elbo(model, guide, x)
    pyro.set_rng_seed(3)
    assert default == mean_elbo(model, guide, x, TraceEnum_ELBO())
    pyro.set_rng_seed(3)
    with pytest.warns(UserWarning, match="you need to use TraceEnum_ELBO"):  # the warning a user asks for
        sampled = mean_elbo(model, guide, x, Trace_ELBO())
    assert sampled != default
    # A guide with no enumerated site gets Trace_ELBO, with the caller's random stream untouched.
    vae, vae_guide = VAE(12, 2, (8,)), DiagonalNormalGuide(12, 2, (8,))
    pyro.set_rng_seed(3)
    default = mean_elbo(vae, vae_guide, x)
    pyro.set_rng_seed(3)
    assert default == mean_elbo(vae, vae_guide, x, Trace_ELBO())


def two_globals_model(x, num_data=None):
    """Two global latents, ``a`` and ``b``, shared by every example."""
    a = pyro.sample("a", dist.Normal(torch.zeros(x.shape[1], dtype=x.dtype), 1.0).to_event(1))
    b = pyro.sample("b", dist.Normal(torch.zeros(x.shape[1], dtype=x.dtype), 1.0).to_event(1))
    with data_plate(x.shape[0], num_data):
        pyro.sample("x", dist.Normal(a + b, 1.0).to_event(1), obs=x)


def two_globals_guide(x, num_data=None):
    pyro.sample("a", dist.Normal(x.mean(0), 1.0).to_event(1))
    pyro.sample("b", dist.Normal(x.mean(0), 1.0).to_event(1))


def test_the_refusal_of_global_latents_names_each_of_them(linear_gaussian):
    _, data = linear_gaussian
    with pytest.raises(ValueError, match=r"plate; 'a', 'b' are outside it$"):
        importance_log_likelihood(two_globals_model, two_globals_guide, data, 3)
    with pytest.raises(ValueError, match=r"plate; 'mu' is outside it$"):
        importance_log_likelihood(global_mean_model, global_mean_guide, data, 3)


def test_importance_sampling_moves_the_model_and_the_guide_to_the_device_asked_for(linear_gaussian, monkeypatch):
    model, data = linear_gaussian
    guide = ExactPosteriorGuide(model)
    moved = []
    for name, module in (("model", model), ("guide", guide)):
        monkeypatch.setattr(module, "to", lambda device, name=name, module=module: moved.append((name, device)) or module)
    importance_log_likelihood(model, guide, data, 3, device="cpu")
    assert moved == [("model", torch.device("cpu")), ("guide", torch.device("cpu"))]


def test_importance_sampling_hands_the_model_batches_shaped_as_it_declares():
    model, guide = ImageGaussian((1, 4, 5), 2), ImageGuide((1, 4, 5), 2)
    data = Dataset.from_tensor(torch.rand(6, 1, 4, 5))
    assert math.isfinite(importance_log_likelihood(model, guide, data, 2, batch_size=3))
    assert [tuple(x.shape) for x in model.calls] == [(3, 1, 4, 5)] * len(model.calls) and model.calls


def test_the_compiled_engine_captures_each_chunk_size_and_auto_compiles_from_200_calls(linear_gaussian, monkeypatch,
                                                                                       capsys):
    model, data = linear_gaussian
    guide = ExactPosteriorGuide(model)
    captured, calls = [], []

    def capture(module, name):
        """Stands in for torch.compile (minutes on a CPU): records what would be compiled, runs it eagerly."""
        captured.append(name)
        return lambda *args: calls.append(name) or module(*args)

    monkeypatch.setattr(pyrovae.evaluate, "CapturedModule", capture)
    importance_log_likelihood(model, guide, data, 5, chunk_size=2, engine="compiled")
    assert captured == ["log weights (K=2)", "log weights (K=1)"]
    assert calls == ["log weights (K=2)"] * 2 + ["log weights (K=1)"]  # one batch of 40: chunks 2, 2, 1
    assert capsys.readouterr().err == ""  # no progress bar unless asked for
    captured.clear()
    importance_log_likelihood(model, guide, data.subset(20), 10, chunk_size=1, batch_size=1, engine="auto")
    assert captured == ["log weights (K=1)"]  # 20 batches x 10 chunks = 200 calls
    captured.clear()
    importance_log_likelihood(model, guide, data.subset(19), 10, chunk_size=1, batch_size=1, engine="auto",
                              progress=True)
    assert captured == []  # 190 calls: eager
    assert "log-likelihood, K=10" in capsys.readouterr().err  # the progress bar


def test_a_capture_that_fails_warns_once_and_evaluation_goes_on_eagerly():
    def cannot_capture(*args):
        raise CaptureError("no graph")

    evaluator = _Evaluator(cannot_capture, lambda *args: sum(args))
    with pytest.warns(RuntimeWarning, match="^evaluating eagerly: no graph$"):
        assert evaluator(1, 2) == 3
    assert evaluator.captured is None and evaluator(3, 4) == 7
    assert _Evaluator(lambda *args: 10 * sum(args), lambda *args: sum(args))(1, 2) == 30  # the captured one runs


def test_set_plate_nesting_takes_the_models_and_adds_a_vectorized_particle_plate():
    class Declares:
        max_plate_nesting = 2

    def nesting(elbo, model=Declares()):
        set_plate_nesting(elbo, model)
        return elbo.max_plate_nesting

    assert nesting(Trace_ELBO()) == 2
    assert nesting(Trace_ELBO(num_particles=3, vectorize_particles=True)) == 3
    assert nesting(Trace_ELBO(num_particles=1, vectorize_particles=True)) == 2
    assert nesting(Trace_ELBO(num_particles=3)) == 2
    assert nesting(Trace_ELBO(max_plate_nesting=5)) == 5  # the caller's own setting stays
    assert nesting(Trace_ELBO(), model=lambda x: None) == float("inf")  # nothing declared: Pyro guesses
