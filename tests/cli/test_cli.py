import json
import os
import subprocess
import sys

import pytest

from pyrovae.cli import main


@pytest.mark.slow
def test_train_evaluate_sample_plot_on_digits(tmp_path):
    run = tmp_path / "run"
    # The real console script, in a fresh process, as a user would call it (short run for the test).
    completed = subprocess.run(
        [sys.executable, "-m", "pyrovae.cli", "train", "--out", str(run), "--epochs", "8", "--quiet",
         "--nll-samples", "50"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert completed.returncode == 0, completed.stderr
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "results.json",
                 "samples.png", "reconstructions.png", "latents.png", "curves.png"):
        assert (run / name).stat().st_size > 0, name
    results = json.loads((run / "results.json").read_text())
    assert results["test_log_likelihood"] >= results["test_elbo"]
    assert -40 < results["test_elbo"] < -15  # nats per 8x8 binary digit after 8 epochs
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 8

    main(["evaluate", str(run), "-K", "20"])
    assert json.loads((run / "results.json").read_text())["num_importance_samples"] == 20
    main(["sample", str(run), "--num", "16", "--output", str(tmp_path / "grid.png")])
    assert (tmp_path / "grid.png").stat().st_size > 0
    (run / "latents.png").unlink()
    main(["plot", str(run)])
    assert (run / "latents.png").exists()

    # Resuming needs only the run directory and the new total: the stored settings rebuild the model.
    main(["train", "--out", str(run), "--epochs", "10", "--quiet", "--resume", "--nll-samples", "0", "--no-plots",
          "--latent-dim", "99"])
    assert json.loads((run / "config.json").read_text())["z_dim"] == 8
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 10


def test_clear_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYROVAE_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit) as info:
        main(["train", "--dataset", "mnist", "--out", str(tmp_path / "r"), "--data-dir", str(tmp_path / "data")])
    assert "not found" in str(info.value) and str(tmp_path / "data") in str(info.value)
    with pytest.raises(SystemExit) as info:
        main(["evaluate", str(tmp_path / "missing")])
    assert "not a run directory" in str(info.value)
    with pytest.raises(SystemExit) as info:
        main(["train", "--binarize", "none", "--out", str(tmp_path / "r")])
    assert "needs binary data" in str(info.value)
