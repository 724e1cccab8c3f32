"""The data plate every pyrovae model and guide opens, and the one call that opens it.

Minibatch training needs the ELBO scaled from the batch to the data set: a batch of ``B`` points out
of ``N`` contributes ``N / B`` times its log-densities. Pyro does this when the plate is given the
full size and a subsample; passing ``subsample`` (not ``subsample_size``) avoids Pyro drawing a
random permutation of ``N`` at every step, which the data pipeline has already done.
"""

from __future__ import annotations

from functools import lru_cache

import pyro
import torch
from pyro.params import param_with_module_name

from pyrovae import settings

DATA_PLATE = "data"


def data_plate(batch_size: int, num_data: int | None = None, device: torch.device | None = None, dim: int = -1):
    """``pyro.plate("data", num_data, subsample=arange(batch_size))``.

    ``num_data`` is the size of the whole data set (defaults to the batch size, i.e. no scaling).
    """
    if num_data is None:
        num_data = batch_size
    if num_data < batch_size:
        raise ValueError(f"num_data={num_data} is smaller than the batch size {batch_size}")
    if num_data == batch_size:
        return pyro.plate(DATA_PLATE, batch_size, dim=dim, device=device)
    return pyro.plate(DATA_PLATE, num_data, subsample=_positions(batch_size, device), dim=dim)


@lru_cache(maxsize=64)
def _positions(batch_size: int, device: torch.device | None) -> torch.Tensor:
    # The subsample only tells Pyro the batch size; one shared index tensor per size avoids an
    # allocation on every step.
    return torch.arange(batch_size, device=device)


def open_data_plate(owner, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None):
    """How every model and guide opens: check the batch against ``owner.inputs`` (an
    :class:`~pyrovae.validation.InputSpec`), register ``owner`` with ``pyro.module`` under
    ``owner.name``, and return the data plate for the batch (see :mod:`pyrovae.settings` for when the
    first two are skipped)::

        def forward(self, x, num_data=None):
            with open_data_plate(self, x, num_data=num_data):
                ...
    """
    if settings.check_data():
        owner.inputs.check(x, y)
    if settings.register_modules():
        take_over_name(owner)
        pyro.module(owner.name, owner)
    return data_plate(x.shape[0], num_data, x.device)


def take_over_name(owner) -> None:
    """Make ``owner`` the module Pyro's parameter store holds under ``owner.name``.

    ``pyro.module(name, module)`` keeps the tensors it first saw under ``name``: a second model built
    with the same name (a notebook comparing two relaxations, a model rebuilt to load a checkpoint)
    would compute with its own weights while ``SVI`` updated the first one's, and never train. So the
    module being called takes the name over: the other module's entries are dropped before it
    registers. One dictionary lookup per call when nothing is shadowed.
    """
    first = next(iter(owner.named_parameters()), None)
    if first is None:
        return
    store = pyro.get_param_store()
    key = param_with_module_name(owner.name, first[0])
    if key in store and store[key] is not first[1]:
        prefix = param_with_module_name(owner.name, "")
        for name in [name for name in store.keys() if name.startswith(prefix)]:
            del store[name]


class PriorThenLikelihood:
    """``forward(x, num_data=None)`` of a model with one latent site: in the data plate,
    ``z ~ self.prior(B)`` (site ``"z"``), then ``x ~ self.decode(self.decoder_input(z))`` observed
    (site ``"x"``); returns ``z``. A mixin for a model with ``prior(batch_size)`` and ``decode(z)``;
    ``decoder_input`` (the identity here) is what the decoder reads of a sample, e.g. sigmoid(beta z)
    for a relaxed Bernoulli latent."""

    def decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        r"""What the decoder reads for the latent ``z``: ``z`` itself here; a model overrides it to
        decode a transformed latent (a relaxed Bernoulli's :math:`\sigma(\beta z)`)."""
        return z

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        r"""The generative model :math:`z \sim p(z)`, :math:`x \sim p_\theta(x \mid z)` on the batch
        ``x``, under the data plate (subsampled from ``num_data`` examples); returns the latent."""
        with open_data_plate(self, x, num_data=num_data):
            z = pyro.sample("z", self.prior(x.shape[0]))
            pyro.sample("x", self.decode(self.decoder_input(z)), obs=x)
        return z
