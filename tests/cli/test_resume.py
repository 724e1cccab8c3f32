"""``pyrovae train --resume``: only ``--epochs`` may change unless ``--force``; the stored config
rebuilds the run; a diverged run stops with its last good checkpoint."""

import inspect
import json

import pytest
import torch

import pyrovae.cli
import pyrovae.train
from tests.cli.invocation import QUICK, checkpoint, file_bytes, metric_rows, refusal, run_main

RECORDS = ("config.json", "metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt")


def _records(run_dir) -> dict:
    return {name: data for name, data in file_bytes(run_dir).items() if name in RECORDS}


def _config(run_dir) -> dict:
    return json.loads((run_dir / "config.json").read_text())


@pytest.mark.parametrize("flag, value, difference", [
    ("--lr", "0.01", "--lr 0.003 -> 0.01"),
    ("--objective", "meanfield", "--objective 'trace' -> 'meanfield'"),
    ("--latent-dim", "99", "8 -> 99"),
    ("--dataset", "mnist", "--dataset 'digits' -> 'mnist'"),
])
def test_resume_with_a_changed_setting_is_refused_naming_the_difference(run_copy, capsys, flag, value, difference):
    before = _records(run_copy)
    message = refusal(["train", "--resume", "--out", run_copy, "--epochs", "5", flag, value, *QUICK], capsys)
    assert str(run_copy) in message and difference in message and "--force" in message
    assert _records(run_copy) == before


def test_the_refusal_lists_every_difference(run_copy, capsys):
    message = refusal(["train", "--resume", "--out", run_copy, "--epochs", "5", "--lr", "0.01", "--latent-dim", "3",
                       "--objective", "meanfield", *QUICK], capsys)
    assert all(d in message for d in ("--lr 0.003 -> 0.01", "8 -> 3", "'trace' -> 'meanfield'")), message


def test_settings_equal_to_the_runs_are_not_differences(run_copy, capsys):
    # The run's config has no guide (the default, diagonal); naming it, or repeating a stored value, changes nothing.
    run_main("train", "--resume", "--out", run_copy, "--guide", "diagonal", "--lr", "0.003", "--hidden-sizes", "128",
             "--binarize", "dynamic", "--epochs", "3", *QUICK)
    assert "nothing to do" in capsys.readouterr().err


def test_resume_with_force_takes_the_new_lr_and_records_it(run_copy):
    run_main("train", "--resume", "--force", "--out", run_copy, "--epochs", "4", "--lr", "0.01", *QUICK)
    config = _config(run_copy)
    assert config["lr"] == 0.01 and config["epochs"] == 4
    assert len(metric_rows(run_copy)) == 4 and checkpoint(run_copy)["epoch"] == 4


def test_resume_with_force_trains_with_the_new_lr(run_copy):
    run_main("train", "--resume", "--force", "--out", run_copy, "--epochs", "4", "--lr", "0.01", *QUICK)
    groups = checkpoint(run_copy)["optimizer"]["param_groups"]
    assert [group["lr"] for group in groups] == [0.01] * len(groups)


@pytest.mark.parametrize("epochs", ["3", "2"])
def test_resume_to_no_more_epochs_than_done_has_nothing_to_do(run_copy, capsys, epochs):
    before = file_bytes(run_copy)
    run_main("train", "--resume", "--out", run_copy, "--epochs", epochs, *QUICK)
    assert "nothing to do" in capsys.readouterr().err
    assert file_bytes(run_copy) == before


def test_resume_to_more_epochs_records_the_new_total(run_copy):
    first_rows = metric_rows(run_copy)
    run_main("train", "--resume", "--out", run_copy, "--epochs", "5", *QUICK)
    assert _config(run_copy)["epochs"] == 5
    rows = metric_rows(run_copy)
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4, 5]
    assert rows[:3] == first_rows
    assert checkpoint(run_copy)["epoch"] == 5
    assert checkpoint(run_copy, "checkpoint.prev.pt")["epoch"] == 4


def test_a_preset_on_resume_stands_for_its_settings(run_copy, capsys):
    message = refusal(["train", "--resume", "--out", run_copy, "--preset", "tiny", *QUICK], capsys)
    assert "--hidden-sizes [128] -> [16]" in message and "--preset None -> 'tiny'" in message


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_a_diverged_run_stops_and_keeps_its_last_good_checkpoint(tmp_path, monkeypatch):
    run, built = tmp_path / "run", []
    build, run_epoch = pyrovae.cli.build, pyrovae.train.run_epoch
    signature = inspect.signature(run_epoch)

    def keep_the_model(*args, **kwargs):
        built.append(build(*args, **kwargs))
        return built[-1]

    def blows_up_in_epoch_3(*args, **kwargs):
        if signature.bind(*args, **kwargs).arguments["epoch"] == 3:
            with torch.no_grad():  # what a too-large step does to a weight
                next(built[-1][2].parameters()).fill_(float("nan"))
        return run_epoch(*args, **kwargs)

    monkeypatch.setattr(pyrovae.cli, "build", keep_the_model)
    monkeypatch.setattr(pyrovae.train, "run_epoch", blows_up_in_epoch_3)
    with pytest.raises(SystemExit) as info:
        run_main("train", "--out", run, "--epochs", "5", *QUICK)
    message = str(info.value.code)
    assert message.startswith("pyrovae train: training stopped:") and "epoch 3" in message, message
    assert str(run / "checkpoint.pt") in message
    assert checkpoint(run)["epoch"] == 2
    assert all(torch.isfinite(t).all() for t in checkpoint(run)["model"].values() if t.is_floating_point())
    assert [row["epoch"] for row in metric_rows(run)] == [1, 2]


def test_a_learning_rate_that_blows_up_stops_training_with_a_clear_exit(tmp_path, capsys):
    message = refusal(["train", "--out", tmp_path / "run", "--epochs", "3", "--likelihood", "gaussian", "--binarize",
                       "none", "--lr", "1e4", *QUICK], capsys)
    assert message.startswith("pyrovae train: training stopped: non-finite loss"), message
