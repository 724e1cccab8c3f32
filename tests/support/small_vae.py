"""The small VAE the training tests train on 8x8 digits, built the same way from a seed, and its
weights as one vector, to compare two runs weight for weight."""

import torch

from pyrovae.guides import DiagonalNormalGuide
from pyrovae.models import VAE


def small_vae_pair(seed: int = 0, z_dim: int = 4, hidden_sizes=(32,)):
    """A 64-pixel ``VAE`` and its ``DiagonalNormalGuide``, initialised from ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return VAE(64, z_dim, hidden_sizes), DiagonalNormalGuide(64, z_dim, hidden_sizes)


def parameters(*modules) -> torch.Tensor:
    """Every parameter of ``modules``, flattened into one vector."""
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])
