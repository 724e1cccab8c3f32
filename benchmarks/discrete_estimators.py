"""Every way pyrovae trains Bernoulli latents, on the setting of the ARM and REBAR papers, beside their numbers.

Statically binarized MNIST (Larochelle & Murray 2011), 200 Bernoulli latents in one stochastic layer,
a linear model (784-200 encoder and decoder) and a nonlinear one (two hidden layers of 200 tanh units
in the encoder and the decoder): presets ``bernoulli-vae/arm-linear`` and ``arm-nonlinear``, batch 50,
Adam. For each relaxation or estimator (``--relaxation`` of :class:`pyrovae.models.BernoulliVAE`),
trained with the same budget (``--epochs``, ``--lr``), this reports for the *discrete* model every
relaxation stands for:

* ``true_bound``: the test ELBO with hard latents (:class:`pyrovae.infer.TrueDiscreteBound`, nats);
* ``nll``: test -log p(x), importance-sampled with hard latents from the guide's Bernoulli
  (``--nll-samples`` proposals on the whole test set, or on a random subset of ``--test-subset``
  images drawn with ``--subset-seed``, whose sampling error is recorded), and the true bound on
  those images, for comparison;
* ``final_true_bound``: the true bound on the whole test set with ``--bound-particles`` particles per
  image, evaluated ``--bound-repeats`` times: their mean and its standard error (the per-epoch
  ``true_bound`` of the curve is a one-particle estimate);
* ``encoder_snr`` / ``encoder_variance``: mean per-element SNR and variance of the guide's gradient
  over ``--draws`` redraws on one training batch of 50 (:func:`pyrovae.infer.gradient_statistics`;
  the encoder only: ``reinforce``'s NVIL baseline network is held fixed);
* ``ms_per_step`` (median over epochs of seconds per epoch / steps) and the epochs trained.

Anchors: test -log p(x) from Yin & Zhou 2019 (ARM), Table 2 (``pyrovae/references.json``), trained to
convergence (about 1,000s of epochs); the budget here is far smaller, and the table says so.

The runs split across processes: ``--shard i/n`` runs every n-th run from the i-th (counting from 0)
and writes its rows to a shard file under ``<cache>/benchmarks/discrete_estimators/``; once every
shard is done, the same command with ``--collect`` instead of ``--shard`` merges them into
``benchmarks/results/<output>.json`` (refusing shards of other arguments or missing ones).

A run survives an interruption: each keeps a run directory with a checkpoint after every epoch under
``<cache>/benchmarks/discrete_estimators/runs/`` (``--runs-dir``), and the JSON holds its row after
every epoch (``"complete": false`` with the epochs done out of the preset's budget, until its
evaluation is written). The same command with ``--resume`` continues an unfinished run from its last
epoch and skips the finished ones; without it an existing run directory is refused (``--force``
restarts it). The 1,000-epoch rows are thus a series of shorter runs, each continuing the last. A run
whose directory is gone (a new machine) starts again from epoch 1; until it passes the row already
recorded, ``--resume`` and ``--collect`` keep that further row (``--rerun`` replaces it at once).

    python -m benchmarks.discrete_estimators [--epochs 5] [--models linear nonlinear] [--relaxations ...]
    python -m benchmarks.discrete_estimators --epochs 3 --shard 0/2 &  python -m benchmarks.discrete_estimators --epochs 3 --shard 1/2
    python -m benchmarks.discrete_estimators --epochs 3 --collect
    python -m benchmarks.discrete_estimators --epochs 1000 --lr 1e-4 --models linear --relaxations concrete disarm --resume
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.common import (
    RESULTS,
    continuation,
    finished_runs,
    parse_setting,
    print_table,
    recorded_arguments,
    recorded_runs,
    reported_row,
    save_results,
    setting_text,
    settings_suffix,
)
from benchmarks.page import Section, budget_sentence, cell, difference, number, preset_epochs, table, with_error
from pyrovae import references, registry
from pyrovae.arguments import Parser
from pyrovae.callbacks import Callback, Checkpoint
from pyrovae.checkpoint import TrainingDivergedError
from pyrovae.data import cache_dir
from pyrovae.evaluate import importance_log_likelihood, mean_elbo
from pyrovae.experiment import Experiment, build
from pyrovae.infer import TrueDiscreteBound, gradient_statistics
from pyrovae.infer.discrete_bound import Discretized
from pyrovae.registry import get
from pyrovae.relaxations import RELAXATIONS
from pyrovae.train import fit

#: Yin & Zhou 2019, Table 2: test -log p(x) (nats) on statically binarized MNIST, ``{model: {estimator: value}}``.
ANCHORS = references.estimator_table("yin-zhou2019/")
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


def model_settings(args) -> dict:
    """The model settings ``--set KEY=VALUE`` puts over the preset's (``{}`` without it)."""
    return dict(parse_setting(text) for text in args.set)


