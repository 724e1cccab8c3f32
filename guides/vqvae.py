r"""The VQ-VAE's guide: the deterministic posterior :math:`q(z \mid x) = \delta(z - z_q(x))` of the
VAE notes, §2.4, where :math:`z_q(x)` replaces each vector of the encoder's grid :math:`E(x)` by its
nearest code (see :mod:`pyrovae.models.vqvae` for the model and the loss).

Site ``"z"`` is a ``Delta`` at the straight-through value :math:`E(x) + \mathrm{sg}[z_q(x) - E(x)]`:
forward it is the code, backward the decoder's gradient passes to the encoder unchanged. Its
log-density is 0, so the ELBO is :math:`\log p(x \mid z_q) + \log p(z_q)`. In training mode the guide
also adds, per example,

.. math:: \lVert \mathrm{sg}[E(x)] - z_q(x) \rVert^2 + \beta \lVert E(x) - \mathrm{sg}[z_q(x)] \rVert^2

with ``pyro.factor("vq_loss", ..., has_rsample=True)``: a guide factor enters :math:`\log q`, which the
loss :math:`-(\log p - \log q)` adds with a plus sign. It is a factor in the guide rather than a term
in the model because only the guide sees :math:`E(x)` apart from :math:`z_q(x)`; the model receives
their straight-through sum. The factor is inside the data plate, so it is scaled by ``N / B`` with the
rest of the loss. With the EMA codebook the first term is dropped and, when the codebook is in
training mode and gradients are on (a training step, not ``torch.no_grad`` evaluation), the guide
calls :meth:`~pyrovae.models.vqvae.Codebook.update` with the batch's assignments. The codes used in a
step are those before its update.

**Sharing the codebook.** The codebook defines the model's latent space (the prior's support), so it
belongs to the model and is saved once in the model's ``state_dict``; the guide reads it without
owning it (as the VRNN guide reads the model's LSTM). The guide's own parameters are its encoder's.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.models.vqvae import VQVAE, Codebook
from pyrovae.nn import convolutional_encoder, open_data_plate
from pyrovae.registry import register_guide


class VQVAEGuide(nn.Module):
    """``q(z | x) = delta(z - z_q(x))`` with a convolutional encoder: ``forward(x, num_data=None)`` is the Pyro guide.

    Args:
        model: the :class:`~pyrovae.models.VQVAE` whose codebook quantizes (not a submodule of the guide).
        hidden_channels, residual_blocks, residual_channels: the default encoder
            (:func:`~pyrovae.nn.convolutional_encoder`, ``model``'s downsamplings).
        commitment_cost: :math:`\\beta \\ge 0`, the weight of the commitment loss.
        encoder: a module mapping images ``(B, C, H, W)`` to ``(B, d, h, w)``, the model's latent grid.
        name: the prefix of its parameters in Pyro's parameter store.
    """

    max_plate_nesting = 1
    codebook: Codebook

    def __init__(
        self,
        model: VQVAE,
        hidden_channels: int = 64,
        residual_blocks: int = 2,
        residual_channels: int = 32,
        commitment_cost: float = 0.25,
        encoder: nn.Module | None = None,
        name: str = "vqvae_guide",
    ):
        super().__init__()
        if not commitment_cost >= 0:
            raise ValueError(f"the commitment cost beta must be non-negative, got {commitment_cost}")
        self.commitment_cost, self.name = float(commitment_cost), name
        self.inputs = model.inputs
        # object.__setattr__ keeps nn.Module from registering the model's codebook as the guide's own.
        object.__setattr__(self, "codebook", model.codebook)
        self.encoder = encoder if encoder is not None else convolutional_encoder(
            model.image_shape[0], hidden_channels, model.codebook.code_dim, model.downsamplings, residual_blocks,
            residual_channels)

    def code_indices(self, x: torch.Tensor) -> torch.Tensor:
        """The index ``(B, h, w)`` of the code each position of ``E(x)`` is quantized to."""
        return self.codebook.nearest(self.encoder(x))

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        with open_data_plate(self, x, num_data=num_data):
            encoded = self.encoder(x)
            indices = self.codebook.nearest(encoded)
            codes = self.codebook.lookup(indices)
            if self.codebook.ema and self.codebook.training and torch.is_grad_enabled():
                self.codebook.update(encoded, indices)
            if self.training:
                penalty = self.commitment_cost * (encoded - codes.detach()).pow(2).sum((1, 2, 3))
                if not self.codebook.ema:
                    penalty = penalty + (encoded.detach() - codes).pow(2).sum((1, 2, 3))
                pyro.factor("vq_loss", penalty, has_rsample=True)
            quantized = encoded + (codes - encoded).detach()
            return pyro.sample("z", dist.Delta(quantized, event_dim=3))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The codes ``z_q(x)``, flattened to ``(B, d*h*w)`` as the other guides' latent vectors (for
        plots; the model's ``decode`` takes them); ``x`` as images or flattened ``(B, C*H*W)``."""
        if x.dim() == 2:
            x = self.inputs.shape_batch(x)
        return self.codebook.lookup(self.code_indices(x)).flatten(1)


def build_vqvae_guide(config, data, model: VQVAE) -> VQVAEGuide:
    """The guide of ``config``, quantizing with the codebook of ``model``."""
    return VQVAEGuide(model, config.hidden_channels, config.residual_blocks, config.residual_channels,
                      config.commitment_cost)


register_guide("vqvae", "nearest", build_vqvae_guide)
