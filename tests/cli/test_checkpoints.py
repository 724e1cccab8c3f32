"""A damaged or hostile checkpoint: every command that reads it exits with one line naming the file
and what to do, and ``weights_only`` loading never runs code from it."""

import os

import pytest
import torch

from pyrovae.checkpoint import first_sentence
from tests.cli.invocation import QUICK, assert_one_line_error


def _truncate_to_half(path):
    os.truncate(path, path.stat().st_size // 2)


def _empty(path):
    path.write_bytes(b"")


COMMANDS = {
    "evaluate": lambda run: ("evaluate", run, "-K", "2", "--quiet"),
    "sample": lambda run: ("sample", run, "--num", "4"),
    "train": lambda run: ("train", "--resume", "--out", run, "--epochs", "5", *QUICK),
}


@pytest.mark.parametrize("damage", [_truncate_to_half, _empty], ids=["truncated", "empty"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_damaged_checkpoint_gives_one_line_naming_the_file_and_the_fix(run_copy, cli, damage, command):
    damage(run_copy / "checkpoint.pt")
    outputs = {name: (run_copy / name).read_bytes() for name in ("results.json", "samples.png", "metrics.jsonl")}
    completed = cli(*COMMANDS[command](run_copy))
    message = assert_one_line_error(completed, command)
    assert str(run_copy / "checkpoint.pt") in message
    if damage is _truncate_to_half:  # torch's own reason, its first sentence whole
        with pytest.raises(Exception) as torch_error:
            torch.load(run_copy / "checkpoint.pt", weights_only=True)
        assert f"({first_sentence(torch_error.value)}); " in message, message
    assert "checkpoint.prev.pt" in message and "move it to checkpoint.pt" in message, message
    assert outputs == {name: (run_copy / name).read_bytes() for name in outputs}


class RunsCode:
    """Unpickling this runs a shell command: what a malicious "checkpoint" would contain."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(run_copy, cli, tmp_path):
    # The payload is live: plain unpickling would create the marker file.
    probe = tmp_path / "probe.pt"
    torch.save({"epoch": 1, "model": RunsCode(tmp_path / "probe-ran"), "guide": {}}, probe)
    torch.load(probe, weights_only=False)
    assert (tmp_path / "probe-ran").exists()

    marker = tmp_path / "checkpoint-ran"
    torch.save({"epoch": 1, "model": RunsCode(marker), "guide": {}}, run_copy / "checkpoint.pt")
    for command in ("evaluate", "train"):
        completed = cli(*COMMANDS[command](run_copy))
        message = assert_one_line_error(completed, command)
        assert str(run_copy / "checkpoint.pt") in message and "cannot be read" in message, message
        assert not marker.exists(), f"{command} ran code from the checkpoint"


MINIZ = ("PytorchStreamReader failed reading zip archive: failed finding central directory. This is an internal "
         "miniz error. If you are seeing this error, there is a high likelihood that your checkpoint file is corrupted.")


@pytest.mark.parametrize("text, expected", [
    (MINIZ, "PytorchStreamReader failed reading zip archive: failed finding central directory"),
    ("size mismatch for net.0.weight: copying a param with shape torch.Size([4, 2]) from checkpoint, the shape in "
     "current model is torch.Size([3, 2]).", "size mismatch for net.0.weight: copying a param with shape "
     "torch.Size([4, 2]) from checkpoint, the shape in current model is torch.Size([3, 2])"),
    ("first line. Second sentence\nsecond line", "first line"),
    ("ends at e.g. a dot in a sentence", "ends at e.g. a dot in a sentence"),
], ids=["miniz", "long-sentence", "two-lines", "no-end"])
def test_an_error_is_shortened_to_its_first_whole_sentence(text, expected):
    assert first_sentence(RuntimeError(text)) == expected


def test_an_empty_error_is_named_by_its_type():
    assert first_sentence(EOFError()) == "EOFError"