def run_directory(args, architecture: str, relaxation: str) -> Path:
    """Where one run keeps its checkpoints: one folder per output, model, estimator, settings and seed."""
    extra = settings_suffix(model_settings(args))
    return Path(args.runs_dir) / args.output / f"{architecture}-{relaxation}{extra}-seed{args.seed}"


def run_one(architecture: str, relaxation: str, args, record=lambda row: None) -> dict:
    """Train one run to ``--epochs`` (continuing its checkpoint with ``--resume``) and evaluate it;
    ``record(row)`` receives the run's unfinished row after every epoch."""
    settings = {"model": "bernoulli-vae", "preset": PRESETS[architecture], "relaxation": relaxation,
                "epochs": args.epochs, "seed": args.seed, **({"lr": args.lr} if args.lr is not None else {}),
                **model_settings(args)}
    if RELAXATIONS[relaxation].objective == "variance":
        settings["num_particles"] = 2
    experiment = Experiment.resolve(settings)
    train, test, model, guide, objective = build(experiment, args.data_dir)
    callbacks = get("bernoulli-vae").training_callbacks(experiment.model, model, guide, test)
    budget = preset_epochs("bernoulli-vae", PRESETS[architecture])
    run_dir = run_directory(args, architecture, relaxation)
    rerun = relaxation in args.rerun
    resume, overwrite = continuation(run_dir, args.resume and not rerun, args.force or rerun)

    unfinished = {"model": architecture, "relaxation": relaxation, "objective": experiment.run.objective,
                  "preset_epochs": budget, "complete": False, "paper": PAPER_ROW.get(relaxation),
                  "paper_nll": ANCHORS[architecture].get(PAPER_ROW.get(relaxation))}
    try:
        history = fit(model, guide, objective, train, test, epochs=args.epochs, batch_size=experiment.run.batch_size,
                      lr=experiment.run.lr, seed=args.seed, engine=args.engine,
                      callbacks=[*callbacks, RecordEpochs(unfinished, record),
                                 Checkpoint(run_dir, resume=resume, overwrite=overwrite, config=experiment.to_dict())])
    except TrainingDivergedError as error:
        return {"model": architecture, "relaxation": relaxation, "objective": experiment.run.objective,
                "epochs": 0, "diverged": str(error), "paper": PAPER_ROW.get(relaxation),
                "paper_nll": ANCHORS[architecture].get(PAPER_ROW.get(relaxation))}
    # Training time over every resumed part (the test ELBO included, the per-epoch true bound not).
    minutes = sum(row["seconds"] for row in history.rows) / 60
    steps = -(-len(train) // experiment.run.batch_size)
    model.eval(), guide.eval()
    subset = test_subset(test, args.test_subset, args.subset_seed)
    log_px = importance_log_likelihood(Discretized(model), Discretized(guide), subset,
                                       num_samples=args.nll_samples, engine="auto", per_example=True)
    nll = -log_px.mean().item()
    # The error of the subset's mean as an estimate of the whole test set's (none for the whole set).
    nll_sampling_error = (log_px.std().item() / len(subset) ** 0.5 if len(subset) < len(test) else None)
    bound, bound_error = true_bound(model, guide, test, args.bound_particles, args.bound_repeats)
    subset_bound, subset_bound_error = (true_bound(model, guide, subset, args.bound_particles, args.bound_repeats)
                                        if len(subset) < len(test) else (None, None))
    # One training batch as training sees it (a dynamically binarized set binarized once, seeded).
    batch = train.subset(torch.arange(experiment.run.batch_size)).realize(args.seed).x
    stats = encoder_gradient_statistics(model, guide, objective, (batch,), args.draws)
    last = history.rows[-1]
    paper = PAPER_ROW.get(relaxation)
    return {
        "model": architecture, "relaxation": relaxation, "objective": experiment.run.objective,
        "epochs": len(history.rows), "minutes": minutes, "nll_samples": args.nll_samples,
        "test_images": len(subset), "subset_seed": args.subset_seed if len(subset) < len(test) else None,
        "ms_per_step": 1e3 * statistics.median(row["seconds"] for row in history.rows) / steps,
        "train_objective": -last["train_loss"], "test_objective": last["test_elbo"],
        "true_bound": last["true_bound"], "final_true_bound": bound, "final_true_bound_error": bound_error,
        "bound_particles": args.bound_particles, "nll": nll, "nll_sampling_error": nll_sampling_error,
        "nll_subset_true_bound": subset_bound, "nll_subset_true_bound_error": subset_bound_error,
        "encoder_snr": stats["mean_snr"], "encoder_variance": stats["mean_variance"],
        "paper": paper, "paper_nll": ANCHORS[architecture].get(paper),
        "preset_epochs": budget, "complete": True, "curve": _curve(history.rows),
    }


def _curve(rows: list[dict]) -> list[dict]:
    return [{k: row[k] for k in ("epoch", "train_loss", "test_elbo", "true_bound")} for row in rows]


class RecordEpochs(Callback):
    """After every epoch, ``record`` the run's unfinished row: ``fields`` with the epochs done (counting
    those of a resumed checkpoint), the last one-particle true bound and the curve so far."""

    def __init__(self, fields: dict, record):
        self.fields, self.record = fields, record

    def on_epoch_end(self, epoch: int, row: dict, run) -> None:
        self.record({**self.fields, "epochs": epoch, "true_bound": row["true_bound"],
                     "curve": _curve(run.history.rows)})


def test_subset(test, size: int | None, seed: int):
    """The whole test set, or ``size`` of its images drawn at random (without replacement) with ``seed``."""
    if size is None or size >= len(test):
        return test
    generator = torch.Generator().manual_seed(seed)
    return test.subset(torch.randperm(len(test), generator=generator)[:size].sort().values)


def true_bound(model, guide, data, particles: int, repeats: int) -> tuple[float, float]:
    """The true bound on ``data`` with ``particles`` particles per image, evaluated ``repeats`` times on
    fresh noise: the mean of the repeats and its Monte Carlo standard error."""
    objective = TrueDiscreteBound(num_particles=particles, max_plate_nesting=1)
    values = [mean_elbo(model, guide, data, objective) for _ in range(repeats)]
    return statistics.fmean(values), statistics.stdev(values) / len(values) ** 0.5


#: Settings the benchmark chooses itself, or through its own options.
OWN_SETTINGS = ("model", "preset", "relaxation", "epochs", "seed", "lr")


def check_settings(parser, args) -> None:
    """``--set`` names settings of the Bernoulli VAE that the benchmark leaves to the preset: else one clear error."""
    settings = model_settings(args)
    own = sorted(set(settings) & set(OWN_SETTINGS))
    if own:
        parser.error(f"--set cannot change {', '.join(own)}: the benchmark's own options choose "
                     f"{', '.join(OWN_SETTINGS)}")
    for preset in sorted({PRESETS[model] for model in args.models}):
        try:
            Experiment.resolve({"model": "bernoulli-vae", "preset": preset, **settings})
        except ValueError as error:
            parser.error(f"--set: {error}")


def setting_argument(text: str) -> str:
    """``--set``'s ``KEY=VALUE`` as recorded and printed: the key with underscores, the value as it reads back."""
    key, value = parse_setting(text)
    return f"{key}={setting_text(value)}"


def shard(text: str) -> tuple[int, int]:
    """``i/n``: the i-th (from 0) of n shards."""
    index, sep, count = text.partition("/")
    try:
        index, count = int(index), int(count)
    except ValueError:
        index = count = -1
    if not sep or count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard takes i/n with 0 <= i < n, got {text!r}")
    return index, count


def shard_directory() -> Path:
    return cache_dir() / "benchmarks" / "discrete_estimators"


def shard_name(output: str, index: int, count: int) -> str:
    return f"{output}.shard-{index}-of-{count}"


def collect(args) -> Path:
    """Merge the shard files of ``args`` (same arguments, every shard present) into ``results/<output>.json``,
    the runs in the order one process would have run them."""
    wanted = recorded_arguments(args)
    found = sorted(shard_directory().glob(f"{args.output}.shard-*-of-*.json"))
    if not found:
        sys.exit(f"error: no shard of {args.output!r} in {shard_directory()}: run with --shard i/n first")
    shards = [json.loads(path.read_text()) for path in found]
    count = shards[0]["shard"][1]
    mismatched = [path.name for path, data in zip(found, shards)
                  if data.get("arguments") != wanted or data["shard"][1] != count]
    if mismatched:
        sys.exit(f"error: shards {', '.join(mismatched)} were run with other arguments than this command's "
                 f"({json.dumps(wanted)}); rerun them or collect with their arguments")
    missing = sorted(set(range(count)) - {data["shard"][0] for data in shards})
    if missing:
        sys.exit(f"error: shards {', '.join(f'{i}/{count}' for i in missing)} of {args.output!r} are not done yet")
    order = {run: position for position, run in enumerate(selected_runs(args))}
    rows = sorted((row for data in shards for row in data["rows"]), key=lambda r: order[(r["model"], r["relaxation"])])
    earlier = {(r["model"], r["relaxation"]): r for r in recorded_runs(args.output, "rows")}
    rows = [_reported(row, earlier, args.rerun) for row in rows]
    return save_results(args.output, {"rows": rows, "shards": count}, args=args, benchmark="discrete_estimators")


def _reported(row: dict, earlier: dict, rerun: list[str]) -> dict:
    """``row``, or the further row recorded before for its run (:func:`benchmarks.common.reported_row`),
    except for runs named by ``--rerun``, which replace theirs at once."""
    if row["relaxation"] in rerun:
        return row
    return reported_row(row, earlier.get((row["model"], row["relaxation"])))


def selected_runs(args) -> list[tuple[str, str]]:
    return [(architecture, relaxation) for architecture in args.models for relaxation in args.relaxations]


def main(argv: list[str] | None = None) -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=None, help="Adam's step size (default: the preset's, 1e-4)")
    parser.add_argument("--engine", default="compiled", choices=["compiled", "captured", "module"],
                        help="the training engine (pyrovae.engines; default: compiled)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--relaxations", nargs="+", default=list(RELAXATIONS), choices=list(RELAXATIONS))
    parser.add_argument("--nll-samples", type=int, default=5000)
    parser.add_argument("--test-subset", type=int, default=None,
                        help="estimate -log p(x) on this many test images drawn at random (default: all of them)")
    parser.add_argument("--subset-seed", type=int, default=0, help="seed of the --test-subset draw")
    parser.add_argument("--bound-particles", type=int, default=10,
                        help="particles per image of the final true bound on the whole test set")
    parser.add_argument("--bound-repeats", type=int, default=4,
                        help="evaluations of the final true bound, for its Monte Carlo standard error (at least 2)")
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--set", nargs="+", action="extend", default=[], type=setting_argument, metavar="KEY=VALUE",
                        help="model settings over the presets' for every run (say, posterior_temperature=0.1); "
                             "give such runs their own --output")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", default="discrete_estimators", help="results/<name>.json")
    parser.add_argument("--runs-dir", default=None,
                        help="run directories with per-epoch checkpoints (default: <cache>/benchmarks/discrete_estimators/runs)")
    parser.add_argument("--resume", action="store_true",
                        help="skip the runs finished in the output file and continue unfinished ones from their last epoch")
    parser.add_argument("--force", action="store_true", help="restart a run whose run directory exists")
    parser.add_argument("--retry-diverged", action="store_true", help="with --resume, run the diverged runs again")
    parser.add_argument("--rerun", nargs="+", default=[], choices=list(RELAXATIONS), metavar="RELAXATION",
                        help="with --resume, train these relaxations' runs again from the start, their rows and run "
                             "directories replaced (after a fix to their code); the other runs resume")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--shard", type=shard, default=None, metavar="I/N",
                       help="run every N-th run from the I-th into a shard file (then --collect)")
    split.add_argument("--collect", action="store_true", help="merge the finished shards into results/<output>.json")
    args = parser.parse_args(argv)
    if args.bound_repeats < 2:
        parser.error(f"--bound-repeats must be at least 2 for a standard error, got {args.bound_repeats}")
    if args.rerun and not args.resume:
        parser.error("--rerun replaces rows of an earlier run: add --resume (without it, every run starts again)")
    check_settings(parser, args)
    if args.collect:
        print(f"wrote {collect(args)}")
        return
    if args.runs_dir is None:
        args.runs_dir = shard_directory() / "runs"
    torch.set_num_threads(args.threads)
    runs = selected_runs(args)
    directory, name, extra = None, args.output, {}
    if args.shard is not None:
        index, count = args.shard
        runs = runs[index::count]
        directory, name, extra = shard_directory(), shard_name(args.output, index, count), {"shard": [index, count]}
    chosen = set(runs)
    earlier = Path(RESULTS if directory is None else directory) / f"{name}.json"
    if args.resume and earlier.exists() and (json.loads(earlier.read_text()).get("arguments") or {}).get("set", []) != args.set:
        parser.error(f"{earlier} holds runs of other --set settings than {args.set}: give these runs their own --output")
    rows = finished_runs(name, "rows", lambda r: (r["model"], r["relaxation"]) in chosen and (
        (args.retry_diverged and "diverged" in r) or r.get("complete") is False or r["relaxation"] in args.rerun),
        directory) if args.resume else []
    before = {(r["model"], r["relaxation"]): r for r in recorded_runs(name, "rows", directory)} if args.resume else {}

    def record(row: dict) -> None:
        rows[index:] = [_reported(row, before, args.rerun)]
        save_results(name, {"rows": rows, **extra}, args=args, directory=directory, benchmark="discrete_estimators")

    for architecture, relaxation in runs:
        if any(r["model"] == architecture and r["relaxation"] == relaxation for r in rows):
            continue
        index = len(rows)
        record(run_one(architecture, relaxation, args, record))
        print_table(rows[-1:], COLUMNS)
    print()
    print_table(rows, COLUMNS)
    path = save_results(name, {"rows": rows, **extra}, args=args, directory=directory, benchmark="discrete_estimators")
    print(f"wrote {path}" + ("; when every shard is done: the same command with --collect instead of --shard"
                             if args.shard is not None else ""))


