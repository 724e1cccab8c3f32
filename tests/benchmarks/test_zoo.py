"""The reference-run benchmark survives an interruption: a run stopped after some epochs and continued
with ``--resume`` gives the rows an uninterrupted run gives, and its JSON says how much of the
preset's budget was trained and how to reproduce it."""

from __future__ import annotations

import json
import shlex
import statistics

import pytest

from benchmarks import common, zoo
from pyrovae.checkpoint import RunExistsError


def _rows(results, runs_dir, *argv, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", results)
    zoo.main(["--models", "factor-analysis", "--runs-dir", str(runs_dir), *argv])
    return json.loads((results / "zoo.json").read_text())["rows"]


def test_a_resumed_run_reaches_the_uninterrupted_rows(tmp_path, monkeypatch):
    interrupted = tmp_path / "interrupted"
    first = _rows(tmp_path / "a", interrupted, "--epochs", "2", monkeypatch=monkeypatch)
    assert [row["epochs"] for row in first] == [2]
    resumed = _rows(tmp_path / "a", interrupted, "--epochs", "4", "--resume", monkeypatch=monkeypatch)
    whole = _rows(tmp_path / "b", tmp_path / "whole", "--epochs", "4", monkeypatch=monkeypatch)

    assert len(resumed) == 1, "the resumed run replaces its own row instead of adding one"
    (row,) = resumed
    assert row["epochs"] == 4 and row["preset_epochs"] == 100 and not row["complete"]
    strip = lambda curve: [{k: v for k, v in r.items() if k != "seconds"} for r in curve]  # noqa: E731
    assert strip(row["curve"]) == strip(whole[0]["curve"])
    assert row["pyrovae"] == whole[0]["pyrovae"]
    assert shlex.split(row["command"])[:3] == ["python", "-m", "benchmarks.zoo"]
    assert "--epochs 4" in row["command"] and "--resume" not in row["command"]


def test_an_existing_run_is_not_restarted_without_being_asked(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    _rows(tmp_path / "a", runs, "--epochs", "1", monkeypatch=monkeypatch)
    with pytest.raises(RunExistsError, match="already holds a run"):
        _rows(tmp_path / "a", runs, "--epochs", "2", monkeypatch=monkeypatch)
    assert [row["epochs"] for row in _rows(tmp_path / "a", runs, "--epochs", "2", "--force",
                                           monkeypatch=monkeypatch)] == [2]


def test_settings_over_the_preset_name_the_run_and_its_command(tmp_path, monkeypatch):
    (row,) = _rows(tmp_path / "a", tmp_path / "runs", "--epochs", "1", "--set", "lr=0.01", monkeypatch=monkeypatch)
    assert row["settings"] == {"lr": 0.01}
    assert "--set lr=0.01" in row["command"]
    assert (tmp_path / "runs" / "factor-analysis-yang-lr=0.01-seed0").is_dir()


def test_the_json_holds_a_run_after_every_epoch(tmp_path, monkeypatch):
    """A run stopped after epoch 2 of 3 has its two epochs in the JSON already, marked incomplete."""
    seen = []

    def stop_after_two(rows, index, threads, old, row):
        seen.append(row["epochs"])
        if row["epochs"] == 2:
            raise KeyboardInterrupt
        return original(rows, index, threads, old, row)

    original = zoo._replace_last_row
    monkeypatch.setattr(zoo, "_replace_last_row", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        _rows(tmp_path / "a", tmp_path / "runs", "--epochs", "3", monkeypatch=monkeypatch)
    (row,) = json.loads((tmp_path / "a" / "zoo.json").read_text())["rows"]
    assert seen == [1, 2] and row["epochs"] == 1 and not row["complete"]
    assert [r["epoch"] for r in row["curve"]] == [1]


def test_the_seed_spread_compares_every_seed_at_the_last_epoch_all_reached(tmp_path, monkeypatch):
    """Seed 0 trained 3 epochs and seed 1 two: the spread reads both curves at epoch 2, and differs
    from the spread of the seeds' last values (which mixes epochs)."""
    runs = tmp_path / "runs"
    _rows(tmp_path / "a", runs, "--epochs", "3", "--seed", "0", monkeypatch=monkeypatch)
    rows = _rows(tmp_path / "a", runs, "--epochs", "2", "--seed", "1", monkeypatch=monkeypatch)
    data = {"rows": rows}
    (spread,) = zoo.seed_spread(data)
    at_two = [next(p["test_elbo"] for p in row["curve"] if p["epoch"] == 2) for row in rows]
    assert spread["epoch"] == 2 and spread["seeds"] == [0, 1]
    assert spread["mean"] == pytest.approx(sum(at_two) / 2)
    assert spread["sd"] == pytest.approx(abs(at_two[0] - at_two[1]) / 2 ** 0.5)
    assert at_two[0] != rows[0]["pyrovae"], "seed 0's last value is at epoch 3, not the epoch compared"
    assert any("standard deviation" in line for line in zoo.SECTION.render(data))


def test_a_single_seed_has_no_spread(tmp_path, monkeypatch):
    rows = _rows(tmp_path / "a", tmp_path / "runs", "--epochs", "1", monkeypatch=monkeypatch)
    assert zoo.seed_spread({"rows": rows}) == []


def test_a_preset_whose_source_publishes_no_number_is_run_and_reported_with_its_own_results():
    """The VQ-VAE and mixture presets have no published value: the zoo selects them anyway, and the page
    says "none published" and lists their last epoch's results instead of a difference."""
    from pyrovae import registry

    assert registry.get("vqvae").references["mnist"]["value"] is None
    assert registry.get("mixture-vae").references["rainforth"]["metric"] == "test_elbo"
    last = {"epoch": 3, "seconds": 9.0, "train_loss": 1.0, "test_reconstruction_nll": 61.25, "test_perplexity": 200.5,
            "test_codes_used": 311}
    row = {"model": "vqvae", "preset": "mnist", "settings": {}, "seed": 0, "metric": "test_reconstruction_nll",
           "pyrovae": 61.25, "reference": None, "source": "van den Oord et al. 2017", "epochs": 3, "preset_epochs": 20,
           "complete": False, "minutes": 1.0, "command": "python -m benchmarks.zoo --models vqvae", "last_epoch": last,
           "curve": [last]}
    page = "\n".join(zoo._render({"rows": [row]}))
    assert "none published" in page and "+" not in page.split("none published")[1].split("|")[1]
    assert "test_codes_used 311" in page and "test_perplexity 200.500" in page
    assert "seconds" not in page.split("epoch 3:")[1].splitlines()[0]


def test_a_test_elbo_comes_with_the_monte_carlo_error_of_one_pass(tmp_path, monkeypatch):
    """The error is the spread of repeated passes with fresh noise: positive, below the ELBO's scale, and
    each pass close to the epoch's own test ELBO (one more such pass)."""
    (row,) = _rows(tmp_path / "a", tmp_path / "runs", "--epochs", "2", "--elbo-repeats", "3", monkeypatch=monkeypatch)
    passes, error = row["test_elbo_passes"], row["test_elbo_mc_error"]
    assert len(passes) == 3 and len(set(passes)) == 3, "each pass draws fresh noise"
    assert error == pytest.approx(statistics.stdev(passes))
    assert 0 < error < 0.1 * abs(row["pyrovae"])
    assert all(abs(value - row["pyrovae"]) < 10 * error for value in passes)
    assert "--elbo-repeats 3" in row["command"]
    assert f"± {error:.3f}" in "\n".join(zoo._render({"rows": [row], "threads": 1}))


def test_elbo_repeats_of_one_is_refused(tmp_path, monkeypatch):
    with pytest.raises(SystemExit):
        _rows(tmp_path / "a", tmp_path / "runs", "--epochs", "1", "--elbo-repeats", "1", monkeypatch=monkeypatch)


def test_resume_on_a_machine_without_the_run_directories(tmp_path, monkeypatch):
    """The run directories are gone (another machine): --resume keeps a row that has its epochs without
    training again, and a run started again from epoch 1 leaves the further row in the JSON until it passes it."""
    (finished,) = _rows(tmp_path / "a", tmp_path / "lost", "--epochs", "3", monkeypatch=monkeypatch)
    monkeypatch.setattr(zoo, "run_reference", lambda *a: pytest.fail("trained again"))
    assert _rows(tmp_path / "a", tmp_path / "new", "--epochs", "3", "--resume", monkeypatch=monkeypatch) == [finished]
    monkeypatch.undo()

    seen = []
    original = zoo._replace_last_row

    def watch(rows, index, threads, old, row):
        original(rows, index, threads, old, row)
        seen.append((row["epochs"], rows[index]["epochs"]))

    monkeypatch.setattr(zoo, "_replace_last_row", watch)
    (longer,) = _rows(tmp_path / "a", tmp_path / "new", "--epochs", "5", "--resume", monkeypatch=monkeypatch)
    assert seen == [(1, 3), (2, 3), (3, 3), (4, 4), (5, 5), (5, 5)], "(the new run's epochs, the row in the JSON)"
    assert longer["epochs"] == 5 and [r["epoch"] for r in longer["curve"]] == [1, 2, 3, 4, 5]


def test_the_page_splits_an_elbo_gap_between_model_and_guide_where_the_evidence_is_exact(tmp_path, monkeypatch):
    (row,) = _rows(tmp_path / "a", tmp_path / "runs", "--epochs", "2", monkeypatch=monkeypatch)
    evidence = row["last_epoch"]["test_evidence"]
    assert row["pyrovae"] <= evidence + 0.05, "an ELBO sits below its model's evidence, up to Monte Carlo noise"
    page = "\n".join(zoo._render({"rows": [row], "threads": 1}))
    assert (f"exact test evidence is {evidence:.3f}, {evidence - row['reference']:+.3f} from the reference; the rest "
            f"of the ELBO's distance, {row['pyrovae'] - evidence:.3f}") in page
