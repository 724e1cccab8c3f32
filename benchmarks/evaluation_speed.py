"""Time of the importance-sampled test log-likelihood (K = 5000) against a plain PyTorch loop.

Burda et al. (2016)'s MNIST VAE (preset ``vae/burda``: 784-200-200-50, tanh, Bernoulli decoder) is
evaluated on the first ``--examples`` MNIST test images with ``--num-samples`` proposals each, by
(a) :func:`pyrovae.evaluate.importance_log_likelihood` (log weights captured and compiled, or eager),
(b) a plain PyTorch loop computing the same estimator
    ``logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K`` in the same chunks
    (``--chunk-size`` samples of ``--batch-size`` images per pass), eager and under ``torch.compile``.
Each contender evaluates the first half of the images in one call, then the second half, the
second time in reversed order, so that machine load affects them alike; pyrovae's capture and
compilation happen inside its calls and are counted. The cost does not
depend on the weights, so the network is used as initialised. Reported: seconds per contender, the
minutes that makes for all 10,000 test images (a linear extrapolation when ``--examples`` is
smaller: the batches are independent), and the ratio to the plain eager loop.

    python -m benchmarks.evaluation_speed [--examples 10000] [--threads 2] [--contenders "pyrovae compiled" ...]

``--contenders`` times only those named (the ratios need the plain eager loop among them).
"""

from __future__ import annotations

import math
import os
import time

import torch
from torch.nn import functional as F

from benchmarks.common import print_table, save_results
from benchmarks.page import Section, cell, load_average, number, table
from pyrovae.arguments import Parser
from pyrovae.evaluate import importance_log_likelihood
from pyrovae.experiment import Experiment, build

TEST_IMAGES = 10_000
CONTENDERS = ("pyrovae compiled", "pyrovae eager", "pytorch eager", "pytorch compiled")


def plain_log_likelihood(model, guide, num_samples: int, chunk_size: int, batch_size: int, compiled: bool = False):
    """``x -> sum of log p(x)`` over images ``x``, importance-sampled, written directly in PyTorch on
    pyrovae's networks; with ``compiled`` the per-chunk log weights go through ``torch.compile``."""
    encoder, decoder = guide.encoder, model.decoder

    def log_weights(x, loc, scale, eps):
        z = loc + scale * eps
        log_px = -F.binary_cross_entropy_with_logits(decoder(z), x.expand(eps.shape[0], -1, -1), reduction="none").sum(-1)
        log_pz = -0.5 * (z ** 2).sum(-1)
        log_qz = -0.5 * (eps ** 2).sum(-1) - scale.log().sum(-1)  # the 2 pi terms cancel
        return log_px + log_pz - log_qz

    weights = torch.compile(log_weights, dynamic=False) if compiled else log_weights

    @torch.no_grad()
    def total(images):
        result = 0.0
        for x in images.split(batch_size):
            loc, scale = encoder(x)
            chunks = []
            for start in range(0, num_samples, chunk_size):
                eps = torch.randn(min(chunk_size, num_samples - start), *loc.shape)
                chunks.append(torch.logsumexp(weights(x, loc, scale, eps), dim=0))
            result += (torch.logsumexp(torch.stack(chunks), dim=0) - math.log(num_samples)).sum().item()
        return result

    return total


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=TEST_IMAGES)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--chunk-size", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    experiment = Experiment.resolve({"model": "vae", "preset": "burda"})
    _, test, model, guide, _ = build(experiment, args.data_dir)
    test = test.realize(0).subset(min(args.examples, len(test)))
    model.eval(), guide.eval()
    plain = plain_log_likelihood(model, guide, args.num_samples, args.chunk_size, args.batch_size)
    compiled_plain = plain_log_likelihood(model, guide, args.num_samples, args.chunk_size, args.batch_size, compiled=True)
    contenders = {
        "pyrovae compiled": lambda data: importance_log_likelihood(
            model, guide, data, args.num_samples, args.chunk_size, args.batch_size, engine="compiled"),
        "pyrovae eager": lambda data: importance_log_likelihood(
            model, guide, data, args.num_samples, args.chunk_size, args.batch_size, engine="eager"),
        "pytorch eager": lambda data: plain(data.x) / len(data),
        "pytorch compiled": lambda data: compiled_plain(data.x) / len(data),
    }
    contenders = {name: evaluate for name, evaluate in contenders.items() if name in args.contenders}
    first = test.subset(args.batch_size)
    for name, evaluate in contenders.items():  # compile the plain loop outside the timing
        if name != "pyrovae compiled":
            evaluate(first)
    # Each contender evaluates each half of the images in one call, the second half in reversed order;
    # pyrovae's capture and compilation happen inside its calls and are counted.
    half = len(test) // 2
    halves = [test.subset(torch.arange(half)), test.subset(torch.arange(half, len(test)))]
    seconds = dict.fromkeys(contenders, 0.0)
    values = {name: [] for name in contenders}
    for part, order in zip(halves, (list(contenders), list(reversed(contenders)))):
        for name in order:
            began = time.perf_counter()
            values[name].append(contenders[name](part) * len(part))
            seconds[name] += time.perf_counter() - began
    reference = seconds.get("pytorch eager")
    rows = [{"contender": name, "seconds": s, "minutes_for_10000": s / len(test) * TEST_IMAGES / 60,
             "ratio_to_pytorch_eager": s / reference if reference else None,
             "mean_log_likelihood": sum(values[name]) / len(test)}
            for name, s in seconds.items()]
    print_table(rows, ["contender", "seconds", "minutes_for_10000", "ratio_to_pytorch_eager", "mean_log_likelihood"])
    path = save_results("evaluation_speed", {"rows": rows, "examples": len(test), "num_samples": args.num_samples,
                                             "chunk_size": args.chunk_size, "batch_size": args.batch_size,
                                             "threads": args.threads, "target_minutes": 5.0,
                                             "load_average": os.getloadavg()}, args=args)
    print(f"wrote {path}")


# ------------------------------------------------------------------------------- the results page

def _render(data: dict) -> list[str]:
    rows = [[cell(row["contender"]), number(row["seconds"], 1), number(row["minutes_for_10000"], 1),
             number(row["ratio_to_pytorch_eager"], 3), number(row.get("mean_log_likelihood"))] for row in data["rows"]]
    return [*table(["contender", "seconds", "minutes for 10,000 images", "x plain eager PyTorch",
                    "mean log-likelihood"], rows),
            f"K = {data.get('num_samples')} on the first {data.get('examples')} MNIST test images, "
            f"{data.get('chunk_size')} samples x {data.get('batch_size')} images per pass, {data.get('threads')} "
            f"torch thread(s), with an untrained `vae/burda` network; minutes for 10,000 images extrapolated "
            f"linearly. Target: at most {number(data.get('target_minutes'), 1)} minutes for the 10,000 test images "
            "on this 2-core machine." + load_average(data), ""]


def _arguments(data: dict) -> tuple[dict, list[str]]:
    contenders = [row["contender"] for row in data.get("rows", []) if isinstance(row, dict) and "contender" in row]
    return ({"examples": data.get("examples"), "threads": data.get("threads"), "num_samples": data.get("num_samples"),
             "chunk_size": data.get("chunk_size"), "batch_size": data.get("batch_size"),
             "contenders": contenders or None}, [])


SECTION = Section(
    "Evaluation speed", "Time of the importance-sampled test log-likelihood of `vae/burda` against a plain "
    "PyTorch loop computing the same estimator in the same chunks.", _render, arguments=_arguments, order=90)


if __name__ == "__main__":
    main()
