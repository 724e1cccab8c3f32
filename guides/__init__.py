"""Amortised guides, one class per variational family, matched to models by site name."""

from pyrovae.guides.flow import NormalizingFlowGuide
from pyrovae.guides.normal import DiagonalNormalGuide, FullCovarianceNormalGuide

__all__ = ["DiagonalNormalGuide", "FullCovarianceNormalGuide", "NormalizingFlowGuide"]
