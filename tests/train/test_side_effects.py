"""Every update a model or guide makes besides the gradient step reaches every engine and objective,
or the combination is refused with one line: the VQ-VAE's EMA codebook (an in-place update in the
guide's forward pass), the annealed buffers (the GMVAE's temperature, the Bernoulli VAE's beta, set
between epochs) and NVIL's learned baseline."""

import math
import warnings

import pyro
import pytest
import torch
from pyro.infer import SVI, JitTrace_ELBO, JitTraceGraph_ELBO, Trace_ELBO, TraceGraph_ELBO

from pyrovae.capture import CapturedLoss
from pyrovae.data import Dataset, load_dataset
from pyrovae.engines import make_engine
from pyrovae.guides import BernoulliLatentGuide, GMVAEGuide, VQVAEGuide
from pyrovae.infer import DifferentiableTraceGraph_ELBO
from pyrovae.models import GMVAE, VQVAE, BernoulliVAE
from pyrovae.train import fit

SMALL_VQVAE = dict(image_shape=(1, 8, 8), num_codes=6, code_dim=3, downsamplings=1, hidden_channels=8,
                   residual_blocks=0, residual_channels=4)


def vqvae_pair():
    torch.manual_seed(0)
    model = VQVAE(**SMALL_VQVAE, ema=True)
    return model, VQVAEGuide(model, hidden_channels=8, residual_blocks=0, residual_channels=4)


@pytest.fixture(scope="module")
def images():
    return load_dataset("digits", "train", binarize="static").x[:64].reshape(64, 1, 8, 8)


def ema_updates(codebook, assigned_per_step: int) -> float:
    """How many updates the codebook has had: the counts' total follows
    S_t = n + (S_0 - n) decay^t for n vectors assigned per step, from S_0 = M."""
    total, start = float(codebook.cluster_size.sum()), codebook.num_codes
    return math.log((total - assigned_per_step) / (start - assigned_per_step)) / math.log(codebook.decay)


@pytest.mark.parametrize("engine", ["module", "svi", "captured", "compiled"])
def test_every_engine_updates_the_ema_codebook_once_per_step(images, engine):
    model, guide = vqvae_pair()
    trainer = make_engine(engine, model, guide, Trace_ELBO(), lr=1e-3)
    batches = images.split(16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to eager would not test the captured graph
        with pyro.settings.context(pyrovae_register_modules=trainer.needs_registration):
            for x in batches:
                trainer.step((x,), 64)
    assert ema_updates(model.codebook, 16 * 4 * 4) == pytest.approx(len(batches), abs=1e-3)


def test_pyro_jit_objectives_refuse_the_ema_codebook_in_one_line(images):
    model, guide = vqvae_pair()
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), JitTrace_ELBO(ignore_jit_warnings=True))
    with pyro.settings.context(pyrovae_register_modules=True), pytest.raises(ValueError) as raised:
        svi.step(images[:16])
    message = str(raised.value).splitlines()[0]  # Pyro's trace handler appends the trace's shapes
    assert "Jit" in message and "EMA" in message and "Trace_ELBO" in message
    for engine in ("module", "svi", "compiled"):
        model, guide = vqvae_pair()
        data = Dataset.from_tensor(images)
        with pytest.raises(ValueError) as raised:
            fit(model, guide, JitTrace_ELBO(ignore_jit_warnings=True), data, epochs=1, batch_size=16, engine=engine)
        assert str(raised.value) == message  # one line, before any step
        assert ema_updates(model.codebook, 16 * 4 * 4) == pytest.approx(0, abs=1e-6)


# Annealed buffers: set in place between epochs, read by the loss as tensors. -----------------------


def gumbel_pair():
    torch.manual_seed(0)
    return GMVAE(6, 4, 2, (8,), estimator="gumbel-a"), GMVAEGuide(6, 4, 2, (8,), estimator="gumbel-a")


