r"""Per-step cost of the Bernoulli-latent VAE of Yin & Zhou 2019 against hand-written PyTorch steps.

The presets ``bernoulli-vae/arm-linear`` (200 Bernoulli latents, linear encoder and decoder) and
``arm-nonlinear`` (200-200 tanh networks), batch 50, trained

(a) by pyrovae through the training engine ``pyrovae train`` uses for the preset's 1,000 epochs
    (``engine="auto"``: compiled), with no fallback to eager allowed, through the captured engine
    (the same graph uncompiled) and through the eager module engine;
(b) by a plain PyTorch step of the same estimator (:class:`PlainBernoulliVAE`): encoder, Bernoulli
    sample or relaxation, decoder, loss, fused Adam step, eager and with its loss under
    ``torch.compile``.

Estimators: ``concrete`` (the binary Concrete in logit space, ``Trace_ELBO``; Maddison et al.
2017), ``disarm`` (``DisARM_ELBO``, one antithetic pair; Dong et al. 2020), ``straight-through``
(hard samples with the Concrete's gradient; Bengio et al. 2013) and ``reinforce`` (the score function
with NVIL's input-dependent baseline, ``TraceGraph_ELBO``; Mnih & Gregor 2014). The plain steps
draw their noise in pyrovae's order, so on the same seed they compute pyrovae's loss
(``tests/engines/test_bernoulli_step.py``). Steps alternate between the contenders in one process;
the median ms/step (wall clock, and CPU time of the stepping thread, which the machine's other load
disturbs less) and its ratio to the plain eager step of the same estimator are reported.
Target (issue 19): pyrovae's default step at most 1.00x the hand-written one.

    python -m benchmarks.bernoulli_step [--presets arm-linear arm-nonlinear] [--estimators concrete disarm]
        [--threads 1] [--steps 300]
"""

from __future__ import annotations

import statistics
import warnings

import pyro
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.common import adam_step, alternating_step_times, print_table, save_results
from benchmarks.page import Section, cell, number, table
from pyrovae.arguments import Parser
from pyrovae.data import Dataset
from pyrovae.engines import make_engine, resolve_engine
from pyrovae.experiment import Experiment, build_model_and_guide, build_objective
from pyrovae.nn import mlp

X_DIM, NUM_DATA = 784, 50000
ESTIMATORS = ("concrete", "disarm", "straight-through", "reinforce")
TARGET_RATIO = 1.0


def _open_uniform(shape, like: torch.Tensor) -> torch.Tensor:
    finfo = torch.finfo(like.dtype)
    return like.new_empty(shape).uniform_().clamp_(min=finfo.tiny, max=1 - finfo.eps / 2)


def _logistic_log_density(standardized: torch.Tensor, log_scale: float) -> torch.Tensor:
    return -standardized - 2 * F.softplus(-standardized) - log_scale


