"""The captured loss (pyrovae.capture) and the compiled engine against the eager path."""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyrovae.callbacks import Checkpoint
from pyrovae.capture import CapturedLoss, CaptureError
from pyrovae.data import load_dataset
from pyrovae.engines import CompiledEngine, resolve_engine
from pyrovae.guides import DiagonalNormalGuide
from pyrovae.infer import ImportanceWeightedELBO, LogVarianceELBO, VarianceELBO
from pyrovae.models import VAE
from pyrovae.train import fit

X_DIM, Z_DIM = 64, 3


@pytest.fixture(scope="module")
def digits():
    train = load_dataset("digits", "train", binarize="static", seed=0).subset(512)
    test = load_dataset("digits", "test", binarize="static", seed=1)
    return train, test


def pair(seed=0):
    torch.manual_seed(seed)
    return VAE(X_DIM, Z_DIM, (32,)), DiagonalNormalGuide(X_DIM, Z_DIM, (32,))


def eager_loss(elbo, model, guide, x, num_data):
    with pyro.validation_enabled(False), pyro.settings.context(pyrovae_register_modules=False):
        if hasattr(elbo, "loss_and_metrics"):
            return elbo.loss_and_metrics(model, guide, x, num_data=num_data)
        return elbo.differentiable_loss(model, guide, x, num_data=num_data), {}


OBJECTIVES = {
    "Trace_ELBO": lambda: Trace_ELBO(max_plate_nesting=1),
    "Trace_ELBO-3-particles": lambda: Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=2),
    "TraceMeanField_ELBO": lambda: TraceMeanField_ELBO(max_plate_nesting=1),
    "IWAE": lambda: ImportanceWeightedELBO(num_particles=4, max_plate_nesting=1),
    "VarianceELBO": lambda: VarianceELBO(num_particles=4, max_plate_nesting=1),
    "LogVarianceELBO": lambda: LogVarianceELBO(num_particles=4, max_plate_nesting=1),
}


@pytest.mark.parametrize("name", OBJECTIVES)
def test_captured_graph_gives_the_eager_loss_and_gradients_on_the_same_noise(digits, name):
    model, guide = pair()
    x = digits[0].x[:40]
    elbo = OBJECTIVES[name]()
    captured = CapturedLoss(elbo, model, guide, compile=False)
    parameters = [t for t in captured.tensors if t.requires_grad]
    losses, gradients, metrics = [], [], []
    for run in (lambda: captured((x,), 512), lambda: eager_loss(elbo, model, guide, x, 512)):
        torch.manual_seed(3)
        loss, metric = run()
        losses.append(loss)
        gradients.append(torch.autograd.grad(loss, parameters))
        metrics.append(metric)
    assert losses[0].item() == pytest.approx(losses[1].item(), rel=1e-6)
    for captured_grad, eager_grad in zip(*gradients):
        assert torch.allclose(captured_grad, eager_grad, rtol=1e-5, atol=1e-5)
    assert set(metrics[0]) == set(metrics[1])
    for key in metrics[0]:
        assert metrics[0][key].item() == pytest.approx(metrics[1][key].item(), rel=1e-6)
    # The graph draws fresh noise on every call: two calls give two estimates.
    assert captured((x,), 512)[0].item() != captured((x,), 512)[0].item()


def test_capture_leaves_the_random_stream_alone(digits):
    """Tracing runs the loss once; its noise must not shift the run's random stream."""
    model, guide = pair()
    x = digits[0].x[:40]
    captured = CapturedLoss(Trace_ELBO(max_plate_nesting=1), model, guide, compile=False)
    torch.manual_seed(5)
    captured((x,), 512)  # captures, then draws
    after_capture = torch.rand(3)
    torch.manual_seed(5)
    eager_loss(Trace_ELBO(max_plate_nesting=1), model, guide, x, 512)
    assert torch.equal(after_capture, torch.rand(3))


