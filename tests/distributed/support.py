"""A deterministic model/guide pair for data-parallel tests, and the worker processes that train it.

With a point-mass guide (``z = mu(x)``, ``Delta``) the ELBO has no sampling noise, so a run on two
ranks, which draw their own noise, can be compared with a single process within float tolerance:
what differs then is only how the gradient is summed. The model adds a global latent ``shift``
outside the data plate, whose term must count once per step however many ranks there are.
"""

from __future__ import annotations

import os
import socket
import traceback
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO

from pyrovae import distributed
from pyrovae.amortized import AmortizedGuide
from pyrovae.callbacks import Checkpoint, OnEpochEnd
from pyrovae.data import load_dataset
from pyrovae.models import VAE
from pyrovae.nn import LocScaleHead

NUM_TRAIN, BATCH_SIZE = 512, 64


class GlobalShiftVAE(VAE):
    """The VAE with one global latent ``shift ~ N(0, 1)`` outside the data plate."""

    def forward(self, x, num_data=None):
        pyro.sample("shift", dist.Normal(torch.zeros(()), 1.0))
        return super().forward(x, num_data=num_data)


class PointGuide(AmortizedGuide):
    """``q(z | x) = delta(mu(x))`` and ``q(shift) = delta(s)``: a deterministic ELBO."""

    head_class = LocScaleHead

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shift = torch.nn.Parameter(torch.tensor(1.5))

    def posterior(self, x):
        loc, _ = self.encoder(x)
        return dist.Delta(loc).to_event(1)

    def forward(self, x, num_data=None):
        pyro.sample("shift", dist.Delta(self.shift))
        return super().forward(x, num_data=num_data)


def pair(seed: int = 0):
    torch.manual_seed(seed)
    return GlobalShiftVAE(64, 4, (32,)), PointGuide(64, 4, (32,))


def digits():
    train = load_dataset("digits", "train", binarize="static", seed=0).subset(NUM_TRAIN)
    test = load_dataset("digits", "test", binarize="static", seed=1)
    return train, test


def parameters(*modules) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, out: str, scenarios: list[str], timeout: float = 30.0) -> None:
    """One rank: join the process group and run each of ``scenarios`` in turn, writing what it returns
    (or its error) to ``out/rank<rank>-<scenario>.pt``. One process group serves them all: starting
    processes that import torch and Pyro is most of a test's time."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), PYROVAE_DDP_TIMEOUT=str(timeout))
    torch.set_num_threads(1)
    try:
        distributed.init_from_env(torch.device("cpu"))
        for scenario in scenarios:
            path = Path(out) / f"rank{rank}-{scenario}.pt"
            try:
                torch.save({"result": SCENARIOS[scenario](Path(out))}, path)
            except BaseException as error:  # reported to the test, which decides
                torch.save({"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}, path)
    finally:
        distributed.shutdown()


def _train(out: Path) -> dict:
    """Two epochs on the global batch; then the same run stopped after one epoch and resumed."""
    train, test = digits()
    options = dict(batch_size=BATCH_SIZE, lr=1e-2, seed=3, engine="module")
    model, guide = pair()
    history = fit_(model, guide, train, test, epochs=2, callbacks=[Checkpoint(out / "straight")], **options)
    straight = parameters(model, guide)
    model, guide = pair()
    fit_(model, guide, train, test, epochs=1, callbacks=[Checkpoint(out / "resumed")], **options)
    model, guide = pair(seed=9)
    fit_(model, guide, train, test, epochs=2, callbacks=[Checkpoint(out / "resumed", resume=True)], **options)
    return {"params": straight, "rows": history.rows, "resumed": parameters(model, guide)}


def _compiled_engine(out: Path) -> dict:
    """Steps of the compiled engine (captured graph, uncompiled) on this rank's shards: it averages
    the gradients itself, outside DDP."""
    from pyrovae.engines import CompiledEngine

    train, _ = digits()
    model, guide = pair()
    engine = CompiledEngine(model, guide, Trace_ELBO(max_plate_nesting=1), lr=1e-2, compile=False)
    generator = torch.Generator().manual_seed(3)
    shard = (distributed.rank(), distributed.world_size())
    with pyro.settings.context(pyrovae_register_modules=False):
        for x, _ in train.batches(BATCH_SIZE, generator, shard=shard):
            engine.step((x,), len(train))
    return {"params": parameters(model, guide), "fallback": engine.fallback_reason}


def _rank_one_dies(out: Path) -> dict:
    """Rank 1 exits in the middle of epoch 2 (after its evaluation); rank 0 must stop with an error."""
    train, test = digits()
    model, guide = pair()

    def die(epoch, row):
        if epoch == 2 and distributed.rank() == 1:
            os._exit(3)

    fit_(model, guide, train, test, epochs=4, batch_size=BATCH_SIZE, lr=1e-2, seed=3,
         callbacks=[OnEpochEnd(die), Checkpoint(out / "run")])
    return {}


def _cli(out: Path) -> dict:
    """``pyrovae train`` on the tiny preset, as each rank of ``torchrun -m pyrovae.cli train`` runs it."""
    from pyrovae.cli import main

    main(["train", "--preset", "tiny", "--epochs", "2", "--out", str(out / "cli"), "--nll-samples", "0",
          "--no-plots", "--quiet", "--tensorboard"])
    return {}


def fit_(model, guide, train, test, **options):
    from pyrovae.train import fit

    return fit(model, guide, Trace_ELBO(), train, test, **options)


#: The last one ends rank 1's process.
SCENARIOS = {"train": _train, "compiled_engine": _compiled_engine, "cli": _cli, "rank_one_dies": _rank_one_dies}