def smoothing_pair():
    torch.manual_seed(0)
    model = BernoulliVAE(6, z_dim=3, relaxation="spike-exp", hidden_sizes=[8], beta=2.0)
    return model, BernoulliLatentGuide(model, hidden_sizes=[8])


ANNEALED = {"temperature": (gumbel_pair, "temperature", 0.2), "beta": (smoothing_pair, "beta", 9.0)}


def loss_at_seed(loss, seed=3):
    pyro.set_rng_seed(seed)
    value = loss()
    return float(value.detach() if torch.is_tensor(value) else value)


@pytest.mark.parametrize("name, runner", [("temperature", "jit"), ("temperature", "captured"), ("temperature", "compiled"),
                                          ("beta", "jit"), ("beta", "captured")])
def test_an_annealed_buffer_reaches_every_traced_loss(name, runner):
    make_pair, buffer, annealed = ANNEALED[name]
    model, guide = make_pair()
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    if runner == "jit":
        jit = JitTrace_ELBO(ignore_jit_warnings=True)
        traced = lambda: jit.loss(model, guide, x)  # noqa: E731
    else:
        captured = CapturedLoss(Trace_ELBO(), model, guide, compile=runner == "compiled")
        traced = lambda: captured((x,), 5)[0]  # noqa: E731
    eager = lambda: Trace_ELBO().loss(model, guide, x)  # noqa: E731
    with pyro.settings.context(pyrovae_register_modules=runner == "jit"):
        first = loss_at_seed(traced)  # traces or captures at the initial value
        assert first == pytest.approx(loss_at_seed(eager), rel=1e-5)
        for module in (model, guide):
            getattr(module, buffer).fill_(annealed)
        after = loss_at_seed(traced)
    assert after == pytest.approx(loss_at_seed(eager), rel=1e-5)
    assert abs(after - first) > 1e-3  # the annealed value changes the loss: the check above can fail


# NVIL's baseline: a network of the guide, trained by the surrogate's regression term. ----------


OBJECTIVES = {"graph": TraceGraph_ELBO, "differentiable-graph": DifferentiableTraceGraph_ELBO,
              "jit-graph": lambda: JitTraceGraph_ELBO(ignore_jit_warnings=True)}


@pytest.mark.parametrize("engine, objective", [("svi", "graph"), ("svi", "jit-graph"), ("module", "differentiable-graph"),
                                               ("captured", "differentiable-graph")])
def test_the_nvil_baseline_trains_on_every_engine(engine, objective):
    torch.manual_seed(0)
    model = BernoulliVAE(6, z_dim=3, relaxation="reinforce", hidden_sizes=[8])
    guide = BernoulliLatentGuide(model, hidden_sizes=[8])
    baseline = [p.detach().clone() for p in guide.baseline.parameters()]
    trainer = make_engine(engine, model, guide, OBJECTIVES[objective](), lr=1e-2)
    x = torch.bernoulli(torch.full((8, 6), 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=RuntimeWarning)  # no fallback from the captured graph
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        with pyro.settings.context(pyrovae_register_modules=trainer.needs_registration):
            for _ in range(3):
                trainer.step((x,), 8)
    moved = [float((p.detach() - b).abs().max()) for p, b in zip(guide.baseline.parameters(), baseline)]
    assert all(m > 1e-4 for m in moved), moved


def test_the_module_engine_refuses_an_objective_without_a_differentiable_loss():
    model = BernoulliVAE(6, z_dim=3, relaxation="reinforce", hidden_sizes=[8])
    guide = BernoulliLatentGuide(model, hidden_sizes=[8])
    for elbo in (TraceGraph_ELBO(), JitTraceGraph_ELBO()):
        for engine in ("module", "compiled"):
            with pytest.raises(ValueError, match="has no differentiable_loss.*use engine 'svi'"):
                make_engine(engine, model, guide, elbo, lr=1e-3)
