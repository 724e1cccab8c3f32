import json
import os

import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovae.callbacks import Checkpoint, Diagnostics, LearningRateSchedule, OnEpochEnd, TestObjective, TimeBudget
from pyrovae.checkpoint import CheckpointError, RunExistsError
from pyrovae.data import load_dataset
from pyrovae.evaluate import mean_elbo
from pyrovae.guides import DiagonalNormalGuide
from pyrovae.models import VAE
from pyrovae.train import TrainingDivergedError, fit, load_checkpoint
from tests.support.baselines import mean_kl_from_prior, pixel_frequency_log_likelihood
from tests.support.small_vae import parameters, small_vae_pair


@pytest.fixture(scope="module")
def digits():
    train = load_dataset("digits", "train", binarize="static", seed=0).subset(600)
    test = load_dataset("digits", "test", binarize="static", seed=1)
    return train, test


def pair(seed=0):
    return small_vae_pair(seed)


def test_short_run_learns_what_a_model_ignoring_z_cannot(tmp_path):
    # The whole training set, and a learning rate at which the small VAE leaves posterior collapse
    # behind within a second: a gain of a few nats, or "> -30", is met by a model that learns
    # only the pixel frequencies and ignores z.
    train = load_dataset("digits", "train", binarize="static", seed=0)
    test = load_dataset("digits", "test", binarize="static", seed=1)
    torch.manual_seed(0)
    model, guide = VAE(64, 8, (64,)), DiagonalNormalGuide(64, 8, (64,))
    history = fit(model, guide, Trace_ELBO(), train, test, epochs=12, batch_size=50, lr=1e-2,
                  callbacks=[Checkpoint(tmp_path)])
    elbos = history.column("test_elbo")
    assert len(elbos) == 12
    baseline = pixel_frequency_log_likelihood(train, test)  # about -27.3 nats
    # A lower bound above the exact log-likelihood of the best z-free model of independent pixels.
    assert elbos[-1] > baseline + 1.5, (elbos[-1], baseline)
    assert mean_kl_from_prior(model, guide, test) > 1.0  # nats per example; 0 when q(z | x) = p(z)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 13))
    assert [r["test_elbo"] for r in rows] == elbos
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["objective"] == "Trace_ELBO" and config["batch_size"] == 50 and config["num_train"] == len(train)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def stepped_rate(epoch, seconds):
    return [3e-2, 1e-2, 1e-4][min(epoch, 2)]


@pytest.mark.parametrize("schedule", [None, stepped_rate], ids=["constant", "scheduled"])
@pytest.mark.parametrize("engine", ["module", "svi"])
def test_resume_reproduces_an_uninterrupted_run(digits, tmp_path, engine, schedule):
    # With engine="svi", Pyro creates each parameter's optimizer lazily and loads the checkpointed
    # state into it then, param_groups and their learning rate included: a schedule applied
    # before that point was overwritten by the checkpoint's rate (engines.SVIEngine.set_lr).
    options = dict(batch_size=100, lr=3e-3, seed=5, engine=engine)
    scheduled = [LearningRateSchedule(schedule)] if schedule else []
    model, guide = pair()
    fit(model, guide, Trace_ELBO(), *digits, epochs=4, callbacks=[*scheduled, Checkpoint(tmp_path / "straight")],
        **options)
    straight = parameters(model, guide)

    model, guide = pair()
    fit(model, guide, Trace_ELBO(), *digits, epochs=2, callbacks=[*scheduled, Checkpoint(tmp_path / "resumed")],
        **options)
    model, guide = pair(seed=123)  # a fresh process would start from other weights
    history = fit(model, guide, Trace_ELBO(), *digits, epochs=4,
                  callbacks=[*scheduled, Checkpoint(tmp_path / "resumed", resume=True)], **options)
    assert [r["epoch"] for r in history.rows] == [1, 2, 3, 4]
    assert torch.allclose(parameters(model, guide), straight, atol=1e-6, rtol=0)


def test_lr_schedule_sets_the_rate_of_each_epoch(digits):
    # A rate of 0 is refused, so the last epochs take a rate too small to move float32 weights.
    moved = []

    def record(epoch, row):
        moved.append(parameters(model, guide))

    model, guide = pair()
    start = parameters(model, guide)
    fit(model, guide, Trace_ELBO(), *digits, epochs=3, batch_size=100,
        callbacks=[OnEpochEnd(record), LearningRateSchedule(lambda epoch, seconds: [1e-2, 1e-30, 1e-30][epoch])])
    assert (moved[0] - start).abs().max() > 1e-3
    assert torch.equal(moved[1], moved[0]) and torch.equal(moved[2], moved[1])


