"""How far from converged in K the importance-sampled -log p(x) of a trained Bernoulli-latent VAE is.

``benchmarks.discrete_estimators`` reports -log p(x) of the discrete model with K proposals from the
guide's Bernoulli: ``-log (1/K sum_k p(x, z_k) / q(z_k | x))``. Its expectation is an upper bound on the
true -log p(x) that falls as K grows (Burda et al. 2016, Theorem 1) and reaches it only when the proposal
covers the posterior; how fast it falls says how good the guide is as a proposal, and how much of a gap to a
paper's number the estimator itself may hold. This script reloads the finished runs of one
``discrete_estimators`` output (their run directories, ``--source``), estimates -log p(x) with each K of
``--samples`` on the same seeded random test subset the benchmark used (fresh noise per K), and records
for each K the mean, the sampling error of the subset's mean, and the paired fall from the previous K with
its standard error. A model with at most 24 latent units also gets its exact -log p(x) (a sum over the
2^D states, :func:`pyrovae.discrete.exact_log_likelihood`), the value the estimates tend to.

    python -m benchmarks.nll_convergence --source discrete_estimators_arm_linear --models linear \\
        --relaxations concrete disarm --samples 100 1000 10000

Prints a table and writes benchmarks/results/nll_convergence.json (``--output``).
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import pyro
import torch

from benchmarks import common
from benchmarks.common import print_table, save_results
from benchmarks.discrete_estimators import ANCHORS, PAPER_ROW, PRESETS, run_directory, shard_directory, test_subset
from benchmarks.page import Section, cell, difference, number, table, with_error
from pyrovae.arguments import Parser
from pyrovae.checkpoint import CheckpointError
from pyrovae.discrete import MAX_UNITS, exact_log_likelihood
from pyrovae.evaluate import importance_log_likelihood
from pyrovae.experiment import load_run
from pyrovae.infer.discrete_bound import Discretized
from pyrovae.relaxations import RELAXATIONS


def source_arguments(source: str) -> dict:
    """The recorded arguments of the ``discrete_estimators`` output ``source`` (its runs' settings and seed)."""
    path = Path(common.RESULTS) / f"{source}.json"
    if not path.exists():
        raise FileNotFoundError(f"no results/{source}.json: run benchmarks.discrete_estimators --output {source} first")
    return json.loads(path.read_text()).get("arguments") or {}


def convergence(model, guide, data, samples: list[int], seed: int) -> dict:
    """-log p(x) on ``data`` with each K of ``samples`` (fresh noise each, seeded): per K the mean, the
    sampling error of the mean over ``data``, and the paired fall from the previous K with its error."""
    estimates, per_example = [], []
    for index, k in enumerate(samples):
        pyro.set_rng_seed(seed + index)
        nll = -importance_log_likelihood(Discretized(model), Discretized(guide), data, num_samples=k,
                                         engine="auto", per_example=True)
        fall = (per_example[-1] - nll) if per_example else None
        per_example.append(nll)
        estimates.append({
            "samples": k, "nll": nll.mean().item(), "nll_error": nll.std().item() / len(data) ** 0.5,
            "fall": None if fall is None else fall.mean().item(),
            "fall_error": None if fall is None else fall.std().item() / len(data) ** 0.5,
        })
    return {"estimates": estimates}


def evaluate_run(architecture: str, relaxation: str, args, recorded: dict) -> dict:
    """The convergence row of one finished run of the source output."""
    where = types.SimpleNamespace(runs_dir=args.runs_dir, output=args.source, seed=recorded.get("seed", 0),
                                  set=recorded.get("set") or [])
    run_dir, experiment, model, guide, test = load_run(run_directory(where, architecture, relaxation), args.data_dir)
    subset = test_subset(test, recorded.get("test_subset"), recorded.get("subset_seed", 0))
    row = {"model": architecture, "relaxation": relaxation, "run_dir": run_dir.name,
           "epochs": json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["epoch"],
           "test_images": len(subset), "subset_seed": recorded.get("subset_seed", 0) if len(subset) < len(test) else None,
           **convergence(model, guide, subset, args.samples, args.seed)}
    if model.z_dim <= MAX_UNITS:
        row["exact_nll"] = -exact_log_likelihood(model, subset).mean().item()
    return row


def main(argv: list[str] | None = None) -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="discrete_estimators_arm_linear",
                        help="the discrete_estimators output whose runs to evaluate (results/<source>.json)")
    parser.add_argument("--models", nargs="+", default=["linear"], choices=list(PRESETS))
    parser.add_argument("--relaxations", nargs="+", default=["concrete", "disarm"], choices=list(RELAXATIONS))
    parser.add_argument("--samples", type=int, nargs="+", default=[100, 1000, 10000],
                        help="the K of each estimate, increasing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the importance samples")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--runs-dir", default=None,
                        help="the source's run directories (default: <cache>/benchmarks/discrete_estimators/runs)")
    parser.add_argument("--output", default="nll_convergence", help="results/<name>.json")
    args = parser.parse_args(argv)
    if any(k < 1 for k in args.samples) or args.samples != sorted(set(args.samples)):
        parser.error(f"--samples must be increasing positive counts, got {' '.join(map(str, args.samples))}")
    try:
        recorded = source_arguments(args.source)
    except FileNotFoundError as error:
        parser.error(str(error))
    args.runs_dir = shard_directory() / "runs" if args.runs_dir is None else Path(args.runs_dir).expanduser()
    torch.set_num_threads(args.threads)
    rows = []
    for architecture in args.models:
        for relaxation in args.relaxations:
            try:
                rows.append(evaluate_run(architecture, relaxation, args, recorded))
            except (FileNotFoundError, CheckpointError) as error:
                parser.error(f"{architecture} {relaxation} of {args.source}: {error}")
            print_table([_flat(rows[-1])], list(_flat(rows[-1])))
    path = save_results(args.output, {"rows": rows}, args=args)
    print(f"wrote {path}")


