"""The MNIST NLL benchmark keeps its trained run outside the repository and never trains over it unasked."""

from __future__ import annotations

import json

import pytest

from benchmarks import mnist_nll


def test_the_run_directory_defaults_to_the_cache(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PYROVAE_CACHE_DIR", str(tmp_path))
    with pytest.raises(SystemExit):
        mnist_nll.main(["--phase", "evaluate", "--tag=-probe"])
    assert f"no checkpoint at {tmp_path / 'benchmarks' / 'mnist_nll-probe'}" in capsys.readouterr().err


def test_an_existing_run_is_not_trained_over_without_force(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(SystemExit):
        mnist_nll.main(["--phase", "train", "--minutes", "0.001", "--run-dir", str(run)])
    assert f"{run} already holds a trained run: --phase evaluate evaluates it" in capsys.readouterr().err
    assert sorted(path.name for path in run.iterdir()) == ["config.json"], "nothing written over it"


def test_a_stopped_run_continues_with_resume_within_its_time_budget(tmp_path):
    """One epoch, then --resume with a budget of 1.5 epochs' time: it trains epoch 2 and stops, the time of
    epoch 1 counted (a budget restarted from zero would train a third epoch)."""
    run = tmp_path / "run"
    train = ["--phase", "train", "--engine", "module", "--run-dir", str(run)]
    mnist_nll.main([*train, "--minutes", "0.0001"])
    (first,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    budget = 1.5 * first["seconds"] / 60
    mnist_nll.main([*train, "--minutes", str(budget), "--resume"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[0] == first
