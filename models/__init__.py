"""Pyro models: each ``forward`` declares only ``pyro.sample``/``pyro.plate`` statements.

Importing a model file registers it (:func:`pyrovae.registry.register_model`); ``pyrovae models``
lists them with their guides and presets.
"""

from pyrovae.models.bernoulli_vae import BernoulliVAE, BernoulliVAEConfig
from pyrovae.models.conditional_vae import ConditionalVAE, ConditionalVAEConfig, class_conditional_grid
from pyrovae.models.factor_analysis import FactorAnalysis, FactorAnalysisConfig
from pyrovae.models.gmvae import GMVAE, GMVAEConfig
from pyrovae.models.m2 import M2, M2Config, analogies, analogy_grid, style_grid
from pyrovae.models.mixture_vae import MixtureVAE, MixtureVAEConfig
from pyrovae.models.vae import VAE, VAEConfig
from pyrovae.models.vqvae import VQVAE, Codebook, CodebookMetrics, VQVAEConfig, codebook_metrics
from pyrovae.models.vrnn import VRNN, VRNNConfig

__all__ = ["BernoulliVAE", "BernoulliVAEConfig", "ConditionalVAE", "ConditionalVAEConfig", "FactorAnalysis", "FactorAnalysisConfig", "GMVAE", "GMVAEConfig",
           "M2", "M2Config", "MixtureVAE", "MixtureVAEConfig", "VAE", "VAEConfig", "VQVAE", "VQVAEConfig", "VRNN", "VRNNConfig",
           # The figures and metrics the notebooks draw from a trained model.
           "class_conditional_grid", "analogies", "analogy_grid", "style_grid", "Codebook", "CodebookMetrics",
           "codebook_metrics"]