def test_compiled_loss_draws_fresh_noise_each_call(digits):
    model, guide = pair()
    x = digits[0].x[:40]
    captured = CapturedLoss(Trace_ELBO(max_plate_nesting=1), model, guide, compile=True)
    values = {captured((x,), 512)[0].item() for _ in range(3)}
    assert len(values) == 3
    eager = eager_loss(Trace_ELBO(max_plate_nesting=1), model, guide, x, 512)[0].item()
    assert all(abs(v - eager) < 0.2 * abs(eager) for v in values)  # the same estimator


def test_compiled_engine_trains_like_eager_and_reproduces_itself(digits, tmp_path):
    train, test = digits
    results = {}
    for engine in ("module", "compiled", "compiled"):
        model, guide = pair()
        history = fit(model, guide, Trace_ELBO(), train, test, epochs=5, batch_size=64, lr=3e-3, seed=1,
                      engine=engine)
        parameters = torch.cat([p.detach().flatten() for p in [*model.parameters(), *guide.parameters()]])
        results.setdefault(engine, []).append((history.column("test_elbo"), parameters))
    eager_elbo, compiled_elbo = results["module"][0][0][-1], results["compiled"][0][0][-1]
    assert abs(eager_elbo - compiled_elbo) < 1.5, (eager_elbo, compiled_elbo)  # nats: training noise only
    assert compiled_elbo > results["compiled"][0][0][0] + 3.0  # it trains
    assert torch.equal(results["compiled"][0][1], results["compiled"][1][1])  # same seed, same run


@pytest.mark.parametrize("name", ["Trace_ELBO", "IWAE", "IWAE-DReG"])
def test_the_captured_engine_gives_the_module_engines_weights(digits, name):
    """Uncompiled, the captured graph runs the eager loss's tensor operations: the same seed gives
    the module engine's training run, weight for weight, so ``auto`` may pick either."""
    train, test = digits
    objective = {"Trace_ELBO": lambda: Trace_ELBO(max_plate_nesting=1), "IWAE-DReG": dreg,
                 "IWAE": lambda: ImportanceWeightedELBO(num_particles=4, max_plate_nesting=1)}[name]
    weights = {}
    for engine in ("module", "captured"):
        model, guide = pair()
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager warns
            fit(model, guide, objective(), train, epochs=2, batch_size=64, lr=3e-3, seed=2, engine=engine)
        weights[engine] = torch.cat([p.detach().flatten() for p in [*model.parameters(), *guide.parameters()]])
    assert torch.equal(weights["module"], weights["captured"])
    assert not torch.equal(weights["module"], torch.cat([p.detach().flatten() for p in [*pair()[0].parameters(),
                                                                                        *pair()[1].parameters()]]))


def test_compiled_engine_resume_reproduces_the_uninterrupted_run(digits, tmp_path):
    train, test = digits
    options = dict(batch_size=64, lr=3e-3, seed=4, engine="compiled")
    model, guide = pair()
    fit(model, guide, Trace_ELBO(), train, epochs=4, callbacks=[Checkpoint(tmp_path / "straight")], **options)
    straight = torch.cat([p.detach().flatten() for p in [*model.parameters(), *guide.parameters()]])
    model, guide = pair()
    fit(model, guide, Trace_ELBO(), train, epochs=2, callbacks=[Checkpoint(tmp_path / "resumed")], **options)
    model, guide = pair(seed=99)
    fit(model, guide, Trace_ELBO(), train, epochs=4, callbacks=[Checkpoint(tmp_path / "resumed", resume=True)], **options)
    resumed = torch.cat([p.detach().flatten() for p in [*model.parameters(), *guide.parameters()]])
    assert torch.equal(straight, resumed)


def test_variance_loss_reports_its_particles_elbo_on_the_compiled_engine(digits):
    train, test = digits
    model, guide = pair()
    history = fit(model, guide, VarianceELBO(num_particles=4), train, test, epochs=2, batch_size=128,
                  engine="compiled")
    # The particles' ELBO is a bound: below the IWAE-free test ELBO plus noise, and far below zero.
    assert all(-80 < row["train_elbo"] < -10 for row in history.rows)