def _flat(row: dict) -> dict:
    return {"model": row["model"], "relaxation": row["relaxation"], "epochs": row["epochs"],
            **{f"K={e['samples']}": round(e["nll"], 2) for e in row["estimates"]},
            **({"exact": round(row["exact_nll"], 2)} if "exact_nll" in row else {})}


# ------------------------------------------------------------------------------- the results page

def _paper(row: dict) -> list[str]:
    """The paper's -log p(x) for the row's estimator (Yin & Zhou 2019, Table 2) and the largest K's difference."""
    paper = PAPER_ROW.get(row["relaxation"])
    value = ANCHORS.get(row["model"], {}).get(paper)
    if value is None:
        return ["-", "-"]
    return [f"{number(value, 1)} ({paper})", difference(row["estimates"][-1]["nll"], value)]


def _render(data: dict) -> list[str]:
    samples = [e["samples"] for e in data["rows"][0]["estimates"]] if data["rows"] else []
    exact = any("exact_nll" in row for row in data["rows"])
    headers = ["model", "relaxation", "epochs", "test images",
               *(f"-log p(x), K = {k}" for k in samples), *(f"fall from K = {a} to {b}" for a, b in zip(samples, samples[1:])),
               *(["exact -log p(x)"] if exact else []), "Yin & Zhou 2019", f"K = {samples[-1] if samples else '?'} - paper"]
    rows = []
    for row in data["rows"]:
        estimates = row["estimates"]
        images = (f"{row['test_images']:,} drawn at random with seed {row['subset_seed']}"
                  if row.get("subset_seed") is not None else f"all {row['test_images']:,}")
        rows.append([cell(row["model"]), cell(row["relaxation"]), number(row["epochs"]), images,
                     *(with_error(e["nll"], e["nll_error"]) for e in estimates),
                     *(with_error(e["fall"], e["fall_error"]) for e in estimates[1:]),
                     *([number(row.get("exact_nll"))] if exact else []), *_paper(row)])
    source = (data.get("arguments") or {}).get("source")
    return [*table(headers, rows),
            f"Nats, the runs of `{source}` (its section gives their training). Each -log p(x) is importance-sampled "
            "with K proposals from the guide's Bernoulli (± the sampling error of the subset's mean); a fall is the "
            "paired difference between consecutive K on the same images (± its standard error). The estimate is an "
            "upper bound in expectation that falls towards -log p(x) as K grows (Burda et al. 2016): a fall that "
            "stays large says the guide is a poor proposal and the reported -log p(x) overstates the model's.", ""]


SECTION = Section(
    "Importance-sampled -log p(x) against K",
    "The -log p(x) of trained Bernoulli-latent VAEs of `discrete_estimators`, estimated with more and more "
    "importance samples: how much of each reported number is the estimator's.", _render, order=31)

if __name__ == "__main__":
    main()
