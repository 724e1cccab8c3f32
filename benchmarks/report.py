"""Rebuild ``docs/results.md`` from the JSON files the benchmarks write in ``benchmarks/results/``.

One section per file: what the benchmark measures, every reproduced number beside its source's
value (Burda et al. 2016, Yin & Zhou 2019, Maddison et al. 2017, Yang 2022, Sadier-Gane 2020), the
command that produced it, its date and the machine it ran on. A file no section knows gets a generic
table of its fields, and a file that cannot be read gets a note, so a new or half-written benchmark
never breaks the page. The page is deterministic (fixed order, fixed float formats): a test rebuilds
it from the committed JSON and compares it with the committed page.

A result's date is the ``date`` field of its JSON if it has one, else the date of the git commit that
last changed the file, else ``uncommitted``. So after a benchmark writes new results: commit the
JSON, then run this script and commit ``docs/results.md``.

    python -m benchmarks.report              # from the files in benchmarks/results/
    python -m benchmarks.report --committed  # from the files as committed at HEAD (what the test checks)
    python -m benchmarks.report --check      # exit 1 if docs/results.md differs from the rebuilt page
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = "benchmarks/results"
PAGE = "docs/results.md"
STALE = "docs/results.md is stale: run python -m benchmarks.report"

#: Iterations of the toy model's SVI in Sadier-Gane 2020, Figure 5.1.
DISSERTATION_TOY_STEPS = 400


@dataclass(frozen=True)
class ResultFile:
    """One benchmark result: its file name, its text (``None`` if it could not be read) and its date."""

    name: str
    text: str | None
    date: str
    error: str | None = None


# --------------------------------------------------------------------------------------------- reading

def _git(repo: Path, *args: str) -> str | None:
    """``git -C repo args`` standard output, or ``None`` when git or the repository is missing."""
    try:
        completed = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return completed.stdout if completed.returncode == 0 else None


def repository_root(path: Path) -> Path | None:
    """The top of the git work tree holding ``path``, or ``None``."""
    top = _git(path, "rev-parse", "--show-toplevel")
    return Path(top.strip()) if top else None


def is_shallow(repo: Path) -> bool:
    """Whether ``repo`` is a shallow clone, whose commit dates of old files are those of its oldest commit."""
    return (_git(repo, "rev-parse", "--is-shallow-repository") or "").strip() == "true"


def commit_date(repo: Path, path: str, rev: str = "HEAD") -> str | None:
    """The date (YYYY-MM-DD) of the last commit up to ``rev`` that changed ``path``."""
    date = (_git(repo, "log", "-1", "--format=%cs", rev, "--", path) or "").strip()
    return date or None


def committed_text(repo: Path, path: str, rev: str = "HEAD") -> str | None:
    """The text of ``path`` as committed at ``rev``."""
    return _git(repo, "show", f"{rev}:{path}")


def read_directory(directory: Path) -> list[ResultFile]:
    """The ``*.json`` files in ``directory`` as they are on disk. A file that is untracked or differs
    from its committed version is dated ``uncommitted``."""
    directory = Path(directory)
    repo = repository_root(directory)
    changed = set()
    if repo is not None:
        status = _git(repo, "status", "--porcelain", "--untracked-files=all", "--", str(directory.resolve())) or ""
        changed = {(repo / line[3:].strip().strip('"')).resolve() for line in status.splitlines()}
    files = []
    for path in sorted(directory.glob("*.json")):
        try:
            text, error = path.read_text(encoding="utf-8"), None
        except (OSError, UnicodeDecodeError) as exc:
            text, error = None, f"{type(exc).__name__}: {exc}"
        date = None
        if repo is not None and path.resolve() not in changed:
            date = commit_date(repo, str(path.resolve().relative_to(repo)))
        files.append(ResultFile(path.stem, text, date or "uncommitted", error))
    return files


def read_committed(repo: Path = REPO, rev: str = "HEAD") -> list[ResultFile]:
    """The ``*.json`` files of ``benchmarks/results/`` as committed at ``rev``, with their commit dates."""
    listing = _git(repo, "ls-tree", "--name-only", f"{rev}:{RESULTS_DIR}") or ""
    files = []
    for name in sorted(line for line in listing.splitlines() if line.endswith(".json")):
        path = f"{RESULTS_DIR}/{name}"
        text = committed_text(repo, path, rev)
        files.append(ResultFile(name[: -len(".json")], text, commit_date(repo, path, rev) or "uncommitted",
                                None if text is not None else f"git show {rev}:{path} failed"))
    return files


# ------------------------------------------------------------------------------------------ formatting

def number(value, digits: int = 2) -> str:
    """``value`` with a fixed number of decimals (``-`` for a missing value)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        return f"{value:.{digits}f}"
    return cell(value)


