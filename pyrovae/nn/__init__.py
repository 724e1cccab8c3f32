"""Building blocks every model and guide shares: networks, heads, likelihoods and the data plate."""

from pyrovae.nn import likelihoods, networks, plates
from pyrovae.nn.convolutional import (
    ImageLayers,
    ResidualBlock,
    convolutional_decoder,
    convolutional_encoder,
    residual_stack,
)
from pyrovae.nn.heads import LocScaleHead, LogitsHead, SharedTriangularHead, TriangularHead
from pyrovae.nn.likelihoods import DecodesThroughLikelihood, make_likelihood
from pyrovae.nn.mixture import ConditionedEncoder, MixtureEncoder, component_code
from pyrovae.nn.networks import Encoder, activation_module, decoder_mlp, mlp
from pyrovae.nn.plates import PriorThenLikelihood, data_plate, open_data_plate

# Assigned here rather than imported so that each carries its ``#:`` documentation on this package's
# API page (Sphinx reads doc comments from assignments only).
#: The activation layers by name (``"relu"``, ``"tanh"``, ``"softplus"``, ``"elu"``, ``"gelu"``), the
#: ``activation`` setting of every model and guide: ``nn.Module`` classes, built by :func:`activation_module`.
ACTIVATIONS = networks.ACTIVATIONS
#: The name of the plate over examples that every model and guide opens (:func:`data_plate`),
#: so a guide's batch dimension lines up with its model's.
DATA_PLATE = plates.DATA_PLATE
#: The observation models :math:`p_\theta(x \mid \text{decoder output})` by name, the ``likelihood``
#: setting of a model: ``bernoulli`` (binary pixels), ``gaussian``, ``continuous_bernoulli`` (pixels in
#: [0, 1], Loaiza-Ganem & Cunningham 2019) and ``bernoulli_cross_entropy`` (the Bernoulli log-mass of grey
#: values, :math:`\sum_d x_d \log q_d + (1 - x_d) \log(1 - q_d)`, Sadier-Gane 2020, eq. 3.3: not a normalised
#: density, so a bound computed with it bounds no log-likelihood). Built by :func:`make_likelihood`.
LIKELIHOODS = likelihoods.LIKELIHOODS

__all__ = [
    "ACTIVATIONS",
    "DATA_PLATE",
    "ConditionedEncoder",
    "DecodesThroughLikelihood",
    "LIKELIHOODS",
    "Encoder",
    "ImageLayers",
    "LocScaleHead",
    "LogitsHead",
    "MixtureEncoder",
    "ResidualBlock",
    "SharedTriangularHead",
    "TriangularHead",
    "activation_module",
    "component_code",
    "convolutional_decoder",
    "convolutional_encoder",
    "data_plate",
    "decoder_mlp",
    "make_likelihood",
    "mlp",
    "open_data_plate",
    "PriorThenLikelihood",
    "residual_stack",
]
