import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from pyrovae import plots

PAD = plots.PAD_VALUE


def canvas(fig):
    return np.asarray(fig.axes[0].get_images()[0].get_array())


def curve_labels(fig):
    return [line.get_label() for line in fig.axes[0].get_lines()]


def test_importing_plots_leaves_the_backend_alone():
    code = ("import matplotlib, sys; before = matplotlib.get_backend(); import pyrovae.plots; "
            "print(before, matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["svg", "svg", "False"]


def test_image_grid_tiles_images_between_pad_pixels():
    images = torch.rand(12, 6)  # 12 images of 2x3 pixels; padding is 1 pixel for small images
    fig = plots.image_grid(images, (2, 3), columns=5)
    assert isinstance(fig, Figure)
    grid = canvas(fig)
    assert grid.shape == (1 + 3 * (2 + 1), 1 + 5 * (3 + 1))
    for k, image in enumerate(images.reshape(12, 2, 3)):
        r, c = divmod(k, 5)
        top, left = 1 + r * 3, 1 + c * 4
        np.testing.assert_allclose(grid[top:top + 2, left:left + 3], image.numpy())
    for r in (0, 3, 6, 9):
        assert (grid[r] == PAD).all()
    for c in (0, 4, 8, 12, 16, 20):
        assert (grid[:, c] == PAD).all()
    assert (grid[7:9, 9:20] == PAD).all()  # the three empty cells of the last row


def test_image_grid_accepts_shaped_and_colour_images():
    grey = torch.rand(4, 2, 3)
    np.testing.assert_array_equal(canvas(plots.image_grid(grey, (2, 3))), canvas(plots.image_grid(grey.reshape(4, 6), (2, 3))))
    colour = torch.rand(2, 3, 4, 5)
    grid = canvas(plots.image_grid(colour, (3, 4, 5)))
    assert grid.shape == (1 + 4 + 1, 1 + 2 * (5 + 1), 3)
    np.testing.assert_allclose(grid[1:5, 7:12], colour[1].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="image_shape"):
        plots.image_grid(torch.rand(4, 6), (2, 2))


def test_reconstructions_interleave_input_and_output_rows():
    inputs, outputs = torch.zeros(7, 4), torch.ones(7, 4)
    fig = plots.reconstructions(inputs, outputs, (2, 2), columns=4)
    grid = canvas(fig)
    tops = [1 + r * 3 for r in range(4)]
    assert [grid[t, 1] for t in tops] == [0.0, 1.0, 0.0, 1.0]
    assert (grid[tops[2]:tops[2] + 2, 10:12] == PAD).all()  # the last row of inputs has 3, not 4
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["input", "reconstruction"] * 2
    assert "odd rows: inputs" in ax.get_title()


def test_labelled_grid_has_one_row_per_label():
    images = torch.arange(5.0).reshape(5, 1).expand(5, 4) / 10
    labels = torch.tensor([2, 0, 2, 0, 2])
    fig = plots.labelled_grid(images, labels, (2, 2), columns=3, row_axis_label="class")
    grid = canvas(fig)
    assert grid.shape == (1 + 2 * 3, 1 + 3 * 3)
    assert [grid[1, 1 + 3 * c] for c in range(3)] == pytest.approx([0.1, 0.3, PAD])  # label 0
    assert [grid[4, 1 + 3 * c] for c in range(3)] == pytest.approx([0.0, 0.2, 0.4])  # label 2
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "2"]
    assert ax.get_ylabel() == "class"


def test_latent_scatter_has_a_discrete_legend_and_names_its_axes():
    z, y = torch.randn(60, 5), torch.arange(60) % 3
    fig = plots.latent_scatter(z, y, title="posterior means")
    ax = fig.axes[0]
    assert len(fig.axes) == 1  # no colorbar
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("t-SNE 1", "t-SNE 2", "posterior means")
    two_d = plots.latent_scatter(torch.randn(300, 2), torch.arange(300) % 12, max_points=100).axes[0]
    assert two_d.get_xlabel() == "latent 1"
    assert len(two_d.get_legend().get_texts()) == 12
    assert sum(len(c.get_offsets()) for c in two_d.collections) == 100
    assert plots.latent_scatter(torch.randn(10, 2)).axes[0].get_legend() is None


def test_training_curves_of_a_short_iwae_run():
    rows = [{"epoch": e, "train_loss": 50.0 - e, "test_elbo": -49.0 + e, "iwae_50": -47.0 + e,
             "seconds": 1.5, "note": "resumed"} for e in (1, 2, 3)]
    fig = plots.training_curves(rows, title="digits · vae · IWAE · 3 epochs", objective="ImportanceWeightedELBO(K=5)")
    ax = fig.axes[0]
    assert curve_labels(fig) == ["train: IWAE bound, K=5", "test ELBO", "IWAE bound K=50"]
    assert list(ax.get_lines()[0].get_ydata()) == [-49.0, -48.0, -47.0]
    assert ax.get_title() == "digits · vae · IWAE · 3 epochs"
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
    assert ticks == [1, 2, 3]
    assert all(line.get_marker() == "o" for line in ax.get_lines())
    assert ax.get_ylabel() == "nats per example"


def test_training_curves_prefer_the_objectives_elbo():
    rows = [{"epoch": e, "train_loss": 0.1, "train_elbo": -40.0 + e, "test_elbo": -41.0 + e,
             "true_discrete_bound": -45.0 + e, "seconds": 1.0} for e in range(1, 31)]
    fig = plots.training_curves(rows, objective="VarianceELBO")
    assert curve_labels(fig) == ["train: ELBO from the variance loss's particles", "test ELBO", "true discrete bound"]
    assert list(fig.axes[0].get_lines()[0].get_ydata())[:2] == [-39.0, -38.0]
    assert all(line.get_marker() in (None, "None", "") for line in fig.axes[0].get_lines())


def test_training_curves_of_a_trace_elbo_run_use_minus_the_loss():
    rows = [{"epoch": 1, "train_loss": 30.0, "test_elbo": -31.0, "seconds": 1.0}]
    fig = plots.training_curves(rows, objective="Trace_ELBO")
    assert curve_labels(fig) == ["train ELBO", "test ELBO"]
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == [-30.0]
    assert curve_labels(plots.training_curves(rows)) == ["train: -loss per example", "test ELBO"]


def test_describe_objective():
    assert plots.describe_objective("ImportanceWeightedELBO(K=5)") == "train: IWAE bound, K=5"
    assert plots.describe_objective("ImportanceWeightedELBO(num_particles=5, estimator=dreg)") == "train: IWAE bound, K=5"
    assert plots.describe_objective("LogVarianceELBO") == "train: ELBO from the log-variance loss's particles"
    assert plots.describe_objective("pyro.infer.TraceMeanField_ELBO") == "train ELBO"
    assert plots.describe_objective("MyBound(alpha=0.5)") == "train: MyBound(alpha=0.5)"
    assert plots.describe_metric("test_iwae_5000") == "test IWAE bound K=5000"


def test_save_figure_writes_a_png_with_the_usual_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        path = plots.save_figure(plots.image_grid(torch.rand(3, 4), (2, 2)), tmp_path / "sub" / "grid.png")
    finally:
        os.umask(previous)
    assert path == tmp_path / "sub" / "grid.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]