def general(value) -> str:
    """A value of unknown meaning: floats to 4 significant digits, containers summarised."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:.4g}"
    if isinstance(value, list):
        if all(isinstance(item, (int, float, str, bool)) or item is None for item in value) and len(value) <= 8:
            return ", ".join(general(item) for item in value)
        return f"(list of {len(value)})"
    if isinstance(value, dict):
        return f"({len(value)} fields)"
    return number(value)


def cell(value) -> str:
    text = "-" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(cell(header) for header in headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def arguments(values: dict) -> str:
    """Command-line arguments for recorded ``argparse`` values, in sorted order (``None`` and ``False`` left out)."""
    words = []
    for key in sorted(values):
        value = values[key]
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            words += [flag, *(str(item) for item in value)]
        else:
            words += [flag, str(value)]
    return " ".join(words)


def difference(value, source, digits: int = 2) -> str:
    if not isinstance(value, (int, float)) or not isinstance(source, (int, float)):
        return "-"
    return f"{value - source:+.{digits}f}"


@functools.cache
def preset_epochs(model: str, preset: str) -> int | None:
    """The epochs of a preset: a preset's settings are those that reproduce its reference result."""
    try:
        from pyrovae.experiment import Experiment

        return Experiment.resolve({"model": model, "preset": preset}).run.epochs
    except Exception:  # an unknown or renamed preset: the page says the source's budget is unknown
        return None


def budget_sentence(epochs, source_epochs, source: str) -> str:
    """Says when a run had a smaller budget than its source, from the recorded epochs."""
    if not isinstance(epochs, int) or not isinstance(source_epochs, int):
        return f"The epochs of this run or of {source} are not known, so the budgets cannot be compared."
    if epochs < source_epochs:
        return (f"This run trained {epochs} epochs against {source}'s {source_epochs:,} "
                f"({100 * epochs / source_epochs:.1f}% of its budget), so its numbers are expected to fall "
                "short of the source's.")
    return f"This run trained {epochs} epochs, at least {source}'s {source_epochs:,}."


# ---------------------------------------------------------------------------------------- the sections

@dataclass(frozen=True)
class Benchmark:
    title: str
    measures: str
    render: Callable[[dict], list[str]]
    arguments: Callable[[dict], dict] = lambda data: {}


def _mnist_nll(data: dict) -> list[str]:
    epochs, source_epochs = data["epochs"], preset_epochs("vae", "burda")
    rows = [
        ["test NLL (nats, lower is better)", number(data["test_nll"]),
         f"{number(data['paper_nll'])} (Burda et al. 2016, Table 1, VAE k=1)", difference(data["test_nll"], data["paper_nll"])],
        ["test NLL of a plain PyTorch loop, same model and schedule, this machine", number(data.get("anchor_nll")), "-", "-"],
        ["target NLL", number(data.get("target_nll")), "-",
         "met" if data.get("target_met") else "not met"],
        ["test ELBO (nats)", number(data.get("test_elbo")), "-", "-"],
        ["epochs", number(epochs), number(source_epochs), "-"],
        ["training minutes", number(data.get("train_minutes"), 1), "-", "-"],
        [f"minutes of the K = {data.get('K')} evaluation on {data.get('eval_threads')} threads",
         number(data.get("eval_minutes"), 1), "-", "-"],
    ]
    return [*table(["quantity", "pyrovae", "source", "difference"], rows),
            f"Trained on {data.get('threads')} thread(s) with the {data.get('engine')} engine. "
            + budget_sentence(epochs, source_epochs, "Burda et al. 2016"),
            "The training budget (`--minutes`) is not recorded in the JSON; the command gives the arguments that are.", ""]


