"""How a model/guide pair meets its data, for training and evaluation alike: the device they share,
the shape in which batches enter the model, and the plate nesting an objective is told.

:mod:`pyrovae.train` and :mod:`pyrovae.evaluate` both start here, so neither imports the other.
"""

from __future__ import annotations

import pyro
import torch

from pyrovae.data import Dataset, as_dataset
from pyrovae.devices import module_device, resolve_device
from pyrovae.validation import InputSpec


def on_device(model, guide, data, device=None) -> Dataset:
    """Put ``model`` and ``guide`` on ``device`` (if given), and return ``data`` as a data set on their device."""
    if device is not None:
        device = resolve_device(device)
        for module in (model, guide):
            if isinstance(module, torch.nn.Module):
                module.to(device)
    return as_dataset(data).to(module_device(model, guide))


def input_spec(model, dataset: Dataset) -> InputSpec:
    """The model's declared inputs, or flat vectors of the data set's size for a model that declares none."""
    spec = getattr(model, "inputs", None)
    return spec if spec is not None else InputSpec((dataset.x_dim,))


def set_plate_nesting(elbo: pyro.infer.ELBO, model) -> None:
    """Give ``elbo`` the model's ``max_plate_nesting`` when it has none, so Pyro does not guess it
    (and log the guess) from a trace; a vectorized particle plate adds one level, as in Pyro."""
    nesting = getattr(model, "max_plate_nesting", None)
    if nesting is None or elbo.max_plate_nesting != float("inf"):
        return
    vectorized = getattr(elbo, "vectorize_particles", False) and elbo.num_particles > 1
    elbo.max_plate_nesting = nesting + int(vectorized)
