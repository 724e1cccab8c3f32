"""Figures of a run: image grids, latent scatters and training curves.

Every function takes tensors (or ``metrics.jsonl`` rows), never models, and returns a
:class:`matplotlib.figure.Figure` built directly, without pyplot: importing this module leaves the
matplotlib backend of a notebook alone, a notebook displays the returned figure, and
:func:`save_figure` writes it as PNG, e.g. ``save_figure(image_grid(samples, (28, 28)), path)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torchvision.utils import make_grid

from pyrovae.io import atomic_write

#: Value of the pixels between images: light grey, visible against black and white backgrounds.
PAD_VALUE = 0.8
#: Inches given to one image of a grid, whatever its size in pixels.
CELL_INCHES = 0.6
#: Runs with at most this many epochs get a marker per epoch.
SHORT_RUN_EPOCHS = 20
#: Keys of a metrics row that are not bounds in nats per example (``train_loss`` is plotted only
#: as a stand-in for a missing ``train_elbo``).
NOT_BOUNDS = frozenset({"epoch", "seconds", "train_loss", "train_elbo"})


def save_figure(fig: Figure, path) -> Path:
    """Write ``fig`` to ``path`` as PNG, atomically (see :func:`pyrovae.io.atomic_write`)."""
    return atomic_write(path, lambda h: fig.savefig(h, format="png", dpi=100, bbox_inches="tight"))


# Image grids ------------------------------------------------------------------------------------


def _channels_height_width(image_shape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or shape[0] not in (1, 3) or min(shape) < 1:
        raise ValueError(f"image_shape must be (H, W) or (C, H, W) with C = 1 or 3, got {tuple(image_shape)}")
    return shape


def _as_images(images, image_shape, name: str = "images") -> torch.Tensor:
    """``images`` as a float tensor ``(N, C, H, W)`` clamped to [0, 1] (decoder means of a Gaussian
    likelihood can stray slightly outside)."""
    chw = _channels_height_width(image_shape)
    images = torch.as_tensor(images).detach().cpu().float()
    allowed = {(chw[0] * chw[1] * chw[2],), tuple(int(s) for s in image_shape), chw}
    if images.dim() < 2 or tuple(images.shape[1:]) not in allowed or len(images) == 0:
        raise ValueError(f"{name} must be (N, D) flattened or (N, *image_shape) with image_shape "
                         f"{tuple(image_shape)} and N >= 1, got shape {tuple(images.shape)}")
    return images.reshape(-1, *chw).clamp(0, 1)


def _padding(images: torch.Tensor) -> int:
    # One pixel separates 8x8 digits clearly; 28x28 images need two to keep the lines visible.
    return 1 if max(images.shape[-2:]) < 16 else 2


def _blanks(count: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((count, *like.shape[1:]), PAD_VALUE)


def _draw_grid(images: torch.Tensor, columns: int, title: str | None = None,
               row_labels: Sequence[str] | None = None, row_axis_label: str | None = None) -> Figure:
    """Tile ``(N, C, H, W)`` images ``columns`` per row with :func:`torchvision.utils.make_grid`,
    ``PAD_VALUE`` between and around them; ``row_labels`` name the rows on the left."""
    if not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be a positive integer, got {columns!r}")
    padding = _padding(images)
    if len(images) == 1:  # make_grid returns a single image as it is, without the border
        grid = torch.nn.functional.pad(images[0], [padding] * 4, value=PAD_VALUE)
    else:
        grid = make_grid(images, nrow=columns, padding=padding, pad_value=PAD_VALUE)
    channels, height, width = images.shape[1:]
    # make_grid turns grey images into RGB; keep one channel so imshow maps it with a grey colormap.
    canvas = grid[0].numpy() if channels == 1 else grid.permute(1, 2, 0).numpy()
    pixel_inches = CELL_INCHES / (width + padding)
    title_lines = 0 if not title else title.count("\n") + 1
    fig = Figure(figsize=(canvas.shape[1] * pixel_inches, canvas.shape[0] * pixel_inches + 0.3 * title_lines))
    ax = fig.subplots()
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if row_labels is None:
        ax.set_axis_off()
    else:
        centres = [padding + r * (height + padding) + (height - 1) / 2 for r in range(len(row_labels))]
        ax.set_yticks(centres, list(row_labels))
        ax.set_xticks([])
        ax.tick_params(left=False)
        ax.spines[:].set_visible(False)
        if row_axis_label:
            ax.set_ylabel(row_axis_label)
    if title:
        ax.set_title(title)
    return fig


def image_grid(images, image_shape, columns: int = 10, title: str | None = None) -> Figure:
    r"""A grid of images, ``columns`` per row, with light-grey lines between them.

    :param images: ``(N, D)`` flattened or ``(N, *image_shape)``, values in [0, 1] (e.g. samples
        :math:`\mathbb E[x \mid z], z \sim p(z)`).
    :param image_shape: ``(H, W)`` or ``(C, H, W)`` with ``C`` = 1 (grey) or 3 (RGB).
    """
    return _draw_grid(_as_images(images, image_shape), columns, title)


def reconstructions(inputs, outputs, image_shape, columns: int = 10, title: str | None = None) -> Figure:
    r"""Inputs and their reconstructions (e.g. :math:`\mathbb E[x \mid z], z \sim q(z \mid x)`)
    in alternating rows: each row of ``columns`` inputs is followed by the row of their outputs.
    Rows are labelled on the left and the title says which rows are which."""
    inputs = _as_images(inputs, image_shape, "inputs")
    outputs = _as_images(outputs, image_shape, "outputs")
    if len(inputs) != len(outputs):
        raise ValueError(f"inputs and outputs must have the same length, got {len(inputs)} and {len(outputs)}")
    if not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be a positive integer, got {columns!r}")
    rows = []
    for start in range(0, len(inputs), columns):
        for block in (inputs[start:start + columns], outputs[start:start + columns]):
            rows += [block, _blanks(columns - len(block), block)]  # a short last pair keeps its own rows
    caption = "odd rows: inputs, even rows: their reconstructions"
    labels = ["input", "reconstruction"] * (len(rows) // 4)
    return _draw_grid(torch.cat(rows), columns, f"{title}\n{caption}" if title else caption, labels)


def labelled_grid(images, labels, image_shape, columns: int = 10, title: str | None = None,
                  row_axis_label: str | None = None) -> Figure:
    """One row per label value (in sorted order), holding the first ``columns`` images with that
    label, the value written on the left: a class-conditional sample grid, or samples per cluster.

    :param images: ``(N, D)`` or ``(N, *image_shape)``, values in [0, 1].
    :param labels: ``(N,)`` label of each image (e.g. the class it was sampled from).
    :param row_axis_label: what the labels are, e.g. ``"class"`` or ``"cluster"``.
    """
    images = _as_images(images, image_shape)
    labels = _as_labels(labels, len(images))
    values = np.unique(labels)
    rows = []
    for value in values:
        row = images[torch.from_numpy(np.flatnonzero(labels == value))[:columns]]
        rows += [row, _blanks(columns - len(row), row)]
    return _draw_grid(torch.cat(rows), columns, title, [str(v) for v in values], row_axis_label)


# Latent codes ----------------------------------------------------------------------------------


def _as_labels(labels, count: int) -> np.ndarray:
    labels = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if labels.shape != (count,):
        raise ValueError(f"labels must have shape ({count},), one per point, got {labels.shape}")
    return labels


def _label_colours(count: int) -> list:
    if count <= 10:
        return list(colormaps["tab10"].colors[:count])
    if count <= 20:
        return list(colormaps["tab20"].colors[:count])
    return [colormaps["turbo"](i / (count - 1)) for i in range(count)]


def latent_scatter(z, labels=None, seed: int = 0, title: str | None = None, max_points: int = 2000) -> Figure:
    """Latent codes ``z`` ``(N, d)`` as 2-D points: ``z`` itself when ``d = 2``, else a t-SNE
    embedding (scikit-learn, seeded with ``seed``). At most ``max_points`` random points are
    drawn (t-SNE is quadratic in N). With ``labels`` ``(N,)`` each label value gets its own
    colour and legend entry."""
    z = torch.as_tensor(z).detach().cpu().double()
    if z.dim() != 2 or z.shape[1] < 2 or len(z) < 2:
        raise ValueError(f"z must be (N, d) with N >= 2 points and d >= 2 dimensions, got shape {tuple(z.shape)}")
    labels = None if labels is None else _as_labels(labels, len(z))
    if len(z) > max_points:
        keep = torch.randperm(len(z), generator=torch.Generator().manual_seed(seed))[:max_points].sort().values
        z = z[keep]
        labels = None if labels is None else labels[keep.numpy()]
    points, axis = z.numpy(), "latent"
    if z.shape[1] > 2:
        from sklearn.manifold import TSNE

        tsne = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, (len(points) - 1) / 3))
        points, axis = tsne.fit_transform(points), "t-SNE"
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    ax = fig.subplots()
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=6)
    else:
        values = np.unique(labels)
        for value, colour in zip(values, _label_colours(len(values))):
            chosen = labels == value
            ax.scatter(points[chosen, 0], points[chosen, 1], s=6, color=colour, label=str(value))
        ax.legend(title="label", loc="upper left", bbox_to_anchor=(1.01, 1.0), markerscale=2.5,
                  ncols=1 + len(values) // 25, frameon=False)
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    if title:
        ax.set_title(title)
    return fig


# Training curves -------------------------------------------------------------------------------

_OBJECTIVE_NAME = re.compile(r"\s*(?:\w+\.)*(?P<base>\w+)\s*(?:\((?P<args>[^()]*)\))?\s*")
_PARTICLES = ("K", "k", "num_particles", "particles", "S")
#: Objectives whose loss is not minus a bound, so that ``-train_loss`` means nothing in nats.
_LOSS_IS_NOT_A_BOUND = frozenset({"VarianceELBO", "LogVarianceELBO"})


def _parse_objective(name: str) -> tuple[str, dict[str, str]]:
    """``"ImportanceWeightedELBO(K=5)"`` -> ``("ImportanceWeightedELBO", {"K": "5"})``; a bare
    positional argument is read as the number of particles."""
    match = _OBJECTIVE_NAME.fullmatch(name)
    if match is None:
        return name, {}
    params = {}
    for part in filter(None, (p.strip() for p in (match["args"] or "").split(","))):
        key, _, value = part.rpartition("=")
        params[key.strip() or "K"] = value.strip()
    return match["base"], params


def describe_objective(name: str) -> str:
    """The legend label of the training curve of a run trained with objective ``name`` (a class
    name, optionally with arguments): what the ``train_elbo`` of that objective, or minus its loss,
    estimates.

    >>> describe_objective("ImportanceWeightedELBO(K=5)")
    'train: IWAE bound, K=5'
    >>> describe_objective("Trace_ELBO")
    'train ELBO'

    An unknown objective is named as given: ``"train: <name>"``.
    """
    base, params = _parse_objective(name)
    particles = next((params[k] for k in _PARTICLES if k in params), None)
    if base in {"Trace_ELBO", "TraceMeanField_ELBO", "TraceGraph_ELBO", "TraceEnum_ELBO",
                "TraceEnumMeanField_ELBO", "JitTrace_ELBO", "JitTraceMeanField_ELBO", "JitTraceGraph_ELBO", "JitTraceEnum_ELBO"}:
        return "train ELBO"
    if base == "ImportanceWeightedELBO":
        return "train: IWAE bound" + (f", K={particles}" if particles else "")
    if base == "VarianceELBO":
        return "train: ELBO from the variance loss's particles"
    if base == "LogVarianceELBO":
        return "train: ELBO from the log-variance loss's particles"
    if base == "DisARM_ELBO":
        return "train ELBO (DisARM pairs)"
    if base == "TrueDiscreteBound":
        return "train: true discrete bound"
    if base == "RelaxedBernoulliELBO":
        return "train: relaxed Bernoulli ELBO (not a bound)"
    return f"train: {name.strip()}"


def describe_metric(key: str) -> str:
    """A readable name for a ``metrics.jsonl`` key: ``"test_elbo"`` -> ``"test ELBO"``,
    ``"iwae_50"`` -> ``"IWAE bound K=50"``, ``"true_discrete_bound"`` -> ``"true discrete bound"``."""
    iwae = re.fullmatch(r"(?:(?P<split>\w+?)_)?iwae_?(?P<k>\d+)", key)
    if iwae is not None:
        return " ".join(filter(None, (iwae["split"], f"IWAE bound K={iwae['k']}")))
    acronyms = {"elbo": "ELBO", "iwae": "IWAE", "nll": "NLL", "kl": "KL", "mse": "MSE"}
    return " ".join(acronyms.get(word.lower(), word) for word in key.split("_") if word)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _series(rows: list[dict], key: str) -> tuple[list, list]:
    present = [r for r in rows if _is_number(r.get(key)) and _is_number(r.get("epoch"))]
    return [r["epoch"] for r in present], [r[key] for r in present]


def training_curves(rows: list[dict], title: str | None = None, objective: str | None = None) -> Figure:
    """Per-epoch bounds in nats per example from ``metrics.jsonl`` rows.

    The training curve is ``train_elbo`` when the rows have it (an objective's own estimate of its
    bound), else ``-train_loss``; ``objective`` (e.g. ``"ImportanceWeightedELBO(K=5)"``) names it
    in the legend (see :func:`describe_objective`). Every other numeric key except ``epoch`` and
    ``seconds`` (``test_elbo``, diagnostics such as ``true_discrete_bound`` or ``iwae_50``) gets
    its own line, named by :func:`describe_metric`. Runs of at most ``SHORT_RUN_EPOCHS`` epochs
    get a marker per epoch.
    """
    rows = list(rows)
    if not rows or not all(_is_number(r.get("epoch")) for r in rows):
        raise ValueError("rows must be a non-empty list of metrics.jsonl rows, each with a numeric 'epoch'")
    base = None if objective is None else _parse_objective(objective)[0]
    epochs, values = _series(rows, "train_elbo")
    if epochs:
        label = describe_objective(objective) if objective else "train ELBO"
    else:
        epochs, losses = _series(rows, "train_loss")
        values = [-loss for loss in losses]
        if objective is None:
            label = "train: -loss per example"
        elif base in _LOSS_IS_NOT_A_BOUND:
            label = f"train: -loss of {objective} (not a bound)"
        else:
            label = describe_objective(objective)
    curves = [(label, epochs, values)] if epochs else []
    keys = sorted({k for r in rows for k, v in r.items() if _is_number(v)} - NOT_BOUNDS,
                  key=lambda k: (k != "test_elbo", k))
    curves += [(describe_metric(key), *_series(rows, key)) for key in keys]

    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    marker = "o" if len({r["epoch"] for r in rows}) <= SHORT_RUN_EPOCHS else None
    for label, x, y in curves:
        ax.plot(x, y, label=label, marker=marker, markersize=4)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend()
    if title:
        ax.set_title(title)
    return fig
