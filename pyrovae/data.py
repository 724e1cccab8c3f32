"""Datasets as single in-memory tensors, batched by indexing with a seeded generator.

``load_dataset(name, split)`` returns a :class:`Dataset` whose ``x`` is a float tensor ``(N, D)``
with intensities in [0, 1] (or {0, 1} after static binarization) and whose ``y`` holds integer
labels. Representations:

* ``binarize=None``: intensities in [0, 1].
* ``binarize="threshold"``: ``x > 0.5``, fixed.
* ``binarize="static"``: one Bernoulli draw per pixel from a seeded generator, fixed (Salakhutdinov &
  Murray 2008).
* ``binarize="dynamic"``: a fresh Bernoulli draw every time a batch is served (Burda et al. 2016).
* ``dequantize=True``: ``(k + u) / L`` for an intensity level ``k`` out of ``L`` and ``u ~ U(0, 1)``,
  drawn afresh for every batch (Yang 2022, §5.3, footnote 14: ``(x + u) / 256`` for 8-bit images).

``factor-analysis`` is synthetic and real-valued: draws of the factor-analysis model of Yang 2022,
§5.2, with its ground truth in ``Dataset.metadata``.

Data roots are searched in order: the ``root`` argument, ``$PYROVAE_DATA_DIR``, ``~/.cache/pyrovae``.
MNIST-type files follow torchvision's layout (``<root>/MNIST/raw/*.gz``).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

DATASETS = ("digits", "mnist", "fashion-mnist", "binarized-mnist", "omniglot", "factor-analysis")
SPLITS = {
    "digits": ("train", "test"),
    "mnist": ("train", "test"),
    "fashion-mnist": ("train", "test"),
    "binarized-mnist": ("train", "valid", "test"),
    "omniglot": ("train", "test"),
    "factor-analysis": ("train", "test"),
}
BINARIZATIONS = (None, "threshold", "static", "dynamic")
DIGITS_TEST_FRACTION = 0.2
OMNIGLOT_SIZE = 28
#: The ground truth of the factor-analysis data (Yang 2022, §5.2): loading W (D x L) and noise scales sigma (D).
FACTOR_ANALYSIS_LOADING = ((-0.5, -1.0), (-1.0, -1.0), (2.0, 0.5))
FACTOR_ANALYSIS_NOISE_SCALE = (0.4, 0.2, 0.3)
#: The label a batch carries for an example whose label is hidden (semi-supervised training).
UNLABELLED = -1


#: How a message names the two ways to supply data, to a Python caller and to a user of the ``pyrovae`` command.
PYTHON_WORDING = {"root": "pass root=...", "download": "pass download=True"}
CLI_WORDING = {"root": "pass --data-dir DIR", "download": "pass --download"}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are in none of the places searched.

    ``str(error)`` speaks to a Python caller (``root=...``, ``download=True``); :meth:`for_cli` says
    the same to a user of the ``pyrovae`` command (``--data-dir``, ``--download``).
    """

    def __init__(self, name: str, looked_at: list[Path], expected: str, downloadable: bool = False):
        self.name, self.looked_at, self.expected, self.downloadable = name, list(looked_at), expected, downloadable
        super().__init__(self.message(PYTHON_WORDING))

    def message(self, wording: dict) -> str:
        """The error's text: the paths looked at and what to do, in ``wording``'s terms (the CLI
        names ``--data-dir``/``--download``, the Python API the ``root``/``download`` arguments)."""
        paths = "\n  ".join(str(p) for p in self.looked_at)
        download = f", or {wording['download']}" if self.downloadable else ""
        supply = wording["root"][0].upper() + wording["root"][1:]
        return (f"dataset {self.name!r} not found. Looked at:\n  {paths}\n{self.expected} "
                f"{supply} or set PYROVAE_DATA_DIR to the folder that holds it{download}.")

    def for_cli(self) -> str:
        """The message in the command line's terms (``--data-dir``, ``--download``)."""
        return self.message(CLI_WORDING)