def _mnist_nll_arguments(data: dict) -> dict:
    return {"engine": data.get("engine"), "num_samples": data.get("K"), "threads": data.get("threads"),
            "eval_threads": data.get("eval_threads")}


def _zoo(data: dict) -> list[str]:
    rows, notes = [], []
    for row in sorted(data["rows"], key=lambda r: (r["model"], r["preset"])):
        name = f"`{row['model']}/{row['preset']}`"
        rows.append([name, cell(row["metric"]), number(row["pyrovae"], 3), number(row["reference"], 3),
                     difference(row["pyrovae"], row["reference"], 3),
                     f"{number(row.get('epochs'))} of {number(row.get('preset_epochs'))}",
                     number(row.get("minutes"), 1), cell(row.get("source")), f"`{row.get('command')}`"])
        epochs, source_epochs = row.get("epochs"), row.get("preset_epochs")
        if isinstance(epochs, int) and isinstance(source_epochs, int) and epochs < source_epochs:
            # Every reference metric here is a bound or an evidence: higher is better.
            ahead = isinstance(row["pyrovae"], (int, float)) and row["pyrovae"] >= row["reference"]
            notes.append(f"- {name}: {epochs} of the preset's {source_epochs} epochs within the budget; "
                         + ("above the tutorial's number even so." if ahead else
                            "a gap to the tutorial's number is expected from the smaller budget."))
    lines = table(["model/preset", "metric", "pyrovae", "tutorial (Yang 2022)", "difference", "epochs (of the preset's)",
                   "minutes", "source", "command of the run"], rows)
    if notes:
        lines += [*notes, ""]
    else:
        lines += ["Every run trained its preset's full epochs (the tutorial's).", ""]
    return lines


def _zoo_arguments(data: dict) -> dict:
    models = sorted({row["model"] for row in data.get("rows", []) if isinstance(row, dict) and "model" in row})
    return {"minutes": data.get("minutes_per_run"), "threads": data.get("threads"), "models": models or None}


def _discrete_estimators(data: dict) -> list[str]:
    budget, anchors = data.get("budget") or {}, data["anchors"]
    rows = []
    for row in data["rows"]:
        if row.get("diverged"):
            rows.append([cell(row["model"]), cell(row["relaxation"]), cell(row.get("objective")), "0",
                         f"diverged: {row['diverged']}", "-", "-", cell(row.get("paper")), number(row.get("paper_nll")),
                         "-", "-", "-"])
            continue
        rows.append([cell(row["model"]), cell(row["relaxation"]), cell(row.get("objective")), number(row.get("epochs")),
                     number(row.get("true_bound")), number(row.get("nll_subset_true_bound")), number(row["nll"]),
                     cell(row.get("paper")), number(row.get("paper_nll")), difference(row["nll"], row.get("paper_nll")),
                     number(row.get("encoder_snr"), 3), number(row.get("ms_per_step"), 1)])
    lines = table(["model", "relaxation", "objective", "epochs", "true bound (test)", "true bound (NLL images)",
                   "test NLL", "paper row", "paper NLL (Yin & Zhou 2019)", "NLL - paper", "encoder SNR", "ms/step"], rows)
    lines.append(f"NLL: importance-sampled -log p(x) of the discrete model with {budget.get('nll_samples', '?')} "
                 f"proposals on the first {budget.get('nll_examples', '?')} test images; true bounds in nats (higher "
                 "is better); SNR: mean per-element |E g| / sd(g) of the encoder's gradient over "
                 f"{budget.get('draws', '?')} draws. The Concrete row is the relaxation of Maddison et al. 2017, as "
                 "Yin & Zhou 2019 report it.")
    lines.append("")
    expected = len(budget.get("models") or []) * len(budget.get("relaxations") or [])
    if expected and len(rows) < expected:
        lines += [f"Only {len(rows)} of the {expected} runs of the command are recorded: the benchmark was still "
                  "running or was stopped when this JSON was written.", ""]
    architectures = sorted(anchors)
    estimators = sorted({name for values in anchors.values() for name in values})
    lines += ["Yin & Zhou 2019, Table 2: test -log p(x) in nats, after training to convergence:", ""]
    lines += table(["estimator", *architectures],
                   [[name, *(number(anchors[a].get(name), 1) for a in architectures)] for name in estimators])
    models = sorted({row["model"] for row in data["rows"]})
    for model in models:
        epochs = max(row.get("epochs", 0) for row in data["rows"] if row["model"] == model)
        preset = {"linear": "arm-linear", "nonlinear": "arm-nonlinear"}.get(model)
        source_epochs = preset_epochs("bernoulli-vae", preset) if preset else None
        lines.append(f"- {model}: " + budget_sentence(epochs, source_epochs, f"the `bernoulli-vae/{preset}` preset"))
    return lines + [""]


