"""The Bernoulli-latent benchmark splits its runs across processes and merges them itself (``--shard i/n``,
then ``--collect``), and estimates -log p(x) on the whole test set or on a seeded random subset."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from benchmarks import common, discrete_estimators
from pyrovae.checkpoint import RunExistsError
from pyrovae.data import Dataset


def _args(**overrides) -> argparse.Namespace:
    values = dict(epochs=1, lr=1e-3, engine="compiled", seed=0, models=["linear", "nonlinear"], relaxations=["concrete", "disarm"],
                  nll_samples=50, test_subset=None, subset_seed=0, bound_particles=2, bound_repeats=2, draws=3,
                  threads=1, data_dir=None, output="quick", resume=False, retry_diverged=False, rerun=[], set=[],
                  shard=None, collect=False)
    return argparse.Namespace(**{**values, **overrides})


def _write_shard(directory, args, index, count):
    runs = discrete_estimators.selected_runs(args)[index::count]
    rows = [{"model": model, "relaxation": relaxation, "nll": 100.0 + i} for i, (model, relaxation) in enumerate(runs)]
    common.save_results(discrete_estimators.shard_name(args.output, index, count),
                        {"rows": rows, "shard": [index, count]}, args=_args(**{**vars(args), "shard": (index, count)}),
                        directory=directory)


@pytest.fixture
def places(tmp_path, monkeypatch):
    monkeypatch.setattr(discrete_estimators, "shard_directory", lambda: tmp_path / "shards")
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    return tmp_path


def test_shards_are_collected_in_the_order_of_one_process(places):
    args = _args()
    for index in (1, 0):
        _write_shard(places / "shards", args, index, 2)
    discrete_estimators.collect(_args(collect=True))
    data = json.loads((places / "results" / "quick.json").read_text())
    assert [(r["model"], r["relaxation"]) for r in data["rows"]] == discrete_estimators.selected_runs(args)
    assert data["shards"] == 2
    assert data["arguments"] == common.recorded_arguments(args), "the merged file records the one command"
    assert "shard" not in data["arguments"] and "collect" not in data["arguments"]


def test_collect_refuses_missing_shards_and_shards_of_other_arguments(places):
    args = _args()
    _write_shard(places / "shards", args, 0, 2)
    with pytest.raises(SystemExit, match="shards 1/2 of 'quick' are not done yet"):
        discrete_estimators.collect(args)
    _write_shard(places / "shards", _args(epochs=2), 1, 2)
    with pytest.raises(SystemExit, match="run with other arguments"):
        discrete_estimators.collect(args)
    assert not (places / "results" / "quick.json").exists()
    with pytest.raises(SystemExit, match="no shard of 'other'"):
        discrete_estimators.collect(_args(output="other"))


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "0/0", "-1/3"])
def test_a_bad_shard_is_one_clear_error(text):
    with pytest.raises(argparse.ArgumentTypeError, match="--shard takes i/n"):
        discrete_estimators.shard(text)
    assert discrete_estimators.shard("1/3") == (1, 3)


def test_the_test_subset_is_seeded_and_random():
    test = Dataset.from_tensor(torch.arange(100.0).unsqueeze(1).expand(100, 4).contiguous())
    assert discrete_estimators.test_subset(test, None, 0) is test
    assert discrete_estimators.test_subset(test, 100, 0) is test
    first = discrete_estimators.test_subset(test, 10, 3).x[:, 0]
    assert torch.equal(first, discrete_estimators.test_subset(test, 10, 3).x[:, 0])
    assert not torch.equal(first, discrete_estimators.test_subset(test, 10, 4).x[:, 0])
    assert not torch.equal(first, torch.arange(10.0)), "not the first images"
    assert len(set(first.tolist())) == 10


def test_the_true_bound_reports_its_monte_carlo_error(monkeypatch):
    values = iter([-100.0, -102.0, -101.0, -103.0])
    seen = []

    def fake_mean_elbo(model, guide, data, objective):
        seen.append(objective.num_particles)
        return next(values)

    monkeypatch.setattr(discrete_estimators, "mean_elbo", fake_mean_elbo)
    mean, error = discrete_estimators.true_bound(None, None, None, particles=7, repeats=4)
    assert seen == [7, 7, 7, 7]
    assert mean == pytest.approx(-101.5)
    assert error == pytest.approx(torch.tensor([-100.0, -102.0, -101.0, -103.0]).std().item() / 2)


def _run(tmp_path, monkeypatch, *argv):
    """The benchmark on the small ``tiny`` preset (digits), its results and runs under ``tmp_path``."""
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(discrete_estimators, "PRESETS", {"linear": "tiny", "nonlinear": "tiny"})
    discrete_estimators.main(["--models", "linear", "--relaxations", "concrete", "--engine", "module",
                              "--nll-samples", "4", "--bound-particles", "2", "--bound-repeats", "2", "--draws", "2",
                              "--runs-dir", str(tmp_path / "runs"), "--lr", "0.003", *argv])
    return json.loads((tmp_path / "results" / "discrete_estimators.json").read_text())["rows"]


def test_a_run_stopped_inside_its_row_resumes_to_the_uninterrupted_row(tmp_path, monkeypatch):
    """Stopped during epoch 2 of 3, the JSON holds the unfinished row of epoch 1; ``--resume`` continues
    from that epoch's checkpoint and ends with the curve and -log p(x) of a run never stopped."""
    original, seen = discrete_estimators.RecordEpochs.on_epoch_end, []

    def stop_at_two(self, epoch, row, run):
        seen.append(epoch)
        if epoch == 2:
            raise KeyboardInterrupt
        original(self, epoch, row, run)

    monkeypatch.setattr(discrete_estimators.RecordEpochs, "on_epoch_end", stop_at_two)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "a", monkeypatch, "--epochs", "3")
    (row,) = json.loads((tmp_path / "a" / "results" / "discrete_estimators.json").read_text())["rows"]
    assert seen == [1, 2] and row["epochs"] == 1 and row["complete"] is False and "nll" not in row
    assert row["preset_epochs"] == 1 and [r["epoch"] for r in row["curve"]] == [1]
    monkeypatch.setattr(discrete_estimators.RecordEpochs, "on_epoch_end", original)

    with pytest.raises(RunExistsError, match="already holds a run"):
        _run(tmp_path / "a", monkeypatch, "--epochs", "3")
    (resumed,) = _run(tmp_path / "a", monkeypatch, "--epochs", "3", "--resume")
    (whole,) = _run(tmp_path / "b", monkeypatch, "--epochs", "3")
    assert resumed["complete"] and resumed["epochs"] == 3
    assert resumed["curve"] == whole["curve"]
    assert resumed["nll"] == pytest.approx(whole["nll"], abs=1e-4)
    # Finished: a further --resume keeps the row instead of training again.
    assert _run(tmp_path / "a", monkeypatch, "--epochs", "3", "--resume") == [resumed]