class DatasetDownloadError(DatasetNotFoundError):
    """A download was asked for and failed (no internet, say); what it created is removed."""

    def __init__(self, name: str, url: str, reason: str, folder: str):
        self.url, self.reason, self.folder = url, reason, folder
        super().__init__(name, [], "")

    def message(self, wording: dict) -> str:
        """The error's text: the URL tried, the reason, and how to supply the files offline."""
        return (f"could not download {self.name!r} from {self.url} ({self.reason}). Offline, copy torchvision's "
                f"{self.folder}/raw files into a folder and {wording['root']} or set PYROVAE_DATA_DIR to that folder.")


def default_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """The data roots searched, in order: ``root``, ``$PYROVAE_DATA_DIR``, ``~/.cache/pyrovae``."""
    roots = []
    if root is not None:
        roots.append(Path(root).expanduser())
    if os.environ.get("PYROVAE_DATA_DIR"):
        roots.append(Path(os.environ["PYROVAE_DATA_DIR"]).expanduser())
    roots.append(cache_dir())
    return roots


def cache_dir() -> Path:
    """Where pyrovae keeps downloads and decompressed copies (``$PYROVAE_CACHE_DIR`` or ``~/.cache/pyrovae``)."""
    return Path(os.environ.get("PYROVAE_CACHE_DIR", Path.home() / ".cache" / "pyrovae")).expanduser()


