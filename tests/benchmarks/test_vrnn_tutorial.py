"""The plain-PyTorch transcription of the AEVB tutorial's VRNN: its bound, its detached gradient, and the
benchmark's runs in the tutorial's fixed batch order and shuffled."""

from __future__ import annotations

import json

import pytest
import torch
from torch.distributions import Bernoulli, Independent, kl_divergence

from benchmarks import common, vrnn_tutorial
from benchmarks.vrnn_tutorial import TutorialVRNN
from pyrovae import references
from pyrovae.data import Dataset


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 28, 28), 0.3), generator=torch.Generator().manual_seed(seed))


def test_a_one_row_sequence_gives_the_one_step_bound():
    torch.manual_seed(0)
    model, x = TutorialVRNN(), _images(5)[:, :1]
    torch.manual_seed(1)
    elbo = model.elbo(x)
    torch.manual_seed(1)
    h = torch.zeros(5, model.h_dim)
    posterior = model.encoder(torch.cat([h, x[:, 0]], dim=1))
    z = posterior.sample()
    decoded = Independent(Bernoulli(logits=model.decoder(torch.cat([h, z], dim=1))), 1).log_prob(x[:, 0])
    expected = decoded - kl_divergence(posterior, model.prior(h))
    assert elbo.shape == (5,) and torch.allclose(elbo, expected)


def _encoder_gradients(model: TutorialVRNN, x: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    torch.manual_seed(3)
    (-model.elbo(x).mean()).backward()
    return [p.grad.clone() for p in model.encoder.parameters()]


def test_the_encoder_learns_only_through_the_kl_terms():
    """z_t is drawn with .sample(): changing the decoder leaves the encoder's gradient as it is."""
    torch.manual_seed(0)
    model, x = TutorialVRNN(), _images(8)[:, :6]
    before = _encoder_gradients(model, x)
    with torch.no_grad():
        model.decoder[-1].weight.mul_(-3.0).add_(0.5)
    after = _encoder_gradients(model, x)
    assert any(g.abs().sum() > 0 for g in before)
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_the_benchmark_trains_each_order_and_sets_them_beside_the_tutorial(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    images = {"train": _images(300, 1).reshape(300, 784), "test": _images(50, 2).reshape(50, 784)}
    monkeypatch.setattr(vrnn_tutorial, "load_dataset",
                        lambda name, split, root=None, binarize=None: Dataset.from_tensor(images[split]))
    vrnn_tutorial.main(["--epochs", "2", "--orders", "fixed", "shuffled", "--seeds", "0"])
    data = json.loads((tmp_path / "vrnn_tutorial.json").read_text())
    fixed, shuffled = data["runs"]
    assert (fixed["order"], shuffled["order"]) == ("fixed", "shuffled")
    assert [row["epoch"] for row in fixed["curve"]] == [1, 2] and fixed["test_elbo"] == fixed["curve"][1]["test_elbo"]
    assert fixed["curve"][0]["test_elbo"] != shuffled["curve"][0]["test_elbo"], "the batch order changes the run"
    assert all(row["test_elbo"] < 0 for run in data["runs"] for row in run["curve"])
    assert data["arguments"]["orders"] == ["fixed", "shuffled"] and data["pyrovae"] is None
    page = "\n".join(vrnn_tutorial._render(data))
    assert f"| 1 | fixed | 0 | {fixed['curve'][0]['test_elbo']:.2f} | " \
           f"{references.get('yang2022/vrnn-epoch1').value:.2f} |" in page
    effect = shuffled["curve"][1]["test_elbo"] - fixed["curve"][1]["test_elbo"]
    assert f"Epoch 2, seed 0: shuffling the batches moves the transcription's test ELBO by {effect:+.2f} nats." in page


def test_the_fixed_order_repeats_exactly_for_a_seed(tmp_path):
    train, test = _images(200, 1), _images(20, 2)
    first, again = (vrnn_tutorial.train("fixed", 4, 1, train, test, batch_size=50) for _ in range(2))
    assert first["test_elbo"] == pytest.approx(again["test_elbo"], abs=0)