def test_max_seconds_stops_starting_epochs_after_the_budget(digits):
    model, guide = pair()
    history = fit(model, guide, Trace_ELBO(), *digits, epochs=5, batch_size=100, callbacks=[TimeBudget(1e-9)])
    assert [r["epoch"] for r in history.rows] == [1]  # the first epoch starts at 0 seconds
    history = fit(model, guide, Trace_ELBO(), *digits, epochs=3, batch_size=100, callbacks=[TimeBudget(1e6)])
    assert [r["epoch"] for r in history.rows] == [1, 2, 3]
    with pytest.raises(ValueError, match="max_seconds"):
        fit(model, guide, Trace_ELBO(), *digits, callbacks=[TimeBudget(0)])


def test_epoch_callback_sees_each_row_and_its_keys_are_recorded(digits, tmp_path):
    calls = []

    def callback(epoch, row):
        calls.append((epoch, dict(row)))
        row["doubled_elbo"] = 2 * row["test_elbo"]

    model, guide = pair()
    fit(model, guide, Trace_ELBO(), *digits, epochs=3, batch_size=100,
        callbacks=[OnEpochEnd(callback), Checkpoint(tmp_path)])
    assert [epoch for epoch, _ in calls] == [1, 2, 3]
    assert all(row["epoch"] == epoch and {"train_loss", "test_elbo"} <= set(row) for epoch, row in calls)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["doubled_elbo"] for r in rows] == [2 * row["test_elbo"] for _, row in calls]


def test_engines_take_the_same_steps(digits):
    results = []
    for engine in ("module", "svi"):
        model, guide = pair()
        fit(model, guide, Trace_ELBO(), *digits, epochs=1, batch_size=100, lr=1e-3, seed=2,
            engine=engine)
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


@pytest.mark.parametrize("engine", ["module", "svi"])
def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(digits, tmp_path, engine):
    train, test = digits
    model, guide = PoisonedVAE(after=20), DiagonalNormalGuide(64, 4, (32,))
    # 6 steps and 1 test evaluation per epoch: the 20th decode call is in epoch 3. Pyro's validation
    # warns of the NaN loss (this model's own doing) before fit stops.
    with pytest.raises(TrainingDivergedError, match=r"epoch 3, step \d+.*last good checkpoint"), \
            pytest.warns(UserWarning, match="Encountered NaN: loss"):
        fit(model, guide, Trace_ELBO(), train, test.subset(100), epochs=5, batch_size=100,
            callbacks=[Checkpoint(tmp_path)], engine=engine)
    fresh_model, fresh_guide = pair(seed=9)
    checkpoint = load_checkpoint(tmp_path, fresh_model, fresh_guide)
    assert checkpoint["epoch"] == 2
    assert torch.isfinite(parameters(fresh_model, fresh_guide)).all()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_non_finite_parameter_stops_training_and_keeps_the_previous_checkpoint(digits, tmp_path):
    losses = []

    def poison(epoch, row):
        # The epoch's loss and evaluation were finite; a weight turns NaN after them.
        losses.append(row["train_loss"])
        if epoch == 3:
            with torch.no_grad():
                model.decoder[0].weight[0, 0] = float("nan")

    model, guide = pair()
    with pytest.raises(TrainingDivergedError, match=r"model tensor 'decoder.0.weight' is not finite after epoch 3"):
        fit(model, guide, Trace_ELBO(), *digits, epochs=5, batch_size=100,
            callbacks=[OnEpochEnd(poison), Checkpoint(tmp_path)])
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    fresh_model, fresh_guide = pair(seed=9)
    assert load_checkpoint(tmp_path, fresh_model, fresh_guide)["epoch"] == 2
    assert torch.isfinite(parameters(fresh_model, fresh_guide)).all()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def run_files(run_dir):
    return {path.name: path.read_bytes() for path in sorted(run_dir.iterdir())}


def test_an_existing_run_is_kept_unless_resumed_or_overwritten(digits, tmp_path):
    model, guide = pair()
    fit(model, guide, Trace_ELBO(), *digits, epochs=2, batch_size=100, callbacks=[Checkpoint(tmp_path)])
    before = run_files(tmp_path)
    assert set(before) == {"config.json", "metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt"}
    with pytest.raises(RunExistsError, match="resume=True.*overwrite=True"):
        fit(model, guide, Trace_ELBO(), *digits, epochs=1, batch_size=100, callbacks=[Checkpoint(tmp_path)])
    assert run_files(tmp_path) == before

    fit(model, guide, Trace_ELBO(), *digits, epochs=1, batch_size=100, callbacks=[Checkpoint(tmp_path, overwrite=True)])
    assert set(run_files(tmp_path)) == {"config.json", "metrics.jsonl", "checkpoint.pt"}
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 1
    assert load_checkpoint(tmp_path, *pair())["epoch"] == 1


