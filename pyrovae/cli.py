"""The ``pyrovae`` command: ``train``, ``evaluate``, ``sample``, ``plot``, ``models``.

``pyrovae train`` with no options trains a VAE on the bundled ``digits`` data in well under a minute
and leaves ``config.json``, ``metrics.jsonl``, the checkpoints, ``results.json`` and PNG plots in a
new run directory under ``runs/`` (``runs/latest`` points at the newest). The flags of ``train``
are built from :class:`pyrovae.experiment.RunConfig` and the chosen model's config dataclass, so
``pyrovae train --model vae --help`` lists every hyperparameter of that model with its default.

Under ``torchrun --nproc_per_node=N -m pyrovae.cli train ...`` the ranks train one run together
(:mod:`pyrovae.distributed`): rank 0 chooses and writes the run directory, evaluates and plots; the
others train and exit. ``--device`` puts a run on a GPU, ``--tensorboard`` logs it for TensorBoard.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import signal
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from pyrovae import distributed, registry
from pyrovae.arguments import Choice, Parser
from pyrovae.checkpoint import (
    METRICS,
    Checkpointer,
    CheckpointError,
    RunExistsError,
    TrainingDivergedError,
    holds_run,
)
from pyrovae.data import DatasetNotFoundError
from pyrovae.devices import module_device, resolve_device
from pyrovae.distributed import DistributedError
from pyrovae.experiment import Experiment, build, load_run, stored_settings
from pyrovae.io import read_jsonl, write_json
from pyrovae.registry import RUN_FIELDS, RunConfig
from pyrovae.tensorboard import FOLDER as TENSORBOARD_FOLDER
from pyrovae.tensorboard import TensorBoardUnavailable

RUNS = Path("runs")
LATEST = "latest"
RESULTS = "results.json"
PLOTS = ("samples.png", "reconstructions.png", "latents.png", "curves.png")
#: Settings that may change on --resume without --force (the device is where a run is, not what it is).
RESUMABLE = {"epochs", "device"}
#: The roots pyrovae.data.default_roots searches after --data-dir.
DATA_DIR_HELP = "data root (default: $PYROVAE_DATA_DIR, then $PYROVAE_CACHE_DIR or ~/.cache/pyrovae)"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- flags built from config dataclasses -------------------------------------------------------

def _none_or(kind):
    def convert(text: str):
        return None if text.lower() == "none" else kind(text)

    convert.__name__ = kind.__name__
    return convert


_TYPES = {"int": int, "float": float, "str": str}


def _add_setting(group, name: str, spec: dataclasses.Field, default) -> None:
    """One flag ``--name`` for a config field: its type from the annotation, its help and choices from
    the field's metadata, its shown default from the resolved experiment (``argparse`` itself keeps
    ``None``, so the CLI can tell an explicit setting from a default)."""
    annotation = str(spec.type).replace(" ", "")
    optional = annotation.endswith("|None")
    base = annotation.removesuffix("|None")
    flags = ["--" + name.replace("_", "-"), *spec.metadata.get("flags", [])]
    choices = spec.metadata.get("choices")
    shown = "none" if default is None else (" ".join(map(str, default)) if isinstance(default, list) else default)
    help_text = f"{spec.metadata.get('help', name)} (default: {shown})"
    options = dict(dest=name, default=None, help=help_text)
    if base == "bool":
        group.add_argument(*flags, action=argparse.BooleanOptionalAction, **options)
        return
    if base.startswith("list["):
        kind = _TYPES[base[5:-1]]
        nargs = "*" if spec.metadata.get("allow_empty") else "+"
        group.add_argument(*flags, nargs=nargs, type=kind, metavar=base[5:-1].upper(), **options)
        return
    kind = _none_or(_TYPES[base]) if optional else _TYPES[base]
    if choices is not None:
        kind = Choice(name.replace("_", " "), list(choices) + (["none"] if optional and base == "str" else []))
    group.add_argument(*flags, type=kind, metavar=kind.metavar if choices else base.upper(), **options)


def _model_and_preset(argv: list[str]) -> tuple[str, str | None]:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", default="vae")
    pre.add_argument("--preset", default=None)
    known, _ = pre.parse_known_args(argv)
    return known.model, known.preset


def _train_parser(commands, argv: list[str]) -> None:
    model, preset = _model_and_preset(argv)
    try:
        entry = registry.get(model)
        shown = Experiment.resolve({"model": model, "preset": preset}).to_dict()
    except ValueError:
        entry, shown = registry.get("vae"), Experiment.resolve({}).to_dict()  # the error is reported after parsing
    shown["guide"] = shown["guide"] or entry.default_guide
    train = commands.add_parser("train", help="train a model and write a run directory",
                                description="Train a model. Settings come from the model's defaults, then "
                                            "--preset, then the flags given.")
    run = train.add_argument_group("run settings")
    for name, spec in RUN_FIELDS.items():
        _add_setting(run, name, spec, shown.get(name))
    choices = {"model": sorted(registry.models()), "guide": sorted(entry.guides), "preset": sorted(entry.presets)}
    for action in run._group_actions:
        if action.dest in choices:
            action.type = Choice(action.dest, choices[action.dest])
            action.metavar = action.type.metavar
    hyper = train.add_argument_group(f"{entry.name} settings")
    for name, spec in entry.config_fields().items():
        _add_setting(hyper, name, spec, shown.get(name))
    where = train.add_argument_group("where and how")
    where.add_argument("--out", default=None, help="run directory (default: a new runs/<model>-<dataset>-<time>; "
                                                   "runs/latest points at the newest)")
    where.add_argument("--force", action="store_true", help="replace a run in --out, or resume with changed settings")
    where.add_argument("--resume", action="store_true",
                       help="continue the run in --out (default runs/latest) from its checkpoint; --epochs is the "
                            "new total, other settings must match the run's unless --force")
    where.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    where.add_argument("--download", action="store_true", help="let torchvision download MNIST/Fashion-MNIST if absent")
    where.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (default: 1 for digits, whose tiny networks gain nothing from more; "
                            "else torch's default)")
    where.add_argument("--nll-samples", type=int, default=500,
                       help="K for the final importance-sampled log-likelihood; 0 skips it (default: 500)")
    where.add_argument("--tsne-points", type=int, default=2000,
                       help="test points in the t-SNE latent plot; 0 skips the plot (default: 2000)")
    where.add_argument("--no-plots", action="store_true", help="write no plots")
    where.add_argument("--tensorboard", action="store_true",
                       help=f"also log metrics, sample grids and reconstructions for TensorBoard in "
                            f"<run>/{TENSORBOARD_FOLDER} (pip install \"pyrovae[tensorboard]\")")
    where.add_argument("--quiet", action="store_true", help="no progress bars")


def _version() -> str:
    try:
        return version("pyrovae")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def _parser(argv: list[str]) -> Parser:
    parser = Parser(prog="pyrovae", description="Train and inspect Pyro VAEs.")
    parser.add_argument("--version", action="version", version=f"pyrovae {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    _train_parser(commands, argv)

    evaluate = commands.add_parser("evaluate", help="test ELBO, importance-sampled log-likelihood, reconstruction error")
    evaluate.add_argument("run", help="run directory")
    evaluate.add_argument("--num-samples", "-K", type=int, default=5000,
                          help="importance samples per test point (default: 5000)")
    evaluate.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")

    sample = commands.add_parser("sample", help="draw images from the model and save a grid")
    sample.add_argument("run", help="run directory")
    sample.add_argument("--num", type=int, default=100, help="number of samples (default: 100)")
    sample.add_argument("--seed", type=int, default=0, help="seed of the draws (default: 0)")
    sample.add_argument("--output", default=None, help="PNG path (default: <run>/samples.png)")
    sample.add_argument("--force", action="store_true", help="replace an existing --output file")
    sample.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)

    plot = commands.add_parser("plot", help="samples, reconstructions, latent scatter and training curves")
    plot.add_argument("run", help="run directory")
    plot.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    plot.add_argument("--tsne-points", type=int, default=2000, help="points in the latent plot; 0 skips it (default: 2000)")

    commands.add_parser("models", help="list every model with its guides and presets")
    return parser


# --- runs ----------------------------------------------------------------------------------------

def _explicit_settings(args, entry) -> dict:
    """The settings given on the command line (argparse leaves the others at ``None``)."""
    names = set(RUN_FIELDS) | set(entry.config_fields())
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if given.get("binarize") == "none":
        given["binarize"] = None
    return given


def _new_run_dir(experiment: Experiment) -> Path:
    """A new, empty ``runs/<model>-<dataset>-<time>[-n]``, created here so that two runs started in
    the same second cannot both pick it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = RUNS / f"{experiment.run.model}-{experiment.run.dataset}-{stamp}"
    RUNS.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        candidate = base if n == 1 else Path(f"{base}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue


def _latest_run() -> Path:
    """The run ``runs/latest`` points at (the link itself if it is a real directory)."""
    link = RUNS / LATEST
    return RUNS / os.readlink(link) if link.is_symlink() else link


def _point_latest(run_dir: Path) -> None:
    """Make ``runs/latest`` a symlink to ``run_dir`` (replaced atomically)."""
    # Resolved, so that resuming through runs/latest itself does not make the link point at itself.
    target = run_dir.resolve()
    if target.parent != RUNS.resolve():
        return
    link, tmp = RUNS / LATEST, RUNS / f".{LATEST}.{os.getpid()}"
    if link.exists() and not link.is_symlink():
        return  # a real directory called "latest" (an older pyrovae's default) is left alone
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    os.replace(tmp, link)


def _difference(name: str, old, new) -> str:
    return f"--{name.replace('_', '-')} {old!r} -> {new!r}"


def _changed_settings(stored: dict, given: dict, entry) -> dict:
    """``{name: (stored, given)}`` for the given settings that differ from the run's, other than
    ``RESUMABLE`` ones; no guide stands for the model's default guide."""
    def effective(name, value):
        return (value or entry.default_guide) if name == "guide" else value

    return {k: (stored.get(k), v) for k, v in given.items()
            if k not in RESUMABLE and effective(k, stored.get(k)) != effective(k, v)}


def _check_threads(requested: int | None) -> None:
    if requested is not None and requested < 1:
        raise ValueError(f"--threads must be at least 1, got {requested}")


def _threads(requested: int | None, dataset: str) -> None:
    threads = requested or (1 if dataset == "digits" else None)
    if threads is not None:
        torch.set_num_threads(threads)


def _check_counts(**counts) -> None:
    for flag, value in counts.items():
        if value < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be 0 or more, got {value}")


def _plan(args, entry, given: dict):
    """``(experiment, run_dir)`` of ``train``: the settings to train with and the run directory given
    (``None``: a new one), or ``None`` when a resumed run has nothing left to do. Run by rank 0 alone."""
    if args.resume:
        run_dir = Path(args.out) if args.out else _latest_run()
        stored = stored_settings(run_dir)
        # A preset stands for its settings, as without --resume: they are compared (and, with --force, applied).
        given = {**registry.preset(given.get("model", stored.get("model", "vae")), given.get("preset")), **given}
        changed = _changed_settings(stored, given, entry)
        if changed and not args.force:
            raise ValueError(f"{run_dir} was trained with other settings: "
                             + ", ".join(_difference(k, *pair) for k, pair in changed.items())
                             + "; drop them to resume as it was, or pass --force to resume with the new ones")
        # The device is this session's (a GPU run resumes on a CPU), not the stored one.
        experiment = Experiment.from_dict({**stored, "device": RunConfig.device, **given})
        done = Checkpointer(run_dir).load()["epoch"]
        if experiment.run.epochs <= done:
            _say(f"nothing to do: {run_dir} has {done} epochs done and the total is {experiment.run.epochs}; "
                 "pass a larger --epochs to train on")
            return None
        return experiment, run_dir
    experiment = Experiment.resolve(given)
    run_dir = Path(args.out) if args.out else None
    if run_dir is not None and holds_run(run_dir) and not args.force:
        raise RunExistsError(f"{run_dir} already holds a run; choose another --out, continue it with "
                             "--resume, or replace it with --force")
    return experiment, run_dir


def _prepare(args, experiment: Experiment, run_dir: Path | None) -> Path:
    """The run directory, created if new, cleared of a replaced run's outputs, and ``runs/latest``
    pointing at it. Run by rank 0 alone."""
    if run_dir is None:
        run_dir = _new_run_dir(experiment)
    elif not args.resume:
        figures = registry.get(experiment.run.model).figures
        for name in (RESULTS, *PLOTS, *figures):  # a replaced run's outputs (fit removes its records)
            (run_dir / name).unlink(missing_ok=True)
    # Before training, so that `train --resume` finds a run that was killed or stopped.
    _point_latest(run_dir)
    return run_dir


def _stopped_by_launcher(signum, frame):
    raise DistributedError("stopped by torchrun (SIGTERM), which ends every rank when one fails; the run "
                           "directory keeps its last checkpoint: continue with --resume")


def _train(args) -> None:
    _check_counts(nll_samples=args.nll_samples, tsne_points=args.tsne_points)
    _check_threads(args.threads)
    entry = registry.get(args.model or "vae")
    given = _explicit_settings(args, entry)
    device = resolve_device(given.get("device", RunConfig.device), "--device")
    if args.tensorboard:
        from pyrovae.tensorboard import check_available

        check_available()
    joined = distributed.launched() and not distributed.active()  # a caller's own group is left to it
    previous = signal.signal(signal.SIGTERM, _stopped_by_launcher) if distributed.init_from_env(device) else None
    try:
        _train_ranks(args, entry, given, device)
    finally:
        if previous is not None:  # a SIGTERM while the process exits ends it quietly
            signal.signal(signal.SIGTERM, previous)
        if joined:
            distributed.shutdown()


def _train_ranks(args, entry, given: dict, device) -> None:
    """``train`` on this rank: rank 0 plans and prepares the run directory, every rank trains, and
    rank 0 alone evaluates and plots."""
    plan = distributed.run_on_main(_plan, args, entry, given)
    if plan is None:
        return
    experiment, run_dir = plan
    _threads(args.threads, experiment.run.dataset)
    train, test, model, guide, objective = build(experiment, args.data_dir, args.download)
    run_dir = distributed.run_on_main(_prepare, args, experiment, run_dir)
    main_rank = distributed.is_main()
    run = experiment.run
    if main_rank:
        ranks = f" on {distributed.world_size()} ranks" if distributed.world_size() > 1 else ""
        _say(f"training {run.model} ({experiment.guide} guide, {run.objective}) on {run.dataset} into {run_dir}"
             f" ({device}{ranks})")
    from pyrovae.train import fit

    try:
        fit(model, guide, objective, train, test, epochs=run.epochs, batch_size=run.batch_size, lr=run.lr,
            seed=run.seed, engine=run.engine, device=device,
            callbacks=_callbacks(args, experiment, model, guide, test, run_dir))
    except TrainingDivergedError as error:
        sys.exit(f"pyrovae train: training stopped: {error}")
    if not main_rank:
        return
    model.eval(), guide.eval()
    results = _evaluate(run_dir, model, guide, test, args.nll_samples, progress=not args.quiet)
    print(json.dumps(results, indent=2))
    if not args.no_plots:
        for path in _plot(run_dir, experiment, model, guide, test, args.tsne_points):
            print(f"wrote {path}")
    print(f"run directory: {run_dir}")


def _callbacks(args, experiment: Experiment, model, guide, test, run_dir: Path) -> list:
    """What a ``train`` run does each epoch besides training: the model's own callbacks (diagnostics
    to log, a setting to anneal), Adam's eps, TensorBoard, progress, and the run directory last, so
    that it records what the others added and the state they leave."""
    from pyrovae.callbacks import AdamEpsilon, Checkpoint, Progress, TensorBoard

    callbacks = experiment.entry.training_callbacks(experiment.model, model, guide, test)
    callbacks.append(AdamEpsilon(experiment.run.adam_eps))
    if args.tensorboard:
        callbacks.append(TensorBoard(run_dir / TENSORBOARD_FOLDER, images=True))
    if not args.quiet:
        callbacks.append(Progress())
    callbacks.append(Checkpoint(run_dir, resume=args.resume, overwrite=args.force, config=experiment.to_dict()))
    return callbacks


def _evaluate(run_dir, model, guide, test, num_samples: int, progress: bool = True) -> dict:
    from pyrovae.discrete import MAX_UNITS
    from pyrovae.evaluate import exact_log_likelihood, importance_log_likelihood, mean_elbo, reconstruction_error

    _say(f"evaluating on {len(test)} test points: ELBO and reconstruction error")
    results = {"test_elbo": mean_elbo(model, guide, test, progress=progress),
               "reconstruction_mse": reconstruction_error(model, guide, test)}
    if num_samples > 0:
        _say(f"importance-sampled log-likelihood with K={num_samples} (--nll-samples / -K sizes it, 0 skips it)")
        results["test_log_likelihood"] = importance_log_likelihood(model, guide, test, num_samples, progress=progress)
        results["num_importance_samples"] = num_samples
    if getattr(model, "discrete_prior_probs", None) is not None and model.z_dim <= MAX_UNITS:
        _say(f"exact log-likelihood of the discrete model: a sum over 2^{model.z_dim} latent states")
        results["test_exact_log_likelihood"] = exact_log_likelihood(model, test).mean().item()
    write_json(run_dir / RESULTS, results)
    return results


def _objective_label(experiment: Experiment) -> str:
    """The objective as ``Class(K=..., estimator=...)``, the form :func:`pyrovae.plots.describe_objective` reads."""
    names = {"trace": "Trace_ELBO", "meanfield": "TraceMeanField_ELBO", "iwae": "ImportanceWeightedELBO",
             "iwae_dreg": "ImportanceWeightedELBO", "variance": "VarianceELBO", "log_variance": "LogVarianceELBO",
             "enum": "TraceEnum_ELBO", "enum_meanfield": "TraceEnumMeanField_ELBO", "graph": "TraceGraph_ELBO", "disarm": "DisARM_ELBO"}
    run = experiment.run
    arguments = [f"K={run.num_particles}"] if run.num_particles > 1 else []
    if run.objective == "iwae_dreg":
        arguments.append("estimator=dreg")
    name = names[run.objective]
    return f"{name}({', '.join(arguments)})" if arguments else name


def _plot(run_dir: Path, experiment: Experiment, model, guide, test, tsne_points: int = 2000) -> list[Path]:
    from pyrovae import plots
    from pyrovae.evaluate import input_spec, reconstructions, sample_images

    rows = read_jsonl(run_dir / METRICS)
    run = experiment.run
    title = f"{run.dataset} · {run.model} ({experiment.guide} guide) · {_objective_label(experiment)} · {len(rows)} epochs"
    shape = test.image_shape
    written = []
    _say("drawing samples, reconstructions and curves")
    samples = sample_images(model, 100, run.seed)
    if samples is not None:
        figure = plots.image_grid(samples, shape, title=f"samples E[x | z], z ~ p(z)\n{title}")
        written.append(plots.save_figure(figure, run_dir / "samples.png"))
    x, reconstruction, how = reconstructions(model, guide, test, 30)
    written.append(plots.save_figure(plots.reconstructions(x, reconstruction, shape, title=f"{how}\n{title}"),
                                     run_dir / "reconstructions.png"))
    if tsne_points > 0 and hasattr(guide, "encode") and not input_spec(model, test).takes_labels:
        _say(f"latent plot of {min(tsne_points, len(test))} test points (t-SNE when the latent has more than 2 "
             "dimensions; --tsne-points 0 skips it)")
        with torch.no_grad():
            z = guide.encode(test.x[:tsne_points].to(module_device(guide))).cpu()
        labels = None if test.y is None else test.y[:tsne_points]
        figure = plots.latent_scatter(z, labels, seed=run.seed, title=f"posterior means E_q[z | x]\n{title}")
        written.append(plots.save_figure(figure, run_dir / "latents.png"))
    figure = plots.training_curves(rows, title=title, objective=_objective_label(experiment))
    written.append(plots.save_figure(figure, run_dir / "curves.png"))
    for name, draw in registry.get(run.model).figures.items():
        generator = torch.Generator(device=module_device(model)).manual_seed(run.seed)
        written.append(plots.save_figure(draw(model, test, title, generator), run_dir / name))
    return written


def _sample(args) -> None:
    if args.num < 1:
        raise ValueError(f"--num must be at least 1, got {args.num}")
    run_dir, experiment, model, guide, test = load_run(args.run, args.data_dir)
    from pyrovae import plots  # matplotlib: imported once the run has loaded, so a bad run fails fast
    output = Path(args.output) if args.output else run_dir / "samples.png"
    if args.output and output.exists() and not args.force:
        raise RunExistsError(f"{output} exists; choose another --output or pass --force to replace it")
    if not hasattr(model, "sample_images"):
        raise ValueError(f"model {experiment.run.model!r} cannot draw images")
    images = model.sample_images(args.num, torch.Generator().manual_seed(args.seed))
    print(f"wrote {plots.save_figure(plots.image_grid(images, test.image_shape), output)}")


def _list_models() -> None:
    rows = [(name, ", ".join(f"{g}*" if g == entry.default_guide else g for g in entry.guides),
             ", ".join(entry.presets), entry.description) for name, entry in sorted(registry.models().items())]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for name, guides, presets, description in rows:
        print(f"{name:{widths[0]}s}  guides: {guides:{widths[1]}s}  presets: {presets:{widths[2]}s}  {description}")
    print("(* the default guide; `pyrovae train --model NAME --help` lists a model's settings)")


def main(argv: list[str] | None = None) -> None:
    """The ``pyrovae`` command: parse ``argv`` (default ``sys.argv[1:]``) and run the command. A bad
    option exits with argparse's status 2; a missing data set, a damaged checkpoint or a bad value
    ends it with a one-line error (status 1), never a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser(argv).parse_command(argv)
    try:
        if args.command == "train":
            _train(args)
        elif args.command == "evaluate":
            if args.num_samples < 1:
                raise ValueError(f"--num-samples (-K) must be at least 1, got {args.num_samples}")
            run_dir, _, model, guide, test = load_run(args.run, args.data_dir, args.device)
            print(json.dumps(_evaluate(run_dir, model, guide, test, args.num_samples, not args.quiet), indent=2))
        elif args.command == "sample":
            _sample(args)
        elif args.command == "plot":
            _check_counts(tsne_points=args.tsne_points)
            run_dir, experiment, model, guide, test = load_run(args.run, args.data_dir)
            for path in _plot(run_dir, experiment, model, guide, test, args.tsne_points):
                print(f"wrote {path}")
        elif args.command == "models":
            _list_models()
    except (DatasetNotFoundError, OSError, ValueError, TypeError, CheckpointError, DistributedError,
            TensorBoardUnavailable) as error:
        # One line, so that a script's log shows the whole message.
        text = error.for_cli() if isinstance(error, DatasetNotFoundError) else str(error)
        message = " ".join(line.strip() for line in text.splitlines() if line.strip())
        sys.exit(f"pyrovae {args.command}: {message}")


if __name__ == "__main__":
    main()