class BranchingModel(torch.nn.Module):
    """A model that reads a tensor's value (``if loc > 0``): no graph can hold it."""

    max_plate_nesting = 1

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x, num_data=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(self.loc if self.loc > 0 else -self.loc, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)


class BranchingGuide(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.tensor(0.0))

    def forward(self, x, num_data=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.loc, 1.0))


def test_uncapturable_loss_falls_back_to_eager_with_the_reason():
    model, guide, where = BranchingModel(), BranchingGuide(), "test_compiled.py"
    x = torch.randn(20)
    with pytest.raises(CaptureError, match=where):
        CapturedLoss(Trace_ELBO(max_plate_nesting=1), model, guide, compile=False)((x,), 20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = CompiledEngine(model, guide, Trace_ELBO(max_plate_nesting=1), lr=1e-2)
        before = [p.detach().clone() for p in model.parameters()]
        loss, _ = engine.step((x,), 20)
    assert engine.fallback_reason is not None and where in engine.fallback_reason
    assert any("runs eagerly instead" in str(w.message) for w in caught)
    assert math.isfinite(loss.item())
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))  # it still trains


def test_auto_compiles_long_runs_only():
    assert resolve_engine("auto", 100) == "module"
    assert resolve_engine("auto", 5000) == "captured"
    assert resolve_engine("auto", 10**6) == "compiled"
    assert resolve_engine("svi", 10**6) == "svi"
    with pytest.raises(ValueError, match="engine"):
        resolve_engine("jax", 1)


def test_compiled_evaluation_gives_the_exact_evidence_at_the_exact_posterior():
    """With q the exact posterior every log weight is log p(x), whatever the noise: the compiled
    log-likelihood and ELBO must equal the closed-form evidence."""
    from pyrovae.evaluate import importance_log_likelihood, mean_elbo
    from tests.support.linear_gaussian import ExactPosteriorGuide, linear_gaussian

    model, data = linear_gaussian()
    guide = ExactPosteriorGuide(model)
    exact = model.log_evidence(data.x)
    estimate = importance_log_likelihood(model, guide, data, 40, chunk_size=20, batch_size=7, per_example=True,
                                         engine="compiled")
    assert torch.allclose(estimate, exact, atol=1e-5)
    assert mean_elbo(model, guide, data, batch_size=7, engine="compiled") == pytest.approx(exact.mean().item(), abs=1e-5)
    with pytest.raises(ValueError, match="engine"):
        mean_elbo(model, guide, data, engine="fast")


def test_compiled_loss_draws_the_eager_noise_under_the_same_seed(digits):
    """The compiled graph keeps torch's random kernels: same seed, same noise as eager, so the
    same loss up to the compiler's floating-point reordering."""
    model, guide = pair()
    x = digits[0].x[:40]
    captured = CapturedLoss(Trace_ELBO(max_plate_nesting=1), model, guide, compile=True)
    captured((x,), 512)  # capture and compile outside the comparison
    torch.manual_seed(11)
    compiled = captured((x,), 512)[0].item()
    torch.manual_seed(11)
    eager = eager_loss(Trace_ELBO(max_plate_nesting=1), model, guide, x, 512)[0].item()
    torch.manual_seed(12)
    other = eager_loss(Trace_ELBO(max_plate_nesting=1), model, guide, x, 512)[0].item()
    assert compiled == pytest.approx(eager, rel=1e-5)
    assert other != pytest.approx(eager, rel=1e-5)  # the noise moves the loss more than the tolerance


