"""Small Gaussian models for what the VAE does not exercise: a model that takes labels, and a
model of image-shaped examples. Each records the arguments of its calls, so a test can check what
:func:`pyrovae.train.fit` and the evaluators hand it.

* :class:`LabelledLinearGaussian`: ``z ~ N(0, I_L)``, ``x | z, y ~ N(W z + b_y, s^2 I_D)`` with one
  offset ``b_y`` per class, declared with ``InputSpec((D,), num_classes=K)``; guide
  :class:`LabelledGuide`, ``q(z | x, y) = N(A (x - c_y), diag sigma^2)``.
* :class:`ImageGaussian`: ``z ~ N(0, I_L)``, ``x | z ~ N(decoder(z), s^2)`` over examples shaped
  ``(C, H, W)``, declared with ``InputSpec((C, H, W), kind="image")``; guide :class:`ImageGuide`.
"""

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.nn import open_data_plate
from pyrovae.validation import InputSpec


def standard_normal(x, z_dim):
    """``N(0, I_L)`` for each example of the batch ``x``, in the data plate."""
    return dist.Normal(x.new_zeros(()), 1.0).expand([x.shape[0], z_dim]).to_event(1)


class LabelledLinearGaussian(nn.Module):
    """``x | z, y ~ N(W z + b_y, s^2 I)``; ``calls`` holds the ``(x, y)`` of every call."""

    max_plate_nesting = 1

    def __init__(self, x_dim, z_dim, num_classes, scale=0.5, name="labelled_model"):
        super().__init__()
        self.name, self.z_dim, self.scale = name, z_dim, scale
        self.inputs = InputSpec((x_dim,), num_classes=num_classes)
        self.weight = nn.Parameter(0.1 * torch.randn(x_dim, z_dim))
        self.offsets = nn.Parameter(torch.zeros(num_classes, x_dim))
        self.calls = []

    def forward(self, x, y, num_data=None):
        with open_data_plate(self, x, y, num_data):
            self.calls.append((x.detach().clone(), y.clone()))
            z = pyro.sample("z", standard_normal(x, self.z_dim))
            pyro.sample("x", dist.Normal(z @ self.weight.T + self.offsets[y], self.scale).to_event(1), obs=x)


class LabelledGuide(nn.Module):
    """``q(z | x, y) = N(A (x - c_y), diag sigma^2)``; ``calls`` holds the ``(x, y)`` of every call."""

    max_plate_nesting = 1

    def __init__(self, x_dim, z_dim, num_classes, name="labelled_guide"):
        super().__init__()
        self.name = name
        self.inputs = InputSpec((x_dim,), num_classes=num_classes)
        self.encoder = nn.Linear(x_dim, z_dim)
        self.offsets = nn.Parameter(torch.zeros(num_classes, x_dim))
        self.log_scale = nn.Parameter(torch.zeros(z_dim))
        self.calls = []

    def forward(self, x, y, num_data=None):
        with open_data_plate(self, x, y, num_data):
            self.calls.append((x.detach().clone(), y.clone()))
            pyro.sample("z", dist.Normal(self.encoder(x - self.offsets[y]), self.log_scale.exp()).to_event(1))


class ImageGaussian(nn.Module):
    """``x | z ~ N(decoder(z), s^2)`` over ``(C, H, W)`` examples; ``calls`` holds the ``x`` of every call."""

    max_plate_nesting = 1

    def __init__(self, shape, z_dim, scale=0.5, name="image_model"):
        super().__init__()
        self.name, self.z_dim, self.scale = name, z_dim, scale
        self.inputs = InputSpec(shape, kind="image")
        self.decoder = nn.Linear(z_dim, math.prod(shape))
        self.calls = []

    def forward(self, x, num_data=None):
        self.calls.append(x.detach().clone())
        with open_data_plate(self, x, num_data=num_data):
            z = pyro.sample("z", standard_normal(x, self.z_dim))
            loc = self.decoder(z).reshape(*z.shape[:-1], *self.inputs.shape)
            pyro.sample("x", dist.Normal(loc, self.scale).to_event(len(self.inputs.shape)), obs=x)


class ImageGuide(nn.Module):
    """``q(z | x) = N(A flatten(x), diag sigma^2)`` for ``(C, H, W)`` examples; ``calls`` holds the ``x`` of every call."""

    max_plate_nesting = 1

    def __init__(self, shape, z_dim, name="image_guide"):
        super().__init__()
        self.name = name
        self.inputs = InputSpec(shape, kind="image")
        self.encoder = nn.Linear(math.prod(shape), z_dim)
        self.log_scale = nn.Parameter(torch.zeros(z_dim))
        self.calls = []

    def forward(self, x, num_data=None):
        self.calls.append(x.detach().clone())
        with open_data_plate(self, x, num_data=num_data):
            pyro.sample("z", dist.Normal(self.encoder(x.flatten(1)), self.log_scale.exp()).to_event(1))
