"""Test NLL of Burda et al.'s one-stochastic-layer VAE on dynamically binarized MNIST.

Model: the ``vae/burda`` preset (Burda, Grosse & Salakhutdinov 2016, "VAE, k=1" row of Table 1:
86.76 nats): encoder 784-200-200-(50 loc, 50 scale), decoder 50-200-200-784, tanh, Bernoulli
likelihood, decoder output bias started at the logit of the mean training image, trained with Trace_ELBO by pyrovae's default training path for a wall-time budget, with the learning
rate decayed from 1e-3 to 1e-4 over the budget (their schedule decays by 10 over 3,280 epochs).
Then log p(x) is estimated on the 10,000 test images with K = 5000 importance samples.

    python -m benchmarks.mnist_nll --minutes 60 [--data-dir ../shared/data]

Prints a table and writes benchmarks/results/mnist_nll.json (and the run directory).
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import RESULTS, print_table, save_results
from pyrovae.evaluate import importance_log_likelihood, mean_elbo
from pyrovae.experiment import Experiment, build
from pyrovae.train import fit

PAPER_NLL = 86.76


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="training wall-time budget")
    parser.add_argument("--num-samples", type=int, default=5000, help="K for the importance-sampled NLL")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids thrashing on a shared machine)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="suffix of the result file and run directory names")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    experiment = Experiment.resolve({"model": "vae", "preset": "burda", "batch_size": args.batch_size, "seed": args.seed})
    train, test, model, guide, objective = build(experiment, args.data_dir)
    budget = args.minutes * 60

    def schedule(epoch, seconds):
        return 1e-3 * 10 ** (-min(seconds / budget, 1.0))

    run_dir = RESULTS / f"mnist_nll{args.tag}_run"
    history = fit(model, guide, objective, train, epochs=100_000, batch_size=args.batch_size, lr=1e-3,
                  seed=args.seed, run_dir=run_dir, overwrite=True, max_seconds=budget, lr_schedule=schedule,
                  progress=False, config={**experiment.to_dict(), "benchmark": "mnist_nll", "minutes": args.minutes})
    train_seconds = sum(history.column("seconds"))
    began = time.perf_counter()
    elbo = mean_elbo(model, guide, test)
    nll = -importance_log_likelihood(model, guide, test, args.num_samples, chunk_size=1000, batch_size=50)
    eval_seconds = time.perf_counter() - began
    row = {
        "epochs": len(history.rows),
        "train_minutes": train_seconds / 60,
        "test_elbo": elbo,
        "test_nll": nll,
        "paper_nll": PAPER_NLL,
        "gap_to_paper": nll - PAPER_NLL,
        "eval_minutes": eval_seconds / 60,
        "K": args.num_samples,
        "target_met": nll <= 88.0,
    }
    print_table([row], list(row))
    path = save_results(f"mnist_nll{args.tag}", {**row, "batch_size": args.batch_size, "threads": args.threads,
                                      "final_train_loss": history.rows[-1]["train_loss"]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
