"""``python -m torch.distributed.run --nproc_per_node=2 -m pyrovae.cli train``, as a user runs it:
here it resumes a run trained by one process, so the world size changes from 1 to 2."""

import json
import subprocess
import sys

from tests.cli.invocation import QUICK, TIMEOUT, cli_env, run_main
from tests.distributed.support import free_port


def test_torchrun_resumes_a_single_process_run_on_two_ranks(tmp_path):
    run = tmp_path / "run"
    run_main("train", "--out", run, "--preset", "tiny", "--epochs", "1", *QUICK)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               "-m", "pyrovae.cli", "train", "--out", str(run), "--resume", "--epochs", "2", *QUICK]
    completed = subprocess.run(command, env=cli_env(tmp_path / "cache"), capture_output=True, text=True,
                               timeout=TIMEOUT)
    assert completed.returncode == 0, completed.stderr
    # Rank 0 alone reports, evaluates and writes.
    assert completed.stderr.count("training vae") == 1 and "on 2 ranks" in completed.stderr
    assert completed.stdout.count("run directory:") == 1
    settings = json.loads((run / "config.json").read_text())
    assert (settings["world_size"], settings["global_batch_size"], settings["epochs"]) == (2, 64, 2)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert json.loads((run / "results.json").read_text())["test_elbo"] < 0
