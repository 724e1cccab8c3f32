"""Amortised guides, one file per variational family, matched to models by site name.

Importing a guide file registers its guides with the models they pair with
(:func:`pyrovae.registry.register_guide`).
"""

from pyrovae.amortized import AmortizedGuide
from pyrovae.guides.bernoulli import BernoulliLatentGuide
from pyrovae.guides.conditional import ConditionalGuide
from pyrovae.guides.factor_analysis import FactorAnalysisGuide
from pyrovae.guides.flow import NormalizingFlowGuide
from pyrovae.guides.gmvae import GMVAEGuide
from pyrovae.guides.m2 import M2Guide
from pyrovae.guides.mixture import MixtureGuide
from pyrovae.guides.normal import DiagonalNormalGuide, FullCovarianceNormalGuide
from pyrovae.guides.vqvae import VQVAEGuide
from pyrovae.guides.vrnn import VRNNGuide

__all__ = ["AmortizedGuide", "BernoulliLatentGuide", "ConditionalGuide", "DiagonalNormalGuide", "FactorAnalysisGuide",
           "FullCovarianceNormalGuide", "GMVAEGuide", "M2Guide", "MixtureGuide", "NormalizingFlowGuide", "VQVAEGuide", "VRNNGuide"]