COLUMNS = ["model", "relaxation", "diverged", "epochs", "final_true_bound", "nll_subset_true_bound", "nll", "paper",
           "paper_nll", "encoder_snr", "encoder_variance", "ms_per_step", "minutes"]


# ------------------------------------------------------------------------------- the results page

def _images(row: dict, data: dict) -> str:
    """The test images of a row's -log p(x), as recorded (older files: the first --nll-examples)."""
    if isinstance(row.get("test_images"), int):
        seed = row.get("subset_seed")
        return (f"all {row['test_images']:,} test images" if seed is None
                else f"{row['test_images']:,} test images drawn at random with seed {seed}")
    recorded = data.get("budget") or {}
    return f"the first {recorded.get('nll_examples', '?')} test images"


def _bound(row: dict) -> str:
    """The row's test true bound: the final many-particle one with its error, else the last epoch's one-particle one."""
    if "final_true_bound" in row:
        return with_error(row["final_true_bound"], row.get("final_true_bound_error"))
    return number(row.get("true_bound")) + " (1 particle)"


def _rows(data: dict) -> list[list[str]]:
    rows = []
    for row in data["rows"]:
        paper = PAPER_ROW.get(row["relaxation"])
        paper_nll = ANCHORS.get(row["model"], {}).get(paper)
        if row.get("complete") is False:
            rows.append([cell(row["model"]), cell(row["relaxation"]), cell(row.get("objective")),
                         f"{row['epochs']} of {row['preset_epochs']} (unfinished)", number(row.get("true_bound")) +
                         " (1 particle)", "-", "-", "-", cell(paper), number(paper_nll), "-", "-", "-"])
            continue
        if row.get("diverged"):
            rows.append([cell(row["model"]), cell(row["relaxation"]), cell(row.get("objective")), "0",
                         f"diverged: {row['diverged']}", "-", "-", "-", cell(paper), number(paper_nll), "-", "-", "-"])
            continue
        rows.append([cell(row["model"]), cell(row["relaxation"]), cell(row.get("objective")), number(row.get("epochs")),
                     _bound(row), with_error(row.get("nll_subset_true_bound"), row.get("nll_subset_true_bound_error")),
                     with_error(row["nll"], row.get("nll_sampling_error")), cell(_images(row, data)), cell(paper),
                     number(paper_nll), difference(row["nll"], paper_nll), number(row.get("encoder_snr"), 3),
                     number(row.get("ms_per_step"), 1)])
    return rows


