"""Figure 5.1 of Sadier-Gane (2020, §5.1): the toy model's exact posterior and two guides fitted by SVI.

p(z) = Logistic(0, 1), x | z ~ N(Theta(z), 0.5^2), x = 1. The exact posterior is
StepLogistic(2 sigma(2)), Pr(z > 0 | x = 1) = sigma(2) = 0.8808. Fits a Logistic(mu, s) guide
(learned scale, and the dissertation's s = 1) and a StepLogistic(alpha) guide with
:func:`pyrovae.toy_posterior.fit_guides`, and prints, per guide, Pr(z > 0), the exact ELBO
(log p(x) - KL) and the KL to the exact posterior by quadrature, beside the dissertation's reading
of Figure 5.1 (it gives no number for the Logistic guide: "much more probability mass over
z < 0 than the true posterior"). Writes ``benchmarks/results/toy_posterior.json`` and the figure
``benchmarks/results/toy_posterior.png``.

    python -m benchmarks.toy_posterior [--steps 1000] [--seed 0] [--particles 256]
"""

from __future__ import annotations

import sys
import time

import torch

from benchmarks.common import RESULTS, print_table, save_results
from benchmarks.page import Section, cell, number, table
from pyrovae import references, toy_posterior
from pyrovae.arguments import Parser
from pyrovae.plots import save_figure

#: The exact posterior's Pr(z > 0 | x = 1) that Figure 5.1 of Sadier-Gane 2020 shows.
EXACT = references.get("sadier-gane2020/toy-posterior")
#: Iterations of the toy model's SVI in Sadier-Gane 2020, Figure 5.1.
DISSERTATION_STEPS = 400
LOGISTIC_GUIDE = "much more mass below 0 than the true posterior (no number)"


def main(argv=None) -> dict:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--particles", type=int, default=256)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)

    posterior = toy_posterior.exact_posterior()
    log_evidence = float(toy_posterior.log_evidence())
    rows = [{
        "guide": "exact posterior StepLogistic(2 sigma(2))",
        "params": f"alpha = {float(posterior.alpha):.4f}",
        "Pr(z>0)": float(1 - posterior.cdf(torch.zeros((), dtype=torch.float64))),
        "ELBO": log_evidence,
        "KL to posterior": 0.0,
        "seconds": 0.0,
    }]
    fits = {}
    for label, scale in (("learned scale", None), ("scale 1, as in the dissertation", 1.0)):
        start = time.perf_counter()
        result = toy_posterior.fit_guides(steps=args.steps, seed=args.seed, num_particles=args.particles,
                                          logistic_scale=scale)
        seconds = time.perf_counter() - start
        names = ("logistic", "step-logistic") if scale is None else ("logistic",)
        for name in names:
            fit = result[name]
            guide = f"{name} ({label})" if name == "logistic" else name
            rows.append({
                "guide": guide,
                "params": ", ".join(f"{k} = {v:.4f}" for k, v in fit["params"].items()),
                "Pr(z>0)": fit["prob_positive"],
                "ELBO": fit["elbo"],
                "KL to posterior": fit["kl_to_posterior"],
                "seconds": seconds,
            })
        if scale is None:
            fits = result
    print(f"Toy model, x = 1: log p(x) = {log_evidence:.6f}; {args.steps} SVI steps, "
          f"{args.particles} particles, seed {args.seed} (seconds: both guides of one fit_guides call)")
    print_table(rows, ["guide", "params", "Pr(z>0)", "ELBO", "KL to posterior", "seconds"])
    print(f"Sadier-Gane (2020), Figure 5.1: the Logistic(mu, 1) guide 'places much more probability mass "
          f"over z < 0 than the true posterior' ({DISSERTATION_STEPS} iterations; no number given); "
          f"Pr(z>0 | x=1) = {EXACT.value}.")

    figure_path = save_figure(toy_posterior.posterior_figure(fits), RESULTS / "toy_posterior.png")
    results = {
        "config": vars(args),
        "log_evidence": log_evidence,
        "rows": rows,
        "figure": figure_path.name,
    }
    path = save_results("toy_posterior", results, args=args)
    print(f"wrote {path} and {figure_path}")
    return results



# ------------------------------------------------------------------------------- the results page

def _render(data: dict, figure: bool = True) -> list[str]:
    rows = []
    for row in data["rows"]:
        guide = row["guide"]
        source = number(EXACT.value, 3) if not guide.startswith("logistic") else LOGISTIC_GUIDE
        rows.append([cell(guide), cell(row.get("params")), number(row["Pr(z>0)"], 4), source,
                     number(row.get("ELBO"), 4), number(row.get("KL to posterior"), 4), number(row.get("seconds"), 1)])
    lines = table(["guide", "parameters", "Pr(z>0)", "Pr(z>0), Sadier-Gane 2020", "ELBO", "KL to posterior",
                   "seconds"], rows)
    lines.append(f"log p(x = 1) = {number(data.get('log_evidence'), 4)}. Source: {EXACT.cite}, {EXACT.where}.")
    steps = (data.get("arguments") or data.get("config") or {}).get("steps")
    if isinstance(steps, int) and steps < DISSERTATION_STEPS:
        lines.append(f"This run took {steps} SVI steps against the dissertation's {DISSERTATION_STEPS}, so its "
                     "guides may not have converged as far.")
    else:
        lines.append(f"SVI steps: {steps} (the dissertation: {DISSERTATION_STEPS}).")
    if figure and data.get("figure"):
        lines.append(f"Figure: [{data['figure']}](../benchmarks/results/{data['figure']}).")
    return lines + [""]


def _summary(data: dict) -> list[str]:
    return _render(data, figure=False)


SECTION = Section(
    "Toy posterior", "Figure 5.1 of Sadier-Gane 2020 (§5.1): the toy model's exact posterior and the Logistic "
    "and StepLogistic guides fitted to it by SVI.", _render, _summary, lambda data: (data.get("config") or {}, []),
    order=50)

if __name__ == "__main__":
    main()
