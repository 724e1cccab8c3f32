"""Pyro models: each ``forward`` declares only ``pyro.sample``/``pyro.plate`` statements.

Importing a model file registers it (:func:`pyrovae.registry.register_model`); ``pyrovae models``
lists them with their guides and presets.
"""

from pyrovae.models.vae import VAE, VAEConfig

__all__ = ["VAE", "VAEConfig"]
