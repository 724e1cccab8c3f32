"""Per-step cost of pyrovae's default training path against a hand-written PyTorch VAE step.

The same VAE, built from a preset (``vae/torch-example``: 784-400-20, ReLU, batch 128; or
``vae/burda``: 784-200-200-50, tanh, batch 100), with Bernoulli decoder and diagonal-Normal
encoder, is stepped by
(a) ``pyrovae.train``'s default engine: ``Trace_ELBO()(model, guide)`` as an ``nn.Module`` with
    one ``torch.optim.Adam``;
(b) the same engine with Pyro's ``JitTrace_ELBO``;
(c) ``pyro.infer.SVI`` with ``pyro.optim.Adam``;
(d) a plain PyTorch loop computing the same single-sample ELBO estimator
    ``log p(x|z) + log p(z) - log q(z|x)``.
All use Adam's fused kernel, so the ratio measures what Pyro adds, not the optimizer. Steps
alternate between the engines in one process so that machine load affects all of them alike; the
median ms/step and the ratio to PyTorch are reported.

    python -m benchmarks.step_overhead [--preset torch-example] [--steps 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro
import pyro.optim
import torch
from pyro.infer import JitTrace_ELBO, Trace_ELBO
from torch import nn
from torch.nn import functional as F

from benchmarks.common import print_table, save_results
from pyrovae.data import Dataset
from pyrovae.engines import make_engine
from pyrovae.experiment import Experiment, build_model_and_guide
from pyrovae.nn import ACTIVATIONS, mlp

X_DIM, NUM_DATA = 784, 60000


class PlainVAE(nn.Module):
    """The same networks and estimator, written directly in PyTorch."""

    def __init__(self, z_dim: int, hidden: list[int], activation: str):
        super().__init__()
        self.encoder = nn.Sequential(mlp([X_DIM, *hidden], activation), ACTIVATIONS[activation]())
        self.loc, self.raw_scale = nn.Linear(hidden[-1], z_dim), nn.Linear(hidden[-1], z_dim)
        self.decoder = mlp([z_dim, *hidden, X_DIM], activation)

    def loss(self, x):
        h = self.encoder(x)
        loc, scale = self.loc(h), F.softplus(self.raw_scale(h)) + 1e-4
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        log_px = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(-1)
        log_pz = -0.5 * (z ** 2).sum(-1)
        log_qz = -0.5 * (eps ** 2).sum(-1) - scale.log().sum(-1)  # the 2*pi terms cancel
        return -(log_px + log_pz - log_qz).sum() * (NUM_DATA / x.shape[0])


def plain_step(experiment):
    config = experiment.model
    model = PlainVAE(config.z_dim, config.hidden_sizes, config.activation)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

    def step(x):
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(x)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def pyrovae_step(experiment, data, engine, objective, name):
    model, guide = build_model_and_guide(experiment, data)
    model.name, guide.name = f"{name}_model", f"{name}_guide"
    trainer = make_engine(engine, model, guide, objective, 1e-3)

    def step(x):
        # As in fit: the module engine needs no pyro.module registration, SVI does.
        with pyro.settings.context(pyrovae_register_modules=trainer.needs_registration):
            return trainer.step((x,), NUM_DATA)[0].item()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="torch-example", choices=["torch-example", "burda"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pyro.enable_validation(False)  # as fit() does after validating the first batch
    pyro.clear_param_store()
    experiment = Experiment.resolve({"model": "vae", "preset": args.preset})
    batch_size = experiment.run.batch_size
    generator = torch.Generator().manual_seed(0)
    batches = [torch.bernoulli(torch.rand(batch_size, X_DIM, generator=generator)) for _ in range(16)]
    data = Dataset.from_tensor(torch.cat(batches))
    engines = {
        "pytorch": plain_step(experiment),
        "pyrovae (default)": pyrovae_step(experiment, data, "module", Trace_ELBO(max_plate_nesting=1), "default"),
        "pyrovae + JitTrace_ELBO": pyrovae_step(experiment, data, "module",
                                                JitTrace_ELBO(ignore_jit_warnings=True, max_plate_nesting=1), "jit"),
        "pyro SVI": pyrovae_step(experiment, data, "svi", Trace_ELBO(max_plate_nesting=1), "svi"),
    }
    times = {name: [] for name in engines}
    with pyro.settings.context(pyrovae_check_data=False):
        for i in range(args.warmup + args.steps):
            x = batches[i % len(batches)]
            for name, step in engines.items():
                began = time.perf_counter()
                step(x)
                if i >= args.warmup:
                    times[name].append(time.perf_counter() - began)
    baseline = statistics.median(times["pytorch"])
    rows = []
    for name, samples in times.items():
        median = statistics.median(samples)
        rows.append({"engine": name, "ms_per_step": median * 1e3,
                     "p90_ms": statistics.quantiles(samples, n=10)[-1] * 1e3, "ratio_to_pytorch": median / baseline})
    print_table(rows, ["engine", "ms_per_step", "p90_ms", "ratio_to_pytorch"])
    default_ratio = rows[1]["ratio_to_pytorch"]
    print(f"target ratio <= 1.05: {'met' if default_ratio <= 1.05 else 'NOT met'} ({default_ratio:.3f})")
    path = save_results(f"step_overhead_{args.preset}", {
        "rows": rows, "steps": args.steps, "threads": args.threads, "preset": f"vae/{args.preset}",
        "batch_size": batch_size, "target_ratio": 1.05, "default_ratio": default_ratio})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
