"""Devices: names checked where they enter, model, guide and data moved once, checkpoints that load
anywhere. The GPU tests run unchanged on a machine with CUDA and are skipped without it."""

import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovae.callbacks import Checkpoint
from pyrovae.checkpoint import Checkpointer
from pyrovae.data import load_dataset
from pyrovae.devices import resolve_device
from pyrovae.evaluate import importance_log_likelihood, mean_elbo, reconstruction_error
from pyrovae.train import fit, load_checkpoint
from tests.support.small_vae import small_vae_pair

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def digits():
    return (load_dataset("digits", "train", binarize="static", seed=0).subset(256),
            load_dataset("digits", "test", binarize="static", seed=1).subset(100))


def pair(seed=0):
    return small_vae_pair(seed, 2, (16,))


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    for name in ("tpu", "cuda:x", "cpu:1", ""):
        with pytest.raises(ValueError, match="expected one of cpu, cuda, cuda:N, auto"):
            resolve_device(name)


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_one_clear_line(name):
    with pytest.raises(ValueError, match=f"^--device {name}: CUDA is not available on this machine$"):
        resolve_device(name, "--device")


@no_cuda
def test_fit_refuses_cuda_before_writing_anything(digits, tmp_path):
    model, guide = pair()
    with pytest.raises(ValueError, match="CUDA is not available"):
        fit(model, guide, Trace_ELBO(), *digits, epochs=1, device="cuda", callbacks=[Checkpoint(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_fit_and_the_evaluators_on_the_cpu(digits, tmp_path):
    model, guide = pair()
    history = fit(model, guide, Trace_ELBO(), *digits, epochs=1, batch_size=64, device="cpu",
                  callbacks=[Checkpoint(tmp_path)])
    assert history.rows[0]["test_elbo"] < 0
    _, test = digits
    assert mean_elbo(model, guide, test, device="cpu") < 0
    assert reconstruction_error(model, guide, test, device="cpu") > 0
    assert importance_log_likelihood(model, guide, test, num_samples=4, device="cpu") < 0
    checkpoint = Checkpointer(tmp_path).load()
    assert all(t.device.type == "cpu" for t in checkpoint["model"].values())


@needs_cuda
def test_a_gpu_run_resumes_and_evaluates_on_the_cpu(digits, tmp_path):
    model, guide = pair()
    fit(model, guide, Trace_ELBO(), *digits, epochs=1, batch_size=64, device="cuda", callbacks=[Checkpoint(tmp_path)])
    assert next(model.parameters()).device.type == "cuda"
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # no map_location needed
    assert all(t.device.type == "cpu" for t in checkpoint["model"].values())
    model, guide = pair(seed=1)
    history = fit(model, guide, Trace_ELBO(), *digits, epochs=2, batch_size=64, device="cpu",
                  callbacks=[Checkpoint(tmp_path, resume=True)])
    assert [row["epoch"] for row in history.rows] == [1, 2]
    model, guide = pair(seed=2)
    load_checkpoint(tmp_path, model, guide)
    assert mean_elbo(model.cuda(), guide.cuda(), digits[1]) < 0  # the data follow the model onto the GPU


@needs_cuda
@pytest.mark.parametrize("binarize", ["dynamic", None])
def test_per_batch_noise_is_drawn_on_the_gpu(binarize):
    data = load_dataset("digits", "train", binarize=binarize, dequantize=binarize is None).subset(64).to("cuda")
    x, _ = next(data.batches(32, torch.Generator().manual_seed(0)))
    assert x.device.type == "cuda"


@needs_cuda
def test_the_compiled_engine_trains_on_the_gpu(digits):
    model, guide = pair()
    history = fit(model, guide, Trace_ELBO(), *digits, epochs=1, batch_size=64, engine="compiled", device="cuda")
    assert history.rows[0]["train_loss"] > 0