class PlainBernoulliVAE(nn.Module):
    """The preset's networks and one estimator's loss written directly in PyTorch.

    ``concrete``: :math:`z = (\\alpha + \\mathrm{logit}(u)) / t_q` with :math:`\\alpha` the encoder's
    logits, the decoder reads :math:`\\sigma(z)`, and the loss is minus the one-sample ELBO with
    Logistic densities (prior Logistic(0, 1/t_p)). ``disarm``: :math:`b = 1[u < \\sigma(\\alpha)]`,
    :math:`\\tilde b = 1[1 - u < \\sigma(\\alpha)]`, :math:`f = \\log p(x, \\cdot) - \\log q(\\cdot | x)`,
    and the surrogate whose gradient is DisARM's for the encoder and the pair's mean
    :math:`\\nabla \\log p` for the decoder. ``straight-through``: the hard sample
    :math:`b = 1[\\alpha + \\mathrm{logit}(u) > 0]` with the gradient of
    :math:`\\sigma((\\alpha + \\mathrm{logit}(u)) / t_q)`, Bernoulli log-masses for prior (1/2) and guide.
    ``reinforce``: :math:`b \\sim \\mathrm{Bernoulli}(\\sigma(\\alpha))`, the scaled per-example cost
    :math:`c = \\tfrac{N}{B}(\\log p(x, b) - \\log q(b | x))` and the baseline network's :math:`\\beta(x)`, scaled
    by N / B as the cost is; the
    gradient is that of Pyro's ``TraceGraph_ELBO`` surrogate, :math:`-\\tfrac{N}{B}\\log p(x, b)
    - \\sum \\log q(b | x)\\,\\mathrm{sg}(c - \\tfrac{N}{B}\\beta(x)) + \\sum (\\mathrm{sg}(c) - \\tfrac{N}{B}\\beta(x))^2`
    (``sg``: no gradient), and the value minus the ELBO estimate.
    All are summed over the batch and scaled by N / B.
    """

    def __init__(self, z_dim: int, hidden: list[int], activation: str, estimator: str,
                 prior_temperature: float = 0.5, posterior_temperature: float = 2 / 3):
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        self.estimator, self.z_dim = estimator, z_dim
        self.prior_temperature, self.posterior_temperature = prior_temperature, posterior_temperature
        self.encoder = mlp([X_DIM, *hidden, z_dim], activation)
        self.decoder = mlp([z_dim, *hidden, X_DIM], activation)
        # NVIL's baseline beta(x): one number per example (the guide's ``baseline``).
        self.baseline = (nn.Sequential(mlp([X_DIM, *hidden, 1], activation), nn.Flatten(-2))
                         if estimator == "reinforce" else None)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.encoder(x)
        estimate = {"concrete": self._concrete, "disarm": self._disarm, "straight-through": self._straight_through,
                    "reinforce": self._reinforce}
        elbo = estimate[self.estimator](x, logits)
        return -elbo * (NUM_DATA / x.shape[0])

    def _concrete(self, x, logits):
        t_q, t_p = self.posterior_temperature, self.prior_temperature
        noise = torch.logit(_open_uniform(logits.shape, logits))
        z = (logits + noise) / t_q
        log_px = -F.binary_cross_entropy_with_logits(self.decoder(torch.sigmoid(z)), x, reduction="none").sum(-1)
        log_pz = _logistic_log_density(z * t_p, -torch.log(torch.tensor(t_p))).sum(-1)
        log_qz = _logistic_log_density(noise, -torch.log(torch.tensor(t_q))).sum(-1)
        return (log_px + log_pz - log_qz).sum()

    def _straight_through(self, x, logits):
        noise = torch.logit(_open_uniform(logits.shape, logits))
        noisy = logits + noise
        relaxed = torch.sigmoid(noisy / self.posterior_temperature)
        z = (noisy > 0).to(x.dtype) + (relaxed - relaxed.detach())
        log_px = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(-1)
        log_qz = -F.binary_cross_entropy_with_logits(logits, z, reduction="none").sum(-1)
        return (log_px + self.z_dim * torch.log(torch.tensor(0.5)) - log_qz).sum()

    def _disarm(self, x, logits):
        u = torch.rand(logits.shape, dtype=logits.dtype)
        probs = torch.sigmoid(logits.detach())
        b = torch.cat([u, 1 - u]).lt(probs.repeat(2, 1)).to(x.dtype)  # (2B, D): b, then b~
        log_px = -F.binary_cross_entropy_with_logits(self.decoder(b), x.repeat(2, 1), reduction="none").sum(-1)
        log_q = (b * F.logsigmoid(logits.detach()).repeat(2, 1) + (1 - b) * F.logsigmoid(-logits.detach()).repeat(2, 1))
        f = (log_px + self.z_dim * torch.log(torch.tensor(0.5)) - log_q.sum(-1)).view(2, -1)
        first, second = b.view(2, *logits.shape)
        g = (0.5 * (f[0] - f[1])).detach()[:, None] * (1 - 2 * second) * (first != second) * torch.sigmoid(logits.detach().abs())
        score = (g * logits).sum()
        return f.mean(0).sum() + score - score.detach()

    def _reinforce(self, x, logits):
        scale = NUM_DATA / x.shape[0]
        b = torch.bernoulli(torch.sigmoid(logits.detach()))
        log_p = -F.binary_cross_entropy_with_logits(self.decoder(b), x, reduction="none").sum(-1)
        log_p = log_p + self.z_dim * torch.log(torch.tensor(0.5))
        log_q = -F.binary_cross_entropy_with_logits(logits, b, reduction="none").sum(-1)
        cost = scale * (log_p - log_q)
        baseline = scale * self.baseline(x)
        # Pyro scales the site's log-probabilities but not its score function, which multiplies the scaled cost.
        surrogate_loss = (-scale * log_p.sum() - (log_q * (cost - baseline).detach()).sum()
                          + (cost.detach() - baseline).pow(2).sum())
        # Returned as an ELBO estimate, which loss() scales by -N / B: its value, and the surrogate's gradient.
        surrogate = -surrogate_loss / scale
        return (log_p - log_q).sum().detach() + (surrogate - surrogate.detach())

    def networks(self) -> list[nn.Module]:
        """Encoder, decoder and (``reinforce``) the baseline network, in :meth:`load_networks`' order."""
        return [self.encoder, self.decoder] + ([self.baseline] if self.baseline is not None else [])

    def load_networks(self, model, guide) -> PlainBernoulliVAE:
        """Copy the weights of pyrovae's :class:`~pyrovae.models.BernoulliVAE` and its guide (same layout)."""
        sources = [guide.encoder, model.decoder] + ([guide.baseline] if self.baseline is not None else [])
        with torch.no_grad():
            for target, source in zip(self.networks(), sources, strict=True):
                for mine, theirs in zip(target.parameters(), source.parameters(), strict=True):
                    mine.copy_(theirs)
        return self


