"""Pyro models: each ``forward`` declares only ``pyro.sample``/``pyro.plate`` statements."""

from pyrovae.models.vae import VAE

__all__ = ["VAE"]