def test_the_previous_checkpoint_holds_the_previous_epoch(digits, tmp_path):
    options = dict(batch_size=100, seed=3)
    fit(*pair(), Trace_ELBO(), *digits, epochs=3, callbacks=[Checkpoint(tmp_path / "three")], **options)
    fit(*pair(), Trace_ELBO(), *digits, epochs=2, callbacks=[Checkpoint(tmp_path / "two")], **options)
    previous = torch.load(tmp_path / "three" / "checkpoint.prev.pt", weights_only=True)
    newest = torch.load(tmp_path / "three" / "checkpoint.pt", weights_only=True)
    after_two = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert (previous["epoch"], newest["epoch"]) == (2, 3)
    for owner in ("model", "guide"):
        assert all(torch.equal(previous[owner][k], after_two[owner][k]) for k in after_two[owner])
    assert not all(torch.equal(newest["model"][k], after_two["model"][k]) for k in after_two["model"])


def test_a_truncated_checkpoint_names_the_previous_one_which_resumes(digits, tmp_path):
    options = dict(batch_size=100, seed=3)
    fit(*pair(), Trace_ELBO(), *digits, epochs=3, callbacks=[Checkpoint(tmp_path)], **options)
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cannot be read.*checkpoint\.prev\.pt"):
        fit(*pair(), Trace_ELBO(), *digits, epochs=4, callbacks=[Checkpoint(tmp_path, resume=True)], **options)
    with pytest.raises(CheckpointError, match=r"checkpoint\.prev\.pt"):
        load_checkpoint(tmp_path, *pair())

    # Following the message: the previous checkpoint continues from epoch 2; epoch 3's metrics are redone.
    os.replace(tmp_path / "checkpoint.prev.pt", checkpoint)
    history = fit(*pair(), Trace_ELBO(), *digits, epochs=4, callbacks=[Checkpoint(tmp_path, resume=True)], **options)
    assert [r["epoch"] for r in history.rows] == [1, 2, 3, 4]
    assert load_checkpoint(tmp_path, *pair())["epoch"] == 4


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
        fit(model, guide, Trace_ELBO(), train, callbacks=[Checkpoint(tmp_path, resume=True)])
    with pytest.raises(TypeError, match="Dataset"):
        fit(model, guide, Trace_ELBO(), train.x)
    nan_data = train.subset(10)
    nan_data.x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit(model, guide, Trace_ELBO(), nan_data)
    intensities = load_dataset("digits", "train").subset(50)
    with pytest.raises(ValueError, match="binary"):
        fit(model, guide, Trace_ELBO(), intensities)


def test_objective_elbo_and_diagnostics_are_logged_each_epoch(digits, tmp_path):
    from pyrovae.infer import ImportanceWeightedELBO, VarianceELBO

    train, test = digits
    model, guide = pair()

    def variance_loss_per_example(*_):
        with torch.no_grad():
            return VarianceELBO(num_particles=64, max_plate_nesting=1).loss(model, guide, train.x) / len(train)

    reference = [variance_loss_per_example()]
    history = fit(model, guide, VarianceELBO(num_particles=4), train, test.subset(100), epochs=3, batch_size=100,
                  callbacks=[Diagnostics({"iwae_10": ImportanceWeightedELBO(num_particles=10)}),
                             OnEpochEnd(lambda epoch, row: reference.append(variance_loss_per_example())),
                             Checkpoint(tmp_path)])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all({"train_loss", "train_elbo", "test_elbo", "iwae_10"} <= set(row) for row in rows)
    # train_loss is the variance loss per example averaged over the epoch's steps, while training
    # lowers it: it lies between its values at the epoch's start and end (10% for Monte Carlo error).
    for row, start, end in zip(history.rows, reference, reference[1:]):
        assert 0.9 * min(start, end) < row["train_loss"] < 1.1 * max(start, end), (row["train_loss"], start, end)
    # The ELBO from the same particles is a log-likelihood bound.
    assert all(-80 < row["train_elbo"] < 0 for row in history.rows)
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

    # 550 examples in batches of 100: the last 50 are dropped, every traced step sees 100. Five
    # steps an epoch, as the plain objective takes on 500 examples: the two then train alike
    # (their noise differs; over seeds 0-7 the final test ELBOs differ by at most 0.24 nats).
    options = dict(epochs=6, batch_size=100, lr=3e-3)
    jit_elbo = fit(model, guide, jit, train.subset(550), test, **options).column("test_elbo")[-1]
    model, guide = pair()
    plain_elbo = fit(model, guide, Trace_ELBO(), train.subset(500), test, **options).column("test_elbo")[-1]
    assert plain_elbo > mean_elbo(*pair(), test) + 8.0  # it trained: an untrained pair is ~13 nats worse
    assert jit_elbo == pytest.approx(plain_elbo, abs=0.5)


