"""TensorBoard logging: the event files read back hold the metrics rows' numbers (fit) and the sample
grids and reconstructions (CLI)."""

import sys

import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovae.callbacks import TensorBoard
from pyrovae.data import load_dataset
from pyrovae.guides import DiagonalNormalGuide
from pyrovae.models import VAE
from pyrovae.train import fit
from tests.cli.invocation import QUICK, refusal, run_main

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def read(folder):
    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def test_fit_logs_each_rows_numbers_as_scalars(tmp_path):
    train = load_dataset("digits", "train", binarize="static", seed=0).subset(256)
    test = load_dataset("digits", "test", binarize="static", seed=1)
    torch.manual_seed(0)
    model, guide = VAE(64, 2, (16,)), DiagonalNormalGuide(64, 2, (16,))
    history = fit(model, guide, Trace_ELBO(), train, test, epochs=2, batch_size=64,
                  callbacks=[TensorBoard(tmp_path / "tb")])
    log = read(tmp_path / "tb")
    assert {"train_loss", "test_elbo", "seconds"} <= set(log.Tags()["scalars"])
    elbos = log.Scalars("test_elbo")
    assert [e.step for e in elbos] == [1, 2]
    assert [e.value for e in elbos] == pytest.approx(history.column("test_elbo"), rel=1e-6)


def test_the_cli_logs_scalars_sample_grids_and_reconstructions(tmp_path):
    run_main("train", "--out", tmp_path / "run", "--preset", "tiny", "--epochs", "2", *QUICK, "--tensorboard")
    log = read(tmp_path / "run" / "tensorboard")
    assert {"samples", "reconstructions"} <= set(log.Tags()["images"])
    assert [image.step for image in log.Images("samples")] == [1, 2]
    assert log.Images("reconstructions")[-1].width > 0
    assert [e.step for e in log.Scalars("train_loss")] == [1, 2]


def test_without_the_tensorboard_package_the_cli_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    message = refusal(["train", "--out", tmp_path / "run", "--preset", "tiny", *QUICK, "--tensorboard"], capsys)
    assert message == 'pyrovae train: TensorBoard logging needs the tensorboard package: pip install "pyrovae[tensorboard]"'
    assert not (tmp_path / "run").exists()
