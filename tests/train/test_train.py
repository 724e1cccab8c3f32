import json

import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovae.data import load_dataset
from pyrovae.guides import DiagonalNormalGuide
from pyrovae.models import VAE
from pyrovae.checkpoint import CheckpointError
from pyrovae.train import TrainingDivergedError, fit, load_checkpoint


@pytest.fixture(scope="module")
def digits():
    train = load_dataset("digits", "train", binarize="static", seed=0).subset(600)
    test = load_dataset("digits", "test", binarize="static", seed=1)
    return train, test


def pair(seed=0):
    torch.manual_seed(seed)
    return VAE(64, 4, (32,)), DiagonalNormalGuide(64, 4, (32,))


def parameters(*modules):
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])


def test_short_run_improves_test_elbo(digits, tmp_path):
    model, guide = pair()
    history = fit(model, guide, Trace_ELBO(), *digits, epochs=12, batch_size=50, lr=3e-3,
                  run_dir=tmp_path, progress=False)
    elbos = history.column("test_elbo")
    assert len(elbos) == 12
    assert elbos[-1] > elbos[0] + 5.0, elbos  # nats per example
    assert elbos[-1] > -30.0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 13))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["objective"] == "Trace_ELBO" and config["batch_size"] == 50
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("engine", ["module", "svi"])
def test_resume_reproduces_an_uninterrupted_run(digits, tmp_path, engine):
    options = dict(batch_size=100, lr=3e-3, seed=5, progress=False, engine=engine)
    model, guide = pair()
    fit(model, guide, Trace_ELBO(), *digits, epochs=4, run_dir=tmp_path / "straight", **options)
    straight = parameters(model, guide)

    model, guide = pair()
    fit(model, guide, Trace_ELBO(), *digits, epochs=2, run_dir=tmp_path / "resumed", **options)
    model, guide = pair(seed=123)  # a fresh process would start from other weights
    history = fit(model, guide, Trace_ELBO(), *digits, epochs=4, run_dir=tmp_path / "resumed", resume=True, **options)
    assert [r["epoch"] for r in history.rows] == [1, 2, 3, 4]
    assert torch.allclose(parameters(model, guide), straight, atol=1e-6, rtol=0)


def test_engines_take_the_same_steps(digits):
    results = []
    for engine in ("module", "svi"):
        model, guide = pair()
        fit(model, guide, Trace_ELBO(), *digits, epochs=1, batch_size=100, lr=1e-3, seed=2,
            progress=False, engine=engine)
        results.append(parameters(model, guide))
    assert torch.allclose(results[0], results[1], atol=1e-5)


class PoisonedVAE(VAE):
    """Returns NaN logits from its ``after``-th forward call on."""

    def __init__(self, after):
        super().__init__(64, 4, (32,))
        self.calls, self.after = 0, after

    def decode(self, z):
        self.calls += 1
        distribution = super().decode(z)
        if self.calls >= self.after:
            return self.likelihood.distribution(self.decoder(z) * float("nan"))
        return distribution


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    train, test = digits
    model, guide = PoisonedVAE(after=20), DiagonalNormalGuide(64, 4, (32,))
    # 6 steps and 1 test evaluation per epoch: the 20th decode call is in epoch 3.
    with pytest.raises(TrainingDivergedError, match=r"epoch 3, step \d+.*last good checkpoint"):
        fit(model, guide, Trace_ELBO(), train, test.subset(100), epochs=5, batch_size=100, run_dir=tmp_path,
            progress=False)
    fresh_model, fresh_guide = pair(seed=9)
    checkpoint = load_checkpoint(tmp_path, fresh_model, fresh_guide)
    assert checkpoint["epoch"] == 2
    assert torch.isfinite(parameters(fresh_model, fresh_guide)).all()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_bad_arguments(digits, tmp_path):
    model, guide = pair()
    train, test = digits
    with pytest.raises(ValueError, match="engine"):
        fit(model, guide, Trace_ELBO(), train, engine="jax")
    with pytest.raises(ValueError, match="batch_size"):
        fit(model, guide, Trace_ELBO(), train, batch_size=0)
    with pytest.raises(ValueError, match="lr"):
        fit(model, guide, Trace_ELBO(), train, lr=-1.0)
    with pytest.raises(CheckpointError, match="cannot resume"):
        fit(model, guide, Trace_ELBO(), train, run_dir=tmp_path, resume=True)
    with pytest.raises(TypeError, match="Dataset"):
        fit(model, guide, Trace_ELBO(), train.x)
    nan_data = train.subset(10)
    nan_data.x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit(model, guide, Trace_ELBO(), nan_data)
    intensities = load_dataset("digits", "train").subset(50)
    with pytest.raises(ValueError, match="binary"):
        fit(model, guide, Trace_ELBO(), intensities, progress=False)


