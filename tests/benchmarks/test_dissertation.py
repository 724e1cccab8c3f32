"""The dissertation benchmark survives an interruption inside a run: stopped at any epoch and continued
with ``--resume``, it gives the results an uninterrupted run gives, one entry per seed, with the epochs
done out of the preset's budget, the dead units of every epoch and the command that reproduces each run."""

from __future__ import annotations

import json
import shlex

import pytest

from benchmarks import common, dissertation
from pyrovae.checkpoint import RunExistsError

ARGS = ["--presets", "digits", "--runs", "step-logistic", "--threads", "1"]


def _results(results, runs_dir, *argv, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", results)
    monkeypatch.setattr(dissertation, "RESULTS", results)
    dissertation.main([*ARGS, "--runs-dir", str(runs_dir), *argv])
    return json.loads((results / "dissertation.json").read_text())


class StopAt(dissertation.DeadUnitsLog):
    """Stops the benchmark (as Ctrl-C would) at the ``calls``-th epoch of all its runs."""

    calls = 0

    def on_epoch_end(self, epoch, row, run):
        StopAt.calls += 1
        if StopAt.calls == 7:  # seed 1's third epoch: seed 0's four, then two
            raise KeyboardInterrupt
        super().on_epoch_end(epoch, row, run)


def _strip(run: dict) -> dict:
    return {**{k: v for k, v in run.items() if k != "minutes"},
            "curve": [{k: v for k, v in row.items() if k != "seconds"} for row in run["curve"]]}


def test_a_run_stopped_inside_a_row_resumes_to_the_uninterrupted_results(tmp_path, monkeypatch):
    stopped = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        patch.setattr(dissertation, "DeadUnitsLog", StopAt)
        with pytest.raises(KeyboardInterrupt):
            _results(tmp_path / "a", stopped, "--epochs", "4", "--seeds", "0", "1", monkeypatch=monkeypatch)
    assert [run["seed"] for run in json.loads((tmp_path / "a" / "dissertation.json").read_text())["runs"]] == [0]
    assert len((stopped / "digits-step-logistic-seed1" / "metrics.jsonl").read_text().splitlines()) == 2

    resumed = _results(tmp_path / "a", stopped, "--epochs", "4", "--seeds", "0", "1", "--resume", monkeypatch=monkeypatch)
    whole = _results(tmp_path / "b", tmp_path / "whole", "--epochs", "4", "--seeds", "0", "1", monkeypatch=monkeypatch)

    assert [run["seed"] for run in resumed["runs"]] == [0, 1], "a resumed run replaces its own entry"
    assert [_strip(run) for run in resumed["runs"]] == [_strip(run) for run in whole["runs"]]
    run = resumed["runs"][1]
    assert run["epochs"] == 4 and run["budget_epochs"] == 60 and not run["complete"]
    assert [row["epoch"] for row in run["curve"]] == [1, 2, 3, 4]
    assert all(isinstance(row["dead_units"], int) and 0 <= row["dead_units"] <= 8 for row in run["curve"])
    assert shlex.split(run["command"]) == ["python", "-m", "benchmarks.dissertation", "--presets", "digits", "--runs",
                                           "step-logistic", "--seeds", "1", "--epochs", "4", "--threads", "1"]
    (summary,) = resumed["summary"]
    assert summary["seeds"] == [0, 1] and summary["diverged_seeds"] == []
    bounds = [run["true_bound"] for run in resumed["runs"]]
    assert summary["true_bound"]["mean"] == pytest.approx(sum(bounds) / 2)
    assert summary["true_bound"]["std"] == pytest.approx(abs(bounds[0] - bounds[1]) / 2 ** 0.5)


def test_an_existing_run_is_refused_without_resume_or_force(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    _results(tmp_path / "a", runs, "--epochs", "1", monkeypatch=monkeypatch)
    with pytest.raises(RunExistsError, match="already holds a run"):
        _results(tmp_path / "a", runs, "--epochs", "2", monkeypatch=monkeypatch)
    assert _results(tmp_path / "a", runs, "--epochs", "2", "--force", monkeypatch=monkeypatch)["runs"][0]["epochs"] == 2


def test_a_setting_over_the_preset_names_the_run_and_its_command(tmp_path, monkeypatch):
    (run,) = _results(tmp_path / "a", tmp_path / "runs", "--epochs", "1", "--set", "centred_logits=true",
                      monkeypatch=monkeypatch)["runs"]
    assert run["settings"] == {"centred_logits": True}
    assert "--set centred_logits=true" in run["command"]
    assert (tmp_path / "runs" / "digits-step-logistic-centred_logits=true-seed0").is_dir()


def test_grey_values_train_on_the_cross_entropy_only_when_it_is_named(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="likelihood 'bernoulli' needs binary data"):
        _results(tmp_path / "a", tmp_path / "runs", "--epochs", "1", "--set", "binarize=null", monkeypatch=monkeypatch)
    (run,) = _results(tmp_path / "a", tmp_path / "runs", "--epochs", "1", "--set", "binarize=null", "--set",
                      "likelihood=bernoulli_cross_entropy", monkeypatch=monkeypatch)["runs"]
    assert (run["likelihood"], run["binarize"]) == ("bernoulli_cross_entropy", None)
    assert "--set binarize=null --set likelihood=bernoulli_cross_entropy" in run["command"]
    assert (tmp_path / "runs" / "digits-step-logistic-binarize=null-likelihood=bernoulli_cross_entropy-seed0").is_dir()


def test_processes_writing_one_output_keep_each_others_runs(tmp_path, monkeypatch):
    _results(tmp_path / "a", tmp_path / "runs", "--epochs", "1", "--seeds", "0", monkeypatch=monkeypatch)
    data = _results(tmp_path / "a", tmp_path / "runs", "--epochs", "1", "--seeds", "1", monkeypatch=monkeypatch)
    assert [run["seed"] for run in data["runs"]] == [0, 1]
    assert data["summary"][0]["seeds"] == [0, 1]
    assert data["arguments"]["seeds"] == [1] and data["benchmark"] == "dissertation"


class StopInFirstEpoch(dissertation.DeadUnitsLog):
    """Stops the benchmark at the end of the first epoch, before its checkpoint is written."""

    def on_epoch_end(self, epoch, row, run):
        raise KeyboardInterrupt


def test_a_run_stopped_before_its_first_checkpoint_starts_again_with_resume(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    with monkeypatch.context() as patch:
        patch.setattr(dissertation, "DeadUnitsLog", StopInFirstEpoch)
        with pytest.raises(KeyboardInterrupt):
            _results(tmp_path / "a", runs, "--epochs", "2", monkeypatch=monkeypatch)
    assert sorted(p.name for p in (runs / "digits-step-logistic-seed0").iterdir()) == ["config.json"]
    resumed = _results(tmp_path / "a", runs, "--epochs", "2", "--resume", monkeypatch=monkeypatch)
    whole = _results(tmp_path / "b", tmp_path / "whole", "--epochs", "2", monkeypatch=monkeypatch)
    assert [_strip(run) for run in resumed["runs"]] == [_strip(run) for run in whole["runs"]]


def test_resume_keeps_a_finished_entry_whose_run_directory_is_gone(tmp_path, monkeypatch):
    first = _results(tmp_path / "a", tmp_path / "lost", "--epochs", "2", monkeypatch=monkeypatch)
    calls = []
    monkeypatch.setattr(dissertation, "run_one", lambda *a: calls.append(a) or pytest.fail("retrained"))
    kept = _results(tmp_path / "a", tmp_path / "new-machine", "--epochs", "2", "--resume", monkeypatch=monkeypatch)
    assert kept["runs"] == first["runs"] and calls == []


def test_resume_trains_an_entry_short_of_the_epochs_asked_for():
    entry = {"epochs": 2, "budget_epochs": 60, "diverged": None}
    assert dissertation.finished_entry(entry, 2) and not dissertation.finished_entry(entry, 3)
    assert not dissertation.finished_entry(entry, None)
    assert dissertation.finished_entry({**entry, "diverged": "NaN loss at epoch 2"}, None)
    assert not dissertation.finished_entry({"epochs": 125}, None), "an entry without its budget predates it"


def test_the_curves_figure_draws_each_seed_and_its_dead_units_labelling_each_run_once():
    def run(name, seed, dead):
        curve = [{"epoch": e, "train_loss": 100.0 - e, "true_bound": -110.0 + e, "dead_units": d}
                 for e, d in enumerate(dead, 1)]
        return {"preset": "digits", "run": name, "seed": seed, "curve": curve, "exact_log_likelihood": -95.0}

    runs = [run("step-logistic", 0, [3, 2, 2]), run("step-logistic", 1, [1, 1, 0]), run("logistic", 0, [None] * 3)]
    top, bottom = dissertation.curves_figure(runs, "digits").axes
    assert len(top.lines) == 3 * 3, "training objective, true bound and exact log p(x) of each run"
    assert [list(line.get_ydata()) for line in bottom.lines] == [[3, 2, 2], [1, 1, 0]], "no dead units logged: no line"
    assert [t.get_text() for t in top.get_legend().get_texts()] == [
        "step-logistic: training objective", "step-logistic: true bound (test)",
        "logistic: training objective", "logistic: true bound (test)"]
    assert top.lines[0].get_color() == top.lines[3].get_color() != top.lines[6].get_color()


def test_steplogistic_is_compared_with_logistic_seed_by_seed_beside_the_dissertation():
    def entry(name, seed, objective, bound, exact=None, preset="dissertation-8", **extra):
        return {"preset": preset, "run": name, "seed": seed, "epochs": 125, "test_objective": objective,
                "true_bound": bound, "exact_log_likelihood": exact, "settings": {}, **extra}

    runs = [entry("step-logistic", 0, -140.0, -150.0, -141.0), entry("logistic", 0, -150.0, -148.0, -139.0),
            entry("step-logistic", 1, -142.0, -151.0, -143.0), entry("logistic", 1, -148.0, -147.0, -138.0),
            entry("step-logistic", 2, -141.0, -150.0), entry("logistic", 2, None, None, diverged="NaN at epoch 3"),
            entry("step-logistic", 0, -280.0, -279.0, preset="dissertation-fashion-8")]
    (pair,) = dissertation.pair_differences(runs)
    assert pair["seeds"] == [0, 1], "seed 2's Logistic diverged; Fashion-MNIST has no Logistic run"
    assert pair["test_objective"] == [10.0, 6.0] and pair["true_bound"] == [-2.0, -4.0]
    assert pair["exact_log_likelihood"] == [-2.0, -5.0]
    assert pair["gain_percent"] == pytest.approx([100 * 10 / 150, 100 * 6 / 148])
    page = "\n".join(dissertation._pair_table(runs))
    gain = dissertation.references.get(dissertation.ELBO_GAIN).value
    assert "| `dissertation-8` | preset | 125 | 0, 1 | 8.00 ± 2.83 | " in page and f"| {gain:.1f}% (ELBO) |" in page
