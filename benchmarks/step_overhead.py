"""Per-step cost of pyrovae's default training path against a hand-written PyTorch VAE step.

The same VAE (784-400-20, ReLU, Bernoulli decoder, diagonal-Normal encoder, batch 128, Adam) is
stepped by
(a) ``pyrovae.train``'s default engine: ``Trace_ELBO()(model, guide)`` as an ``nn.Module`` with
    one ``torch.optim.Adam``;
(b) the same engine with Pyro's ``JitTrace_ELBO``;
(c) ``pyro.infer.SVI`` with ``pyro.optim.Adam``;
(d) a plain PyTorch loop computing the same single-sample ELBO estimator
    ``log p(x|z) + log p(z) - log q(z|x)``.
All use Adam's fused kernel, so the ratio measures what Pyro adds, not the optimizer. Steps
alternate between the engines in one process so that machine load affects all of them alike; the
median ms/step and the ratio to PyTorch are reported.

    python -m benchmarks.step_overhead [--steps 300] [--threads 1]
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
from pyrovae.guides import DiagonalNormalGuide
from pyrovae.models import VAE
from pyrovae.train import _make_engine
from pyrovae.validation import data_checks

X_DIM, Z_DIM, HIDDEN, BATCH, NUM_DATA = 784, 20, 400, 128, 60000


class PlainVAE(nn.Module):
    """The same networks and estimator, written directly in PyTorch."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(X_DIM, HIDDEN), nn.ReLU())
        self.loc, self.raw_scale = nn.Linear(HIDDEN, Z_DIM), nn.Linear(HIDDEN, Z_DIM)
        self.decoder = nn.Sequential(nn.Linear(Z_DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, X_DIM))

    def loss(self, x):
        h = self.encoder(x)
        loc, scale = self.loc(h), F.softplus(self.raw_scale(h)) + 1e-4
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        log_px = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(-1)
        log_pz = -0.5 * (z ** 2).sum(-1)
        log_qz = -0.5 * (eps ** 2).sum(-1) - scale.log().sum(-1)  # the 2*pi terms cancel
        return -(log_px + log_pz - log_qz).sum() * (NUM_DATA / x.shape[0])


def plain_step():
    model = PlainVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

    def step(x):
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(x)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def pyrovae_step(engine, objective, name):
    model = VAE(X_DIM, Z_DIM, (HIDDEN,), name=f"{name}_model")
    guide = DiagonalNormalGuide(X_DIM, Z_DIM, (HIDDEN,), name=f"{name}_guide")
    step, _ = _make_engine(engine, model, guide, objective, 1e-3)
    return lambda x: step(x, NUM_DATA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pyro.enable_validation(False)  # as fit() does after validating the first batch
    pyro.clear_param_store()
    generator = torch.Generator().manual_seed(0)
    batches = [torch.bernoulli(torch.rand(BATCH, X_DIM, generator=generator)) for _ in range(16)]
    engines = {
        "pytorch": plain_step(),
        "pyrovae (default)": pyrovae_step("module", Trace_ELBO(), "default"),
        "pyrovae + JitTrace_ELBO": pyrovae_step("module", JitTrace_ELBO(ignore_jit_warnings=True), "jit"),
        "pyro SVI": pyrovae_step("svi", Trace_ELBO(), "svi"),
    }
    times = {name: [] for name in engines}
    with data_checks(False):
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
    path = save_results("step_overhead", {"rows": rows, "steps": args.steps, "threads": args.threads,
                                          "batch_size": BATCH, "target_ratio": 1.05, "default_ratio": default_ratio})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
