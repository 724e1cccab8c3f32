import matplotlib
import torch

from pyrovae import plots


def labels(fig):
    return [line.get_label() for line in fig.axes[0].get_lines()]


def test_training_curves_show_bounds_not_raw_losses(tmp_path):
    variance_run = [{"epoch": e, "train_loss": 0.1, "train_elbo": -40.0 + e, "test_elbo": -41.0 + e,
                     "true_discrete_bound": -45.0 + e, "seconds": 1.0} for e in (1, 2, 3)]
    fig = plots.training_curves(variance_run, tmp_path / "curves.png")
    assert labels(fig) == ["train ELBO (objective's particles)", "test ELBO", "true discrete bound"]
    assert (tmp_path / "curves.png").stat().st_size > 0
    plain_run = [{"epoch": 1, "train_loss": 30.0, "seconds": 1.0}]
    line = plots.training_curves(plain_run).axes[0].get_lines()[0]
    assert list(line.get_ydata()) == [-30.0]


def test_image_grid_tiles_images_with_grid_lines():
    images = torch.rand(12, 6)
    fig = plots.image_grid(images, (2, 3), columns=5)
    canvas = fig.axes[0].get_images()[0].get_array()
    assert canvas.shape == (3 * 3 - 1, 5 * 4 - 1)
    assert canvas[0, :3].tolist() == images[0, :3].tolist()
    assert canvas.mask[2].all()  # the line between the first and second rows of images


def test_latent_scatter_uses_tsne_above_two_dimensions():
    z, y = torch.randn(60, 5), torch.arange(60) % 3
    fig = plots.latent_scatter(z, y)
    assert fig.axes[0].get_xlabel() == "t-SNE of latent 1"
    assert plots.latent_scatter(z[:, :2]).axes[0].get_xlabel() == "latent 1"
    assert matplotlib.get_backend().lower() == "agg"
