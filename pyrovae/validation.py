"""Checks applied where data enters a model or guide, with errors that name the problem."""

from __future__ import annotations

import torch

from pyrovae.switch import Switch


def check_data(x: torch.Tensor, x_dim: int, name: str = "x", binary: bool = False, unit_interval: bool = False) -> None:
    """Raise a ``ValueError``/``TypeError`` unless ``x`` is a float batch of shape ``(B, x_dim)``.

    ``binary`` also requires values in {0, 1} (a Bernoulli likelihood); ``unit_interval`` requires
    values in [0, 1] (a continuous Bernoulli likelihood).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert it with {name}.float()")
    if x.dim() != 2 or x.shape[-1] != x_dim:
        raise ValueError(f"{name} must have shape (batch, {x_dim}), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(f"{name} contains {bad} NaN or infinite values")
    if binary and not ((x == 0) | (x == 1)).all():
        raise ValueError(
            f"{name} must be binary (values in {{0, 1}}) for a Bernoulli likelihood; got values in "
            f"[{x.min().item():.3g}, {x.max().item():.3g}]. Binarize the data (binarize='static' or 'dynamic') "
            "or choose likelihood='continuous_bernoulli' or 'gaussian'."
        )
    if unit_interval and ((x < 0) | (x > 1)).any():
        raise ValueError(
            f"{name} must lie in [0, 1] for this likelihood; got values in [{x.min().item():.3g}, {x.max().item():.3g}]"
        )


_DATA_CHECKS = Switch()


def data_checks_enabled() -> bool:
    """Whether models and guides check each batch (see :func:`data_checks`)."""
    return _DATA_CHECKS.enabled


def data_checks(enabled: bool):
    """Context manager that turns per-batch data checks on or off.

    The training loop checks the whole data set once, then turns per-batch checks off so that they
    cost nothing per step: ``with data_checks(False): ...``.
    """
    return _DATA_CHECKS.set(enabled)
