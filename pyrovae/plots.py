"""Figures of a run, drawn with matplotlib's Agg backend and saved as PNG files.

Every function takes tensors (not models), returns the ``Figure`` and writes ``path`` if given, so
the same code serves notebooks and the ``pyrovae plot`` command.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _save(fig, path):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return fig


def _tile(images: torch.Tensor, image_shape, columns: int) -> np.ndarray:
    images = images.detach().cpu().reshape(-1, *image_shape).clamp(0, 1).numpy()
    rows = math.ceil(len(images) / columns)
    height, width = image_shape
    canvas = np.full((rows * (height + 1) - 1, columns * (width + 1) - 1), np.nan)  # NaN: the grid lines
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (height + 1): r * (height + 1) + height, c * (width + 1): c * (width + 1) + width] = image
    return canvas


def image_grid(images: torch.Tensor, image_shape, path=None, columns: int = 10, title: str | None = None):
    """A grid of images ``(N, H*W)`` with values in [0, 1] (e.g. samples ``E[x | z], z ~ p(z)``)."""
    canvas = _tile(images, image_shape, columns)
    fig, ax = plt.subplots(figsize=(columns * 0.6, canvas.shape[0] / canvas.shape[1] * columns * 0.6 + 0.4))
    cmap = plt.get_cmap("gray_r").with_extremes(bad="#d8d8d8")
    ax.imshow(canvas, cmap=cmap, vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return _save(fig, path)


def reconstructions(inputs: torch.Tensor, outputs: torch.Tensor, image_shape, path=None, columns: int = 10):
    """Inputs (top row of each pair) above their reconstructions ``E[x | z], z ~ q(z | x)``."""
    n = min(len(inputs), columns * 3)
    pairs = []
    for start in range(0, n, columns):
        pairs += [inputs[start:start + columns], outputs[start:start + columns]]
    return image_grid(torch.cat(pairs), image_shape, path, columns, title="inputs (odd rows) and reconstructions (even rows)")


def latent_scatter(z: torch.Tensor, labels: torch.Tensor | None = None, path=None, seed: int = 0):
    """2-D scatter of latent codes coloured by label; t-SNE (scikit-learn) when ``z`` has more than 2 dims."""
    z = z.detach().cpu().numpy()
    method = "latent"
    if z.shape[1] > 2:
        from sklearn.manifold import TSNE

        z = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, (len(z) - 1) / 3)).fit_transform(z)
        method = "t-SNE of latent"
    fig, ax = plt.subplots(figsize=(6, 5))
    colours = None if labels is None else labels.cpu().numpy()
    points = ax.scatter(z[:, 0], z[:, 1], c=colours, cmap="tab10", s=6)
    if labels is not None:
        fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.set_title("posterior means E_q[z | x]")
    return _save(fig, path)


def training_curves(rows: list[dict], path=None):
    """Per-epoch bounds in nats per example, from ``metrics.jsonl`` rows: the training ELBO (the
    objective's own estimate when it has one, else minus the training loss), the test ELBO and
    every diagnostic logged next to them."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [r["epoch"] for r in rows]
    if all("train_elbo" in r for r in rows):
        ax.plot(epochs, [r["train_elbo"] for r in rows], label="train ELBO (objective's particles)")
    else:
        ax.plot(epochs, [-r["train_loss"] for r in rows], label="train: -loss per example")
    keys = sorted({k for r in rows for k in r} - {"epoch", "seconds", "train_loss", "train_elbo"})
    for key in keys:
        present = [r for r in rows if isinstance(r.get(key), (int, float))]
        ax.plot([r["epoch"] for r in present], [r[key] for r in present], label=key.replace("_", " ").replace("elbo", "ELBO"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)
