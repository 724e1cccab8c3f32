"""Data-parallel scaling on this machine: training samples per second of 1 process x 1 thread against
2 processes x 1 thread (``torchrun``, gloo), with the same global batch.

The model is the ``vae/burda`` preset (784-200-200-50, tanh, Bernoulli decoder, dynamically binarized
MNIST from ``$PYROVAE_DATA_DIR``), stepped by pyrovae's own training epoch
(:func:`pyrovae.train.run_epoch`: sharded batches, the module engine, DDP under ``torchrun``) for
``--steps`` steps after ``--warmup`` steps, at each ``--batch-sizes`` global batch. The 1- and
2-process runs alternate ``--repeats`` times so that other load on the machine affects both alike;
the median is reported, with the ratio (target: at least 1.7x).

Beside them, the machine's ceiling for any 2-process scheme: 2 independent single-process trainings at
half the batch each, run at the same time with no communication, their samples/s added. What DDP
loses below that ceiling is its synchronisation; what the ceiling loses below 2x is the machine's
(two busy cores share caches, memory bandwidth and whatever else runs on the host).

    python -m benchmarks.ddp_scaling [--batch-sizes 100 1000] [--steps 300] [--min-samples 0] [--repeats 3]
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.page import Section, load_average, number, table
from pyrovae.arguments import Parser

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(batch_size: int, steps: int, warmup: int, output: str, start_at: float = 0.0) -> None:
    """One rank (or the single process): time ``steps`` training steps; rank 0 writes samples/s to ``output``.

    After the warm-up the worker waits until the wall-clock time ``start_at`` (if given), so that
    independent processes time the same window.
    """
    import pyro
    import torch

    from pyrovae import distributed
    from pyrovae.engines import make_engine
    from pyrovae.evaluate import input_spec
    from pyrovae.experiment import Experiment, build
    from pyrovae.train import run_epoch

    torch.set_num_threads(1)
    distributed.init_from_env(torch.device("cpu"))
    experiment = Experiment.resolve({"model": "vae", "preset": "burda", "batch_size": batch_size})
    train, _, model, guide, objective = build(experiment)
    engine = make_engine("module", model, guide, objective, lr=1e-3, eps=1e-4)
    spec = input_spec(model, train)
    generator = torch.Generator().manual_seed(0)
    with pyro.settings.context(pyrovae_check_data=False, pyrovae_register_modules=False), \
            pyro.validation_enabled(False):
        run_epoch(engine, train.subset(warmup * batch_size), spec, batch_size, generator)
        # More steps than one pass over the 60,000 images: several passes.
        per_pass = min(steps, len(train) // batch_size)
        passes = -(-steps // per_pass)
        measured = train.subset(per_pass * batch_size)
        time.sleep(max(0.0, start_at - time.time()))
        began = time.perf_counter()
        for _ in range(passes):
            run_epoch(engine, measured, spec, batch_size, generator)  # ends in an all-reduce: every rank is done
        seconds = time.perf_counter() - began
    if distributed.is_main():
        Path(output).write_text(json.dumps({"seconds": seconds, "samples_per_second": passes * len(measured) / seconds}))
    distributed.shutdown()


def _run(processes: int, batch_size: int, steps: int, warmup: int) -> float:
    """Samples/s of one run with ``processes`` ranks of one thread each."""
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "result.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        arguments = ["--worker", str(batch_size), str(steps), str(warmup), str(output)]
        if processes == 1:
            command = [sys.executable, "-m", "benchmarks.ddp_scaling", *arguments]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                       f"--master_port={_free_port()}", "-m", "benchmarks.ddp_scaling", *arguments]
        completed = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-2000:]}")
        return json.loads(output.read_text())["samples_per_second"]


def _run_independent(batch_size: int, steps: int, warmup: int, start_delay: float = 15.0) -> float:
    """Summed samples/s of 2 independent single-thread trainings at ``batch_size // 2`` timed in the same window."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start_at = time.time() + start_delay
    with tempfile.TemporaryDirectory() as folder:
        outputs = [Path(folder) / f"result{i}.json" for i in range(2)]
        processes = [subprocess.Popen([sys.executable, "-m", "benchmarks.ddp_scaling", "--worker", str(batch_size // 2),
                                       str(steps), str(warmup), str(output), str(start_at)],
                                      env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for output in outputs]
        for process in processes:
            _, stderr = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"an independent worker failed:\n{stderr[-2000:]}")
        return sum(json.loads(output.read_text())["samples_per_second"] for output in outputs)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        batch_size, steps, warmup, output = sys.argv[2:6]
        worker(int(batch_size), int(steps), int(warmup), output, float(sys.argv[6]) if len(sys.argv) > 6 else 0.0)
        return
    from benchmarks.common import print_table, save_results

    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1000], help="global batch sizes")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--min-samples", type=int, default=0, help="at least this many samples per timed run")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for batch_size in args.batch_sizes:
        # At most one pass over the 60,000 images, unless --min-samples asks for more (several passes).
        steps = max(min(args.steps, 60_000 // batch_size), -(-args.min_samples // batch_size))
        warmup = min(args.warmup, 60_000 // batch_size)
        runs = {"1x1": [], "2x1": [], "independent": []}
        for _ in range(args.repeats):
            runs["1x1"].append(_run(1, batch_size, steps, warmup))
            runs["2x1"].append(_run(2, batch_size, steps, warmup))
            runs["independent"].append(_run_independent(batch_size, steps, warmup))
        one, two, ceiling = (statistics.median(runs[key]) for key in ("1x1", "2x1", "independent"))
        rows.append({"global_batch": batch_size, "steps": steps, "samples_per_s_1x1": one, "samples_per_s_2x1": two,
                     "speedup": two / one, "samples_per_s_independent": ceiling, "ceiling_speedup": ceiling / one,
                     "runs_1x1": runs["1x1"], "runs_2x1": runs["2x1"], "runs_independent": runs["independent"]})
    print_table(rows, ["global_batch", "steps", "samples_per_s_1x1", "samples_per_s_2x1", "speedup",
                       "samples_per_s_independent", "ceiling_speedup"])
    path = save_results("ddp_scaling", {"rows": rows, "model": "vae/burda", "dataset": "mnist",
                                        "load_average": os.getloadavg(), "target_speedup": 1.7}, args=args)
    print(f"wrote {path}")


# ------------------------------------------------------------------------------- the results page

def _render(data: dict) -> list[str]:
    target = data.get("target_speedup")
    rows = [[number(row["global_batch"]), number(row.get("steps")), number(row["samples_per_s_1x1"], 0),
             number(row["samples_per_s_2x1"], 0), number(row["speedup"]),
             "-" if target is None else ("met" if row["speedup"] >= target else "not met"),
             number(row.get("samples_per_s_independent"), 0), number(row.get("ceiling_speedup"))]
            for row in data["rows"]]
    return [*table(["global batch", "steps", "samples/s, 1 x 1", "samples/s, 2 x 1", "speedup",
                    f"target {number(target)}x", "samples/s, 2 independent", "ceiling"], rows),
            f"Model `{data.get('model')}` on {data.get('dataset')}; median of alternating runs. \"2 independent\": two "
            "single-process trainings at half the batch, timed in the same window with no communication (their "
            "samples/s added): the most any 2-process scheme gets from this machine. No paper number."
            + load_average(data), ""]


def _arguments(data: dict) -> tuple[dict, list[str]]:
    rows = [row for row in data.get("rows", []) if isinstance(row, dict)]
    sizes = [row["global_batch"] for row in rows if "global_batch" in row]
    repeats = {len(row["runs_1x1"]) for row in rows if isinstance(row.get("runs_1x1"), list)}
    return ({"batch_sizes": sizes or None, "repeats": repeats.pop() if len(repeats) == 1 else None},
            ["`--min-samples`, `--steps` and `--warmup` (each row records the steps it took, not the arguments "
             "that set them)"])


SECTION = Section(
    "Data-parallel scaling", "Training samples per second of 2 processes x 1 thread (torchrun, gloo) over 1 "
    "process x 1 thread, at the same global batch.", _render, arguments=_arguments, order=95)


if __name__ == "__main__":
    main()
