"""What a model or guide takes, and the checks applied where data enters it.

A model declares its inputs with an :class:`InputSpec`: the shape of one example (``(D,)`` for a
flat vector, ``(C, H, W)`` for an image, ``(T, D)`` for a sequence), the support its likelihood
needs, and whether it takes labels. :func:`pyrovae.train.fit`, the evaluators and the plots read
the spec to shape each batch and to pass the labels through; the model checks every batch against
it (see :mod:`pyrovae.settings`), with an error that names the problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KINDS = ("flat", "image", "sequence")
SUPPORTS = ("real", "unit_interval", "binary")


def check_data(x, shape: tuple[int, ...], name: str = "x", support: str = "real") -> None:
    """Raise ``TypeError``/``ValueError`` unless ``x`` is a finite float batch ``(B, *shape)`` in ``support``.

    ``support="binary"`` requires values in {0, 1} (a Bernoulli likelihood), ``"unit_interval"``
    values in [0, 1] (a continuous Bernoulli likelihood).
    """
    shape = tuple(shape)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert it with {name}.float()")
    if tuple(x.shape[1:]) != shape or x.dim() != len(shape) + 1:
        expected = ", ".join(["batch", *map(str, shape)])
        raise ValueError(f"{name} must have shape ({expected}), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(f"{name} contains {bad} NaN or infinite values")
    if support == "binary" and not ((x == 0) | (x == 1)).all():
        raise ValueError(
            f"{name} must be binary (values in {{0, 1}}) for a Bernoulli likelihood; got values in "
            f"[{x.min().item():.3g}, {x.max().item():.3g}]. Binarize the data (binarize='static' or 'dynamic') "
            "or choose likelihood='continuous_bernoulli' or 'gaussian'."
        )
    if support == "unit_interval" and ((x < 0) | (x > 1)).any():
        raise ValueError(
            f"{name} must lie in [0, 1] for this likelihood; got values in [{x.min().item():.3g}, {x.max().item():.3g}]"
        )


def check_labels(y, num_classes: int, batch_size: int, name: str = "y", unlabelled: bool = False) -> None:
    """Raise unless ``y`` holds ``batch_size`` integer labels in ``{0, ..., num_classes - 1}`` (or -1,
    an unknown label, when ``unlabelled``)."""
    if y is None:
        raise ValueError(f"this model needs labels {name}; pass a data set with labels (Dataset.from_tensor(x, y))")
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of class labels, got {getattr(y, 'dtype', type(y).__name__)}")
    if tuple(y.shape) != (batch_size,):
        raise ValueError(f"{name} must have shape ({batch_size},) to match the batch, got {tuple(y.shape)}")
    lowest = -1 if unlabelled else 0
    if ((y < lowest) | (y >= num_classes)).any():
        unknown = " or -1 (unknown)" if unlabelled else ""
        raise ValueError(f"{name} must hold labels in 0..{num_classes - 1}{unknown}, got values in "
                         f"[{y.min().item()}, {y.max().item()}]")


@dataclass(frozen=True)
class InputSpec:
    """The inputs of a model or guide.

    Attributes:
        shape: shape of one example: ``(D,)``, ``(C, H, W)`` or ``(T, D)``.
        kind: ``"flat"``, ``"image"`` or ``"sequence"`` (what ``shape`` means).
        support: ``"real"``, ``"unit_interval"`` or ``"binary"``, as the likelihood needs.
        num_classes: the number of label values when the model takes labels ``y``, else ``None``.
        partially_labelled: the labels may be -1, unknown (a semi-supervised model).
    """

    shape: tuple[int, ...]
    kind: str = "flat"
    support: str = "real"
    num_classes: int | None = None
    partially_labelled: bool = False

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.kind not in KINDS:
            raise ValueError(f"input kind must be one of {KINDS}, got {self.kind!r}")
        if self.support not in SUPPORTS:
            raise ValueError(f"input support must be one of {SUPPORTS}, got {self.support!r}")
        expected_rank = {"flat": 1, "image": 3, "sequence": 2}[self.kind]
        if len(self.shape) != expected_rank or any(s < 1 for s in self.shape):
            raise ValueError(f"a {self.kind} input needs {expected_rank} positive sizes, got shape {self.shape}")

    @property
    def takes_labels(self) -> bool:
        """Whether the model reads a label beside each input (a conditional or semi-supervised model)."""
        return self.num_classes is not None

    @property
    def size(self) -> int:
        """Numbers per example (the length of a flattened example)."""
        size = 1
        for s in self.shape:
            size *= s
        return size

    def check(self, x, y=None) -> None:
        """Check a batch ``x`` (and its labels ``y`` when the model takes them)."""
        check_data(x, self.shape, support=self.support)
        if self.takes_labels:
            check_labels(y, self.num_classes, x.shape[0], unlabelled=self.partially_labelled)

    def shape_batch(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of flattened examples ``(B, size)`` viewed in this spec's shape ``(B, *shape)``."""
        if x.dim() != 2 or x.shape[1] != self.size:
            raise ValueError(
                f"the data has {tuple(x.shape[1:])} values per example; the model takes {self.kind} inputs "
                f"of shape {self.shape} ({self.size} values)"
            )
        return x.reshape(x.shape[0], *self.shape)

    def arguments(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple:
        """The positional arguments of a call of the model or guide for a flattened batch."""
        x = self.shape_batch(x)
        return (x, y) if self.takes_labels else (x,)