def _experiment(preset: str, estimator: str) -> Experiment:
    return Experiment.resolve({"model": "bernoulli-vae", "preset": preset, "relaxation": estimator})


def plain_step(experiment, estimator: str, compiled: bool = False):
    config = experiment.model
    model = PlainBernoulliVAE(config.z_dim, config.hidden_sizes, config.activation, estimator,
                              config.prior_temperature, config.posterior_temperature)
    return adam_step(model.parameters(), model.loss, experiment.run.lr, compiled)


def pyrovae_step(experiment, data, engine: str, name: str):
    model, guide = build_model_and_guide(experiment, data)
    model.name, guide.name = f"{name}_model", f"{name}_guide"
    trainer = make_engine(engine, model, guide, build_objective(experiment, model), experiment.run.lr)

    def step(x):
        with pyro.settings.context(pyrovae_register_modules=trainer.needs_registration):
            return trainer.step((x,), NUM_DATA)[0].item()

    return step


def measure(preset: str, threads: int, estimators: list[str], steps: int, warmup: int) -> list[dict]:
    torch.set_num_threads(threads)
    pyro.clear_param_store()
    generator = torch.Generator().manual_seed(0)
    contenders, baseline_of, estimator_of = {}, {}, {}
    batches = None
    for estimator in estimators:
        experiment = _experiment(preset, estimator)
        if batches is None:
            size = experiment.run.batch_size
            batches = [torch.bernoulli(torch.rand(size, X_DIM, generator=generator)) for _ in range(16)]
        data = Dataset.from_tensor(torch.cat(batches))
        default = resolve_engine("auto", experiment.run.epochs * (NUM_DATA // experiment.run.batch_size))
        plain, plain_compiled = f"{estimator}: pytorch eager", f"{estimator}: pytorch compiled"
        pyrovae_default = f"{estimator}: pyrovae default (auto: {default})"
        pyrovae_captured, pyrovae_module = f"{estimator}: pyrovae captured", f"{estimator}: pyrovae module"
        contenders[plain] = plain_step(experiment, estimator)
        contenders[plain_compiled] = plain_step(experiment, estimator, compiled=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager warns: refuse it
            contenders[pyrovae_default] = pyrovae_step(experiment, data, default, f"{estimator}_default")
            contenders[pyrovae_default](batches[0])  # capture and compile outside the timing
            contenders[pyrovae_captured] = pyrovae_step(experiment, data, "captured", f"{estimator}_captured")
            contenders[pyrovae_captured](batches[0])
        contenders[pyrovae_module] = pyrovae_step(experiment, data, "module", f"{estimator}_module")
        for name in (plain, plain_compiled, pyrovae_default, pyrovae_captured, pyrovae_module):
            baseline_of[name], estimator_of[name] = plain, estimator
    cpu = {}
    times = alternating_step_times(contenders, batches, steps, warmup, cpu_times=cpu)
    rows = []
    for name, samples in times.items():
        median, cpu_median = statistics.median(samples), statistics.median(cpu[name])
        rows.append({"preset": preset, "threads": threads, "estimator": estimator_of[name], "contender": name,
                     "ms_per_step": median * 1e3, "p90_ms": statistics.quantiles(samples, n=10)[-1] * 1e3,
                     "ratio_to_pytorch_eager": median / statistics.median(times[baseline_of[name]]),
                     "cpu_ms_per_step": cpu_median * 1e3,
                     "cpu_ratio_to_pytorch_eager": cpu_median / statistics.median(cpu[baseline_of[name]])})
    return rows


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["arm-linear", "arm-nonlinear"],
                        choices=["arm-linear", "arm-nonlinear"])
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=ESTIMATORS)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    pyro.enable_validation(False)  # as fit() does after validating the first batch
    rows = [row for preset in args.presets for threads in args.threads
            for row in measure(preset, threads, args.estimators, args.steps, args.warmup)]
    print_table(rows, ["preset", "threads", "contender", "ms_per_step", "p90_ms", "ratio_to_pytorch_eager",
                       "cpu_ms_per_step", "cpu_ratio_to_pytorch_eager"])
    defaults = [r for r in rows if "pyrovae default" in r["contender"]]
    met = all(r["ratio_to_pytorch_eager"] <= TARGET_RATIO for r in defaults)
    print(f"target (pyrovae's default step <= {TARGET_RATIO:.2f}x the hand-written step of the same estimator): "
          f"{'met' if met else 'NOT met'}")
    path = save_results("bernoulli_step", {"rows": rows, "presets": args.presets, "estimators": args.estimators,
                                           "threads": args.threads, "steps": args.steps, "warmup": args.warmup,
                                           "target_ratio": TARGET_RATIO, "target_met": met}, args=args)
    print(f"wrote {path}")


# ------------------------------------------------------------------------------- the results page

def _render(data: dict) -> list[str]:
    rows = [[f"`bernoulli-vae/{row['preset']}`", number(row["threads"]), cell(row["contender"]),
             number(row["ms_per_step"]), number(row.get("p90_ms")), number(row["ratio_to_pytorch_eager"], 3),
             number(row.get("cpu_ms_per_step")), number(row.get("cpu_ratio_to_pytorch_eager"), 3)]
            for row in data["rows"]]
    met = data.get("target_met")
    return [*table(["preset", "threads", "contender", "ms/step (median)", "p90 ms", "x plain eager PyTorch",
                    "CPU ms/step (median)", "CPU x plain eager PyTorch"], rows),
            f"Estimators measured: {', '.join(data['estimators'])}. "
            f"Median of {data.get('steps')} steps after {data.get('warmup')} warm-up steps, wall clock and CPU time of "
            "the stepping thread. No paper number: the reference is a hand-written PyTorch step of the same "
            "estimator and networks (`PlainBernoulliVAE`, which computes pyrovae's loss and gradients on the same "
            "noise), measured in the same process. Target for pyrovae's default engine: at most "
            f"{number(data.get('target_ratio'))}x (wall clock): "
            f"{'met' if met else 'not met' if met is not None else 'not recorded'}.", ""]


SECTION = Section(
    "Bernoulli-latent step", "Per-step time of the Bernoulli-latent VAE of Yin & Zhou 2019 (`bernoulli-vae/arm-linear`, "
    "`arm-nonlinear`, batch 50) with each estimator `PlainBernoulliVAE` writes out (Concrete, DisARM, straight-through "
    "and NVIL's score function with its baseline network), against a hand-written PyTorch step of the same "
    "estimator.", _render, order=85)


if __name__ == "__main__":
    main()
