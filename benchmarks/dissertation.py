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

Every epoch logs the training objective, its test value and the true bound (the ELBO of the discrete
model, :class:`pyrovae.infer.TrueDiscreteBound`); after training, the exact test log-likelihood of
the discrete model (:func:`pyrovae.discrete.exact_log_likelihood`, 2^8 states; not for 56-D), the
reconstruction loss of the first two test images of a 4 (mean of 5 hard-latent recreations, Table 5.2)
and the posterior means of 32 test images (Fig. 5.2's histogram). The dissertation trained 125 epochs;
``--epochs`` says how many were used here. A run whose loss turns NaN stops (``TrainingDivergedError``)
and is recorded as diverged at that epoch.

    python -m benchmarks.dissertation [--epochs 15] [--presets dissertation-8 dissertation-fashion-8] [--runs ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from matplotlib.figure import Figure

from benchmarks.common import RESULTS, finished_runs, print_table, save_results
from benchmarks.page import Section, budget_sentence, cell, number, preset_epochs, table
from pyrovae.callbacks import OnEpochEnd, TestObjective
from pyrovae.checkpoint import TrainingDivergedError
from pyrovae.discrete import MAX_UNITS, exact_log_likelihood
from pyrovae.distributions import StepLogistic
from pyrovae.experiment import Experiment, build
from pyrovae.infer import RelaxedBernoulliELBO, bernoulli_view
from pyrovae.plots import save_figure
from pyrovae.registry import get
from pyrovae.train import fit

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


def run_one(preset: str, name: str, args) -> dict:
    relaxation, bernoulli_elbo = RUNS[name]
    experiment = Experiment.resolve({"model": "bernoulli-vae", "preset": preset, "relaxation": relaxation,
                                     "epochs": args.epochs, "seed": args.seed})
    train, test, model, guide, objective = build(experiment, args.data_dir)
    if name == "step-logistic/alpha":
        guide.relaxation = dataclasses.replace(
            guide.relaxation, posterior=lambda settings, logits: StepLogistic(2 * torch.sigmoid(logits)))
    if bernoulli_elbo:
        objective = RelaxedBernoulliELBO(max_plate_nesting=1, relaxed_value=model.decoder_input)
    callbacks = get("bernoulli-vae").training_callbacks(experiment.model, model, guide, test)
    if bernoulli_elbo:
        callbacks.append(TestObjective(objective))
    rows = []

    start, diverged = time.perf_counter(), None
    try:
        fit(model, guide, objective, train, test, epochs=args.epochs, batch_size=experiment.run.batch_size,
            lr=experiment.run.lr, seed=args.seed, engine="module",
            callbacks=[*callbacks, OnEpochEnd(lambda epoch, row: rows.append(dict(row)))])
    except TrainingDivergedError as error:
        diverged = str(error)
    model.eval(), guide.eval()
    result = {"preset": preset, "run": name, "relaxation": relaxation,
              "trained_on": "bernoulli_elbo" if bernoulli_elbo else "elbo",
              "epochs": len(rows), "minutes": (time.perf_counter() - start) / 60, "diverged": diverged,
              "curve": [{k: row.get(k) for k in ("epoch", "train_loss", "test_elbo", "true_bound")} for row in rows]}
    if diverged:
        return result
    last = rows[-1]
    result.update(train_objective=-last["train_loss"], test_objective=last["test_elbo"],
                  true_bound=last["true_bound"])
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


def curves_figure(results: list[dict], preset: str) -> Figure:
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for index, result in enumerate(r for r in results if r["preset"] == preset and r["curve"]):
        colour = f"C{index}"
        epochs = [row["epoch"] for row in result["curve"]]
        ax.plot(epochs, [-row["train_loss"] for row in result["curve"]], color=colour,
                label=f"{result['run']}: training objective")
        ax.plot(epochs, [row["true_bound"] for row in result["curve"]], color=colour, linestyle="--",
                label=f"{result['run']}: true bound (test)")
        if "exact_log_likelihood" in result:
            ax.axhline(result["exact_log_likelihood"], color=colour, linestyle=":", linewidth=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image (higher is better)")
    ax.set_title(f"bernoulli-vae/{preset}: objectives, true bounds (dashed), exact log p(x) (dotted)")
    ax.legend(fontsize=7)
    bottom = np.percentile([row["true_bound"] for r in results if r["preset"] == preset for row in r["curve"]], 10)
    ax.set_ylim(bottom=bottom)
    return fig


def recreations_figure(results: list[dict], preset: str) -> Figure:
    """Fig. 5.6: the two 4s and each run's five hard-latent recreations of them, with Table 5.2's losses."""
    runs = [r for r in results if r["preset"] == preset and "two_fours" in r]
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
    """Fig. 5.2: histogram of the guides' posterior means over 32 test images."""
    runs = [r for r in results if r["preset"] == preset and "posterior_means_of_32" in r]
    fig = Figure(figsize=(8, 2.5 * len(runs)))
    for ax, run in zip(fig.subplots(len(runs), 1, squeeze=False)[:, 0], runs):
        ax.hist(run["posterior_means_of_32"], bins=45)
        ax.set_title(f"{run['run']}: posterior means of 32 test images", fontsize=8)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--presets", nargs="+", default=["dissertation-8", "dissertation-fashion-8"])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", default="dissertation")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in the output file and skip them")
    parser.add_argument("--retry-diverged", action="store_true", help="with --resume, run the diverged runs again")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    selected = lambda r: r["preset"] in args.presets and r["run"] in args.runs  # noqa: E731
    results = finished_runs(args.output, "runs", lambda r: args.retry_diverged and "diverged" in r and selected(r)) \
        if args.resume else []
    columns = ["preset", "run", "epochs", "train_objective", "test_objective", "true_bound", "exact_log_likelihood",
               "diverged", "minutes"]
    for preset in args.presets:
        for name in args.runs:
            if any(r["preset"] == preset and r["run"] == name for r in results):
                continue
            results.append(run_one(preset, name, args))
            print_table(results[-1:], columns)
            save_results(args.output, {"runs": results}, args=args, benchmark="dissertation")
        save_figure(curves_figure(results, preset), RESULTS / f"{args.output}-{preset}.png")
        if any("two_fours" in r for r in results if r["preset"] == preset):
            save_figure(recreations_figure(results, preset), RESULTS / f"{args.output}-{preset}-fours.png")
            save_figure(posterior_means_figure(results, preset), RESULTS / f"{args.output}-{preset}-means.png")
    print()
    print_table(results, columns)
    print(f"wrote {save_results(args.output, {'runs': results}, args=args, benchmark='dissertation')}")



# ------------------------------------------------------------------------------- the results page

def _render(data: dict) -> list[str]:
    rows, diverged = [], []
    for run in data["runs"]:
        losses = run.get("reconstruction_loss_of_two_fours")
        rows.append([f"`{run['preset']}`", cell(run["run"]), cell(run.get("trained_on")), number(run.get("epochs")),
                     number(run.get("train_objective")), number(run.get("test_objective")), number(run.get("true_bound")),
                     number(run.get("exact_log_likelihood")),
                     ", ".join(number(x, 1) for x in losses) if isinstance(losses, list) else "-",
                     "yes" if run.get("diverged") else "no", number(run.get("minutes"), 1)])
        if run.get("diverged"):
            diverged.append(f"- `{run['preset']}` {run['run']}: {cell(run['diverged'])}")
    lines = table(["preset", "run", "trained on", "epochs", "training objective", "test objective",
                   "true bound (test)", "exact log p(x) (test)", "-log p(x|z_d) of two 4s (Table 5.2)",
                   "diverged", "minutes"], rows)
    lines.append("Nats per image (higher is better, except the reconstruction losses). The true bound is the ELBO of "
                 "the discrete model; the exact log-likelihood sums over all 2^8 latent states (not for 56-D). "
                 "The concrete run is the binary Concrete relaxation of Maddison et al. 2017.")
    lines += [""]
    if diverged:
        lines += ["Diverged runs:", "", *diverged, ""]
    recorded = data.get("arguments") or data.get("budget") or {}
    expected = len(recorded.get("presets") or []) * len(recorded.get("runs") or [])
    if expected and len(rows) < expected:
        lines += [f"Only {len(rows)} of the {expected} runs of the command are recorded: the benchmark was still "
                  "running or was stopped when this JSON was written.", ""]
    lines += ["The dissertation's own values (Table 5.2, Figs. 4.6-4.8) are not recorded in the JSON or in this "
              "repository, so no source value is printed beside these rows.", ""]
    for preset in sorted({run["preset"] for run in data["runs"]}):
        epochs = max(run.get("epochs", 0) for run in data["runs"] if run["preset"] == preset)
        lines.append(f"- `{preset}`: " + budget_sentence(epochs, preset_epochs("bernoulli-vae", preset),
                                                         "Sadier-Gane 2020"))
    return lines + [""]


SECTION = Section(
    "StepLogistic dissertation", "The MNIST experiments of Sadier-Gane 2020 (Bernoulli-latent VAEs trained "
    "with StepLogistic, Logistic and Concrete relaxations, on their ELBO or on the \"Bernoulli ELBO\"): the "
    "true bound, the exact log-likelihood and Table 5.2's reconstruction losses.", _render, order=40)


if __name__ == "__main__":
    main()
