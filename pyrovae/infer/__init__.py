"""Objectives for training and evaluating pyrovae models, each a :class:`pyro.infer.ELBO`."""

from pyrovae.distributions.bernoulli_view import BernoulliView, bernoulli_view
from pyrovae.infer.disarm import DisARM_ELBO
from pyrovae.infer.discrete_bound import RelaxedBernoulliELBO, TrueDiscreteBound
from pyrovae.infer.enum_mean_field import TraceEnumMeanField_ELBO
from pyrovae.infer.gradient_statistics import GradientStatistics, GroupGradientStatistics, gradient_statistics
from pyrovae.infer.importance_weighted import ImportanceWeightedELBO
from pyrovae.infer.log_weights import LogWeights, ParticleObjective
from pyrovae.infer.score_function import DifferentiableTraceGraph_ELBO
from pyrovae.infer.variance import LogVarianceELBO, VarianceELBO

__all__ = [
    "TraceEnumMeanField_ELBO",
    "BernoulliView",
    "DifferentiableTraceGraph_ELBO",
    "DisARM_ELBO",
    "GradientStatistics",
    "GroupGradientStatistics",
    "ImportanceWeightedELBO",
    "LogVarianceELBO",
    "LogWeights",
    "ParticleObjective",
    "RelaxedBernoulliELBO",
    "TrueDiscreteBound",
    "VarianceELBO",
    "bernoulli_view",
    "gradient_statistics",
]