HEADERS = ["model", "relaxation", "objective", "epochs", "true bound (test)", "true bound (NLL images)", "test NLL",
           "NLL images", "paper row", "paper NLL (Yin & Zhou 2019)", "NLL - paper", "encoder SNR", "ms/step"]


def _explanation(data: dict) -> list[str]:
    recorded = data.get("arguments") or data.get("budget") or {}
    return [f"NLL: importance-sampled -log p(x) of the discrete model with {recorded.get('nll_samples', '?')} "
            "proposals, on the images its column names (± the sampling error of a random subset's mean); true "
            "bounds in nats (higher is better), ± their Monte Carlo standard error where recorded, \"1 particle\" "
            "where only the last epoch's one-particle estimate is recorded. SNR: mean per-element |E g| / sd(g) of "
            f"the encoder's gradient over {recorded.get('draws', '?')} draws. The Concrete row is the relaxation of "
            "Maddison et al. 2017, as Yin & Zhou 2019 report it."
            + (f" Every run with these model settings over the preset's: {', '.join(recorded['set'])}."
               if recorded.get("set") else "")
            + (" How much of a row's -log p(x) is the estimator's (K proposals from a guide that fits the discrete "
               "model poorly) is measured in the `nll_convergence` section; how the Concrete row depends on its "
               "temperatures, in the `discrete_estimators_concrete_100` sections."
               if any(row.get("relaxation") == "concrete" and row.get("complete") and row.get("epochs", 0) >= 1000
                      for row in data["rows"]) else ""), ""]