@dataclass
class Dataset:
    """A data set held as one tensor.

    Attributes:
        name, split: where it came from.
        x: float tensor ``(N, D)``; the stored representation (per-batch noise is applied in :meth:`batches`).
        y: int64 labels ``(N,)``, or ``None``.
        image_shape: shape of one example: ``(H, W)``, ``(C, H, W)`` or ``(T, D)``.
        num_classes: number of label values.
        levels: number of intensity levels ``L`` of the source (256 for 8-bit images); ``None`` when
            the values are not quantized levels (then dequantization does not apply).
        is_binary: the source itself is binary (binarization does not apply).
        binarize, dequantize: the representation (see the module docstring).
        labelled: bool ``(N,)``, which labels a model is shown, or ``None`` for all of them; batches
            carry a hidden label as :data:`UNLABELLED` (see :func:`with_labels`).
    """

    name: str
    split: str
    x: torch.Tensor
    y: torch.Tensor | None
    image_shape: tuple[int, ...]
    num_classes: int
    levels: int | None
    is_binary: bool = False
    binarize: str | None = None
    dequantize: bool = False
    metadata: dict = field(default_factory=dict)
    labelled: torch.Tensor | None = None

    @classmethod
    def from_tensor(
        cls,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        name: str = "tensor",
        split: str = "train",
        image_shape: tuple[int, ...] | None = None,
        num_classes: int | None = None,
    ) -> Dataset:
        """A data set of your own tensors: ``x`` is ``(N, D)``, ``(N, H, W)``, ``(N, C, H, W)`` or a
        sequence ``(N, T, D)``, ``y`` optional integer labels ``(N,)``.

        Examples are stored flattened; ``image_shape`` (the shape of one example, for plots and for
        models that take images or sequences) defaults to ``x.shape[1:]``, or ``(H, H)`` for a flat
        ``D = H * H``. ``num_classes`` defaults to ``y.max() + 1``.
        """
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point torch.Tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        if x.dim() < 2 or x.shape[0] == 0:
            raise ValueError(f"x must have shape (N, ...) with N >= 1 examples, got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"x contains {(~torch.isfinite(x)).sum().item()} NaN or infinite values")
        if y is not None:
            if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dtype == torch.bool:
                raise TypeError(f"y must be an integer tensor of labels, got {getattr(y, 'dtype', type(y).__name__)}")
            if tuple(y.shape) != (x.shape[0],):
                raise ValueError(f"y must have shape ({x.shape[0]},), one label per example, got {tuple(y.shape)}")
            if (y < 0).any():
                raise ValueError("y must hold labels 0, 1, ..., num_classes - 1; got a negative label")
            y = y.to(torch.int64)
        if image_shape is None:
            side = math.isqrt(x[0].numel())
            image_shape = tuple(x.shape[1:]) if x.dim() > 2 else ((side, side) if side * side == x.shape[1] else (1, x.shape[1]))
        image_shape = tuple(int(s) for s in image_shape)
        if math.prod(image_shape) != x[0].numel():
            raise ValueError(f"image_shape {image_shape} does not hold the {x[0].numel()} values of one example")
        if num_classes is None:
            num_classes = 0 if y is None else int(y.max()) + 1
        elif y is not None and int(y.max()) >= num_classes:
            raise ValueError(f"y holds label {int(y.max())}, not below num_classes={num_classes}")
        return cls(name, split, x.reshape(x.shape[0], -1), y, image_shape, num_classes, levels=None)

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def x_dim(self) -> int:
        """The number of features of one example (pixels of a flattened image)."""
        return self.x.shape[1]

    def one_hot(self) -> torch.Tensor:
        """Labels as a float one-hot tensor ``(N, num_classes)``."""
        if self.y is None:
            raise ValueError(f"{self.name} has no labels")
        return F.one_hot(self.y, self.num_classes).to(self.x.dtype)

    def sequences(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Rows as a sequence: ``(N, H, W)``, one image row per time step."""
        x = self.x if x is None else x
        return x.reshape(x.shape[0], *self.image_shape)

    def subset(self, size_or_indices) -> Dataset:
        """The first ``n`` examples, or those at the given indices."""
        index = torch.arange(int(size_or_indices)) if isinstance(size_or_indices, int) else torch.as_tensor(size_or_indices)
        return replace(self, x=self.x[index], y=None if self.y is None else self.y[index],
                       labelled=None if self.labelled is None else self.labelled[index])

    def shown_labels(self) -> torch.Tensor | None:
        """The labels a model sees: ``y`` with each hidden label replaced by :data:`UNLABELLED`."""
        if self.y is None or self.labelled is None:
            return self.y
        return torch.where(self.labelled, self.y, UNLABELLED)

    @property
    def draws_noise(self) -> bool:
        """Whether each batch gets fresh noise (dynamic binarization or dequantization)."""
        return self.binarize == "dynamic" or self.dequantize

    def transform(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Apply the per-batch representation: dynamic binarization or dequantization noise.

        The noise is drawn on ``x``'s device; a CPU ``generator`` with data on a GPU seeds a generator
        on that device for each batch (see ``_on_device``), so the checkpointed data order stays
        a CPU generator's state, which loads on any machine.
        """
        if not self.draws_noise:
            return x
        generator = _on_device(generator, x.device)
        if self.binarize == "dynamic":
            return torch.bernoulli(x, generator=generator)
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return (x * (self.levels - 1) + u) / self.levels

    def to(self, device: torch.device | str) -> Dataset:
        """The data set with its tensors on ``device`` (itself when they are there already): moved once
        for a run, so that no step copies data."""
        device = torch.device(device)
        if self.x.device == device:
            return self
        return replace(self, x=self.x.to(device), y=None if self.y is None else self.y.to(device),
                       labelled=None if self.labelled is None else self.labelled.to(device))

    def shard(self, rank: int, world_size: int) -> Dataset:
        """The ``rank``-th of ``world_size`` contiguous, nearly equal parts (for evaluation split over ranks)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
        start, stop = (len(self) * rank) // world_size, (len(self) * (rank + 1)) // world_size
        return self.subset(torch.arange(start, stop, device=self.x.device))

    def realize(self, seed: int = 0) -> Dataset:
        """A fixed copy with the per-batch noise drawn once (e.g. a dynamically binarized test set)."""
        generator = torch.Generator().manual_seed(seed)
        x = self.transform(self.x, generator)
        binarize = "static" if self.binarize == "dynamic" else self.binarize
        return replace(self, x=x, binarize=binarize, dequantize=False)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True, drop_last: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Yield ``(x, y)`` minibatches by indexing the in-memory tensors (one permutation per epoch);
        ``y`` holds the :meth:`shown_labels`.

        ``shard=(rank, world_size)``: this rank's part of each global batch of ``batch_size``
        (data-parallel training, :mod:`pyrovae.distributed`). Every rank draws the same permutation
        from ``generator`` (seeded alike on all ranks) and keeps its contiguous ``1/world_size`` of each
        global batch, so the ranks together see exactly the examples of a single process. Per-batch
        noise (dynamic binarization, dequantization) is drawn for the rank's part only, seeded by one
        shared draw per global batch and the rank: reproducible for a given number of ranks, and not
        the single process's noise. Drawing the whole global batch's noise on every rank would make
        each rank binarize the full batch (19 of a 64 ms step for ``vae/burda`` at batch 1000, which no
        number of ranks shrinks). A last global batch is cut to a multiple of ``world_size`` (the
        ranks' batches must be equal for DDP's average to be the global gradient).
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        rank, world_size = shard
        if not 0 <= rank < world_size:
            raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
        n = len(self)
        labels = self.shown_labels()
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        order = order.to(self.x.device)  # one copy of the indices per epoch, none per step
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size]
            if world_size == 1:
                yield self.transform(self.x[index], generator), None if labels is None else labels[index]
                continue
            per_rank = len(index) // world_size
            # One draw per global batch on every rank keeps the generators in step; each rank then
            # transforms only its own part, with noise seeded by that draw and its rank.
            batch_seed = None
            if generator is not None and self.draws_noise:
                batch_seed = int(torch.randint(0, 2**62, (), generator=generator))
            if per_rank == 0:
                continue
            index = index[rank * per_rank : (rank + 1) * per_rank]
            rank_generator = None
            if batch_seed is not None:
                rank_generator = torch.Generator(device=generator.device).manual_seed(batch_seed + rank)
            yield self.transform(self.x[index], rank_generator), None if labels is None else labels[index]


def _on_device(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """``generator`` if it draws on ``device``; else a generator on ``device`` seeded from it (one draw)."""
    if generator is None or generator.device.type == device.type:
        return generator
    seed = torch.randint(0, 2**62, (), generator=generator)
    return torch.Generator(device=device).manual_seed(int(seed))


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = False,
    binarize: str | None = None,
    dequantize: bool = False,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    """Load ``name``/``split`` as a :class:`Dataset`.

    Args:
        name: one of ``digits`` (scikit-learn's bundled 8x8 digits; works offline), ``mnist``,
            ``fashion-mnist``, ``binarized-mnist`` (Larochelle & Murray's fixed binarization,
            50k/10k/10k), ``omniglot`` (Lake et al.'s 105x105 images downsampled to 28x28),
            ``factor-analysis`` (Yang 2022, §5.2's synthetic data, 1000/1000; generated, real-valued).
        split: ``train``/``test`` (``valid`` too for ``binarized-mnist``).
        root: data directory to search first.
        download: let torchvision download MNIST/Fashion-MNIST into the first root if absent.
        binarize: ``None``, ``threshold``, ``static`` (seeded by ``seed``) or ``dynamic``.
        dequantize: add uniform noise to intensity levels on every batch (not with ``binarize``).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    if split not in SPLITS[name]:
        raise ValueError(f"dataset {name!r} has splits {SPLITS[name]}, not {split!r}")
    if binarize not in BINARIZATIONS:
        raise ValueError(f"binarize must be one of {BINARIZATIONS}, got {binarize!r}")
    if binarize is not None and dequantize:
        raise ValueError("dequantize applies to intensities; it cannot be combined with binarize")
    loader = {
        "digits": _load_digits,
        "mnist": _load_mnist_like,
        "fashion-mnist": _load_mnist_like,
        "binarized-mnist": _load_binarized_mnist,
        "omniglot": _load_omniglot,
        "factor-analysis": _load_factor_analysis,
    }[name]
    dataset = loader(name, split, root, download)
    if binarize is not None and ((dataset.x < 0) | (dataset.x > 1)).any():
        raise ValueError(f"{name} holds real values, not intensities in [0, 1]; binarize does not apply")
    if dataset.is_binary and (binarize is not None or dequantize):
        raise ValueError(f"{name} is already binary; binarize/dequantize do not apply")
    if dequantize and dataset.levels is None:
        raise ValueError(f"{name} has no integer intensity levels to dequantize")
    x = dataset.x.to(dtype)
    if binarize == "threshold":
        x = (x > 0.5).to(dtype)
    elif binarize == "static":
        x = torch.bernoulli(x, generator=torch.Generator().manual_seed(seed))
    return replace(dataset, x=x, binarize=binarize, dequantize=dequantize)


def _load_digits(name: str, split: str, root, download) -> Dataset:
    """scikit-learn's 1,797 8x8 digits (values 0..16), split 80/20 by a fixed stratified shuffle."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    index = np.arange(len(bunch.target))
    train, test = train_test_split(index, test_size=DIGITS_TEST_FRACTION, random_state=0, stratify=bunch.target)
    chosen = train if split == "train" else test
    x = torch.as_tensor(bunch.data[chosen] / 16.0, dtype=torch.float32)
    y = torch.as_tensor(bunch.target[chosen], dtype=torch.int64)
    return Dataset(name, split, x, y, (8, 8), 10, levels=17)


_TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def _load_mnist_like(name: str, split: str, root, download) -> Dataset:
    """MNIST or Fashion-MNIST through torchvision's dataset classes.

    torchvision reads the decompressed IDX files in ``<root>/<Folder>/raw``. When a root holds only
    the ``.gz`` files (as a read-only shared folder may), they are checked against torchvision's md5s
    and decompressed once into the cache, which then serves as torchvision's root.
    """
    from torchvision import datasets

    folder = _TORCHVISION_FOLDERS[name]
    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    roots = default_roots(root)
    looked_at = []
    for candidate in roots:
        raw = candidate / folder / "raw"
        looked_at.append(raw)
        if _has_files(raw, [os.path.splitext(f)[0] for f, _ in cls.resources]):
            return _from_torchvision(cls(str(candidate), train=split == "train", download=False), name, split)
        if _has_files(raw, [f for f, _ in cls.resources]):
            extracted_root = _decompress_into_cache(cls, raw, folder)
            return _from_torchvision(cls(str(extracted_root), train=split == "train", download=False), name, split)
    if download:
        return _from_torchvision(_download(cls, roots[0], split, name), name, split)
    raise DatasetNotFoundError(name, looked_at, f"Expected torchvision's layout {folder}/raw/*-idx?-ubyte[.gz].",
                               downloadable=True)


def _download(cls, root: Path, split: str, name: str):
    """``cls(root, download=True)``, torchvision's download of MNIST-type data into ``root/<Folder>/raw``.

    On failure the files and folders this call created are removed (an existing folder and what it
    held are left alone) and the error names the URL tried. torchvision's progress lines are printed
    only when the download succeeds, so that a failure is the one line of the error.
    """
    raw = root / cls.__name__ / "raw"
    created = [folder for folder in (root, root / cls.__name__, raw) if not folder.exists()]
    before = set(raw.iterdir()) if raw.is_dir() else set()
    progress = io.StringIO()
    try:
        with contextlib.redirect_stdout(progress):
            dataset = cls(str(root), train=split == "train", download=True)
    except (RuntimeError, OSError) as error:
        # torchvision fetches and extracts the files in turn: the first not extracted is the one that failed.
        filename = next(f for f, _ in cls.resources if not (raw / os.path.splitext(f)[0]).is_file())
        _remove_new(raw, before, created)
        raise DatasetDownloadError(name, f"{cls.mirrors[0]}{filename}", _download_reason(error), cls.__name__) from None
    print(progress.getvalue(), end="")
    return dataset


def _remove_new(raw: Path, before: set[Path], created: list[Path]) -> None:
    """Remove what a failed download left: new files in ``raw``, then the folders it created, if empty."""
    if raw.is_dir():
        for path in set(raw.iterdir()) - before:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for folder in reversed(created):
        with contextlib.suppress(OSError):  # not empty: something else wrote there meanwhile
            folder.rmdir()


def _download_reason(error: Exception) -> str:
    """The first cause in torchvision's download error (``Tried <mirror>, got:`` then the cause), on one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    after = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.endswith("got:")]
    return (after or lines or [type(error).__name__])[0]


def _has_files(folder: Path, names: list[str]) -> bool:
    return all((folder / n).is_file() for n in names)


def _decompress_into_cache(cls, raw: Path, folder: str) -> Path:
    from torchvision.datasets.utils import check_integrity

    target_root = cache_dir() / "extracted"
    target = target_root / folder / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for filename, md5 in cls.resources:
        destination = target / os.path.splitext(filename)[0]
        if destination.is_file():
            continue
        if not check_integrity(str(raw / filename), md5):
            raise ValueError(f"{raw / filename} does not match torchvision's md5 {md5}; the file is corrupt")
        with gzip.open(raw / filename, "rb") as source, tempfile.NamedTemporaryFile(dir=target, delete=False) as tmp:
            shutil.copyfileobj(source, tmp)
        os.replace(tmp.name, destination)
    return target_root


def _from_torchvision(tv_dataset, name: str, split: str) -> Dataset:
    x = tv_dataset.data.reshape(len(tv_dataset.data), -1).to(torch.float32) / 255.0
    y = tv_dataset.targets.to(torch.int64)
    return Dataset(name, split, x, y, (28, 28), 10, levels=256)


def _load_binarized_mnist(name: str, split: str, root, download) -> Dataset:
    """Larochelle & Murray's ``binarized_mnist_{train,valid,test}.amat`` (784 values of 0/1 per row; no labels)."""
    looked_at = []
    for candidate in default_roots(root):
        path = candidate / "binarized_mnist" / f"binarized_mnist_{split}.amat"
        looked_at.append(path)
        if path.is_file():
            # Every value is one character followed by a space or a newline: read every other byte.
            raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
            if raw.size % (2 * 784) != 0:
                raise ValueError(f"{path} is not a binarized-MNIST .amat file (784 single-digit values per row)")
            values = raw[::2] - ord("0")
            if values.max() > 1:
                raise ValueError(f"{path} holds values other than 0 and 1")
            x = torch.as_tensor(values.reshape(-1, 784), dtype=torch.float32)
            return Dataset(name, split, x, None, (28, 28), 0, levels=None, is_binary=True)
    raise DatasetNotFoundError(name, looked_at, "Expected binarized_mnist/binarized_mnist_<split>.amat (Larochelle & Murray).")


def _load_omniglot(name: str, split: str, root, download) -> Dataset:
    """Omniglot's original 105x105 images, strokes as 1, area-downsampled to 28x28 intensities.

    Split: ``train`` is the 30-alphabet *background* set (964 characters x 20 drawers = 19,280
    images), ``test`` the 20-alphabet *evaluation* set (659 x 20 = 13,180), as in Lake et al. 2015.
    This differs from Burda et al.'s 24,345/8,070 split of ``chardata.mat``, which is not available
    here. Labels are character ids, numbered within each set.
    """
    filename = "images_background.npz" if split == "train" else "images_evaluation.npz"
    looked_at = []
    for candidate in default_roots(root):
        path = candidate / "omniglot" / filename
        looked_at.append(path)
        if path.is_file():
            with np.load(path) as archive:
                images = archive["images"]
            n_chars, n_drawers = images.shape[:2]
            strokes = torch.as_tensor(~images.reshape(-1, 1, 105, 105), dtype=torch.float32)
            small = F.interpolate(strokes, size=(OMNIGLOT_SIZE, OMNIGLOT_SIZE), mode="area")
            x = small.reshape(-1, OMNIGLOT_SIZE * OMNIGLOT_SIZE).clamp(0.0, 1.0)
            y = torch.arange(n_chars).repeat_interleave(n_drawers)
            return Dataset(name, split, x, y, (OMNIGLOT_SIZE, OMNIGLOT_SIZE), n_chars, levels=None)
    raise DatasetNotFoundError(name, looked_at, "Expected omniglot/images_background.npz and images_evaluation.npz.")


def _load_factor_analysis(name: str, split: str, root, download) -> Dataset:
    """1000 draws per split of ``x = W z + sigma * eps``, ``z, eps`` standard normal, with the ground
    truth of Yang 2022, §5.2 (no labels; ``metadata`` holds ``loading`` and ``noise_scale``).

    Drawn as the tutorial's code draws them (numpy seeded with 42: train ``z``, test ``z``, train
    noise, test noise), so the true model's evidence is -3.935 (train) and -3.970 (test) nats per example.
    """
    loading, noise_scale = np.array(FACTOR_ANALYSIS_LOADING), np.array(FACTOR_ANALYSIS_NOISE_SCALE)
    rng = np.random.RandomState(42)
    z = {s: rng.normal(size=(1000, loading.shape[1])) for s in ("train", "test")}
    noise = {s: rng.normal(size=(1000, loading.shape[0])) for s in ("train", "test")}
    x = torch.as_tensor(z[split] @ loading.T + noise[split] * noise_scale)
    truth = {"loading": torch.tensor(FACTOR_ANALYSIS_LOADING), "noise_scale": torch.tensor(FACTOR_ANALYSIS_NOISE_SCALE)}
    return Dataset(name, split, x, None, (1, loading.shape[0]), 0, levels=None, metadata=truth)


def with_labels(dataset: Dataset, count: int | None, seed: int = 0) -> Dataset:
    """``dataset`` with only ``count`` of its labels shown, the same number per class: the first
    ``count / num_classes`` examples of each class in an order shuffled by ``seed`` (Kingma et al.
    2014's balanced labelled subsets). ``count=None`` shows every label, ``0`` none."""
    if dataset.y is None:
        raise ValueError(f"data set {dataset.name!r} has no labels to show")
    if count is None:
        return replace(dataset, labelled=None)
    classes = dataset.num_classes
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"the number of labels must be a non-negative integer, got {count!r}")
    if count > len(dataset):
        raise ValueError(f"{count} labels asked for, but {dataset.name}/{dataset.split} has only {len(dataset)} examples")
    if count % classes:
        raise ValueError(f"{count} labels cannot be balanced over {classes} classes: give a multiple of {classes}")
    if ((dataset.y < 0) | (dataset.y >= classes)).any():
        raise ValueError(f"{dataset.name} holds labels outside 0..{classes - 1}")
    per_class = count // classes
    # numpy's generator, not torch's: a torch permutation seeded alike would be the first epoch's batch order of
    # a run seeded with the same number, which would put the labelled examples in its first batches.
    order = torch.as_tensor(np.random.default_rng(seed).permutation(len(dataset)))
    y = dataset.y.cpu()[order]
    labelled = torch.zeros(len(dataset), dtype=torch.bool)
    for k in range(classes):
        members = order[y == k]
        if len(members) < per_class:
            raise ValueError(f"class {k} of {dataset.name}/{dataset.split} has {len(members)} examples, "
                             f"fewer than the {per_class} labels per class asked for")
        labelled[members[:per_class]] = True
    return replace(dataset, labelled=labelled.to(dataset.y.device))


def as_dataset(data) -> Dataset:
    """``data`` itself if it is a :class:`Dataset`; a tensor ``x`` becomes ``Dataset.from_tensor(x)``."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, torch.Tensor):
        return Dataset.from_tensor(data)
    raise TypeError(f"expected a pyrovae.data.Dataset or a tensor, got {type(data).__name__}")
