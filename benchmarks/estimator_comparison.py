"""Gradient estimators compared on one VAE (Stojanovič, variance-loss report, §3): variance, signal-to-noise ratio and cost.

A VAE (the ``vae/digits`` preset with 64 hidden units: 64-64-8, Bernoulli) is trained briefly on the bundled digits with Trace_ELBO; then, on one
fixed batch of 100 images, each objective's gradient is redrawn ``--draws`` times and
:func:`pyrovae.infer.gradient_statistics` reports, per parameter group, the mean gradient variance
and the mean per-element SNR |E g| / sd(g), with the wall time of one draw. Objectives use the same
number of samples per data point (``--particles``), so cost and noise compare like for like.

    python -m benchmarks.estimator_comparison [--draws 200] [--particles 8]
"""

from __future__ import annotations

import torch
from pyro.infer import Trace_ELBO

from benchmarks.common import print_table, save_results
from benchmarks.page import Section, cell, number, table
from pyrovae.arguments import Parser
from pyrovae.experiment import Experiment, build
from pyrovae.infer import ImportanceWeightedELBO, LogVarianceELBO, VarianceELBO, gradient_statistics
from pyrovae.train import fit


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--particles", type=int, default=8)
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    experiment = Experiment.resolve({"model": "vae", "preset": "digits", "binarize": "static", "hidden_sizes": [64]})
    train, _, model, guide, objective = build(experiment)
    fit(model, guide, objective, train, epochs=args.pretrain_epochs, batch_size=64, lr=3e-3)
    batch = train.x[:100]
    s = args.particles
    nesting = {"max_plate_nesting": model.max_plate_nesting}  # declared, so Pyro need not guess (and log) it
    objectives = {
        f"Trace_ELBO (S={s})": Trace_ELBO(num_particles=s, vectorize_particles=True, **nesting),
        f"IWAE (K={s})": ImportanceWeightedELBO(num_particles=s, **nesting),
        f"IWAE-DReG (K={s})": ImportanceWeightedELBO(num_particles=s, estimator="dreg", **nesting),
        f"VarianceELBO (S={s})": VarianceELBO(num_particles=s, **nesting),
        f"LogVarianceELBO (S={s})": LogVarianceELBO(num_particles=s, **nesting),
    }
    rows = []
    for name, objective in objectives.items():
        stats = gradient_statistics(model, guide, objective, batch, args.draws).summary()
        rows.append({
            "objective": name,
            "guide_snr": stats["guide"]["mean_snr"],
            "guide_median_snr": stats["guide"]["median_snr"],
            "guide_variance": stats["guide"]["mean_variance"],
            "model_snr": stats["model"]["mean_snr"],
            "model_median_snr": stats["model"]["median_snr"],
            "model_variance": stats["model"]["mean_variance"],
            "ms_per_draw": stats["seconds_per_draw"] * 1e3,
        })
    print_table(rows, list(rows[0]))
    path = save_results("estimator_comparison", {"rows": rows, "draws": args.draws, "particles": s,
                                                 "pretrain_epochs": args.pretrain_epochs}, args=args)
    print(f"wrote {path}")


# ------------------------------------------------------------------------------- the results page

def _render(data: dict) -> list[str]:
    rows = [[cell(row["objective"]), number(row["guide_snr"], 3), number(row.get("guide_median_snr"), 3),
             number(row.get("guide_variance"), 3), number(row["model_snr"], 3), number(row.get("model_median_snr"), 3),
             number(row.get("model_variance"), 3), number(row.get("ms_per_draw"), 1)] for row in data["rows"]]
    return [*table(["objective", "guide SNR", "guide median SNR", "guide grad. variance", "model SNR",
                    "model median SNR", "model grad. variance", "ms per draw"], rows),
            f"{data.get('draws')} gradient draws, {data.get('particles')} samples per data point, after "
            f"{data.get('pretrain_epochs')} epochs of Trace_ELBO. No source value: Stojanovič n.d. (§3) plans this "
            "comparison but reports no numbers.", ""]


def _arguments(data: dict) -> tuple[dict, list[str]]:
    return ({"draws": data.get("draws"), "particles": data.get("particles"),
             "pretrain_epochs": data.get("pretrain_epochs")}, ["`--threads`"])


SECTION = Section(
    "Gradient estimators", "Gradient variance, signal-to-noise ratio and cost of each objective on one VAE "
    "(`vae/digits` with 64 hidden units) and one batch of 100 digits.", _render, arguments=_arguments, order=60)


if __name__ == "__main__":
    main()