def test_bias_after_matmul_keeps_the_function_and_removes_biased_linears():
    from torch.fx.experimental.proxy_tensor import make_fx

    from pyrovae.capture import _bias_after_matmul

    layer = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3, bias=False))
    x = torch.randn(7, 5)
    graph = make_fx(layer, pre_dispatch=True)(x)
    before = graph(x)
    rewritten = _bias_after_matmul(graph)
    linears = [n for n in rewritten.graph.nodes if n.target is torch.ops.aten.linear.default]
    assert len(linears) == 2 and all(len(n.args) == 2 or n.args[2] is None for n in linears)
    assert torch.allclose(rewritten(x), before, atol=1e-6)


def dreg():
    return ImportanceWeightedELBO(num_particles=4, estimator="dreg", max_plate_nesting=1)


def test_dreg_is_captured_with_its_gradients_which_keep_the_hooks(digits):
    """DReG reweights the guide samples' gradients with hooks: a forward graph would drop them, so
    the graph holds the backward. On the same noise it gives the eager loss and gradients, which
    differ from the standard estimator's (the hooks are in the graph)."""
    model, guide = pair()
    x = digits[0].x[:40]
    with pytest.raises(CaptureError, match="hooks"):
        CapturedLoss(dreg(), model, guide, compile=False)((x,), 512)
    captured = CapturedLoss(dreg(), model, guide, compile=False, gradients=True)
    torch.manual_seed(3)
    loss, metrics, gradients = captured((x,), 512)
    results = {}
    for estimator in ("dreg", "standard"):
        torch.manual_seed(3)
        elbo = ImportanceWeightedELBO(num_particles=4, estimator=estimator, max_plate_nesting=1)
        eager, _ = eager_loss(elbo, model, guide, x, 512)
        results[estimator] = (eager, torch.autograd.grad(eager, captured.trainable))
    assert loss.item() == pytest.approx(results["dreg"][0].item(), rel=1e-6)
    assert len(gradients) == len(captured.trainable)
    for graph_grad, eager_grad in zip(gradients, results["dreg"][1]):
        assert torch.allclose(graph_grad, eager_grad, rtol=1e-5, atol=1e-5)
    assert any(not torch.allclose(g, s, rtol=1e-3, atol=1e-3) for g, s in zip(gradients, results["standard"][1]))
    assert captured((x,), 512)[0].item() != captured((x,), 512)[0].item()  # fresh noise per call


TRAINING_OBJECTIVES = {
    "Trace_ELBO": lambda: Trace_ELBO(max_plate_nesting=1),
    "TraceMeanField_ELBO": lambda: TraceMeanField_ELBO(max_plate_nesting=1),
    "IWAE": lambda: ImportanceWeightedELBO(num_particles=4, max_plate_nesting=1),
    "IWAE-DReG": dreg,
    "VarianceELBO": lambda: VarianceELBO(num_particles=4, max_plate_nesting=1),
    "LogVarianceELBO": lambda: LogVarianceELBO(num_particles=4, max_plate_nesting=1),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINING_OBJECTIVES)
def test_every_objective_trains_on_the_compiled_engine_as_on_the_eager_one(digits, name):
    """Captured and compiled without falling back, each objective reaches the eager engine's test
    ELBO within training noise, and its compiled loss is a fresh estimate at every call."""
    train, test = digits
    elbos = {}
    for engine in ("module", "compiled"):
        model, guide = pair()
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager warns
            history = fit(model, guide, TRAINING_OBJECTIVES[name](), train, test, epochs=5, batch_size=64, lr=3e-3,
                          seed=1, engine=engine)
        elbos[engine] = history.column("test_elbo")
    assert abs(elbos["compiled"][-1] - elbos["module"][-1]) < 1.5, elbos  # nats: training noise only
    assert elbos["compiled"][-1] > elbos["compiled"][0], elbos  # it trains
    captured = CapturedLoss(TRAINING_OBJECTIVES[name](), model, guide, compile=True,
                            gradients=name == "IWAE-DReG")
    x = train.x[:40]
    assert captured((x,), 512)[0].item() != captured((x,), 512)[0].item()
