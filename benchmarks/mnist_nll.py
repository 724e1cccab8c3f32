"""Test NLL of Burda et al.'s one-stochastic-layer VAE on dynamically binarized MNIST.

Model: the ``vae/burda`` preset (Burda, Grosse & Salakhutdinov 2016, "VAE, k=1" row of Table 1:
86.76 nats after 3,280 epochs): encoder 784-200-200-(50 loc, 50 scale), decoder 50-200-200-784,
tanh, Bernoulli likelihood, decoder output bias started at the logit of the mean training image,
batch 100, Adam with eps 1e-4. It is trained with Trace_ELBO on the compiled engine for a wall-time
budget, with the learning rate decayed exponentially from 1e-3 to 1e-4 over the budget: the schedule
of a plain-PyTorch loop once measured on this machine (not in this repository), and the shape of Burda et al.'s own schedule (a decay by 10 over the run) squeezed
into the budget. No test evaluation runs during training (the anchor's loop had none either).
Then log p(x) is estimated on the 10,000 test images with K = 5000 importance samples.

    python -m benchmarks.mnist_nll --minutes 60 [--data-dir ../shared/data]    # train, then evaluate
    python -m benchmarks.mnist_nll --phase evaluate                            # evaluate the trained run

Prints a table and writes benchmarks/results/mnist_nll.json. The trained run (config, metrics, checkpoints)
is kept outside the repository, in ``--run-dir`` (default ``<cache>/benchmarks/mnist_nll<tag>``, ``<cache>``
being ``$PYROVAE_CACHE_DIR`` or ``~/.cache/pyrovae``), with a checkpoint after every epoch: a run stopped at any
moment continues with ``--resume`` (the time budget and the learning-rate schedule count the epochs already
trained); training again over it needs ``--force``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import print_table, save_results
from benchmarks.page import Section, budget_sentence, difference, images_used, number, preset_epochs, table, with_error
from pyrovae import references
from pyrovae.arguments import Parser
from pyrovae.callbacks import AdamEpsilon, Checkpoint, LearningRateSchedule, TimeBudget
from pyrovae.checkpoint import Checkpointer, CheckpointError, RunExistsError, load_weights
from pyrovae.data import cache_dir
from pyrovae.evaluate import importance_log_likelihood, mean_elbo
from pyrovae.experiment import Experiment, build
from pyrovae.train import fit

PAPER = references.get("burda2016/vae-k1")
TARGET_NLL = 87.7


def main(argv: list[str] | None = None) -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="training wall-time budget")
    parser.add_argument("--phase", choices=["both", "train", "evaluate"], default="both")
    parser.add_argument("--num-samples", type=int, default=5000, help="K for the importance-sampled NLL")
    parser.add_argument("--engine", default="compiled", choices=["module", "compiled", "svi"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids thrashing on a shared machine)")
    parser.add_argument("--eval-threads", type=int, default=2, help="torch threads for the final evaluation")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="suffix of the result file and run directory names")
    parser.add_argument("--run-dir", default=None, help="the trained run (default: <cache>/benchmarks/mnist_nll<tag>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its last epoch, within what is left of --minutes")
    parser.add_argument("--force", action="store_true", help="train again over the run in --run-dir")
    parser.add_argument("--elbo-repeats", type=int, default=4,
                        help="evaluations of the test ELBO, for its Monte Carlo standard error (at least 2)")
    args = parser.parse_args(argv)
    if args.elbo_repeats < 2:
        parser.error(f"--elbo-repeats must be at least 2 for a standard error, got {args.elbo_repeats}")
    torch.set_num_threads(args.threads)

    experiment = Experiment.resolve({"model": "vae", "preset": "burda", "seed": args.seed, "engine": args.engine})
    train, test, model, guide, objective = build(experiment, args.data_dir)
    run_dir = Path(args.run_dir) if args.run_dir else cache_dir() / "benchmarks" / f"mnist_nll{args.tag}"
    budget = args.minutes * 60

    if args.phase in ("both", "train"):
        def schedule(epoch, seconds):
            return 1e-3 * 10 ** (-min(seconds / budget, 1.0))

        config = {**experiment.to_dict(), "benchmark": "mnist_nll", "minutes": args.minutes}
        try:
            fit(model, guide, objective, train, epochs=100_000, batch_size=experiment.run.batch_size,
                lr=experiment.run.lr, seed=args.seed, engine=args.engine,
                callbacks=[AdamEpsilon(experiment.run.adam_eps), LearningRateSchedule(schedule), TimeBudget(budget),
                           Checkpoint(run_dir, resume=args.resume, overwrite=args.force, config=config)])
        except RunExistsError:
            parser.error(f"{run_dir} already holds a trained run: --phase evaluate evaluates it, --resume continues it, "
                         "--force trains again over it")
        if args.phase == "train":
            return

    try:
        checkpoint = Checkpointer(run_dir).load()
    except CheckpointError as error:
        parser.error(f"{error}: train first (--phase train or both) or name the run with --run-dir")
    load_weights(checkpoint, model, guide, run_dir)
    model.eval(), guide.eval()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    trained = json.loads((run_dir / "config.json").read_text())
    torch.set_num_threads(args.eval_threads)
    # One particle per image, evaluated --elbo-repeats times: their mean and its Monte Carlo standard error.
    elbos = [mean_elbo(model, guide, test) for _ in range(args.elbo_repeats)]
    elbo, elbo_error = statistics.fmean(elbos), statistics.stdev(elbos) / len(elbos) ** 0.5
    began = time.perf_counter()
    # 100 samples of 50 images per pass (the function's default): 5,000 decoder rows keep each intermediate
    # near 16 MB; 1,000 samples per pass (50,000 rows) took 1.65x as long (26.7 against 16.2 minutes per
    # 10,000 images on one thread of this machine, python -m benchmarks.evaluation_speed).
    nll = -importance_log_likelihood(model, guide, test, args.num_samples, chunk_size=100, batch_size=50)
    eval_seconds = time.perf_counter() - began
    row = {
        "epochs": checkpoint["epoch"],
        "train_minutes": sum(r["seconds"] for r in rows) / 60,
        "engine": args.engine,
        "test_elbo": elbo,
        "test_elbo_error": elbo_error,
        "test_nll": nll,
        "paper_nll": PAPER.value,
        "eval_minutes": eval_seconds / 60,
        "K": args.num_samples,
        "test_images": len(test),
        "target_met": nll <= TARGET_NLL,
    }
    print_table([row], list(row))
    path = save_results(f"mnist_nll{args.tag}", {**row, "target_nll": TARGET_NLL, "threads": args.threads,
                                                 "eval_threads": args.eval_threads, "preset": "vae/burda",
                                                 "final_train_loss": rows[-1]["train_loss"]},
                        # The command that reproduces the whole result: train with the run's own budget, then evaluate.
                        args={**vars(args), "phase": "both", "minutes": trained.get("minutes", args.minutes)})
    print(f"wrote {path}")


def _render(data: dict) -> list[str]:
    epochs, source_epochs = data["epochs"], preset_epochs("vae", "burda")
    rows = [
        ["test NLL (nats, lower is better)", number(data["test_nll"]),
         f"{number(PAPER.value)} ({PAPER.cite}, {PAPER.where})", difference(data["test_nll"], PAPER.value)],
        ["target NLL", number(data.get("target_nll")), "-", "met" if data.get("target_met") else "not met"],
        ["test ELBO (nats)", with_error(data.get("test_elbo"), data.get("test_elbo_error")), "-", "-"],
        ["epochs", number(epochs), number(source_epochs), "-"],
        ["training minutes", number(data.get("train_minutes"), 1), "-", "-"],
        [f"minutes of the K = {data.get('K')} evaluation on {data.get('eval_threads')} threads",
         number(data.get("eval_minutes"), 1), "-", "-"],
    ]
    images = images_used(data) if "test_images" in data else "the 10,000 test images (the count is not recorded)"
    return [*table(["quantity", "pyrovae", "source", "difference"], rows),
            f"Importance-sampled with K = {data.get('K')} on {images}. Trained on {data.get('threads')} thread(s) "
            f"with the {data.get('engine')} engine. " + budget_sentence(epochs, source_epochs, PAPER.cite), ""]


def _summary(data: dict) -> list[str]:
    return [f"`vae/burda`, test NLL **{number(data['test_nll'])} nats** (K = {data.get('K')}, "
            + (images_used(data) if "test_images" in data else "10,000 test images")
            + f"; test ELBO {with_error(data.get('test_elbo'), data.get('test_elbo_error'))}) after {data['epochs']} epochs in "
            f"{number(data.get('train_minutes'), 1)} training minutes; {PAPER.cite}: {number(PAPER.value)} after "
            f"{PAPER.epochs:,} epochs. Its evaluation took {number(data.get('eval_minutes'), 1)} minutes on "
            f"{data.get('eval_threads')} threads.", ""]


def _arguments(data: dict) -> tuple[dict, list[str]]:
    return ({"engine": data.get("engine"), "num_samples": data.get("K"), "threads": data.get("threads"),
             "eval_threads": data.get("eval_threads")}, ["`--minutes` (the training budget)"])


SECTION = Section(
    "MNIST test NLL", "Test negative log-likelihood (nats) of Burda et al. (2016)'s one-stochastic-layer VAE "
    "(`vae/burda`: 784-200-200-50, tanh) on dynamically binarized MNIST, importance-sampled on the 10,000 test "
    "images, after a wall-time training budget.", _render, _summary, _arguments, order=10)

if __name__ == "__main__":
    main()
