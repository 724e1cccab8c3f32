"""Parameter constraints and checks shared by pyrovae's distributions.

``open_interval(a, b)``: the real interval (a, b) with both ends excluded (torch and Pyro have only
the closed ``interval``); a transform is registered for it, so it works as a ``pyro.param``
constraint. ``check_floating_point``: parameters must be floating-point tensors.
"""

import torch
from pyro.distributions import constraints
from torch.distributions import biject_to, transform_to
from torch.distributions.transforms import AffineTransform, ComposeTransform, SigmoidTransform


class _OpenInterval(constraints.Constraint):
    """Constrain to a real interval ``(lower_bound, upper_bound)``, both ends excluded."""

    def __init__(self, lower_bound, upper_bound):
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound
        super().__init__()

    def check(self, value):
        return (self.lower_bound < value) & (value < self.upper_bound)

    def __repr__(self):
        return f"OpenInterval(lower_bound={self.lower_bound}, upper_bound={self.upper_bound})"


open_interval = _OpenInterval


@biject_to.register(_OpenInterval)
@transform_to.register(_OpenInterval)
def _transform_to_open_interval(constraint):
    width = constraint.upper_bound - constraint.lower_bound
    return ComposeTransform([SigmoidTransform(), AffineTransform(constraint.lower_bound, width)])


def check_floating_point(owner: str = "", **params):
    """Raise ``TypeError`` naming any parameter whose tensor dtype is not floating point."""
    prefix = f"{owner}: " if owner else ""
    for name, value in params.items():
        if torch.is_tensor(value) and not value.is_floating_point():
            raise TypeError(f"{prefix}parameter {name} must be a floating point tensor, got dtype {value.dtype}")
