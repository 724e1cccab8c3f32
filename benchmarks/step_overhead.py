"""Per-step cost of pyrovae's training engines against a hand-written PyTorch VAE step.

The same VAE, built from a preset (``vae/torch-example``: 784-400-20, ReLU, batch 128; and
``vae/burda``: 784-200-200-50, tanh, batch 100), with Bernoulli decoder and diagonal-Normal
encoder, is stepped by
(a) a plain PyTorch loop computing the same single-sample ELBO estimator
    ``log p(x|z) + log p(z) - log q(z|x)``, eager and with its loss under ``torch.compile``;
(b) pyrovae's default engine for a training run of the preset (``engine="auto"``: compiled for a
    run of 20,000 steps or more, captured without compiling from 2,000, :mod:`pyrovae.capture`), and
    the compiled and captured engines themselves;
(c) the eager module engine, ``Trace_ELBO()(model, guide)`` with one ``torch.optim.Adam``, and the
    same with Pyro's ``JitTrace_ELBO``;
(d) ``pyro.infer.SVI`` with ``pyro.optim.Adam``.
All use Adam's fused kernel, so the ratio measures what Pyro adds, not the optimizer. Steps
alternate between the engines in one process so that machine load affects all of them alike; the
median ms/step and its ratios to eager and to compiled PyTorch are reported, for 1 and 2 threads.

    python -m benchmarks.step_overhead [--presets torch-example burda] [--threads 1 2] [--steps 300]
"""

from __future__ import annotations

import statistics

import pyro
import pyro.optim
import torch
from pyro.infer import JitTrace_ELBO, Trace_ELBO
from torch import nn
from torch.nn import functional as F

from benchmarks.common import adam_step, alternating_step_times, print_table, save_results
from benchmarks.page import Section, cell, number, table
from pyrovae.arguments import Parser
from pyrovae.data import Dataset
from pyrovae.engines import make_engine, resolve_engine
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


def plain_step(experiment, compiled: bool = False):
    config = experiment.model
    model = PlainVAE(config.z_dim, config.hidden_sizes, config.activation)
    return adam_step(model.parameters(), model.loss, 1e-3, compiled)


def pyrovae_step(experiment, data, engine, objective, name):
    model, guide = build_model_and_guide(experiment, data)
    model.name, guide.name = f"{name}_model", f"{name}_guide"
    trainer = make_engine(engine, model, guide, objective, 1e-3)

    def step(x):
        # As in fit: the module engine needs no pyro.module registration, SVI does.
        with pyro.settings.context(pyrovae_register_modules=trainer.needs_registration):
            return trainer.step((x,), NUM_DATA)[0].item()

    return step


DEFAULT = "pyrovae default (auto: compiled)"


