"""The StepLogistic dissertation's MNIST experiments (Sadier-Gane 2020, Figs. 4.6-4.8, 5.2, 5.5, 5.6, A.5, Table 5.2),
with the exact log-likelihood of each trained model beside its bounds.

Bernoulli-latent VAEs (``bernoulli-vae/dissertation-8``, ``-fashion-8``, ``-56``: 512-256 ReLU networks,
Bernoulli decoder on dynamically binarized images, decoder input sigmoid(10 z), Adam 1e-3, batch 128)
trained four ways:

* ``step-logistic``: StepLogistic guide from logits, trained on its ELBO (a true bound on the relaxed model);
* ``step-logistic/alpha``: the same with the dissertation's ``alpha = 2 sigmoid(a)``, which diverges
  (see :class:`pyrovae.distributions.StepLogistic`);
* ``logistic``: Logistic(mu, 1) guide, trained on its ELBO;
* ``logistic/bernoulli-elbo``: the same guide trained on the "Bernoulli ELBO" (relaxed samples scored
  with Bernoulli masses, :class:`pyrovae.infer.RelaxedBernoulliELBO`; not a bound);
* ``concrete/bernoulli-elbo``: binary Concrete (temperatures 1/2 and 2/3), trained on the Bernoulli ELBO.

Every epoch logs the training objective, its test value, the true bound (the ELBO of the discrete
model, :class:`pyrovae.infer.TrueDiscreteBound`) and the guide's dead and saturated latent units on the
test set (:mod:`pyrovae.unit_activity`); after training, the exact test log-likelihood of the discrete
model (:func:`pyrovae.discrete.exact_log_likelihood`, 2^8 states; not for 56-D), the reconstruction loss
of the first two test images of a 4 (mean of 5 hard-latent recreations, Table 5.2) and the posterior
means of 32 test images (Fig. 5.2's histogram). A run whose loss turns NaN stops
(``TrainingDivergedError``) and is recorded as diverged at that epoch.

``--seeds 0 1 2`` runs every (preset, run) with each seed: the JSON holds one entry per seed and a
``summary`` with the mean, spread and range over the seeds. ``--set KEY=VALUE`` changes a setting of
every run, e.g. the guide's ``centred_logits=true`` (against dead units, see
:class:`pyrovae.guides.BernoulliLatentGuide`) or the dissertation's grey-value data,
``binarize=null`` with ``likelihood=bernoulli_cross_entropy`` (Sadier-Gane 2020, eq. 3.3; not a
normalised density, see :class:`pyrovae.nn.likelihoods.BernoulliCrossEntropy`).

The dissertation trained 125 epochs, each preset's budget; ``--epochs`` stops earlier. Every run keeps
a run directory (config, metrics and the newest checkpoints, written each epoch) under ``--runs-dir``
(default ``<cache>/benchmarks/dissertation/<output>/<preset>-<run>-seed<S>``, ``<cache>`` being
``$PYROVAE_CACHE_DIR`` or ``~/.cache/pyrovae``), outside the repository. Stop the script at any
moment; ``--resume`` continues every selected run from its last finished epoch (one stopped before its
first epoch ended starts again), keeps the entries of the runs not selected, and keeps without training
again a selected run whose entry already has its epochs, so that a run directory lost with its machine
costs only the unfinished runs. Each entry records the epochs done out of the budget and the command that
reproduces it.

    python -m benchmarks.dissertation --presets dissertation-fashion-8 --seeds 0 1 2 [--epochs 12] [--resume]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from benchmarks.common import (
    RESULTS,
    continuation,
    parse_setting,
    print_table,
    reached,
    recorded_runs,
    save_results,
    setting_text,
    settings_suffix,
)
from benchmarks.page import Section, budget_sentence, cell, number, preset_epochs, table
from pyrovae import references
from pyrovae.arguments import Parser
from pyrovae.callbacks import Checkpoint, TestObjective
from pyrovae.checkpoint import METRICS, CheckpointError, RunExistsError, TrainingDivergedError
from pyrovae.data import cache_dir
from pyrovae.discrete import MAX_UNITS, exact_log_likelihood
from pyrovae.distributions import StepLogistic
from pyrovae.experiment import Experiment, build
from pyrovae.infer import RelaxedBernoulliELBO, bernoulli_view
from pyrovae.io import read_jsonl
from pyrovae.plots import save_figure
from pyrovae.registry import get
from pyrovae.train import fit
from pyrovae.unit_activity import DeadUnitsLog, unit_activity

#: run name: (relaxation, train on the Bernoulli ELBO?)
RUNS = {
    "step-logistic": ("step-logistic", False),
    # The dissertation's parameterization, StepLogistic(2 sigmoid(a)): kept to show why it diverged.
    "step-logistic/alpha": ("step-logistic", False),
    "logistic": ("logistic", False),
    "logistic/bernoulli-elbo": ("logistic", True),
    "concrete/bernoulli-elbo": ("concrete", True),
}


@torch.no_grad()
def recreations(model, guide, images: torch.Tensor, repeats: int = 5) -> tuple[list[float], torch.Tensor]:
    """For each image, the mean over ``repeats`` hard-latent recreations of -log p(x | z_d),
    z_d ~ Bernoulli(q(x)) (nats, Table 5.2), and the recreated mean images ``(images, repeats, D)``."""
    losses, pictures = [], []
    for image in images:
        x = image.unsqueeze(0).expand(repeats, -1)
        z = torch.bernoulli(bernoulli_view(guide.posterior(x)).probs)
        losses.append(-model.decode(z).log_prob(x).mean().item())
        pictures.append(model.decode_mean(z))
    return losses, torch.stack(pictures)


def run_name(preset: str, name: str, settings: dict, seed: int) -> str:
    """The run directory's name: ``<preset>-<run>[-<key>=<value>...]-seed<S>`` (``/`` in a run's name as ``+``)."""
    return f"{preset}-{name.replace('/', '+')}{settings_suffix(settings)}-seed{seed}"


def benchmark_command(args: argparse.Namespace, presets: list[str], runs: list[str], seeds: list[int],
                      epochs: int | None) -> str:
    """The command that reproduces these runs: every argument that changes them, none that only locates files."""
    parts = ["python", "-m", "benchmarks.dissertation", "--presets", *presets, "--runs", *runs,
             "--seeds", *map(str, seeds)]
    if epochs is not None:
        parts += ["--epochs", str(epochs)]
    parts += ["--threads", str(args.threads)]
    for key, value in sorted(args.settings.items()):
        parts += ["--set", f"{key}={setting_text(value)}"]
    return shlex.join(parts)


def run_one(preset: str, name: str, seed: int, args: argparse.Namespace) -> dict:
    relaxation, bernoulli_elbo = RUNS[name]
    experiment = Experiment.resolve({"model": "bernoulli-vae", "preset": preset, "relaxation": relaxation,
                                     "seed": seed, **args.settings})
    budget = experiment.run.epochs
    epochs = budget if args.epochs is None else min(args.epochs, budget)
    train, test, model, guide, objective = build(experiment, args.data_dir)
    if name == "step-logistic/alpha":
        guide.relaxation = dataclasses.replace(
            guide.relaxation, posterior=lambda settings, logits: StepLogistic(2 * torch.sigmoid(logits)))
    if bernoulli_elbo:
        objective = RelaxedBernoulliELBO(max_plate_nesting=1, relaxed_value=model.decoder_input)
    callbacks = get("bernoulli-vae").training_callbacks(experiment.model, model, guide, test)
    if bernoulli_elbo:
        callbacks.append(TestObjective(objective))
    callbacks.append(DeadUnitsLog(guide, test))

    run_dir = args.runs_dir / run_name(preset, name, args.settings, seed)
    resume, overwrite = continuation(run_dir, args.resume, args.force)
    diverged = None
    try:
        rows = fit(model, guide, objective, train, test, epochs=epochs, batch_size=experiment.run.batch_size,
                   lr=experiment.run.lr, seed=seed, engine=experiment.run.engine,
                   callbacks=[*callbacks, Checkpoint(run_dir, resume=resume, overwrite=overwrite,
                                                     config=experiment.to_dict())]).rows
    except TrainingDivergedError as error:
        diverged = str(error)
        rows = read_jsonl(run_dir / METRICS) if (run_dir / METRICS).exists() else []
    model.eval(), guide.eval()
    result = {"preset": preset, "run": name, "seed": seed, "settings": args.settings, "relaxation": relaxation,
              "trained_on": "bernoulli_elbo" if bernoulli_elbo else "elbo", "likelihood": experiment.model.likelihood,
              "binarize": experiment.run.binarize, "epochs": len(rows), "budget_epochs": budget,
              "complete": len(rows) >= budget, "minutes": sum(row["seconds"] for row in rows) / 60,
              "diverged": diverged, "command": benchmark_command(args, [preset], [name], [seed], epochs),
              "curve": [{k: row.get(k) for k in CURVE} for row in rows]}
    if diverged:
        return result
    last = rows[-1]
    result.update(train_objective=-last["train_loss"], test_objective=last["test_elbo"],
                  true_bound=last["true_bound"], dead_units=last.get("dead_units"),
                  saturated_units=last.get("saturated_units"), saturated_logits=last.get("saturated_logits"),
                  unit_activity=unit_activity(guide, test).activity.tolist())
    if model.z_dim <= MAX_UNITS:
        result["exact_log_likelihood"] = exact_log_likelihood(model, test).mean().item()
    fours = test.x[test.y == 4][:2] if test.y is not None else test.x[:2]
    losses, pictures = recreations(model, guide, fours)
    result["reconstruction_loss_of_two_fours"] = losses
    result["two_fours"] = fours.round(decimals=3).tolist()
    result["recreations_of_two_fours"] = pictures.round(decimals=3).tolist()
    with torch.no_grad():
        result["posterior_means_of_32"] = guide.posterior(test.x[:32]).mean.flatten().tolist()
    return result


#: The per-epoch figures each run's curve keeps.
CURVE = ("epoch", "train_loss", "test_elbo", "true_bound", "dead_units", "saturated_units", "saturated_logits")
#: The figures summarised over seeds.
SUMMARISED = ("test_objective", "true_bound", "exact_log_likelihood", "dead_units", "saturated_units")


def seed_summary(results: list[dict]) -> list[dict]:
    """Per (preset, run, settings, epochs): the mean, the sample standard deviation (``None`` for one
    seed), the least and the greatest of each figure of :data:`SUMMARISED` over the seeds that did
    not diverge, and which seeds diverged."""
    groups: dict[str, list[dict]] = {}
    for result in results:
        key = json.dumps([result["preset"], result["run"], result.get("settings", {}), result["epochs"]])
        groups.setdefault(key, []).append(result)
    summary = []
    for members in groups.values():
        first, finished = members[0], [r for r in members if not r.get("diverged")]
        entry = {"preset": first["preset"], "run": first["run"], "settings": first.get("settings", {}),
                 "epochs": first["epochs"], "seeds": sorted(r.get("seed", 0) for r in finished),
                 "diverged_seeds": sorted(r.get("seed", 0) for r in members if r.get("diverged"))}
        for figure in SUMMARISED:
            values = [r[figure] for r in finished if r.get(figure) is not None]
            if values:
                entry[figure] = {"mean": statistics.fmean(values),
                                 "std": statistics.stdev(values) if len(values) > 1 else None,
                                 "min": min(values), "max": max(values)}
        summary.append(entry)
    return summary


def curves_figure(results: list[dict], preset: str) -> Figure:
    """Per epoch, every run of ``preset`` (one colour per run and settings, one line per seed): the training
    objective, the test true bound and the exact log p(x) above; the dead units on the test set below."""
    runs = [r for r in results if r["preset"] == preset and r["curve"]]
    labels = list(dict.fromkeys(r["run"] + _settings_note(r) for r in runs))
    fig = Figure(figsize=(8, 7))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    labelled = set()
    for result in runs:
        name = result["run"] + _settings_note(result)
        colour, first = f"C{labels.index(name) % 10}", name not in labelled
        labelled.add(name)
        epochs = [row["epoch"] for row in result["curve"]]
        top.plot(epochs, [-row["train_loss"] for row in result["curve"]], color=colour, linewidth=1,
                 label=f"{name}: training objective" if first else None)
        top.plot(epochs, [row["true_bound"] for row in result["curve"]], color=colour, linestyle="--", linewidth=1,
                 label=f"{name}: true bound (test)" if first else None)
        if "exact_log_likelihood" in result:
            top.axhline(result["exact_log_likelihood"], color=colour, linestyle=":", linewidth=0.8)
        dead = [(row["epoch"], row["dead_units"]) for row in result["curve"] if row.get("dead_units") is not None]
        if dead:
            bottom.plot(*zip(*dead), color=colour, linewidth=1, label=name if first else None)
    top.set_ylabel("nats per image (higher is better)")
    top.set_title(f"bernoulli-vae/{preset}: objectives, true bounds (dashed), exact log p(x) (dotted); "
                  "a line per seed", fontsize=9)
    top.legend(fontsize=7)
    top.set_ylim(bottom=np.percentile([row["true_bound"] for r in runs for row in r["curve"]], 10))
    bottom.set_xlabel("epoch")
    bottom.set_ylabel("dead units (test)")
    if bottom.lines:
        bottom.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _first_seed(runs: list[dict]) -> list[dict]:
    seed = min(r.get("seed", 0) for r in runs)
    return [r for r in runs if r.get("seed", 0) == seed]


def recreations_figure(results: list[dict], preset: str) -> Figure:
    """Fig. 5.6: the two 4s and each run's five hard-latent recreations of them, with Table 5.2's losses
    (the first seed's runs)."""
    runs = _first_seed([r for r in results if r["preset"] == preset and "two_fours" in r])
    fig = Figure(figsize=(7, 1.2 * (len(runs) + 1)))
    axes = fig.subplots(len(runs) + 1, 2, squeeze=False)
    side = int(len(runs[0]["two_fours"][0]) ** 0.5)
    for column in range(2):
        original = torch.tensor(runs[0]["two_fours"][column]).reshape(1, side, side)
        rows = [torch.cat([original, torch.zeros(4, side, side)])]
        rows += [torch.tensor(r["recreations_of_two_fours"][column]).reshape(-1, side, side) for r in runs]
        for row, images in enumerate(rows):
            ax = axes[row, column]
            ax.imshow(torch.cat(list(images), dim=1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            label = "original" if row == 0 else f"{runs[row - 1]['run']}: {runs[row - 1]['reconstruction_loss_of_two_fours'][column]:.1f} nats"
            ax.set_title(label, fontsize=7)
    fig.suptitle(f"bernoulli-vae/{preset}: five hard-latent recreations of two 4s (Fig. 5.6, Table 5.2)", fontsize=8)
    return fig


def posterior_means_figure(results: list[dict], preset: str) -> Figure:
    """Fig. 5.2: histogram of the guides' posterior means over 32 test images (the first seed's runs)."""
    runs = _first_seed([r for r in results if r["preset"] == preset and "posterior_means_of_32" in r])
    fig = Figure(figsize=(8, 2.5 * len(runs)))
    for ax, run in zip(fig.subplots(len(runs), 1, squeeze=False)[:, 0], runs):
        ax.hist(run["posterior_means_of_32"], bins=45)
        ax.set_title(f"{run['run']}: posterior means of 32 test images", fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="stop at this epoch (default: the preset's budget, 125)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="run every (preset, run) with each seed")
    parser.add_argument("--presets", nargs="+", default=["dissertation-8", "dissertation-fashion-8"])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--set", dest="settings", type=parse_setting, nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE", help="a model or run setting over the preset's (repeatable), e.g. "
                        "centred_logits=true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", default="dissertation")
    parser.add_argument("--runs-dir", default=None,
                        help="run directories (default: <cache>/benchmarks/dissertation/<output>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue each run from its last checkpoint (without it, an existing run is refused)")
    parser.add_argument("--force", action="store_true", help="restart a run whose run directory exists")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    args.settings = dict(args.settings)
    args.runs_dir = (cache_dir() / "benchmarks" / "dissertation" / args.output if args.runs_dir is None
                     else Path(args.runs_dir).expanduser())
    torch.set_num_threads(args.threads)
    selected = [(preset, name, seed) for seed in args.seeds for preset in args.presets for name in args.runs]
    same = lambda r, p, n, s: (r["preset"], r["run"], r.get("seed", 0), r.get("settings", {})) == (  # noqa: E731
        p, n, s, args.settings)
    # This invocation's arguments (the page's command); each run's entry records its own command too.
    arguments = {"presets": args.presets, "runs": args.runs, "seeds": args.seeds, "epochs": args.epochs,
                 "threads": args.threads,
                 "set": [f"{k}={setting_text(v)}" for k, v in sorted(args.settings.items())] or None,
                 "output": args.output}
    done: list[dict] = []

    def save() -> tuple[Path, list[dict]]:
        """Write this invocation's finished runs beside the others in the file, read again just before, so that
        processes running other selections into the same output (one seed each, say) keep each other's
        entries; a selected run's old entry is replaced by its new one."""
        results = [r for r in recorded_runs(args.output, "runs") if not any(same(r, *key) for key in selected)] + done
        return save_results(args.output, {"runs": results, "summary": seed_summary(results)}, args=arguments,
                            benchmark="dissertation"), results

    recorded = recorded_runs(args.output, "runs") if args.resume else []
    for preset, name, seed in selected:
        finished = next((r for r in recorded if same(r, preset, name, seed) and finished_entry(r, args.epochs)), None)
        if finished is not None:  # its run directory may be gone (another machine): nothing to redo
            print(f"resuming: {preset} {name} seed {seed} already finished in {args.output}.json")
            done.append(finished)
            continue
        done.append(run_one(preset, name, seed, args))
        print_table(done[-1:], COLUMNS)
        save()  # after every run, so that a run stopped later keeps the finished ones
    path, results = save()
    for preset in args.presets:
        save_figure(curves_figure(results, preset), RESULTS / f"{args.output}-{preset}.png")
        if any("two_fours" in r for r in results if r["preset"] == preset):
            save_figure(recreations_figure(results, preset), RESULTS / f"{args.output}-{preset}-fours.png")
            save_figure(posterior_means_figure(results, preset), RESULTS / f"{args.output}-{preset}-means.png")
    print()
    print_table(results, COLUMNS)
    print(f"wrote {path}")


def finished_entry(run: dict, epochs: int | None) -> bool:
    """Whether a recorded run needs no more training for ``--epochs`` (``None``: the preset's budget):
    it reached them, or it diverged. An entry written before entries recorded their budget is run again."""
    if "budget_epochs" not in run:
        return False
    return bool(run.get("diverged")) or reached(run["epochs"], run["budget_epochs"], epochs)


COLUMNS = ["preset", "run", "seed", "epochs", "train_objective", "test_objective", "true_bound", "exact_log_likelihood",
           "dead_units", "saturated_units", "diverged", "minutes"]

# ------------------------------------------------------------------------------- the results page

#: Likelihoods whose "log p(x)" is no log-likelihood (:class:`pyrovae.nn.likelihoods.BernoulliCrossEntropy`).
UNNORMALISED_LIKELIHOODS = ("bernoulli_cross_entropy",)


def _settings_note(run: dict) -> str:
    note = "".join(f" ({key}={value})" for key, value in sorted((run.get("settings") or {}).items()))
    return note + ("*" if run.get("likelihood") in UNNORMALISED_LIKELIHOODS else "")


def _spread(figure: dict | None) -> str:
    if not figure:
        return "-"
    spread = f" ± {number(figure['std'])}" if figure.get("std") is not None else ""
    return f"{number(figure['mean'])}{spread} ({number(figure['min'])} to {number(figure['max'])})"


def _render(data: dict) -> list[str]:
    rows, diverged = [], []
    for run in data["runs"]:
        losses = run.get("reconstruction_loss_of_two_fours")
        rows.append([f"`{run['preset']}`", cell(run["run"]) + _settings_note(run), number(run.get("seed", 0)),
                     cell(run.get("trained_on")), number(run.get("epochs")),
                     number(run.get("train_objective")), number(run.get("test_objective")), number(run.get("true_bound")),
                     number(run.get("exact_log_likelihood")),
                     ", ".join(number(x, 1) for x in losses) if isinstance(losses, list) else "-",
                     number(run.get("dead_units")), number(run.get("saturated_units")),
                     "yes" if run.get("diverged") else "no", number(run.get("minutes"), 1)])
        if run.get("diverged"):
            diverged.append(f"- `{run['preset']}` {run['run']} (seed {run.get('seed', 0)}): {cell(run['diverged'])}")
    lines = table(["preset", "run", "seed", "trained on", "epochs", "training objective", "test objective",
                   "true bound (test)", "exact log p(x) (test)", "-log p(x|z_d) of two 4s (Table 5.2)",
                   "dead units", "saturated units", "diverged", "minutes"], rows)
    summary = [entry for entry in data.get("summary") or [] if len(entry["seeds"]) > 1]
    if summary:
        figures = ("test_objective", "true_bound", "exact_log_likelihood", "dead_units")
        lines += ["Over seeds: mean ± sample standard deviation (least to greatest).", ""]
        lines += table(["preset", "run", "epochs", "seeds", "test objective", "true bound (test)",
                        "exact log p(x) (test)", "dead units", "diverged seeds"],
                       [[f"`{entry['preset']}`", cell(entry["run"]) + _settings_note(entry),
                         number(entry["epochs"]), ", ".join(map(str, entry["seeds"])),
                         *(_spread(entry.get(figure)) for figure in figures),
                         ", ".join(map(str, entry["diverged_seeds"])) or "-"] for entry in summary])
    lines.append("Nats per image (higher is better, except the reconstruction losses). The true bound is the ELBO of "
                 "the discrete model; the exact log-likelihood sums over all 2^8 latent states (not for 56-D). "
                 "A dead unit's posterior probability varies by at most 0.01 in variance over the test set "
                 "(Burda et al. 2016); a saturated one has |logit| > 10 for every test image "
                 "(`pyrovae.unit_activity`). "
                 "The concrete run is the binary Concrete relaxation of Maddison et al. 2017.")
    lines += ["", "Why units die: a logit a gets every gradient through sigma(a) sigma(-a), which vanishes as |a| "
              "grows, and the StepLogistic KL is capped at log 2 per unit (Sadier-Gane 2020, eq. 5.5), so nothing in "
              "its ELBO holds the logits back; a unit whose logits all land on one side early stays there, carrying "
              "nothing. The remedy under test is `--set centred_logits=true`: each unit's logits standardised over "
              "the batch, times a learnt scale (`pyrovae.guides.BernoulliLatentGuide`). The figures below the "
              "table give the dead units of every run per epoch."]
    if any(run.get("likelihood") in UNNORMALISED_LIKELIHOODS for run in data["runs"]):
        lines += ["", "\\* Trained and scored on grey values with the dissertation's Bernoulli cross-entropy "
                  "(Sadier-Gane 2020, eq. 3.3), which is not a normalised density: its bounds and its \"exact "
                  "log p(x)\" are not log-likelihoods, and compare only with runs on the same data."]
    lines += [""]
    if diverged:
        lines += ["Diverged runs:", "", *diverged, ""]
    commands = list(dict.fromkeys(run["command"] for run in data["runs"] if isinstance(run.get("command"), str)))
    legacy = sum(not isinstance(run.get("command"), str) for run in data["runs"])
    if commands or legacy:
        lines += ["Commands of the runs (a file can gather the runs of several commands):", "",
                  *(f"- `{command}`" for command in commands)]
        if legacy:
            lines.append(f"- {legacy} runs were written before each run recorded its command, by an older "
                         "`--seed` version of this script (its arguments are the JSON's `budget`)")
        lines += [""]
    recorded = data.get("arguments") or data.get("budget") or {}
    expected = (len(recorded.get("presets") or []) * len(recorded.get("runs") or [])
                * len(recorded.get("seeds") or [0]))
    if expected and len(rows) < expected:
        lines += [f"Only {len(rows)} of the {expected} runs of the command are recorded: the benchmark was still "
                  "running or was stopped when this JSON was written.", ""]
    lines += _pair_table(data["runs"])
    groups: dict[tuple[str, int], list[str]] = {}
    for run in data["runs"]:
        if not run.get("diverged"):
            name = f"{run['run']}{_settings_note(run)} (seed {run.get('seed', 0)})"
            groups.setdefault((run["preset"], run.get("epochs", 0)), []).append(name)
    for (preset, epochs), names in sorted(groups.items(), key=lambda item: (item[0][0], -item[0][1])):
        lines.append(f"- `{preset}`, {', '.join(names)}: " + budget_sentence(
            epochs, preset_epochs("bernoulli-vae", preset), "Sadier-Gane 2020"))
    return lines + [""]


#: Sadier-Gane 2020's StepLogistic-over-Logistic ELBO gain (MNIST, 8 latents) and Table 5.2 (pyrovae/references.json).
ELBO_GAIN, ELBO_GAIN_PRESET = "sadier-gane2020/steplogistic-elbo-gain", "dissertation-8"
TABLE_5_2 = {name: (f"sadier-gane2020/table5.2-{name.replace('-', '')}-first-4",
                    f"sadier-gane2020/table5.2-{name.replace('-', '')}-second-4") for name in ("step-logistic", "logistic")}


def pair_differences(runs: list[dict]) -> list[dict]:
    """StepLogistic against Logistic, seed by seed, for each preset and settings where both finished:
    per seed the differences (StepLogistic minus Logistic) of the test objective, true bound and exact
    log p(x), and the objective's gain as a percentage of Logistic's magnitude (Sadier-Gane 2020's measure)."""
    finished = {(r["preset"], json.dumps(r.get("settings", {}), sort_keys=True), r["run"], r.get("seed", 0)): r
                for r in runs if not r.get("diverged") and r.get("test_objective") is not None}
    pairs: dict[tuple[str, str], dict] = {}
    for (preset, settings, name, seed), step in sorted(finished.items()):
        logistic = finished.get((preset, settings, "logistic", seed))
        if name != "step-logistic" or logistic is None:
            continue
        pair = pairs.setdefault((preset, settings), {"preset": preset, "settings": json.loads(settings), "seeds": [],
                                                     "epochs": [], "gain_percent": [], "test_objective": [],
                                                     "true_bound": [], "exact_log_likelihood": []})
        pair["seeds"].append(seed)
        pair["epochs"] += [step["epochs"], logistic["epochs"]]
        pair["gain_percent"].append(100 * (step["test_objective"] - logistic["test_objective"])
                                    / abs(logistic["test_objective"]))
        for figure in ("test_objective", "true_bound", "exact_log_likelihood"):
            if step.get(figure) is not None and logistic.get(figure) is not None:
                pair[figure].append(step[figure] - logistic[figure])
    return list(pairs.values())


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    spread = f" ± {number(statistics.stdev(values))}" if len(values) > 1 else ""
    return f"{number(statistics.fmean(values), 2)}{spread}"


def _pair_table(runs: list[dict]) -> list[str]:
    pairs = pair_differences(runs)
    if not pairs:
        return []
    gain = references.get(ELBO_GAIN)
    rows = [[f"`{pair['preset']}`", cell(", ".join(f"{k}={v}" for k, v in sorted(pair["settings"].items())) or "preset"),
             f"{min(pair['epochs'])} to {max(pair['epochs'])}" if len(set(pair["epochs"])) > 1 else number(pair["epochs"][0]),
             ", ".join(map(str, pair["seeds"])), _mean_sd(pair["test_objective"]), _mean_sd(pair["gain_percent"]),
             _mean_sd(pair["true_bound"]), _mean_sd(pair["exact_log_likelihood"]),
             f"{number(gain.value, 1)}% (ELBO)" if pair["preset"] == ELBO_GAIN_PRESET else "-"] for pair in pairs]
    table52 = "; ".join(f"{name}: " + ", ".join(number(references.get(key).value, 1) for key in keys)
                        for name, keys in TABLE_5_2.items())
    return ["StepLogistic minus Logistic, seed by seed (mean ± sample standard deviation over the seeds; positive: "
            "StepLogistic higher), beside the dissertation's comparison:", "",
            *table(["preset", "settings", "epochs", "seeds", "test objective (ELBO)", "as % of Logistic's",
                    "true bound (test)", "exact log p(x) (test)", "Sadier-Gane 2020"], rows),
            f"{gain.source}. Its Table 5.2 (the two 4s' -log p(x|z_d), MNIST 8-D): {table52} "
            f"({references.get(TABLE_5_2['logistic'][0]).note}).", ""]


SECTION = Section(
    "StepLogistic dissertation", "The MNIST experiments of Sadier-Gane 2020 (Bernoulli-latent VAEs trained "
    "with StepLogistic, Logistic and Concrete relaxations, on their ELBO or on the \"Bernoulli ELBO\"): the "
    "true bound, the exact log-likelihood, the dead latent units and Table 5.2's reconstruction losses, over "
    "seeds.", _render, order=40)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (RunExistsError, CheckpointError, ValueError) as error:
        sys.exit(f"error: {error}")