def _budgets(data: dict) -> list[str]:
    lines = []
    for model in sorted({row["model"] for row in data["rows"]}):
        epochs = max(row.get("epochs", 0) for row in data["rows"] if row["model"] == model)
        preset = PRESETS.get(model)
        source_epochs = preset_epochs("bernoulli-vae", preset) if preset else None
        lines.append(f"- {model}: " + budget_sentence(epochs, source_epochs, f"the `bernoulli-vae/{preset}` preset"))
        unfinished = [row for row in data["rows"] if row["model"] == model and row.get("complete") is False]
        if unfinished:
            lines.append(f"- {model}: {len(unfinished)} of its runs are unfinished ("
                         + ", ".join(f"{row['relaxation']} at epoch {row['epochs']}" for row in unfinished)
                         + "), without their final evaluation; the same command with `--resume` continues them.")
    lr = (data.get("arguments") or data.get("budget") or {}).get("lr")
    presets_lr = sorted({registry.preset("bernoulli-vae", PRESETS[model])["lr"] for model in PRESETS})
    if lr is not None and [lr] != presets_lr:
        lines.append(f"- Every run trained with Adam's step size {lr:g}, not the presets' "
                     f"{' / '.join(f'{value:g}' for value in presets_lr)}.")
    return lines + [""]


