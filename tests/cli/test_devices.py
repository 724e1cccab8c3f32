"""``--device`` on the command line: one clear line for a device this machine does not have."""

import pytest
import torch

from tests.cli.invocation import QUICK, refusal, run_main


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_train_on_cuda_without_cuda_is_refused_in_one_line(tmp_path, capsys):
    message = refusal(["train", "--out", tmp_path / "run", "--device", "cuda", *QUICK], capsys)
    assert message == "pyrovae train: --device cuda: CUDA is not available on this machine"
    assert not (tmp_path / "run").exists()


def test_an_unknown_device_is_refused_by_evaluate_too(tmp_path, capsys):
    run_main("train", "--out", tmp_path / "run", "--preset", "tiny", *QUICK)
    message = refusal(["evaluate", tmp_path / "run", "--device", "tpu", "-K", "2"], capsys)
    assert message == "pyrovae evaluate: --device tpu: expected one of cpu, cuda, cuda:N, auto"
    run_main("evaluate", tmp_path / "run", "--device", "cpu", "-K", "2", "--quiet")
