"""Building blocks every model and guide shares: networks, heads, likelihoods and the data plate."""

from pyrovae.nn.convolutional import (
    ImageLayers,
    ResidualBlock,
    convolutional_decoder,
    convolutional_encoder,
    residual_stack,
)
from pyrovae.nn.heads import LocScaleHead, LogitsHead, SharedTriangularHead, TriangularHead
from pyrovae.nn.likelihoods import LIKELIHOODS, DecodesThroughLikelihood, make_likelihood
from pyrovae.nn.networks import ACTIVATIONS, Encoder, activation_module, decoder_mlp, mlp
from pyrovae.nn.plates import DATA_PLATE, PriorThenLikelihood, data_plate, open_data_plate

__all__ = [
    "ACTIVATIONS",
    "DATA_PLATE",
    "DecodesThroughLikelihood",
    "LIKELIHOODS",
    "Encoder",
    "ImageLayers",
    "LocScaleHead",
    "LogitsHead",
    "ResidualBlock",
    "SharedTriangularHead",
    "TriangularHead",
    "activation_module",
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
