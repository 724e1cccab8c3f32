"""The -log p(x) estimates against K reload the runs of a ``discrete_estimators`` output, and tend to the
exact -log p(x) of the discrete model from above."""

from __future__ import annotations

import json

import pytest

from benchmarks import common, discrete_estimators, nll_convergence


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """One finished concrete run of the benchmark on the ``tiny`` preset (4 latent units, digits)."""
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(discrete_estimators, "PRESETS", {"linear": "tiny", "nonlinear": "tiny"})
    discrete_estimators.main(["--models", "linear", "--relaxations", "concrete", "--engine", "module", "--epochs", "2",
                              "--nll-samples", "4", "--bound-particles", "2", "--bound-repeats", "2", "--draws", "2",
                              "--runs-dir", str(tmp_path / "runs"), "--lr", "0.01", "--test-subset", "60"])
    return tmp_path


def _convergence(tmp_path, *argv):
    nll_convergence.main(["--source", "discrete_estimators", "--relaxations", "concrete", "--runs-dir",
                          str(tmp_path / "runs"), *argv])
    return json.loads((tmp_path / "results" / "nll_convergence.json").read_text())


def test_the_estimates_fall_towards_the_exact_nll(trained):
    data = _convergence(trained, "--samples", "1", "3000")
    (row,) = data["rows"]
    few, many = row["estimates"]
    assert row["epochs"] == 2 and row["test_images"] == 60 and row["subset_seed"] == 0
    # One proposal is the true bound's noisy -ELBO, far above; 3,000 proposals over 16 states is exact to sampling noise.
    assert few["nll"] > row["exact_nll"] + 0.1
    assert many["nll"] == pytest.approx(row["exact_nll"], abs=0.05)
    assert many["fall"] == pytest.approx(few["nll"] - many["nll"], abs=1e-4) and many["fall_error"] > 0
    page = "\n".join(nll_convergence._render(data))
    assert "| linear | concrete | 2 | 60 drawn at random with seed 0 |" in page and "fall from K = 1 to 3000" in page
    assert page.count("| 107.3 (Concrete) | ") == 1 and "K = 3000 - paper" in page


@pytest.mark.parametrize("argv, message", [
    (["--samples", "100", "10"], "--samples must be increasing positive counts, got 100 10"),
    (["--samples", "0", "10"], "--samples must be increasing positive counts"),
    (["--source", "nowhere"], "no results/nowhere.json"),
    (["--relaxations", "disarm"], "linear disarm of discrete_estimators: "),
])
def test_bad_input_is_one_clear_error(trained, argv, message, capsys):
    with pytest.raises(SystemExit):
        _convergence(trained, *argv)
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