def test_true_discrete_bound_is_logged_next_to_a_relaxed_objective(digits):
    import warnings

    from pyrovae.infer import RelaxedBernoulliELBO, TrueDiscreteBound
    from tests.support.relaxed_vae import RelaxedBernoulliGuide, RelaxedBernoulliVAE

    train, test = digits
    model, guide = RelaxedBernoulliVAE(64, 4, (32,)), RelaxedBernoulliGuide(64, 4, (32,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        objective = RelaxedBernoulliELBO(num_particles=2)
    history = fit(model, guide, objective, train, test.subset(100), epochs=4, batch_size=100, lr=3e-3,
                  callbacks=[TestObjective(TrueDiscreteBound(num_particles=5)),
                             Diagnostics({"true_discrete_bound": TrueDiscreteBound(num_particles=20)})])
    bounds = history.column("true_discrete_bound")
    # The relaxed "Bernoulli ELBO" is not a bound; the true discrete bound is, and it is what is
    # logged: the last epoch's value is the bound of the trained model, evaluated afresh.
    assert len(bounds) == 4
    assert bounds[-1] == pytest.approx(mean_elbo(model, guide, test.subset(100), TrueDiscreteBound(num_particles=200)),
                                       abs=0.15)
    assert all(abs(b - t) < 1.5 for b, t in zip(bounds, history.column("test_elbo")))


def test_a_crash_between_checkpoint_and_metrics_still_resumes_exactly(digits, tmp_path, monkeypatch):
    from pyrovae import checkpoint

    options = dict(batch_size=100, seed=5)
    model, guide = pair()
    fit(model, guide, Trace_ELBO(), *digits, epochs=4, callbacks=[Checkpoint(tmp_path / "straight")], **options)
    straight = parameters(model, guide)

    write_jsonl, writes = checkpoint.write_jsonl, []

    def dies_at_the_third_epoch(path, rows):
        writes.append(len(rows))
        if len(rows) == 3:
            raise KeyboardInterrupt  # the process is killed while epoch 3's records are written
        return write_jsonl(path, rows)

    monkeypatch.setattr(checkpoint, "write_jsonl", dies_at_the_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit(*pair(), Trace_ELBO(), *digits, epochs=4, callbacks=[Checkpoint(tmp_path / "killed")], **options)
    assert writes == [1, 2, 3]
    monkeypatch.undo()
    model, guide = pair(seed=123)
    history = fit(model, guide, Trace_ELBO(), *digits, epochs=4, callbacks=[Checkpoint(tmp_path / "killed", resume=True)],
                  **options)
    assert [r["epoch"] for r in history.rows] == [1, 2, 3, 4]
    assert torch.allclose(parameters(model, guide), straight, atol=1e-6, rtol=0)


def test_resume_refuses_metrics_that_stop_before_the_checkpoint(digits, tmp_path):
    fit(*pair(), Trace_ELBO(), *digits, epochs=2, batch_size=100, callbacks=[Checkpoint(tmp_path)])
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines()[0] + "\n")
    with pytest.raises(CheckpointError, match="holds epoch 2 but metrics.jsonl records epochs up to 1"):
        fit(*pair(), Trace_ELBO(), *digits, epochs=3, batch_size=100, callbacks=[Checkpoint(tmp_path, resume=True)])


def test_overwrite_keeps_the_old_run_when_the_new_data_is_refused(digits, tmp_path):
    model, guide = pair()
    fit(model, guide, Trace_ELBO(), *digits, epochs=1, batch_size=100, callbacks=[Checkpoint(tmp_path)])
    before = run_files(tmp_path)
    intensities = load_dataset("digits", "train").subset(50)  # not binary: the Bernoulli VAE refuses it
    with pytest.raises(ValueError, match="binary"):
        fit(model, guide, Trace_ELBO(), intensities, callbacks=[Checkpoint(tmp_path, overwrite=True)])
    assert run_files(tmp_path) == before