def test_objective_elbo_and_diagnostics_are_logged_each_epoch(digits, tmp_path):
    from pyrovae.infer import ImportanceWeightedELBO, VarianceELBO

    train, test = digits
    model, guide = pair()
    history = fit(model, guide, VarianceELBO(num_particles=4), train, test.subset(100), epochs=3, batch_size=100,
                  run_dir=tmp_path, progress=False,
                  diagnostics={"iwae_10": ImportanceWeightedELBO(num_particles=10)})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all({"train_loss", "train_elbo", "test_elbo", "iwae_10"} <= set(row) for row in rows)
    # The variance loss is a variance (>= 0); the ELBO from the same particles is a log-likelihood bound.
    assert all(row["train_loss"] >= 0 and -80 < row["train_elbo"] < 0 for row in history.rows)
    assert all(row["iwae_10"] > row["test_elbo"] - 0.5 for row in history.rows)


def test_jit_objective_computes_trace_elbo_and_trains_on_full_batches(digits):
    import pyro
    from pyro.infer import JitTrace_ELBO

    train, test = digits
    model, guide = pair()
    jit = JitTrace_ELBO(ignore_jit_warnings=True)
    x = train.x[:100]
    with pyro.settings.context(pyrovae_register_modules=True):
        jit.loss(model, guide, x, num_data=600)  # compiles
        pyro.set_rng_seed(7)
        compiled = jit.loss(model, guide, x, num_data=600)
    pyro.set_rng_seed(7)
    assert compiled == pytest.approx(Trace_ELBO().loss(model, guide, x, num_data=600), rel=1e-5)

    # 550 examples in batches of 100: the last 50 are dropped, every traced step sees 100.
    history = fit(model, guide, jit, train.subset(550), test, epochs=6, batch_size=100, lr=3e-3, progress=False)
    elbos = history.column("test_elbo")
    assert elbos[-1] > elbos[0] + 2.0


def test_true_discrete_bound_is_logged_next_to_a_relaxed_objective(digits):
    import warnings

    from tests.support.relaxed_vae import RelaxedBernoulliGuide, RelaxedBernoulliVAE

    from pyrovae.infer import RelaxedBernoulliELBO, TrueDiscreteBound

    train, test = digits
    model, guide = RelaxedBernoulliVAE(64, 4, (32,)), RelaxedBernoulliGuide(64, 4, (32,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        objective = RelaxedBernoulliELBO(num_particles=2)
    history = fit(model, guide, objective, train, test.subset(100), epochs=4, batch_size=100, lr=3e-3,
                  progress=False, eval_elbo=TrueDiscreteBound(num_particles=5),
                  diagnostics={"true_discrete_bound": TrueDiscreteBound(num_particles=20)})
    bounds = history.column("true_discrete_bound")
    assert len(bounds) == 4 and bounds[-1] > bounds[0] + 2.0
    # The relaxed "Bernoulli ELBO" is not a bound; the true discrete bound is, and is what improves.
    assert all(abs(b - t) < 1.5 for b, t in zip(bounds, history.column("test_elbo")))
