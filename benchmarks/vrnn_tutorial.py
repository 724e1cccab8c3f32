"""The AEVB tutorial's VRNN training, transcribed in plain PyTorch: does its own code reproduce its logged
test ELBO here, and does the order of its batches explain why pyrovae's run with the same gradient leads it?

Yang 2022's code (aevb-tutorial, ``05_vrnn/vrnn.ipynb``) trains a VRNN on MNIST read row by row (x_t is
row t of 28, z_t in 2-D, a two-layer LSTM of 256 over [x_{t-1}; z_{t-1}], 500-500 ReLU networks for
p(z_t | h_t), q(z_t | h_t, x_t) and p(x_t | h_t, z_t), batch 100, Adam 1e-3) on the ELBO with the KL
of each step in closed form and z_t drawn with ``.sample()``, so that the reconstruction terms send
no gradient to the encoder. pyrovae's ``vrnn/yang`` preset with ``reparameterize=false`` is that
estimator (:mod:`pyrovae.guides.vrnn`); its run (``benchmarks.zoo``) leads the tutorial's logged test
ELBO by several nats at every epoch (the zoo section of the results page). One difference in protocol: the tutorial's
``DataLoader`` is built without ``shuffle``, so every epoch serves the same 600 batches in the same
order, while pyrovae's loader shuffles every epoch.

This script trains the transcription ``--epochs`` epochs for each ``--orders`` (``fixed``: the
tutorial's, the training images in file order; ``shuffled``: a new permutation each epoch) and each
``--seeds`` (initial weights and noise), and records the test ELBO after every epoch: one pass over the
10,000 test images with one sample of z_{1:28} per image, as the tutorial's ``aevb.step(x_test, train=False)``,
nats per image. The data are pyrovae's ``binarize="threshold"`` MNIST, which is the tutorial's
``(k + u) / 256 > 0.5`` (see the preset). The decoder's Bernoulli takes logits rather than
``Sigmoid`` probabilities (the same density without the probabilities' clamping). The page sets the
curves beside the tutorial's logged ones and pyrovae's detached-sample run from ``results/zoo.json``.

    python -m benchmarks.vrnn_tutorial --epochs 1 --orders fixed shuffled --seeds 0

Prints a table and writes benchmarks/results/vrnn_tutorial.json (``--output``).
"""

from __future__ import annotations

import json
import time

import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from benchmarks import common
from benchmarks.common import print_table, save_results
from benchmarks.page import Section, cell, difference, number, table
from pyrovae import references
from pyrovae.arguments import Parser
from pyrovae.data import load_dataset

ORDERS = ("fixed", "shuffled")
ROWS = COLUMNS = 28
#: The tutorial's test ELBO after each of its 7 epochs (05_vrnn/test_elbos), first and last in pyrovae/references.json.
TUTORIAL_EPOCHS = {1: "yang2022/vrnn-epoch1", 7: "yang2022/vrnn"}


def mlp(inputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU())


class GaussianHead(nn.Module):
    """The tutorial's ``Normal(mu(h), softplus(sigma(h)))`` over ``z_dim`` after a 500-500 ReLU network."""

    def __init__(self, inputs: int, z_dim: int):
        super().__init__()
        self.shared, self.mu, self.sigma = mlp(inputs), nn.Linear(500, z_dim), nn.Linear(500, z_dim)

    def forward(self, inputs: torch.Tensor) -> Independent:
        hidden = self.shared(inputs)
        return Independent(Normal(self.mu(hidden), nn.functional.softplus(self.sigma(hidden))), 1)


class TutorialVRNN(nn.Module):
    """The tutorial's ``AEVB`` class: prior p(z_t | h_t), decoder p(x_t | h_t, z_t), encoder q(z_t | h_t, x_t)
    and the LSTM h_t = f(x_{t-1}, z_{t-1}); ``elbo(x)`` is its per-image bound with detached z_t."""

    def __init__(self, x_dim: int = COLUMNS, z_dim: int = 2, h_dim: int = 256):
        super().__init__()
        self.h_dim = h_dim
        self.prior = GaussianHead(h_dim, z_dim)
        self.encoder = GaussianHead(h_dim + x_dim, z_dim)
        self.decoder = nn.Sequential(mlp(h_dim + z_dim), nn.Linear(500, x_dim))
        self.lstm = nn.LSTM(x_dim + z_dim, h_dim, num_layers=2, batch_first=True)

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_t E_q[log p(x_t | h_t, z_t)] - KL(q(z_t | h_t, x_t) || p(z_t | h_t))`` per image, one sample
        of each z_t (``.sample()``: no gradient through it), the KL in closed form: ``(N,)``."""
        h, state, z_t, total = x.new_zeros(x.shape[0], self.h_dim), None, None, 0.0
        for t in range(x.shape[1]):
            x_t = x[:, t]
            if t > 0:
                output, state = self.lstm(torch.cat([x[:, t - 1], z_t], dim=1).unsqueeze(1), state)
                h = output[:, 0]
            posterior = self.encoder(torch.cat([h, x_t], dim=1))
            z_t = posterior.sample()
            likelihood = Independent(Bernoulli(logits=self.decoder(torch.cat([h, z_t], dim=1))), 1)
            total = total + likelihood.log_prob(x_t) - kl_divergence(posterior, self.prior(h))
        return total


def train(order: str, seed: int, epochs: int, train_x: torch.Tensor, test_x: torch.Tensor, batch_size: int = 100,
          lr: float = 1e-3) -> dict:
    """Train one transcription; the test ELBO and the seconds of every epoch."""
    torch.manual_seed(seed)
    model = TutorialVRNN()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    curve = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        indices = torch.randperm(len(train_x), generator=generator) if order == "shuffled" else torch.arange(len(train_x))
        for batch in indices.split(batch_size):
            loss = -model.elbo(train_x[batch]).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            test_elbo = model.elbo(test_x).mean().item()
        curve.append({"epoch": epoch, "test_elbo": test_elbo, "seconds": time.perf_counter() - start})
        print(f"{order} seed {seed} epoch {epoch}: test ELBO {test_elbo:.2f}", flush=True)
    return {"order": order, "seed": seed, "epochs": epochs, "test_elbo": curve[-1]["test_elbo"], "curve": curve,
            "minutes": sum(row["seconds"] for row in curve) / 60}


def pyrovae_detached_curve() -> dict | None:
    """pyrovae's ``vrnn/yang`` run with ``reparameterize=false`` as ``benchmarks.zoo`` recorded it, if it did."""
    path = common.RESULTS / "zoo.json"
    if not path.exists():
        return None
    for row in json.loads(path.read_text())["rows"]:
        if row["model"] == "vrnn" and row.get("settings") == {"reparameterize": False} and row.get("curve"):
            return {"command": row["command"], "seed": row["seed"],
                    "curve": [{"epoch": r["epoch"], "test_elbo": r["test_elbo"]} for r in row["curve"]]}
    return None


