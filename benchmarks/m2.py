"""Semi-supervised MNIST with M2 (Kingma et al. 2014): test accuracy with 100, 600, 1,000 and 3,000
labels, beside Kingma et al.'s Table 1 and Pyro's SS-VAE tutorial.

Each preset ``m2/labels-N`` is trained exactly as ``pyrovae train --model m2 --preset labels-N`` does
(its labelled subset, network, objective and optimiser), to the preset's epoch budget or ``--epochs``,
with a checkpoint after every epoch in ``--runs`` (default: ``$PYROVAE_CACHE_DIR/benchmarks/m2``, outside
the repository). A run stopped for any reason continues from its last epoch with ``--resume``. Each
row records the epochs done out of the budget, the test accuracy of ``argmax q(y | x)`` per epoch, the
final accuracy of the model's own classification through ``infer_discrete``
(:func:`pyrovae.classification.model_accuracy`), the test ELBO with ``y`` summed out, and both references.

``--baselines`` trains nothing of M2: for each preset it trains the preset's classifier network on the
labelled examples alone (:func:`pyrovae.classification.labels_alone_accuracy`, ``--baseline-steps``
minibatches) and records its test accuracy, the supervised baseline M2 must beat.

    python -m benchmarks.m2 [--presets labels-100 ...] [--epochs N] [--device cuda] [--resume]
    python -m benchmarks.m2 --baselines [--baseline-steps 3000]

Writes benchmarks/results/m2.json (the rows of presets run earlier are kept).
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import torch

from benchmarks.common import RESULTS, machine, print_table
from benchmarks.page import Section, cell, difference, number, table
from pyrovae import references, registry
from pyrovae.arguments import Parser
from pyrovae.callbacks import AdamEpsilon, Checkpoint, TimeBudget
from pyrovae.checkpoint import holds_run
from pyrovae.classification import classification_accuracy, labels_alone_accuracy, model_accuracy
from pyrovae.data import cache_dir
from pyrovae.experiment import Experiment, build
from pyrovae.io import write_json
from pyrovae.models.m2 import LABEL_COUNTS, MNIST_TRAINING_IMAGES, PYRO_EXAMPLE_WEIGHT
from pyrovae.train import fit

NAME = "m2"
PRESETS = [name for name in registry.get(NAME).presets if name.startswith("labels-")]


def command(args) -> str:
    """The command that reproduces this invocation, every argument written out."""
    options = ["--presets", *args.presets, "--seed", str(args.seed), "--device", args.device, "--runs", str(args.runs),
               "--threads", str(args.threads)]
    options += ["--epochs", str(args.epochs)] if args.epochs else []
    options += ["--data-dir", args.data_dir] if args.data_dir else []
    options += ["--max-minutes", str(args.max_minutes)] if args.max_minutes else []
    return "python -m benchmarks.m2 " + shlex.join(options + (["--resume"] if args.resume else []))


def run_directory(preset: str, args) -> Path:
    return Path(args.runs) / f"{preset}-seed{args.seed}"


def run_preset(preset: str, args) -> dict:
    settings = {"model": NAME, "preset": preset, "seed": args.seed, "device": args.device}
    experiment = Experiment.resolve(settings)
    train, test, model, guide, objective = build(experiment, args.data_dir)
    run, budget = experiment.run, experiment.run.epochs
    epochs = min(args.epochs or budget, budget)
    run_dir = run_directory(preset, args)
    resume = args.resume and (run_dir / "checkpoint.pt").exists()
    began = time.perf_counter()
    callbacks = experiment.entry.training_callbacks(experiment.model, model, guide, test)
    time_budget = [TimeBudget(args.max_minutes * 60, per_call=True)] if args.max_minutes else []
    history = fit(model, guide, objective, train, test, epochs=epochs, batch_size=run.batch_size, lr=run.lr,
                  seed=run.seed, engine=run.engine, device=args.device,
                  callbacks=[*callbacks, AdamEpsilon(run.adam_eps), *time_budget,
                             Checkpoint(run_dir, resume=resume, config=experiment.to_dict())])
    model.eval(), guide.eval()
    test = test.to(next(model.parameters()).device)
    last = history.rows[-1]
    return {
        "preset": preset, "labels": experiment.model.labels, "seed": args.seed,
        "epochs_done": history.epochs_done, "epoch_budget": budget,
        "test_accuracy": classification_accuracy(guide, test),
        "model_accuracy": model_accuracy(model, guide, test),
        "test_elbo": last["test_elbo"],
        "minutes_this_call": (time.perf_counter() - began) / 60,
        "run_dir": str(run_dir), "settings": experiment.to_dict(), "curve": history.rows,
    }


def baseline(preset: str, args) -> dict:
    """The preset's classifier network trained on its labelled examples alone: test accuracy and settings."""
    experiment = Experiment.resolve({"model": NAME, "preset": preset, "seed": args.seed})
    train, test, _, guide, _ = build(experiment, args.data_dir)
    accuracy = labels_alone_accuracy(guide, train, test, steps=args.baseline_steps, lr=experiment.run.lr,
                                     batch_size=experiment.run.batch_size, seed=args.seed)
    return {"accuracy": accuracy, "steps": args.baseline_steps, "lr": experiment.run.lr,
            "batch_size": experiment.run.batch_size, "labels": experiment.model.labels, "seed": args.seed,
            "command": "python -m benchmarks.m2 " + shlex.join(
                ["--baselines", "--presets", preset, "--baseline-steps", str(args.baseline_steps), "--seed", str(args.seed)])}


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS)
    parser.add_argument("--epochs", type=int, default=None, help="stop at this epoch (default: the preset's budget)")
    parser.add_argument("--max-minutes", type=float, default=None, help="training time per preset in this call")
    parser.add_argument("--resume", action="store_true", help="continue each run from its last checkpoint")
    parser.add_argument("--runs", default=str(cache_dir() / "benchmarks" / NAME), help="folder of the run directories")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baselines", action="store_true",
                        help="train only each preset's classifier on its labels alone (the supervised baseline)")
    parser.add_argument("--baseline-steps", type=int, default=3000, help="minibatches of the labels-alone baseline")
    args = parser.parse_args()
    if args.baseline_steps < 1:
        parser.error(f"--baseline-steps must be at least 1, got {args.baseline_steps}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    if args.baselines:
        return save_baselines(args)
    existing = [str(run_directory(p, args)) for p in args.presets if holds_run(run_directory(p, args))]
    if existing and not args.resume:
        parser.error(f"{', '.join(existing)} already hold runs: pass --resume to continue them, or remove them")
    torch.set_num_threads(args.threads)
    path = RESULTS / f"{NAME}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    rows = data.get("rows", [])
    columns = ["preset", "epochs_done", "epoch_budget", "test_accuracy", "model_accuracy"]
    for preset in args.presets:
        row = run_preset(preset, args)
        row["command"] = command(args)
        rows = [r for r in rows if (r["preset"], r["seed"]) != (preset, args.seed)] + [row]
        print_table([row], columns)
        # After every preset, so that a call stopped later keeps the finished ones.
        write_json(path, {**data, "rows": rows, "command": row["command"], "machine": machine(args.device)})
    print_table(rows, columns)
    print(f"wrote {path}")


def save_baselines(args) -> None:
    """Compute the labels-alone baseline of each selected preset into ``m2.json``'s ``baselines``."""
    torch.set_num_threads(args.threads)
    path = RESULTS / f"{NAME}.json"
    data = json.loads(path.read_text()) if path.exists() else {"rows": []}
    baselines = data.setdefault("baselines", {})
    for preset in args.presets:
        baselines[f"{preset}-seed{args.seed}"] = found = baseline(preset, args)
        print(f"{preset}: labels alone, test accuracy {found['accuracy']:.4f}")
        write_json(path, data)
    print(f"wrote {path}")


# ------------------------------------------------------------------------------- the results page

def kingma_accuracy(labels: int) -> float:
    """Kingma et al. 2014, Table 1's test error for ``labels`` labels, as an accuracy."""
    return 1 - references.get(f"kingma2014/m2-{labels}").value / 100


def _baseline(data: dict, row: dict) -> dict:
    """The labels-alone baseline of a row's labelled subset: the same for ``labels-N`` and ``labels-N-pyro-weight``
    (the classification weight is not part of it)."""
    return data.get("baselines", {}).get(f"labels-{row['labels']}-seed{row['seed']}", {})


def tutorial_baseline(labels: int) -> float:
    """The Pyro SS-VAE tutorial's Table 1 "Baseline classifier" accuracy for ``labels`` labels."""
    return references.get(f"pyro-ssvae/baseline-{labels}").value


def _render(data: dict) -> list[str]:
    rows, short = [], []
    for row in sorted(data["rows"], key=lambda r: (r["labels"], r["preset"], r["seed"])):
        kingma, pyro_tutorial = kingma_accuracy(row["labels"]), references.get(f"pyro-ssvae/m2-{row['labels']}").value
        alone = _baseline(data, row).get("accuracy")
        rows.append([f"`{row['preset']}`", number(row["labels"], 0), number(row["seed"], 0),
                     f"{number(row['epochs_done'], 0)} of {number(row['epoch_budget'], 0)}",
                     number(row["test_accuracy"], 4), number(row.get("model_accuracy"), 4), number(alone, 4),
                     number(tutorial_baseline(row["labels"]), 4), number(kingma, 4),
                     difference(row["test_accuracy"], kingma, 4), number(pyro_tutorial, 4),
                     number(row.get("test_elbo")), f"`{cell(row['command'])}`"])
        if row["epochs_done"] < row["epoch_budget"]:
            short.append(f"`m2/{row['preset']}` (seed {row['seed']})")
    trained = {f"{row['preset']}-seed{row['seed']}" for row in data["rows"]}
    for key, alone in sorted(data.get("baselines", {}).items(), key=lambda item: (item[1]["labels"], item[1]["seed"])):
        if key not in trained:
            kingma = kingma_accuracy(alone["labels"])
            rows.append([f"`{key.rsplit('-seed', 1)[0]}`", number(alone["labels"], 0), number(alone["seed"], 0),
                         "not run", "-", "-",
                         number(alone["accuracy"], 4), number(tutorial_baseline(alone["labels"]), 4), number(kingma, 4), "-",
                         number(references.get(f"pyro-ssvae/m2-{alone['labels']}").value, 4), "-", "-"])
    lines = table(["preset", "labels", "seed", "epochs done (of the preset's)", "test accuracy, argmax q(y|x)",
                   "accuracy through infer_discrete", "same classifier, labels alone",
                   "Pyro SS-VAE tutorial's baseline classifier",
                   "Kingma et al. 2014, Table 1 (1 - test error)", "difference",
                   "Pyro SS-VAE tutorial", "test ELBO, y summed out", "command"], rows)
    if short:
        lines += [f"Not yet at their presets' epoch budgets (they continue with `--resume`): {', '.join(short)}.", ""]
    return lines + _weight_note() + _baseline_note(data)


def _weight_note() -> list[str]:
    paper_alpha = registry.preset(NAME, f"labels-{LABEL_COUNTS[0]}")["alpha"]
    per_example = {labels: paper_alpha * MNIST_TRAINING_IMAGES / labels for labels in (LABEL_COUNTS[0], LABEL_COUNTS[-1])}
    return [f"`labels-N` weighs the classification term as Kingma et al. 2014 do, alpha = {paper_alpha:g} N "
            f"({paper_alpha:g} N / N_l per labelled example: "
            + ", ".join(f"{weight:g} with {labels:,} labels" for labels, weight in per_example.items())
            + "); `labels-N-pyro-weight` weighs it "
            f"{PYRO_EXAMPLE_WEIGHT} per labelled example, the Pyro SS-VAE example's `--aux-loss-multiplier` (chosen by "
            "validation accuracy for the tutorial), everything else equal.", ""]


def _baseline_note(data: dict) -> list[str]:
    """What the labels-alone column is, and each row whose M2 classifier does worse than it."""
    baselines = data.get("baselines", {})
    if not baselines:
        return []
    some = next(iter(baselines.values()))
    lines = [f"Labels alone: the preset's classifier network trained on its labelled examples only ({some['steps']:,} "
             f"Adam steps at {some['lr']:g}, batches of {some['batch_size']}; accuracy after the last step): the kind "
             "of supervised baseline Kingma et al. 2014 compare with (their NN row), and the Pyro SS-VAE tutorial's "
             "baseline classifier (Table 1; its M2 column comes with the weight of the classification term chosen by "
             f"validation accuracy, and both are means over five labelled subsets). Command: `{some['command']}` (per preset)."]
    worse = [row for row in sorted(data["rows"], key=lambda r: (r["labels"], r["preset"], r["seed"]))
             if isinstance(_baseline(data, row).get("accuracy"), float)
             and row["test_accuracy"] < _baseline(data, row)["accuracy"]]
    for row in worse:
        lines.append(f"`{row['preset']}`: M2's q(y | x) ({number(row['test_accuracy'], 4)}) is *less* accurate than the "
                     f"same network trained on the {row['labels']} labels alone ({number(_baseline(data, row)['accuracy'], 4)}): "
                     "the unlabelled term pulls the classifier toward the generative model's own posterior over y, whose "
                     f"accuracy through infer_discrete is {number(row.get('model_accuracy'), 4)}, instead of adding to "
                     "what the labels teach it.")
    return [" ".join(lines[:1]), "", *[f"- {line}" for line in lines[1:]], *([""] if len(lines) > 1 else [])]


SECTION = Section(
    "Semi-supervised MNIST (M2)", "Test accuracy of M2 (Kingma et al. 2014) with 100, 600, 1,000 and 3,000 labels on "
    "MNIST (`m2/labels-N`), beside Kingma et al. 2014, Table 1, and the Pyro SS-VAE tutorial "
    "(`pyrovae/references.json`).", _render, order=30, per_row_commands=True)

if __name__ == "__main__":
    main()
