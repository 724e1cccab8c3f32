"""Every way pyrovae trains Bernoulli latents, on the setting of the ARM and REBAR papers, beside their numbers.

Statically binarized MNIST (Larochelle & Murray 2011), 200 Bernoulli latents in one stochastic layer,
a linear model (784-200 encoder and decoder) and a nonlinear one (two hidden layers of 200 tanh units
in the encoder and the decoder): presets ``bernoulli-vae/arm-linear`` and ``arm-nonlinear``, batch 50,
Adam. For each relaxation or estimator (``--relaxation`` of :class:`pyrovae.models.BernoulliVAE`),
trained with the same budget (``--epochs``, ``--lr``), this reports for the *discrete* model every
relaxation stands for:

* ``true_bound``: the test ELBO with hard latents (:class:`pyrovae.infer.TrueDiscreteBound`, nats);
* ``nll``: test -log p(x), importance-sampled with hard latents from the guide's Bernoulli
  (``--nll-samples`` proposals on the first ``--nll-examples`` test images), and the true bound on
  those images (100 particles), for comparison;
* ``encoder_snr`` / ``encoder_variance``: mean per-element SNR and variance of the guide's gradient
  over ``--draws`` redraws on one training batch of 50 (:func:`pyrovae.infer.gradient_statistics`;
  the encoder only: ``reinforce``'s NVIL baseline network is held fixed);
* ``ms_per_step`` (median over epochs of seconds per epoch / steps) and the epochs trained.

Anchors: test -log p(x) from Yin & Zhou 2019 (ARM), Table 2, trained to convergence (about 1,000s
of epochs); the budget here is far smaller, and the table says so.

    python -m benchmarks.discrete_estimators [--epochs 5] [--models linear nonlinear] [--relaxations ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import finished_runs, print_table, save_results
from pyrovae.checkpoint import TrainingDivergedError
from pyrovae.evaluate import importance_log_likelihood, mean_elbo
from pyrovae.experiment import Experiment, build
from pyrovae.infer import TrueDiscreteBound, gradient_statistics
from pyrovae.infer.discrete_bound import Discretized
from pyrovae.registry import get
from pyrovae.relaxations import RELAXATIONS
from pyrovae.train import fit

#: Yin & Zhou 2019, Table 2: test -log p(x) (nats) on statically binarized MNIST.
ANCHORS = {
    "linear": {"REINFORCE": 164.0, "NVIL": 113.1, "Concrete": 107.3, "REBAR": 107.7, "ARM": 107.2},
    "nonlinear": {"REINFORCE": 114.6, "NVIL": 102.2, "MuProp": 99.1, "Concrete": 99.6, "REBAR": 101.4, "ARM": 98.4},
}
#: The paper's row each of ours corresponds to (DisARM improves on ARM with the same two evaluations).
PAPER_ROW = {"reinforce": "NVIL", "concrete": "Concrete", "disarm": "ARM"}
PRESETS = {"linear": "arm-linear", "nonlinear": "arm-nonlinear"}


def encoder_gradient_statistics(model, guide, objective, batch, draws: int) -> dict:
    """Gradient statistics of the guide's encoder (the NVIL baseline network, if any, held fixed)."""
    baseline = list(guide.baseline.parameters()) if guide.baseline is not None else []
    for parameter in baseline:
        parameter.requires_grad_(False)
    try:
        return gradient_statistics(model, guide, objective, batch, draws).summary()["guide"]
    finally:
        for parameter in baseline:
            parameter.requires_grad_(True)


def run_one(architecture: str, relaxation: str, args) -> dict:
    settings = {"model": "bernoulli-vae", "preset": PRESETS[architecture], "relaxation": relaxation,
                "epochs": args.epochs, "lr": args.lr, "seed": args.seed}
    if RELAXATIONS[relaxation].objective == "variance":
        settings["num_particles"] = 2
    experiment = Experiment.resolve(settings)
    train, test, model, guide, objective = build(experiment, args.data_dir)
    callbacks = get("bernoulli-vae").training_callbacks(experiment.model, model, guide, test)
    start = time.perf_counter()
    try:
        history = fit(model, guide, objective, train, test, epochs=args.epochs, batch_size=experiment.run.batch_size,
                      lr=args.lr, seed=args.seed, engine="module", callbacks=callbacks)
    except TrainingDivergedError as error:
        return {"model": architecture, "relaxation": relaxation, "objective": experiment.run.objective,
                "epochs": 0, "diverged": str(error), "paper": PAPER_ROW.get(relaxation),
                "paper_nll": ANCHORS[architecture].get(PAPER_ROW.get(relaxation))}
    minutes = (time.perf_counter() - start) / 60
    steps = -(-len(train) // experiment.run.batch_size)
    model.eval(), guide.eval()
    subset = test.subset(args.nll_examples)
    nll = -importance_log_likelihood(Discretized(model), Discretized(guide), subset,
                                     num_samples=args.nll_samples, engine="eager")
    subset_bound = mean_elbo(model, guide, subset, TrueDiscreteBound(num_particles=100, max_plate_nesting=1))
    stats = encoder_gradient_statistics(model, guide, objective, (train.x[: experiment.run.batch_size],), args.draws)
    last = history.rows[-1]
    paper = PAPER_ROW.get(relaxation)
    return {
        "model": architecture, "relaxation": relaxation, "objective": experiment.run.objective,
        "epochs": len(history.rows), "minutes": minutes, "nll_budget": f"K={args.nll_samples}, first {len(subset)} test images",
        "ms_per_step": 1e3 * statistics.median(row["seconds"] for row in history.rows) / steps,
        "train_objective": -last["train_loss"], "test_objective": last["test_elbo"],
        "true_bound": last["true_bound"], "nll": nll, "nll_subset_true_bound": subset_bound,
        "encoder_snr": stats["mean_snr"], "encoder_variance": stats["mean_variance"],
        "paper": paper, "paper_nll": ANCHORS[architecture].get(paper),
        "curve": [{k: row[k] for k in ("epoch", "train_loss", "test_elbo", "true_bound")} for row in history.rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--relaxations", nargs="+", default=list(RELAXATIONS), choices=list(RELAXATIONS))
    parser.add_argument("--nll-samples", type=int, default=5000)
    parser.add_argument("--nll-examples", type=int, default=500)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", default="discrete_estimators", help="results/<name>.json")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in the output file and skip them")
    parser.add_argument("--retry-diverged", action="store_true", help="with --resume, run the diverged runs again")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    selected = lambda r: r["model"] in args.models and r["relaxation"] in args.relaxations  # noqa: E731
    rows = finished_runs(args.output, "rows", lambda r: args.retry_diverged and "diverged" in r and selected(r)) \
        if args.resume else []
    for architecture in args.models:
        for relaxation in args.relaxations:
            if any(r["model"] == architecture and r["relaxation"] == relaxation for r in rows):
                continue
            rows.append(run_one(architecture, relaxation, args))
            print_table(rows[-1:], COLUMNS)
            save_results(args.output, {"rows": rows, "anchors": ANCHORS, "budget": vars(args), "command": COMMAND})
    print()
    print_table(rows, COLUMNS)
    path = save_results(args.output, {"rows": rows, "anchors": ANCHORS, "budget": vars(args), "command": COMMAND})
    print(f"wrote {path}")


COLUMNS = ["model", "relaxation", "diverged", "epochs", "true_bound", "nll_subset_true_bound", "nll", "paper", "paper_nll", "encoder_snr",
           "encoder_variance", "ms_per_step", "minutes"]
COMMAND = "python -m benchmarks.discrete_estimators"

if __name__ == "__main__":
    main()