def main(argv: list[str] | None = None) -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run (the tutorial logged 7)")
    parser.add_argument("--orders", nargs="+", choices=ORDERS, default=list(ORDERS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", default="vrnn_tutorial")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    torch.set_num_threads(args.threads)
    data = {split: load_dataset("mnist", split, root=args.data_dir, binarize="threshold").x.reshape(-1, ROWS, COLUMNS)
            for split in ("train", "test")}
    runs = []
    for seed in args.seeds:
        for order in args.orders:  # the orders alternate, so that the machine's load falls on both alike
            runs.append(train(order, seed, args.epochs, data["train"], data["test"]))
            print_table(runs[-1:], ["order", "seed", "epochs", "test_elbo", "minutes"])
    path = save_results(args.output, {"runs": runs, "pyrovae": pyrovae_detached_curve()}, args=args,
                        benchmark="vrnn_tutorial")
    print(f"wrote {path}")


def _render(data: dict) -> list[str]:
    pyrovae_run = data.get("pyrovae") or {"curve": []}
    pyrovae_by_epoch = {row["epoch"]: row["test_elbo"] for row in pyrovae_run["curve"]}
    epochs = sorted({row["epoch"] for run in data["runs"] for row in run["curve"]})
    tutorial = {epoch: references.get(key) for epoch, key in TUTORIAL_EPOCHS.items()}
    rows = []
    for epoch in epochs:
        for run in data["runs"]:
            value = next(row["test_elbo"] for row in run["curve"] if row["epoch"] == epoch)
            logged = tutorial.get(epoch)
            rows.append([number(epoch), cell(run["order"]), number(run["seed"]), number(value),
                         number(logged.comparable) if logged else "-", number(pyrovae_by_epoch.get(epoch)),
                         number(run["curve"][epoch - 1]["seconds"] / 60, 1)])
    lines = table(["epoch", "batch order", "seed", "transcription's test ELBO", "tutorial's logged test ELBO",
                   "pyrovae, detached z_t (shuffled)", "minutes"], rows)
    lines.append("Nats per image (higher is better); one sample of z per image over the 10,000 test images. The "
                 "tutorial's values: " + "; ".join(f"epoch {epoch}: {ref.source}" for epoch, ref in tutorial.items())
                 + ".")
    lines += _comparisons(data, tutorial, pyrovae_by_epoch)
    if data.get("pyrovae"):
        lines.append(f"pyrovae's run: `{pyrovae_run['command']}` (seed {pyrovae_run['seed']}), read from "
                     "`results/zoo.json` when this JSON was written.")
    return lines + [""]


def _comparisons(data: dict, tutorial: dict, pyrovae_by_epoch: dict) -> list[str]:
    """One sentence per (seed, epoch) run in both orders: the order's effect, and each order against the
    run it stands for (fixed: the tutorial's logged run; shuffled: pyrovae's)."""
    lines = []
    for seed in sorted({run["seed"] for run in data["runs"]}):
        runs = {run["order"]: run for run in data["runs"] if run["seed"] == seed}
        if set(runs) != set(ORDERS):
            continue
        for epoch in range(1, min(run["epochs"] for run in runs.values()) + 1):
            fixed, shuffled = (runs[order]["curve"][epoch - 1]["test_elbo"] for order in ORDERS)
            sentence = (f"Epoch {epoch}, seed {seed}: shuffling the batches moves the transcription's test ELBO by "
                        f"{difference(shuffled, fixed)} nats")
            if epoch in tutorial:
                sentence += (f"; in the tutorial's fixed order it is {difference(fixed, tutorial[epoch].comparable)} "
                             "from the tutorial's logged value")
            if epoch in pyrovae_by_epoch:
                sentence += f"; pyrovae's shuffled run is {difference(pyrovae_by_epoch[epoch], shuffled)} from the shuffled one"
            lines.append(f"- {sentence}.")
    return ["", *lines, ""] if lines else []


SECTION = Section(
    "The VRNN tutorial's own code", "The AEVB tutorial's VRNN loop transcribed in plain PyTorch, with its "
    "batches in the tutorial's fixed order and shuffled, beside the tutorial's logged test ELBO and pyrovae's "
    "run with the same (detached-sample) gradient.", _render, order=21)


if __name__ == "__main__":
    main()
