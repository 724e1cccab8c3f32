"""Every registered model's reference preset, trained to its budget, beside its published number.

A model registers, per preset, the number it reproduces (``references`` in
:func:`pyrovae.registry.register_model`: the metric, its value and where it comes from). This script
builds each such preset exactly as ``pyrovae train --model M --preset P`` does, trains it with the
preset's own settings for the preset's epochs (``--epochs`` caps them, ``--minutes`` caps the
training time), and reports the metric of the last epoch beside the reference, with the epochs and
minutes it got: a number far from the paper's after a short budget says so in its row. A test ELBO
(one sample of each continuous latent per image) comes with its Monte Carlo error: after training, the
test ELBO is evaluated ``--elbo-repeats`` more times with fresh noise, and the row records the standard
deviation of those passes, the error of the one pass the epoch's number is.

Long runs survive an interruption: the JSON gets each run's row after every epoch, and every run keeps a run directory (config, metrics and the two
newest checkpoints, written each epoch) under ``--runs-dir`` (default
``$PYROVAE_CACHE_DIR/benchmarks/zoo``, else ``~/.cache/pyrovae/benchmarks/zoo``), outside the
repository. Stop the script at any moment; ``--resume`` continues every selected run from its last
finished epoch, with the weights, optimizer and random states it would have had, and keeps the
rows of the other runs already in the JSON. A run of several hours is a series of shorter ones. A
row that already has its epochs is kept without training again; a run whose directory is gone (a
new machine) starts again from epoch 1, and the JSON keeps its further row until the new run passes it.

    python -m benchmarks.zoo --models cvae vrnn [--set reparameterize=false] [--resume] [--data-dir ../shared/data]

Prints a table and writes benchmarks/results/zoo.json, one row per (model, preset, settings, seed).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from functools import partial
from pathlib import Path

import pyro
import torch

from benchmarks.common import (
    continuation,
    finished_runs,
    parse_setting,
    print_table,
    reached,
    recorded_runs,
    reported_row,
    save_results,
    settings_suffix,
)
from benchmarks.page import Section, cell, difference, number, table
from pyrovae import registry
from pyrovae.arguments import Parser
from pyrovae.callbacks import AdamEpsilon, Checkpoint, OnEpochEnd, TimeBudget
from pyrovae.checkpoint import METRICS, CheckpointError, RunExistsError
from pyrovae.data import cache_dir
from pyrovae.evaluate import mean_elbo
from pyrovae.experiment import Experiment, build
from pyrovae.io import read_jsonl
from pyrovae.train import default_eval_elbo, fit

COLUMNS = ["model", "preset", "settings", "metric", "pyrovae", "reference", "epochs", "preset_epochs", "minutes"]


def run_name(model: str, preset: str, settings: dict, seed: int) -> str:
    return f"{model}-{preset}{settings_suffix(settings)}-seed{seed}"


def benchmark_command(args: argparse.Namespace, model: str) -> str:
    """The command that reproduces one row: every argument that changes the run, none that only locates files."""
    parts = ["python", "-m", "benchmarks.zoo", "--models", model, "--seed", str(args.seed), "--threads", str(args.threads)]
    for key, value in sorted(args.settings.items()):
        parts += ["--set", f"{key}={json.dumps(value)}"]
    if args.epochs is not None:
        parts += ["--epochs", str(args.epochs)]
    if args.minutes is not None:
        parts += ["--minutes", str(args.minutes)]
    parts += ["--elbo-repeats", str(args.elbo_repeats)]
    return shlex.join(parts)


def result_row(model: str, preset: str, reference: dict, args: argparse.Namespace, curve: list[dict],
               preset_epochs: int) -> dict:
    """The JSON row of a run whose epochs so far are ``curve``."""
    last = curve[-1]
    cli = ["pyrovae", "train", "--model", model, "--preset", preset, "--seed", str(args.seed),
           "--epochs", str(last["epoch"])]
    for key, value in sorted(args.settings.items()):
        cli += [f"--{key.replace('_', '-')}", json.dumps(value) if not isinstance(value, str) else value]
    return {
        "model": model, "preset": preset, "settings": args.settings, "seed": args.seed,
        "metric": reference["metric"], "pyrovae": last.get(reference["metric"]), "reference": reference["value"],
        "source": reference["source"], "epochs": last["epoch"], "preset_epochs": preset_epochs,
        "complete": last["epoch"] >= preset_epochs,
        "minutes": sum(row.get("seconds", 0.0) for row in curve) / 60,
        "command": benchmark_command(args, model), "train_command": shlex.join(cli),
        "last_epoch": last, "curve": curve,
    }


def run_reference(model: str, preset: str, reference: dict, args: argparse.Namespace, record) -> dict:
    """Train one reference run (resuming it when asked); ``record(row)`` receives its row after every epoch,
    so that a run stopped at any moment has its epochs so far in the JSON."""
    settings = {"model": model, "preset": preset, "seed": args.seed, **args.settings}
    experiment = Experiment.resolve(settings)
    train, test, model_module, guide, objective = build(experiment, args.data_dir)
    run = experiment.run
    epochs = min(run.epochs, args.epochs) if args.epochs is not None else run.epochs
    run_dir = args.runs_dir / run_name(model, preset, args.settings, args.seed)
    resume, overwrite = continuation(run_dir, args.resume, args.force)
    curve = read_jsonl(run_dir / METRICS) if resume else []
    # The model's own logging (factor analysis's exact evidence, the GMVAE's cluster accuracy), as in the CLI.
    callbacks = registry.get(model).training_callbacks(experiment.model, model_module, guide, test)

    def record_epoch(epoch: int, row: dict) -> None:
        curve.append(dict(row))
        record(result_row(model, preset, reference, args, curve, run.epochs))

    budget = [TimeBudget(args.minutes * 60)] if args.minutes is not None else []
    history = fit(model_module, guide, objective, train, test, epochs=epochs, batch_size=run.batch_size,
                  lr=run.lr, seed=args.seed, engine=run.engine,
                  callbacks=[*callbacks, AdamEpsilon(run.adam_eps), *budget, OnEpochEnd(record_epoch),
                             Checkpoint(run_dir, resume=resume, overwrite=overwrite, config=experiment.to_dict())])
    row = result_row(model, preset, reference, args, history.rows, run.epochs)
    if reference["metric"] == "test_elbo" and args.elbo_repeats:
        row.update(elbo_monte_carlo_error(model_module, guide, default_eval_elbo(objective, model_module), test,
                                   args.elbo_repeats, args.seed))
    return row


def elbo_monte_carlo_error(model, guide, elbo, test, repeats: int, seed: int) -> dict:
    """The Monte Carlo error of one test-ELBO pass over ``test`` (what each epoch's ``test_elbo`` is):
    the standard deviation of ``repeats`` passes, each with noise seeded by ``seed`` and its index."""
    model.eval(), guide.eval()
    passes = []
    for index in range(repeats):
        pyro.set_rng_seed(1_000_003 * (seed + 1) + index)
        passes.append(mean_elbo(model, guide, test, elbo))
    return {"test_elbo_passes": passes, "test_elbo_mc_error": statistics.stdev(passes)}


def _same_run(row: dict, model: str, preset: str, args: argparse.Namespace) -> bool:
    return (row["model"], row["preset"], row.get("settings", {}), row.get("seed", 0)) == (
        model, preset, args.settings, args.seed)


def _finished(row: dict, args: argparse.Namespace) -> bool:
    """Whether a recorded row needs no more training for ``--epochs`` (default: the preset's budget), so
    that ``--resume`` keeps it even where its run directory is gone (another machine)."""
    return isinstance(row.get("epochs"), int) and reached(row["epochs"], row["preset_epochs"], args.epochs)


def _replace_last_row(rows: list[dict], index: int, threads: int, old: dict | None, row: dict) -> None:
    rows[index:] = [reported_row(row, old)]
    save_results("zoo", {"rows": rows, "threads": threads})


def main(argv: list[str] | None = None) -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None, help="models to run (default: every model with a reference)")
    parser.add_argument("--set", dest="settings", type=parse_setting, action="append", default=[],
                        metavar="KEY=VALUE", help="a model or run setting over the preset's (repeatable)")
    parser.add_argument("--epochs", type=int, default=None, help="stop at this epoch (default: the preset's budget)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training-time budget per run, counted over resumed parts (default: none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--runs-dir", default=None, help="run directories (default: <cache>/benchmarks/zoo)")
    parser.add_argument("--resume", action="store_true",
                        help="continue each run from its last checkpoint (without it, an existing run is refused)")
    parser.add_argument("--force", action="store_true", help="restart a run whose run directory exists")
    parser.add_argument("--elbo-repeats", type=int, default=4,
                        help="test-ELBO passes after training, for its Monte Carlo error (0: none; else at least 2)")
    args = parser.parse_args(argv)
    if args.elbo_repeats == 1 or args.elbo_repeats < 0:
        parser.error(f"--elbo-repeats must be 0 or at least 2 (a standard deviation), got {args.elbo_repeats}")
    args.settings = dict(args.settings)
    args.runs_dir = cache_dir() / "benchmarks" / "zoo" if args.runs_dir is None else Path(args.runs_dir).expanduser()
    torch.set_num_threads(args.threads)
    entries = registry.models()
    names = args.models or sorted(name for name, entry in entries.items() if entry.references)
    selected = [(name, preset, reference) for name in names for preset, reference in registry.get(name).references.items()]
    before = recorded_runs("zoo", "rows") if args.resume else []
    # The rows of runs not selected now are kept, and with --resume those that have their epochs.
    rows = finished_runs("zoo", "rows", retry=lambda row: any(
        _same_run(row, n, p, args) and not (args.resume and _finished(row, args)) for n, p, _ in selected))
    for name, preset, reference in selected:
        if any(_same_run(row, name, preset, args) for row in rows):
            print(f"resuming: {name}/{preset} seed {args.seed} already has its epochs in zoo.json")
            continue
        old = next((row for row in before if _same_run(row, name, preset, args)), None)
        record = partial(_replace_last_row, rows, len(rows), args.threads, old)
        record(run_reference(name, preset, reference, args, record))
        print_table(rows[-1:], COLUMNS)
    print_table(rows, COLUMNS + ["source"])
    print(f"wrote {save_results('zoo', {'rows': rows, 'threads': args.threads})}")


# ------------------------------------------------------------------------------- the results page

def row_command(row: dict, data: dict) -> str:
    """The command of one row: recorded by the benchmark, or, for a row written before rows recorded
    theirs (no ``settings``), rebuilt from the file's per-run budget and threads (seed 0, the default)."""
    if "settings" in row and isinstance(row.get("command"), str):
        return row["command"]
    parts = ["python", "-m", "benchmarks.zoo", "--models", row["model"]]
    if data.get("minutes_per_run") is not None:
        parts += ["--minutes", str(data["minutes_per_run"])]
    return shlex.join(parts + ["--threads", str(data.get("threads", 1))])


def _reference(row: dict) -> str:
    """The reference value of a row with the epoch its source reports it at, or "none published"."""
    if row["reference"] is None:
        return "none published"
    epochs = registry.get(row["model"]).references.get(row["preset"], {}).get("epochs") \
        if row["model"] in registry.models() else None
    return number(row["reference"], 3) + (f" at epoch {epochs}" if isinstance(epochs, int) else "")


def _value(row: dict) -> str:
    """The row's result, with the Monte Carlo error of one test-ELBO pass where it was measured."""
    error = row.get("test_elbo_mc_error")
    return number(row["pyrovae"], 3) + (f" ± {number(error, 3)}" if isinstance(error, float) else "")


def _rows(data: dict, full: bool) -> list[list[str]]:
    rows = []
    for row in sorted(data["rows"], key=lambda r: (r["model"], r["preset"], json.dumps(r.get("settings", {})),
                                                   r.get("seed", 0))):
        settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(row.get("settings", {}).items())) or "preset"
        budget = f"{number(row.get('epochs'))} of {number(row.get('preset_epochs'))}"
        if row.get("complete", row.get("epochs") is not None and row.get("epochs") == row.get("preset_epochs")):
            budget += " (complete)"
        cells = [f"`{row['model']}/{row['preset']}`", cell(settings), number(row.get("seed", 0)), cell(row["metric"]),
                 _value(row), _reference(row),
                 difference(row["pyrovae"], row["reference"], 3), budget, number(row.get("minutes"), 1)]
        rows.append(cells + ([cell(row.get("source")), f"`{row_command(row, data)}`"] if full else []))
    return rows


#: Metrics of the references where less is better (every other is a bound, an evidence or an accuracy).
LOWER_IS_BETTER = {"test_error_percent", "test_nll"}

HEADERS = ["model/preset", "settings", "seed", "metric", "pyrovae", "reference", "difference",
           "epochs done (of the preset's)", "minutes"]


def _notes(data: dict) -> list[str]:
    return _short_runs(data) + _error_note(data) + _evidence_note(data) + _vrnn_note(data)


def _vrnn_note(data: dict) -> list[str]:
    if not any(row["model"] == "vrnn" and row.get("settings") == {"reparameterize": False} for row in data["rows"]):
        return []
    return ["`vrnn/yang` with reparameterize=false has the tutorial's gradient but not its batch order: the "
            "tutorial's loader does not shuffle, pyrovae's does. The section \"The VRNN tutorial's own code\" runs "
            "the tutorial's loop in both orders beside its logged values and this row.", ""]


def _evidence_note(data: dict) -> list[str]:
    """Where a run logs its learnt model's exact test evidence (factor analysis), how its ELBO's distance to
    the reference splits between the model (evidence) and the guide (the ELBO's gap to its own evidence)."""
    lines = []
    for row in data["rows"]:
        evidence = (row.get("last_epoch") or {}).get("test_evidence")
        if isinstance(evidence, float) and row.get("reference") is not None and row["metric"] == "test_elbo":
            lines.append(f"- `{row['model']}/{row['preset']}` (seed {row.get('seed', 0)}): its learnt model's exact "
                         f"test evidence is {number(evidence, 3)}, {difference(evidence, row['reference'], 3)} from "
                         f"the reference; the rest of the ELBO's distance, {number(row['pyrovae'] - evidence, 3)}, is "
                         "the ELBO's gap to the model's own evidence: the KL from the guide's q(z|x) to the exact posterior, "
                         "up to the Monte Carlo error of a one-sample test ELBO.")
    if not lines:
        return []
    return ["Where the ELBO's distance to the reference comes from, for models whose exact evidence is known:", "",
            *lines, ""]


def _error_note(data: dict) -> list[str]:
    measured = [row for row in data["rows"] if isinstance(row.get("test_elbo_mc_error"), float)]
    if not measured:
        return []
    repeats = sorted({len(row["test_elbo_passes"]) for row in measured})
    return [f"± after a test ELBO: the Monte Carlo standard deviation of one pass over the test set (one sample of "
            f"each continuous latent per image, what each epoch's number is), from {' or '.join(map(str, repeats))} "
            "more passes with fresh noise after training; a row without it was recorded before it was measured.", ""]


def _short_runs(data: dict) -> list[str]:
    short = [row for row in data["rows"] if isinstance(row.get("epochs"), int)
             and isinstance(row.get("preset_epochs"), int) and row["epochs"] < row["preset_epochs"]]
    if not short:
        return ["Every run trained its preset's full budget.", ""]
    lower = sorted({row["metric"] for row in data["rows"] if row.get("metric") in LOWER_IS_BETTER})
    direction = "higher is better" + (f", except {', '.join(lower)}" if lower else "")
    return [f"{len(short)} of {len(data['rows'])} runs stopped before the preset's budget: a gap to the reference is "
            f"expected from that alone ({direction}).", ""]


#: Keys of an epoch's row that are not a result (time, the training loss, the epoch itself).
_NOT_RESULTS = {"epoch", "seconds", "train_loss", "lr"}


def _unreferenced(data: dict) -> list[str]:
    """For each run whose source publishes no number, every result of its last epoch (the reconstruction,
    perplexity and codes used of a VQ-VAE, the cluster accuracy of a mixture): the curve holds them per epoch."""
    lines = []
    for row in data["rows"]:
        if row.get("reference") is None and row.get("last_epoch"):
            last = row["last_epoch"]
            values = ", ".join(f"{key} {number(value, 3)}" for key, value in sorted(last.items())
                               if key not in _NOT_RESULTS and isinstance(value, (int, float)))
            lines.append(f"- `{row['model']}/{row['preset']}` (seed {row.get('seed', 0)}), epoch {last['epoch']}: {values}")
    if not lines:
        return []
    return ["Runs whose source publishes no number to compare with (each epoch's values are in the JSON's curve):",
            "", *lines, ""]


def seed_spread(data: dict) -> list[dict]:
    """Run-to-run spread: for each model, preset and settings run with several seeds, the metric of every
    seed at the last epoch all of them reached (read off each run's curve, so a full-budget run of one seed
    and short runs of the others compare at the short runs' epoch): mean, sample standard deviation, seeds."""
    groups: dict[tuple, list[dict]] = {}
    for row in data["rows"]:
        if row.get("curve"):
            key = (row["model"], row["preset"], json.dumps(row.get("settings", {}), sort_keys=True), row["metric"])
            groups.setdefault(key, []).append(row)
    spreads = []
    for (model, preset, settings, metric), rows in sorted(groups.items()):
        if len({row.get("seed", 0) for row in rows}) < 2:
            continue
        epoch = min(row["curve"][-1]["epoch"] for row in rows)
        values = [point[metric] for row in rows for point in row["curve"] if point["epoch"] == epoch]
        if len(values) != len(rows) or any(not isinstance(value, (int, float)) for value in values):
            continue
        spreads.append({"model": model, "preset": preset, "settings": json.loads(settings), "metric": metric,
                        "epoch": epoch, "seeds": sorted(row.get("seed", 0) for row in rows),
                        "mean": statistics.fmean(values), "sd": statistics.stdev(values)})
    return spreads


def _spread_table(data: dict) -> list[str]:
    spreads = seed_spread(data)
    if not spreads:
        return []
    rows = [[f"`{s['model']}/{s['preset']}`",
             cell(", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(s["settings"].items())) or "preset"),
             cell(s["metric"]), number(s["epoch"]), ", ".join(str(seed) for seed in s["seeds"]),
             number(s["mean"], 3), number(s["sd"], 3)] for s in spreads]
    return ["Run-to-run spread: the same configuration with several seeds, each at the last epoch every seed "
            "reached (from the runs' curves above).", "",
            *table(["model/preset", "settings", "metric", "at epoch", "seeds", "mean", "standard deviation"], rows), ""]


def _render(data: dict) -> list[str]:
    return [*table([*HEADERS, "source", "command of the run"], _rows(data, full=True)), *_notes(data),
            *_unreferenced(data), *_spread_table(data)]


def _summary(data: dict) -> list[str]:
    return [*table(HEADERS, _rows(data, full=False)), *_notes(data), *_unreferenced(data), *_spread_table(data)]


SECTION = Section(
    "Model zoo", "Every registered model's reference preset trained toward its budget, beside the number its "
    "source reports (`pyrovae/references.json`).", _render, _summary, order=20, per_row_commands=True)

if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (RunExistsError, CheckpointError) as error:
        sys.exit(f"error: {error}")