def test_rerun_trains_the_named_runs_again_and_resumes_the_others(tmp_path, monkeypatch):
    """``--resume --rerun concrete`` replaces the finished concrete row with a new run from epoch 1 (its
    run directory overwritten), while a finished row it does not name is kept without training."""
    original, seen = discrete_estimators.RecordEpochs.on_epoch_end, []

    def count(self, epoch, row, run):
        seen.append((self.fields["relaxation"], epoch))
        original(self, epoch, row, run)

    monkeypatch.setattr(discrete_estimators.RecordEpochs, "on_epoch_end", count)
    first = _run(tmp_path, monkeypatch, "--epochs", "2", "--relaxations", "concrete", "straight-through")
    seen.clear()
    again = _run(tmp_path, monkeypatch, "--epochs", "2", "--relaxations", "concrete", "straight-through",
                 "--resume", "--rerun", "concrete")
    assert seen == [("concrete", 1), ("concrete", 2)]
    first, again = ({r["relaxation"]: r for r in rows} for rows in (first, again))
    assert again.keys() == {"concrete", "straight-through"}
    assert again["straight-through"] == first["straight-through"]
    assert again["concrete"]["complete"] and again["concrete"]["curve"] == first["concrete"]["curve"]
    with pytest.raises(SystemExit):
        _run(tmp_path, monkeypatch, "--epochs", "2", "--rerun", "concrete")


def test_an_unfinished_row_is_shown_as_such_on_the_page():
    data = {"rows": [{"model": "linear", "relaxation": "disarm", "objective": "disarm", "epochs": 120,
                      "preset_epochs": 1000, "complete": False, "true_bound": -130.5, "curve": []}]}
    (line,) = [line for line in discrete_estimators._render(data) if line.startswith("|") and "disarm" in line]
    assert "120 of 1000 (unfinished)" in line and "-130.5" in line


def test_the_budget_lines_name_the_unfinished_runs():
    finished = {"model": "linear", "relaxation": "concrete", "epochs": 1000, "complete": True}
    data = {"rows": [finished, {"model": "linear", "relaxation": "disarm", "epochs": 433, "complete": False}]}
    text = "\n".join(discrete_estimators._budgets(data))
    assert "1 of its runs are unfinished (disarm at epoch 433)" in text
    assert "unfinished" not in "\n".join(discrete_estimators._budgets({"rows": [finished]}))


def test_the_budget_lines_say_when_the_step_size_is_not_the_presets():
    rows = [{"model": "linear", "relaxation": "concrete", "epochs": 3, "complete": True}]
    other = "\n".join(discrete_estimators._budgets({"rows": rows, "arguments": {"lr": 1e-3}}))
    assert "Adam's step size 0.001, not the presets' 0.0001" in other
    for arguments in ({"lr": None}, {"lr": 1e-4}):
        assert "step size" not in "\n".join(discrete_estimators._budgets({"rows": rows, "arguments": arguments}))