def measure(preset: str, threads: int, steps: int, warmup: int) -> list[dict]:
    """Median ms per step of every engine on ``vae/<preset>``, stepping them in turn."""
    torch.set_num_threads(threads)
    pyro.clear_param_store()
    experiment = Experiment.resolve({"model": "vae", "preset": preset})
    batch_size = experiment.run.batch_size
    generator = torch.Generator().manual_seed(0)
    batches = [torch.bernoulli(torch.rand(batch_size, X_DIM, generator=generator)) for _ in range(16)]
    data = Dataset.from_tensor(torch.cat(batches))
    # A training run of the preset is long enough for engine="auto" to compile.
    default = resolve_engine("auto", experiment.run.epochs * (60000 // batch_size))
    engines = {
        "pytorch eager": plain_step(experiment),
        "pytorch compiled": plain_step(experiment, compiled=True),
        f"pyrovae default (auto: {default})": pyrovae_step(experiment, data, default, Trace_ELBO(max_plate_nesting=1),
                                                           "default"),
        "pyrovae compiled": pyrovae_step(experiment, data, "compiled", Trace_ELBO(max_plate_nesting=1), "compiled"),
        "pyrovae captured": pyrovae_step(experiment, data, "captured", Trace_ELBO(max_plate_nesting=1), "captured"),
        "pyrovae module": pyrovae_step(experiment, data, "module", Trace_ELBO(max_plate_nesting=1), "module"),
        "pyrovae module + JitTrace_ELBO": pyrovae_step(
            experiment, data, "module", JitTrace_ELBO(ignore_jit_warnings=True, max_plate_nesting=1), "jit"),
        "pyro SVI": pyrovae_step(experiment, data, "svi", Trace_ELBO(max_plate_nesting=1), "svi"),
    }
    times = alternating_step_times(engines, batches, steps, warmup)
    eager = statistics.median(times["pytorch eager"])
    compiled = statistics.median(times["pytorch compiled"])
    rows = []
    for name, samples in times.items():
        median = statistics.median(samples)
        rows.append({"preset": preset, "threads": threads, "engine": name, "ms_per_step": median * 1e3,
                     "p90_ms": statistics.quantiles(samples, n=10)[-1] * 1e3,
                     "ratio_to_eager": median / eager, "ratio_to_compiled": median / compiled})
    return rows


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["torch-example", "burda"], choices=["torch-example", "burda"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    pyro.enable_validation(False)  # as fit() does after validating the first batch
    rows = [row for preset in args.presets for threads in args.threads
            for row in measure(preset, threads, args.steps, args.warmup)]
    print_table(rows, ["preset", "threads", "engine", "ms_per_step", "p90_ms", "ratio_to_eager", "ratio_to_compiled"])
    defaults = [row for row in rows if row["engine"].startswith("pyrovae default")]
    met = all(r["ratio_to_eager"] <= 1.0 and r["ratio_to_compiled"] <= 1.05 for r in defaults)
    print(f"targets (default <= 1.00x eager PyTorch and <= 1.05x compiled PyTorch): {'met' if met else 'NOT met'}")
    path = save_results("step_overhead", {"rows": rows, "steps": args.steps, "warmup": args.warmup,
                                          "target_ratio_to_eager": 1.0, "target_ratio_to_compiled": 1.05,
                                          "targets_met": met}, args=args)
    print(f"wrote {path}")


# ------------------------------------------------------------------------------- the results page

def _render(data: dict) -> list[str]:
    rows = [[f"`vae/{row['preset']}`", number(row["threads"]), cell(row["engine"]), number(row["ms_per_step"]),
             number(row.get("p90_ms")), number(row["ratio_to_eager"], 3), number(row["ratio_to_compiled"], 3)]
            for row in data["rows"]]
    met = data.get("targets_met")
    return [*table(["preset", "threads", "engine", "ms/step (median)", "p90 ms", "x eager PyTorch",
                    "x compiled PyTorch"], rows),
            f"Median of {data.get('steps')} steps after {data.get('warmup')} warm-up steps. No paper number: the "
            "reference is a hand-written PyTorch step of the same VAE, measured in the same process. Targets for "
            f"pyrovae's default engine: at most {number(data.get('target_ratio_to_eager'))}x eager and "
            f"{number(data.get('target_ratio_to_compiled'))}x compiled PyTorch: "
            f"{'met' if met else 'not met' if met is not None else 'not recorded'}.", ""]


def _arguments(data: dict) -> tuple[dict, list[str]]:
    rows = [row for row in data.get("rows", []) if isinstance(row, dict)]
    presets = list(dict.fromkeys(row["preset"] for row in rows if "preset" in row))
    threads = list(dict.fromkeys(row["threads"] for row in rows if "threads" in row))
    return ({"presets": presets or None, "threads": threads or None, "steps": data.get("steps"),
             "warmup": data.get("warmup")}, [])


SECTION = Section(
    "Step overhead", "Per-step time of pyrovae's training engines and Pyro's SVI against a hand-written "
    "PyTorch step of the same VAE and estimator.", _render, arguments=_arguments, order=70)


if __name__ == "__main__":
    main()
