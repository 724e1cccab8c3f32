"""The MNIST NLL benchmark keeps its trained run outside the repository and never trains over it unasked."""

from __future__ import annotations

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