def _render(data: dict) -> list[str]:
    lines = [*table(HEADERS, _rows(data)), *_explanation(data)]
    recorded = data.get("arguments") or data.get("budget") or {}
    expected = len(recorded.get("models") or []) * len(recorded.get("relaxations") or [])
    if expected and len(data["rows"]) < expected:
        lines += [f"Only {len(data['rows'])} of the {expected} runs of the command are recorded: the benchmark was "
                  "still running or was stopped when this JSON was written.", ""]
    architectures = sorted(ANCHORS)
    estimators = sorted({name for values in ANCHORS.values() for name in values})
    lines += ["Yin & Zhou 2019, Table 2: test -log p(x) in nats, after training to convergence:", ""]
    lines += table(["estimator", *architectures],
                   [[name, *(number(ANCHORS[a].get(name), 1) for a in architectures)] for name in estimators])
    return lines + _budgets(data)


def _summary(data: dict) -> list[str]:
    return [*table(HEADERS, _rows(data)), *_explanation(data), *_budgets(data)]


def _arguments(data: dict) -> tuple[dict, list[str]]:
    """An older file's ``budget``: its ``--nll-examples N`` (the first N test images) is no longer an option."""
    budget = dict(data.get("budget") or {})
    if budget:
        budget.setdefault("engine", "module")  # the only engine of the benchmark before --engine
    examples = budget.pop("nll_examples", None)
    return budget, ([f"`--nll-examples {examples}` (the first {examples} test images, an option since replaced by "
                     "a seeded random `--test-subset`)"] if examples is not None else [])


SECTION = Section(
    "Bernoulli-latent estimators", "Every relaxation and estimator pyrovae trains 200 Bernoulli latents with, on "
    "statically binarized MNIST with the linear and nonlinear models of Tucker et al. 2017, beside the test "
    "-log p(x) of Yin & Zhou 2019, Table 2.", _render, _summary, _arguments, order=30)

if __name__ == "__main__":
    main()