def test_set_trains_every_run_with_the_settings_and_keeps_them_apart(tmp_path, monkeypatch):
    """``--set posterior_temperature=0.25`` reaches the model (its run's config and curve differ from the
    preset's), names its own run directory, is printed on the page, and an output of other settings is refused."""
    (default,) = _run(tmp_path / "a", monkeypatch, "--epochs", "1")
    (cold,) = _run(tmp_path / "b", monkeypatch, "--epochs", "1", "--set", "posterior-temperature=0.25")
    (run_dir,) = (tmp_path / "b" / "runs" / "discrete_estimators").iterdir()
    assert run_dir.name == "linear-concrete-posterior_temperature=0.25-seed0"
    assert json.loads((run_dir / "config.json").read_text())["posterior_temperature"] == 0.25
    assert cold["curve"][0]["train_loss"] != pytest.approx(default["curve"][0]["train_loss"], abs=1e-3)
    data = json.loads((tmp_path / "b" / "results" / "discrete_estimators.json").read_text())
    assert data["arguments"]["set"] == ["posterior_temperature=0.25"]
    assert "with these model settings over the preset's: posterior_temperature=0.25." in "\n".join(
        discrete_estimators._explanation(data))
    with pytest.raises(SystemExit):
        _run(tmp_path / "b", monkeypatch, "--epochs", "1", "--resume", "--set", "posterior_temperature=0.5")


@pytest.mark.parametrize("setting, message", [
    ("lr=0.1", "--set cannot change lr"), ("colour=3", "unknown settings for model 'bernoulli-vae': colour"),
    ("posterior_temperature=-1", "must be positive, got -1"), ("temperature", "--set takes KEY=VALUE")])
def test_a_bad_setting_is_one_clear_error(setting, message, capsys):
    with pytest.raises(SystemExit):
        discrete_estimators.main(["--epochs", "1", "--set", setting])
    assert message in capsys.readouterr().err


def test_a_full_budget_concrete_row_points_to_the_experiments_on_its_gap():
    row = {"model": "linear", "relaxation": "concrete", "epochs": 1000, "complete": True}
    pointer = "measured in the `nll_convergence` section"
    assert pointer in "\n".join(discrete_estimators._explanation({"rows": [row]}))
    for other in ({**row, "epochs": 3}, {**row, "complete": False}, {**row, "relaxation": "disarm"}):
        assert pointer not in "\n".join(discrete_estimators._explanation({"rows": [other]}))


def test_collect_keeps_a_further_row_than_a_shard_started_again(places):
    """A shard whose run directory was lost starts its run again: collecting it keeps the results' row
    that has more epochs (or is complete) until the new run passes it, except for runs named by --rerun."""
    args = _args(models=["linear"], relaxations=["concrete", "disarm"])
    common.save_results("quick", {"rows": [
        {"model": "linear", "relaxation": "concrete", "complete": False, "epochs": 705},
        {"model": "linear", "relaxation": "disarm", "complete": True, "epochs": 1000}]}, args=args)
    for index, relaxation in enumerate(["concrete", "disarm"]):
        common.save_results(discrete_estimators.shard_name("quick", index, 2), {"rows": [
            {"model": "linear", "relaxation": relaxation, "complete": False, "epochs": 12}], "shard": [index, 2]},
            args=args, directory=places / "shards")
    discrete_estimators.collect(_args(**{**vars(args), "collect": True}))
    rows = json.loads((places / "results" / "quick.json").read_text())["rows"]
    assert [(r["relaxation"], r["epochs"]) for r in rows] == [("concrete", 705), ("disarm", 1000)]
    discrete_estimators.collect(_args(**{**vars(args), "collect": True, "rerun": ["disarm"]}))
    rows = json.loads((places / "results" / "quick.json").read_text())["rows"]
    assert [(r["relaxation"], r["epochs"]) for r in rows] == [("concrete", 705), ("disarm", 12)]


def test_the_reported_row_never_goes_back():
    old = {"complete": False, "epochs": 705}
    assert common.reported_row({"complete": False, "epochs": 12}, old) is old
    assert common.reported_row({"complete": False, "epochs": 706}, old)["epochs"] == 706
    assert common.reported_row({"complete": True, "epochs": 3}, old)["epochs"] == 3, "a finished row is new"
    assert common.reported_row({"complete": False, "epochs": 999}, {"complete": True, "epochs": 5})["epochs"] == 5
    diverged = {"diverged": "NaN loss", "epochs": 0}
    assert common.reported_row(diverged, old) is diverged
    assert common.reported_row({"complete": False, "epochs": 1}, None)["epochs"] == 1
