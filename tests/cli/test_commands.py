"""``pyrovae evaluate``, ``sample`` and ``plot`` on a trained run: they load its checkpoint and config."""

import json

import numpy as np
import pytest
from PIL import Image

import pyrovae.plots
from pyrovae.cli import _plot
from pyrovae.experiment import Experiment, build_data, build_model_and_guide
from pyrovae.io import write_jsonl
from tests.cli.invocation import refusal, run_main

FIGURES = ("samples.png", "reconstructions.png", "latents.png", "curves.png")


def pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def assert_drawn(path):
    """A figure of some size that is not one flat colour."""
    image = pixels(path)
    assert min(image.shape[:2]) > 50 and image.std() > 10, (path.name, image.shape, image.std())


def test_a_run_writes_its_results_and_plots(trained_run):
    results = json.loads((trained_run.path / "results.json").read_text())
    assert results["num_importance_samples"] == 20
    assert "Warning" not in trained_run.stderr, trained_run.stderr  # none that the user did not cause
    assert results["test_elbo"] <= results["test_log_likelihood"] + 0.5  # a bound, up to estimator noise
    for name in FIGURES:
        assert_drawn(trained_run.path / name)


def test_evaluate_reproduces_the_final_test_elbo_of_training(run_copy, capsys):
    trained = json.loads((run_copy / "results.json").read_text())
    (run_copy / "results.json").unlink()
    run_main("evaluate", run_copy, "-K", "10", "--quiet")
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((run_copy / "results.json").read_text())
    assert printed == written and written["num_importance_samples"] == 10
    # An untrained model scores about -45 nats here, 3 epochs about -27: 1 nat means the weights were loaded.
    assert written["test_elbo"] == pytest.approx(trained["test_elbo"], abs=1.0)
    assert written["reconstruction_mse"] == pytest.approx(trained["reconstruction_mse"], rel=0.1)


def test_sample_draws_a_grid_and_keeps_an_existing_output(run_copy, tmp_path, capsys):
    output = tmp_path / "grid.png"
    run_main("sample", run_copy, "--num", "16", "--output", output)
    assert output.stat().st_size > 0
    first = output.read_bytes()
    message = refusal(["sample", run_copy, "--num", "16", "--seed", "1", "--output", output], capsys)
    assert str(output) in message and "--force" in message
    assert output.read_bytes() == first
    run_main("sample", run_copy, "--num", "16", "--seed", "1", "--output", output, "--force")
    assert output.read_bytes() != first


def test_plot_redraws_the_plots_of_a_run(run_copy):
    """From the checkpoint, config and metrics alone, ``plot`` draws what training drew, pixel for
    pixel: the trained weights (an untrained model's samples, reconstructions and codes differ), the
    logged curves and the seeded t-SNE."""
    drawn = {name: pixels(run_copy / name) for name in FIGURES}
    for name in FIGURES:
        (run_copy / name).unlink()
    run_main("plot", run_copy, "--tsne-points", "100")  # as trained_run
    for name in FIGURES:
        assert np.array_equal(pixels(run_copy / name), drawn[name]), name


@pytest.mark.parametrize("objective, particles, label, legend", [
    ("trace", 1, "Trace_ELBO", "train ELBO"),
    ("iwae", 2, "ImportanceWeightedELBO(K=2)", "train: IWAE bound, K=2"),
    ("iwae_dreg", 2, "ImportanceWeightedELBO(K=2, estimator=dreg)", "train: IWAE bound, K=2"),
])
def test_the_curves_title_names_data_model_objective_and_epochs(tmp_path, monkeypatch, objective, particles, label,
                                                                legend):
    experiment = Experiment.resolve({"objective": objective, "num_particles": particles})
    train, test = build_data(experiment)
    model, guide = build_model_and_guide(experiment, train)
    write_jsonl(tmp_path / "metrics.jsonl", [{"epoch": e, "train_loss": 30.0 - e, "test_elbo": e - 31.0}
                                             for e in (1, 2, 3)])
    figures = {}
    monkeypatch.setattr(pyrovae.plots, "save_figure", lambda figure, path: figures.setdefault(path.name, figure))
    _plot(tmp_path, experiment, model, guide, test, tsne_points=0)
    axes = figures["curves.png"].axes[0]
    assert axes.get_title() == f"digits · vae (diagonal guide) · {label} · 3 epochs"
    assert legend in [text.get_text() for text in axes.get_legend().get_texts()]
    assert "latents.png" not in figures  # --tsne-points 0


@pytest.mark.parametrize("model", ["cvae", "gmvae", "m2", "mixture-vae", "vrnn"])
def test_a_model_draws_its_own_figures_and_reconstructions_even_when_its_guide_reads_labels(model, tmp_path):
    from pyrovae import registry

    run_main("train", "--model", model, "--preset", "tiny", "--epochs", "1", "--out", tmp_path / "run",
             "--nll-samples", "0", "--tsne-points", "0", "--quiet")
    figures = registry.get(model).figures
    assert figures, f"{model} registers no figures of its own"
    assert_drawn(tmp_path / "run" / "reconstructions.png")
    # The reconstructions of a guide that reads labels, or of a sequence model, use one unseeded z ~ q(z | x).
    redrawn = (*figures, *(() if model in ("cvae", "m2", "vrnn") else ("reconstructions.png",)))
    drawn = {name: pixels(tmp_path / "run" / name) for name in redrawn}
    for name in drawn:
        assert_drawn(tmp_path / "run" / name)
        (tmp_path / "run" / name).unlink()
    run_main("plot", tmp_path / "run", "--tsne-points", "0")  # the saved model draws the same figures
    for name, image in drawn.items():
        assert np.array_equal(pixels(tmp_path / "run" / name), image), name
