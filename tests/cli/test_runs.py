"""Run directories (issue #7): reproducible, resumable after ``kill -9``, never overwritten by accident,
``runs/latest`` kept pointing at the newest, files with the usual permissions."""

import os
import random
import signal
import stat
import subprocess
import time

import pytest

import pyrovae.checkpoint
import pyrovae.cli
from pyrovae.checkpoint import load_checkpoint_file
from tests.cli.invocation import (
    QUICK,
    TIMEOUT,
    assert_one_line_error,
    assert_same_weights,
    checkpoint,
    cli_command,
    cli_env,
    file_bytes,
    metric_rows,
    run_main,
)

# Batches of 8 make an epoch long enough (about 0.25 s) for the kill to land inside the run.
REFERENCE = ("--epochs", "8", "--batch-size", "8", "--seed", "3", *QUICK)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, cli):
    """An uninterrupted run with ``REFERENCE`` settings."""
    run = tmp_path_factory.mktemp("reference") / "run"
    completed = cli("train", "--out", run, *REFERENCE)
    assert completed.returncode == 0, completed.stderr
    return run


def test_one_seed_gives_the_same_metrics_and_weights_in_two_processes(reference_run, tmp_path, cli):
    run = tmp_path / "again"
    completed = cli("train", "--out", run, *REFERENCE)
    assert completed.returncode == 0, completed.stderr
    rows = metric_rows(run)
    assert len(rows) == 8
    assert rows == metric_rows(reference_run)
    assert_same_weights(checkpoint(run), checkpoint(reference_run))


def _wait_for_first_checkpoint(process: subprocess.Popen, run) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not ((run / "checkpoint.pt").exists() and (run / "metrics.jsonl").exists() and metric_rows(run)):
        assert process.poll() is None, f"the run ended (exit {process.returncode}) before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint after the timeout"
        time.sleep(0.01)


def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_weights(reference_run, tmp_path, cli_cache):
    run = tmp_path / "killed"
    env = cli_env(cli_cache)
    with open(tmp_path / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(cli_command("train", "--out", run, *REFERENCE), env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            _wait_for_first_checkpoint(process, run)
            # Anywhere in the next two epochs, in the middle of writing a checkpoint included.
            time.sleep(random.uniform(0.0, 2 * metric_rows(run, ignore=())[0]["seconds"]))
            os.kill(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=TIMEOUT)
    assert process.returncode == -signal.SIGKILL
    # The atomic writes leave a loadable checkpoint whatever the kill interrupted.
    killed_at = load_checkpoint_file(run / "checkpoint.pt")["epoch"]
    assert 1 <= killed_at < 8, "the kill should land inside the run"

    resumed = subprocess.run(cli_command("train", "--resume", "--out", run, *REFERENCE), env=env,
                             capture_output=True, text=True, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(checkpoint(run), checkpoint(reference_run))
    assert metric_rows(run) == metric_rows(reference_run)


def test_metrics_written_ahead_of_the_checkpoint_are_dropped_on_resume(tmp_path):
    # Checkpointer.save writes the metrics, then the checkpoint: a kill between the two leaves the
    # metrics one epoch ahead. Resuming must redo that epoch once, not skip it or repeat another.
    run_main("train", "--out", tmp_path / "whole", "--epochs", "3", *QUICK)
    cut = tmp_path / "cut"
    run_main("train", "--out", cut, "--epochs", "2", *QUICK)
    with open(cut / "metrics.jsonl", "a") as metrics:
        metrics.write('{"epoch": 3, "seconds": 1.0, "test_elbo": 0.0, "train_loss": 0.0}\n')
    run_main("train", "--resume", "--out", cut, "--epochs", "3", *QUICK)
    assert_same_weights(checkpoint(cut), checkpoint(tmp_path / "whole"))
    assert metric_rows(cut) == metric_rows(tmp_path / "whole")


class Killed(BaseException):
    """Stands for SIGKILL in the middle of a write: nothing after it runs."""


def test_a_kill_while_the_checkpoint_is_written_leaves_a_loadable_checkpoint(tmp_path, monkeypatch):
    save_torch, calls = pyrovae.checkpoint.save_torch, []

    def killed_on_the_second_save(path, state):
        calls.append(path)
        if len(calls) == 2:
            raise Killed
        return save_torch(path, state)

    monkeypatch.setattr(pyrovae.checkpoint, "save_torch", killed_on_the_second_save)
    with pytest.raises(Killed):
        run_main("train", "--out", tmp_path / "run", "--epochs", "3", *QUICK)
    assert load_checkpoint_file(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1


def test_a_second_run_into_the_same_out_is_refused_and_force_replaces_it(run_copy, cli):
    before = file_bytes(run_copy)
    completed = cli("train", "--out", run_copy, "--epochs", "1", *QUICK)
    message = assert_one_line_error(completed, "train")
    assert str(run_copy) in message and "--force" in message and "--resume" in message
    assert file_bytes(run_copy) == before

    run_main("train", "--out", run_copy, "--epochs", "1", *QUICK, "--force")
    assert len(metric_rows(run_copy)) == 1
    assert checkpoint(run_copy)["epoch"] == 1
    # Nothing of the replaced run is left to be mistaken for this one's.
    assert not (run_copy / "checkpoint.prev.pt").exists()
    assert not list(run_copy.glob("*.png"))


def test_runs_without_out_get_new_directories_and_latest_follows_the_newest(tmp_path, cli, monkeypatch):
    printed = []
    for _ in range(2):
        completed = cli("train", "--epochs", "1", *QUICK, cwd=tmp_path)
        assert completed.returncode == 0, completed.stderr
        printed.append(completed.stdout.strip().splitlines()[-1].removeprefix("run directory: "))
    runs = tmp_path / "runs"
    made = sorted(p.name for p in runs.iterdir() if p.name != "latest")
    assert len(made) == 2 and sorted(os.path.basename(p) for p in printed) == made
    latest = runs / "latest"
    assert latest.is_symlink() and latest.resolve() == (tmp_path / printed[1]).resolve()

    # `train --resume` without --out continues the newest run, and runs/latest still points at it.
    monkeypatch.chdir(tmp_path)
    run_main("train", "--resume", "--epochs", "2", *QUICK)
    assert len(metric_rows(tmp_path / printed[1])) == 2
    assert len(metric_rows(tmp_path / printed[0])) == 1
    assert latest.is_symlink() and latest.resolve() == (tmp_path / printed[1]).resolve()
    run_main("train", "--resume", "--out", "runs/latest", "--epochs", "3", *QUICK)
    assert latest.resolve() == (tmp_path / printed[1]).resolve()
    assert len(metric_rows(latest)) == 3


def test_new_run_directories_started_in_the_same_second_differ(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pyrovae.cli.time, "strftime", lambda _: "20260101-000000")
    experiment = pyrovae.cli.Experiment.resolve({})
    first, second = pyrovae.cli._new_run_dir(experiment), pyrovae.cli._new_run_dir(experiment)
    assert first != second and first.is_dir() and second.is_dir()


def test_run_files_have_the_usual_permissions_under_umask_022(trained_run):
    names = ("config.json", "metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt", "results.json",
             "samples.png", "reconstructions.png", "latents.png", "curves.png")
    modes = {name: stat.S_IMODE((trained_run.path / name).stat().st_mode) for name in names}
    assert modes == {name: 0o644 for name in names}


def test_a_default_run_logs_no_plate_nesting_guess_and_no_traceback(trained_run):
    assert "training vae" in trained_run.stderr
    assert "Guessed max_plate_nesting" not in trained_run.stderr
    assert "Traceback" not in trained_run.stderr
