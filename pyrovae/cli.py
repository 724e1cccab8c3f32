"""The ``pyrovae`` command: ``train``, ``evaluate``, ``sample``, ``plot``.

``pyrovae train`` with no options trains a VAE on the bundled ``digits`` data in well under a minute
and leaves ``config.json``, ``metrics.jsonl``, ``checkpoint.pt``, ``results.json`` and PNG plots in
the run directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from pyrovae.data import DATASETS, DatasetNotFoundError
from pyrovae.evaluate import importance_log_likelihood, mean_elbo, reconstruction_error
from pyrovae.experiment import GUIDES, OBJECTIVES, ExperimentConfig, build_data, build_model_and_guide, build_objective
from pyrovae.io import read_jsonl, write_json
from pyrovae.likelihoods import LIKELIHOODS
from pyrovae.train import CONFIG, METRICS, TrainingDivergedError, fit, load_checkpoint

EXPERIMENT_KEYS = set(ExperimentConfig.__dataclass_fields__)


def _parser() -> argparse.ArgumentParser:
    defaults = ExperimentConfig()
    parser = argparse.ArgumentParser(prog="pyrovae", description="Train and inspect Pyro VAEs.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and write a run directory")
    train.add_argument("--model", default=defaults.model, choices=["vae"])
    train.add_argument("--dataset", default=defaults.dataset, choices=DATASETS)
    train.add_argument("--data-dir", default=None, help="data root (else $PYROVAE_DATA_DIR, then ~/.cache/pyrovae)")
    train.add_argument("--likelihood", default=defaults.likelihood, choices=sorted(LIKELIHOODS))
    train.add_argument("--binarize", default=defaults.binarize, choices=["none", "threshold", "static", "dynamic"])
    train.add_argument("--dequantize", action="store_true", help="(k + u)/L intensities, fresh noise per batch")
    train.add_argument("--guide", default=defaults.guide, choices=sorted(GUIDES))
    train.add_argument("--objective", default=defaults.objective, choices=sorted(OBJECTIVES))
    train.add_argument("--latent-dim", dest="z_dim", type=int, default=defaults.z_dim)
    train.add_argument("--hidden", dest="hidden_sizes", type=int, nargs="+", default=defaults.hidden_sizes)
    train.add_argument("--activation", default=defaults.activation)
    train.add_argument("--epochs", type=int, default=None, help=f"total epochs (default {defaults.epochs})")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--num-particles", type=int, default=defaults.num_particles)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (default: 1 for digits, whose tiny networks gain nothing from more; "
                            "else torch's default)")
    train.add_argument("--out", default="runs/latest", help="run directory")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its checkpoint with its stored settings "
                            "(only --epochs, the new total, is taken from the command line)")
    train.add_argument("--nll-samples", type=int, default=500, help="K for the final importance-sampled NLL (0: skip)")
    train.add_argument("--no-plots", action="store_true")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("evaluate", help="test ELBO, importance-sampled log-likelihood, reconstruction error")
    evaluate.add_argument("run", help="run directory")
    evaluate.add_argument("--num-samples", "-K", type=int, default=5000)
    evaluate.add_argument("--data-dir", default=None)

    sample = commands.add_parser("sample", help="draw images from the model and save a grid")
    sample.add_argument("run")
    sample.add_argument("--num", type=int, default=100)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--output", default=None, help="PNG path (default: <run>/samples.png)")

    plot = commands.add_parser("plot", help="samples, reconstructions, latent scatter and training curves")
    plot.add_argument("run")
    plot.add_argument("--data-dir", default=None)
    return parser


def _read_config(run_dir: Path) -> ExperimentConfig:
    if not (run_dir / CONFIG).exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory: no {CONFIG}")
    stored = json.loads((run_dir / CONFIG).read_text())
    return ExperimentConfig(**{k: v for k, v in stored.items() if k in EXPERIMENT_KEYS})


def _load_run(run: str, data_dir: str | None = None):
    run_dir = Path(run)
    config = _read_config(run_dir)
    if data_dir is not None:
        config.data_dir = data_dir
    train, test = build_data(config)
    model, guide = build_model_and_guide(config, train.x_dim)
    load_checkpoint(run_dir, model, guide)
    model.eval(), guide.eval()
    return run_dir, config, model, guide, train, test


def _evaluate(run_dir, model, guide, test, num_samples) -> dict:
    results = {"test_elbo": mean_elbo(model, guide, test), "reconstruction_mse": reconstruction_error(model, guide, test)}
    if num_samples > 0:
        results["test_log_likelihood"] = importance_log_likelihood(model, guide, test, num_samples)
        results["num_importance_samples"] = num_samples
    write_json(run_dir / "results.json", results)
    return results


def _plot(run_dir, config, model, guide, test) -> list[Path]:
    from pyrovae import plots

    generator = torch.Generator().manual_seed(config.seed)
    shape = test.image_shape
    x = test.x[:30]
    with torch.no_grad():
        reconstruction = model.decode_mean(guide.encode(x))
        z = guide.encode(test.x[:2000])
    paths = [run_dir / name for name in ("samples.png", "reconstructions.png", "latents.png", "curves.png")]
    plots.image_grid(model.sample_images(100, generator), shape, paths[0], title="samples E[x | z], z ~ p(z)")
    plots.reconstructions(x, reconstruction, shape, paths[1])
    plots.latent_scatter(z, None if test.y is None else test.y[:2000], paths[2], seed=config.seed)
    plots.training_curves(read_jsonl(run_dir / METRICS), paths[3])
    return paths


def _train(args) -> None:
    run_dir = Path(args.out)
    if args.resume:
        config = _read_config(run_dir)
        config.epochs = args.epochs or config.epochs
    else:
        settings = {k: v for k, v in vars(args).items() if k in EXPERIMENT_KEYS and v is not None}
        settings["binarize"] = None if settings["binarize"] == "none" else settings["binarize"]
        config = ExperimentConfig(**settings)
    threads = args.threads or (1 if config.dataset == "digits" else None)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    train, test = build_data(config)
    model, guide = build_model_and_guide(config, train.x_dim)
    try:
        fit(model, guide, build_objective(config), train, test, epochs=config.epochs, batch_size=config.batch_size,
            lr=config.lr, seed=config.seed, run_dir=run_dir, resume=args.resume, config=config.to_dict(),
            progress=not args.quiet)
    except TrainingDivergedError as error:
        sys.exit(f"training stopped: {error}")
    model.eval(), guide.eval()
    results = _evaluate(run_dir, model, guide, test, args.nll_samples)
    print(json.dumps(results, indent=2))
    if not args.no_plots:
        for path in _plot(run_dir, config, model, guide, test):
            print(f"wrote {path}")
    print(f"run directory: {run_dir}")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            _train(args)
        elif args.command == "evaluate":
            run_dir, _, model, guide, _, test = _load_run(args.run, args.data_dir)
            print(json.dumps(_evaluate(run_dir, model, guide, test, args.num_samples), indent=2))
        elif args.command == "sample":
            from pyrovae.plots import image_grid

            run_dir, config, model, guide, _, test = _load_run(args.run)
            output = Path(args.output) if args.output else run_dir / "samples.png"
            image_grid(model.sample_images(args.num, torch.Generator().manual_seed(args.seed)), test.image_shape, output)
            print(f"wrote {output}")
        elif args.command == "plot":
            run_dir, config, model, guide, _, test = _load_run(args.run, args.data_dir)
            for path in _plot(run_dir, config, model, guide, test):
                print(f"wrote {path}")
    except (DatasetNotFoundError, FileNotFoundError, ValueError) as error:
        sys.exit(f"pyrovae {args.command}: {error}")


if __name__ == "__main__":
    main()
