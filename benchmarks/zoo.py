"""Every registered model's reference preset, trained for a stated budget, beside its published number.

A model registers, per preset, the number it reproduces (``references`` in
:func:`pyrovae.registry.register_model`: the metric, its value and where it comes from). This script
builds each such preset exactly as ``pyrovae train --model M --preset P`` does, trains it with the
preset's own settings for at most ``--minutes`` of training (or the preset's epochs, whichever comes
first), and reports the metric of the last epoch beside the reference, with the epochs and minutes
it got: a number far from the paper's after a short budget says so in its row.

    python -m benchmarks.zoo --minutes 10 [--models cvae gmvae] [--data-dir ../shared/data]

Prints a table and writes benchmarks/results/zoo.json.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import print_table, save_results
from pyrovae import registry
from pyrovae.callbacks import AdamEpsilon, TimeBudget
from pyrovae.experiment import Experiment, build
from pyrovae.train import fit


def run_reference(model: str, preset: str, reference: dict, minutes: float, data_dir, seed: int) -> dict:
    experiment = Experiment.resolve({"model": model, "preset": preset, "seed": seed})
    train, test, model_module, guide, objective = build(experiment, data_dir)
    run = experiment.run
    began = time.perf_counter()
    # The model's own logging (factor analysis's exact evidence, the GMVAE's cluster accuracy), as in the CLI.
    callbacks = registry.get(model).training_callbacks(experiment.model, model_module, guide, test)
    history = fit(model_module, guide, objective, train, test, epochs=run.epochs, batch_size=run.batch_size,
                  lr=run.lr, seed=seed, engine=run.engine,
                  callbacks=[*callbacks, AdamEpsilon(run.adam_eps), TimeBudget(minutes * 60)])
    last = history.rows[-1]
    return {
        "model": model, "preset": preset, "metric": reference["metric"],
        "pyrovae": last.get(reference["metric"]), "reference": reference["value"], "source": reference["source"],
        "epochs": last["epoch"], "preset_epochs": run.epochs, "minutes": (time.perf_counter() - began) / 60,
        "command": f"pyrovae train --model {model} --preset {preset} --epochs {last['epoch']}",
        "last_epoch": last, "curve": history.rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per reference run")
    parser.add_argument("--models", nargs="+", default=None, help="models to run (default: every model with a reference)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    entries = registry.models()
    names = args.models or sorted(name for name, entry in entries.items() if entry.references)
    rows = []
    for name in names:
        for preset, reference in registry.get(name).references.items():
            rows.append(run_reference(name, preset, reference, args.minutes, args.data_dir, args.seed))
            print_table(rows[-1:], ["model", "preset", "metric", "pyrovae", "reference", "epochs", "minutes"])
            # After every run, so that a run stopped later keeps the finished ones.
            save_results("zoo", {"rows": rows, "minutes_per_run": args.minutes, "threads": args.threads})
    print_table(rows, ["model", "preset", "metric", "pyrovae", "reference", "epochs", "minutes", "source"])
    path = save_results("zoo", {"rows": rows, "minutes_per_run": args.minutes, "threads": args.threads})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