def _dissertation(data: dict) -> list[str]:
    rows, diverged = [], []
    for run in data["runs"]:
        losses = run.get("reconstruction_loss_of_two_fours")
        rows.append([f"`{run['preset']}`", cell(run["run"]) + _settings_note(run.get("settings"))
                     + ("*" if run.get("likelihood") in UNNORMALISED_LIKELIHOODS else ""),
                     number(run.get("seed", 0)), cell(run.get("trained_on")), number(run.get("epochs")),
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
                       [[f"`{entry['preset']}`", cell(entry["run"]) + _settings_note(entry.get("settings")),
                         number(entry["epochs"]), ", ".join(map(str, entry["seeds"])),
                         *(_spread(entry.get(figure)) for figure in figures),
                         ", ".join(map(str, entry["diverged_seeds"])) or "-"] for entry in summary])
    lines.append("Nats per image (higher is better, except the reconstruction losses). The true bound is the ELBO of "
                 "the discrete model; the exact log-likelihood sums over all 2^8 latent states (not for 56-D). "
                 "A dead unit's posterior probability varies by at most 0.01 in variance over the test set "
                 "(Burda et al. 2016); a saturated one has |logit| > 10 for every test image "
                 "(`pyrovae.unit_activity`). "
                 "The concrete run is the binary Concrete relaxation of Maddison et al. 2017.")
    if any(run.get("likelihood") in UNNORMALISED_LIKELIHOODS for run in data["runs"]):
        lines += ["", "\\* Trained and scored on grey values with the dissertation's Bernoulli cross-entropy "
                  "(Sadier-Gane 2020, eq. 3.3), which is not a normalised density: its bounds and its \"exact "
                  "log p(x)\" are not log-likelihoods, and compare only with runs on the same data."]
    lines += [""]
    if diverged:
        lines += ["Diverged runs:", "", *diverged, ""]
    budget = data.get("budget") or {}
    expected = len(budget.get("presets") or []) * len(budget.get("runs") or []) * len(budget.get("seeds") or [0])
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


#: Likelihoods whose "log p(x)" is no log-likelihood (``pyrovae.nn.likelihoods.BernoulliCrossEntropy``).
UNNORMALISED_LIKELIHOODS = ("bernoulli_cross_entropy",)


def _settings_note(settings: dict | None) -> str:
    return "".join(f" ({key}={value})" for key, value in sorted((settings or {}).items()))


def _spread(figure: dict | None) -> str:
    if not figure:
        return "-"
    spread = f" ± {number(figure['std'])}" if figure.get("std") is not None else ""
    return f"{number(figure['mean'])}{spread} ({number(figure['min'])} to {number(figure['max'])})"


def _toy_posterior(data: dict) -> list[str]:
    reference = data.get("reference") or {}
    rows = []
    for row in data["rows"]:
        guide = row["guide"]
        source = (number(reference.get("prob_positive_exact"), 3) if not guide.startswith("logistic")
                  else cell(reference.get("logistic_guide")))
        rows.append([cell(guide), cell(row.get("params")), number(row["Pr(z>0)"], 4), source,
                     number(row.get("ELBO"), 4), number(row.get("KL to posterior"), 4), number(row.get("seconds"), 1)])
    lines = table(["guide", "parameters", "Pr(z>0)", "Pr(z>0), Sadier-Gane 2020", "ELBO", "KL to posterior",
                   "seconds"], rows)
    lines.append(f"log p(x = 1) = {number(data.get('log_evidence'), 4)}. Source: {cell(reference.get('source'))}.")
    steps = (data.get("config") or {}).get("steps")
    if isinstance(steps, int) and steps < DISSERTATION_TOY_STEPS:
        lines.append(f"This run took {steps} SVI steps against the dissertation's {DISSERTATION_TOY_STEPS}, so its "
                     "guides may not have converged as far.")
    else:
        lines.append(f"SVI steps: {steps} (the dissertation: {DISSERTATION_TOY_STEPS}).")
    if data.get("figure"):
        lines.append(f"Figure: [{data['figure']}](../{RESULTS_DIR}/{data['figure']}).")
    return lines + [""]


def _estimator_comparison(data: dict) -> list[str]:
    rows = [[cell(row["objective"]), number(row["guide_snr"], 3), number(row.get("guide_median_snr"), 3),
             number(row.get("guide_variance"), 3), number(row["model_snr"], 3), number(row.get("model_median_snr"), 3),
             number(row.get("model_variance"), 3), number(row.get("ms_per_draw"), 1)] for row in data["rows"]]
    return [*table(["objective", "guide SNR", "guide median SNR", "guide grad. variance", "model SNR",
                    "model median SNR", "model grad. variance", "ms per draw"], rows),
            f"{data.get('draws')} gradient draws, {data.get('particles')} samples per data point, after "
            f"{data.get('pretrain_epochs')} epochs of Trace_ELBO. No source value: Stojanovič n.d. (§3) plans this "
            "comparison but reports no numbers.", ""]


def _step_overhead(data: dict) -> list[str]:
    rows = [[f"`vae/{row['preset']}`", number(row["threads"]), cell(row["engine"]), number(row["ms_per_step"]),
             number(row.get("p90_ms")), number(row["ratio_to_eager"], 3), number(row["ratio_to_compiled"], 3)]
            for row in data["rows"]]
    met = data.get("targets_met")
    return [*table(["preset", "threads", "engine", "ms/step (median)", "p90 ms", "x eager PyTorch",
                    "x compiled PyTorch"], rows),
            f"Median of {data.get('steps')} steps after {data.get('warmup')} warm-up steps. No paper number: the "
            "reference is a hand-written PyTorch step of the same VAE, measured in the same process. Targets for "
            f"pyrovae's default engine: at most {number(data.get('target_ratio_to_eager'))}x eager and "
            f"{number(data.get('target_ratio_to_compiled'))}x compiled PyTorch: "
            f"{'met' if met else 'not met' if met is not None else 'not recorded'}.", ""]


def _step_overhead_arguments(data: dict) -> dict:
    rows = [row for row in data.get("rows", []) if isinstance(row, dict)]
    presets = list(dict.fromkeys(row["preset"] for row in rows if "preset" in row))
    threads = list(dict.fromkeys(row["threads"] for row in rows if "threads" in row))
    return {"presets": presets or None, "threads": threads or None, "steps": data.get("steps"),
            "warmup": data.get("warmup")}


def _ddp_scaling(data: dict) -> list[str]:
    target = data.get("target_speedup")
    rows = [[number(row["global_batch"]), number(row.get("steps")), number(row["samples_per_s_1x1"], 0),
             number(row["samples_per_s_2x1"], 0), number(row["speedup"]),
             "-" if target is None else ("met" if row["speedup"] >= target else "not met"),
             number(row.get("samples_per_s_independent"), 0), number(row.get("ceiling_speedup"))]
            for row in data["rows"]]
    load = data.get("load_average")
    return [*table(["global batch", "steps", "samples/s, 1 x 1", "samples/s, 2 x 1", "speedup",
                    f"target {number(target)}x", "samples/s, 2 independent", "ceiling"], rows),
            f"Model `{data.get('model')}` on {data.get('dataset')}; median of alternating runs. \"2 independent\": two "
            "single-process trainings at half the batch, timed in the same window with no communication (their "
            "samples/s added): the most any 2-process scheme gets from this machine. No paper number. "
            + (f"Load average when the run ended: {', '.join(number(x) for x in load)}." if isinstance(load, list) else ""),
            ""]


def _ddp_scaling_arguments(data: dict) -> dict:
    rows = [row for row in data.get("rows", []) if isinstance(row, dict)]
    sizes = [row["global_batch"] for row in rows if "global_batch" in row]
    repeats = {len(row["runs_1x1"]) for row in rows if isinstance(row.get("runs_1x1"), list)}
    return {"batch_sizes": sizes or None, "repeats": repeats.pop() if len(repeats) == 1 else None}


def _enumeration_step(data: dict) -> list[str]:
    rows = [[number(row["threads"]), cell(row["contender"]), number(row["ms_per_step"]), number(row.get("p90_ms")),
             number(row["ratio_to_pytorch_eager"], 3)] for row in data["rows"]]
    met = data.get("target_met")
    return [*table(["threads", "contender", "ms/step (median)", "p90 ms", "x hand-written eager PyTorch"], rows),
            f"Median of {data.get('steps')} steps after {data.get('warmup')} warm-up steps. No paper number: the "
            "reference is a hand-written PyTorch loss of the same marginalised bound and networks, measured in the "
            f"same process. Target for pyrovae's default engine: at most {number(data.get('target_ratio'))}x: "
            f"{'met' if met else 'not met' if met is not None else 'not recorded'}.", ""]


def _enumeration_step_arguments(data: dict) -> dict:
    rows = [row for row in data.get("rows", []) if isinstance(row, dict)]
    threads = list(dict.fromkeys(row["threads"] for row in rows if "threads" in row))
    return {"threads": threads or None, "steps": data.get("steps"), "warmup": data.get("warmup")}


def _evaluation_speed(data: dict) -> list[str]:
    rows = [[cell(row["contender"]), number(row["seconds"], 1), number(row["minutes_for_10000"], 1),
             number(row["ratio_to_pytorch_eager"], 3), number(row.get("mean_log_likelihood"))] for row in data["rows"]]
    return [*table(["contender", "seconds", "minutes for 10,000 images", "x plain eager PyTorch",
                    "mean log-likelihood"], rows),
            f"K = {data.get('num_samples')} on the first {data.get('examples')} MNIST test images, "
            f"{data.get('chunk_size')} samples x {data.get('batch_size')} images per pass, {data.get('threads')} "
            f"torch thread(s); minutes for 10,000 images extrapolated linearly. Target: at most "
            f"{number(data.get('target_minutes'), 1)} minutes for the 10,000 test images on this 2-core machine."
            + (f" Load average when the run ended: {', '.join(number(x) for x in data['load_average'])}."
               if isinstance(data.get("load_average"), list) else ""), ""]


#: Known benchmarks, in the page's order; a file ``<name>.json``, ``<name>-<tag>.json`` or ``<name>_<tag>.json``
#: is a result of ``benchmarks/<name>.py``.
BENCHMARKS = {
    "mnist_nll": Benchmark(
        "MNIST test NLL", "Test negative log-likelihood (nats) of Burda et al. (2016)'s one-stochastic-layer VAE "
        "(`vae/burda`: 784-200-200-50, tanh) on dynamically binarized MNIST, importance-sampled on the 10,000 test "
        "images, after a wall-time training budget.", _mnist_nll, _mnist_nll_arguments),
    "zoo": Benchmark(
        "Model zoo", "Every registered model's reference preset trained for a stated budget, beside the number the "
        "AEVB tutorial's code reports (Yang 2022).", _zoo, _zoo_arguments),
    "discrete_estimators": Benchmark(
        "Bernoulli-latent estimators", "Every relaxation and estimator pyrovae trains 200 Bernoulli latents with, on "
        "statically binarized MNIST with the linear and nonlinear models of Tucker et al. 2017, beside the test "
        "-log p(x) of Yin & Zhou 2019, Table 2.", _discrete_estimators),
    "dissertation": Benchmark(
        "StepLogistic dissertation", "The MNIST experiments of Sadier-Gane 2020 (Bernoulli-latent VAEs trained "
        "with StepLogistic, Logistic and Concrete relaxations, on their ELBO or on the \"Bernoulli ELBO\"): the "
        "true bound, the exact log-likelihood and Table 5.2's reconstruction losses.", _dissertation),
    "toy_posterior": Benchmark(
        "Toy posterior", "Figure 5.1 of Sadier-Gane 2020 (§5.1): the toy model's exact posterior and the Logistic "
        "and StepLogistic guides fitted to it by SVI.", _toy_posterior),
    "estimator_comparison": Benchmark(
        "Gradient estimators", "Gradient variance, signal-to-noise ratio and cost of each objective on one VAE "
        "(`vae/digits` with 64 hidden units) and one batch of 100 digits.", _estimator_comparison,
        lambda data: {"draws": data.get("draws"), "particles": data.get("particles"),
                      "pretrain_epochs": data.get("pretrain_epochs")}),
    "step_overhead": Benchmark(
        "Step overhead", "Per-step time of pyrovae's training engines and Pyro's SVI against a hand-written "
        "PyTorch step of the same VAE and estimator.", _step_overhead, _step_overhead_arguments),
    "enumeration_step": Benchmark(
        "Enumeration step", "Per-step time of the GMVAE (`gmvae/yang`) with y summed out by TraceEnum_ELBO and "
        "TraceEnumMeanField_ELBO against a hand-written PyTorch loss of the same bound (Yang 2022, §5.5).",
        _enumeration_step, _enumeration_step_arguments),
    "evaluation_speed": Benchmark(
        "Evaluation speed", "Time of the importance-sampled test log-likelihood of `vae/burda` against a plain "
        "PyTorch loop computing the same estimator in the same chunks.", _evaluation_speed,
        lambda data: {"examples": data.get("examples"), "threads": data.get("threads")}),
    "ddp_scaling": Benchmark(
        "Data-parallel scaling", "Training samples per second of 2 processes x 1 thread (torchrun, gloo) over 1 "
        "process x 1 thread, at the same global batch.", _ddp_scaling, _ddp_scaling_arguments),
}


def benchmark_of(name: str) -> str | None:
    """The benchmark script a result file belongs to (``dissertation-56`` -> ``dissertation``), or ``None``."""
    for key in sorted(BENCHMARKS, key=len, reverse=True):
        if name == key or (name.startswith(key) and name[len(key)] in "-_"):
            return key
    return None


def command(name: str, data: dict) -> str:
    """The command that produced ``data``: a recorded command with its recorded arguments (``budget``), or
    ``python -m benchmarks.<script>`` with the arguments the JSON records."""
    script = benchmark_of(name)
    recorded = data.get("command") if isinstance(data.get("command"), str) else None
    budget = data.get("budget")
    if isinstance(budget, dict):
        return f"{recorded or f'python -m benchmarks.{script or name}'} {arguments(budget)}".strip()
    if recorded:
        return recorded
    if script is None:
        return f"python -m benchmarks.{name}"
    values = BENCHMARKS[script].arguments(data)
    if script == "mnist_nll" and name != script:
        values = {**values, "tag": name[len(script):]}
    return f"python -m benchmarks.{script} {arguments(values)}".strip()


def date_of(result: ResultFile) -> str:
    """A ``date`` recorded in the JSON, else the git date of the file (or ``uncommitted``)."""
    try:
        recorded = json.loads(result.text).get("date") if result.text is not None else None
    except (json.JSONDecodeError, AttributeError):
        recorded = None
    if isinstance(recorded, str) and recorded:
        return f"{recorded} (recorded in the JSON)"
    return "uncommitted" if result.date == "uncommitted" else f"{result.date} (git commit of the JSON)"


def machine_line(data: dict) -> str:
    machine = data.get("machine")
    if not isinstance(machine, dict):
        return "not recorded"
    device = machine.get("device", "not recorded")
    return (f"{machine.get('cpu_count', '?')} cores, device {device}, torch {machine.get('torch', '?')}, "
            f"pyro {machine.get('pyro', '?')}, Python {machine.get('python', '?')}, "
            f"torch threads {machine.get('torch_threads', '?')} when saved, {machine.get('platform', '?')}")


def generic(data: dict) -> list[str]:
    """Every field of a result no section knows: the scalars, then each list of records as a table."""
    lines = []
    scalars = [[f"`{key}`", cell(general(data[key]))] for key in sorted(data)
               if key != "machine" and not (isinstance(data[key], list) and data[key]
                                            and all(isinstance(item, dict) for item in data[key]))]
    if scalars:
        lines += table(["field", "value"], scalars)
    for key in sorted(data):
        records = data[key]
        if key == "machine" or not (isinstance(records, list) and records and all(isinstance(r, dict) for r in records)):
            continue
        columns = sorted({column for record in records for column in record})
        lines += [f"`{key}`:", ""]
        lines += table(columns, [[cell(general(record.get(column))) for column in columns] for record in records])
    return lines


def section(result: ResultFile) -> list[str]:
    script = benchmark_of(result.name)
    benchmark = BENCHMARKS.get(script)
    title = f"{benchmark.title}: `{result.name}`" if benchmark else f"`{result.name}`"
    lines = [f"## {title}", ""]
    file = f"`{RESULTS_DIR}/{result.name}.json`"
    if result.text is None:
        return lines + [f"**Note:** {file} could not be read ({result.error}).", ""]
    try:
        data = json.loads(result.text)
    except json.JSONDecodeError as error:
        return lines + [f"**Note:** {file} is not valid JSON ({error}); it may be half-written by a running "
                        "benchmark. Rerun `python -m benchmarks.report` once it is complete.", ""]
    if not isinstance(data, dict):
        return lines + [f"**Note:** {file} holds a JSON {type(data).__name__}, not the object a benchmark writes.", ""]
    derived = benchmark is None and not isinstance(data.get("command"), str)
    lines += [benchmark.measures if benchmark else "A result written by a benchmark this page has no section for; "
              "its fields as recorded.", "",
              f"- File: {file}",
              f"- Command: `{command(result.name, data)}`" + (" (from the file name: no command recorded)" if derived else ""),
              f"- Date: {date_of(result)}",
              f"- Machine: {machine_line(data)}", ""]
    if benchmark is None:
        return lines + generic(data)
    try:
        return lines + benchmark.render(data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        return lines + [f"**Note:** {file} lacks fields the {script} section needs or holds them in an unexpected "
                        f"form ({type(error).__name__}: {error}); its fields as recorded:", "", *generic(data)]


def render(results: list[ResultFile]) -> str:
    """The results page for ``results`` (known benchmarks in a fixed order, then the others by name)."""
    order = list(BENCHMARKS)

    def key(result: ResultFile):
        script = benchmark_of(result.name)
        return (order.index(script) if script else len(order), result.name)

    lines = ["# Results", "",
             "Every number the benchmarks in `benchmarks/` reproduced, beside its source's value where there is "
             "one, with the command that produced it, its date and the machine it ran on. This page is generated "
             "from `benchmarks/results/*.json` by `python -m benchmarks.report`; do not edit it by hand. After a "
             "benchmark writes new results, commit the JSON, then rerun the report and commit this page "
             "(`tests/test_results_page.py` checks that it matches the committed JSON).", "",
             "References are cited by author and year; the full entries are in [references.md](references.md).", ""]
    results = sorted(results, key=key)
    if not results:
        lines += ["No results: `benchmarks/results/` holds no JSON files.", ""]
    lines += ["| result | date |", "| --- | --- |"]
    for result in results:
        lines.append(f"| `{result.name}` | {date_of(result)} |")
    lines.append("")
    for result in results:
        lines += section(result)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--committed", action="store_true",
                        help="read the JSON as committed at HEAD instead of the files on disk")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if docs/results.md differs")
    args = parser.parse_args(argv)
    results = read_committed(REPO) if args.committed else read_directory(REPO / RESULTS_DIR)
    page = render(results)
    target = REPO / PAGE
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != page:
            print(STALE, file=sys.stderr)
            return 1
        print(f"{PAGE} is current")
        return 0
    from pyrovae.io import atomic_write

    atomic_write(target, lambda handle: handle.write(page.encode("utf-8")))
    uncommitted = [r.name for r in results if r.date == "uncommitted"]
    print(f"wrote {target}")
    if uncommitted:
        print(f"uncommitted results: {', '.join(uncommitted)}; commit them, then rerun this script so the page "
              "carries their commit dates (or use --committed to leave them out)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
