"""log_sigmoid and log_logistic_density against their closed forms, in the range where torch's
softplus shortcut (its input returned above 20) would be off by more than float64 rounding."""

import math

import torch

from pyrovae.distributions.log_sigmoid import log_logistic_density, log_sigmoid


def test_log_sigmoid_is_exact_down_to_minus_forty():
    x = torch.tensor([-25.0, -35.0, 0.0, 30.0], dtype=torch.float64)
    expected = torch.tensor([-(25 + math.log1p(math.exp(-25))), -(35 + math.log1p(math.exp(-35))), -math.log(2),
                             -math.log1p(math.exp(-30))], dtype=torch.float64)
    torch.testing.assert_close(log_sigmoid(x), expected, rtol=0, atol=1e-14)


def test_log_logistic_density_is_log_sech_squared_over_four():
    z = torch.tensor([-30.0, -2.0, 0.0, 1.5, 30.0], dtype=torch.float64)
    expected = torch.tensor([math.log(1 / math.cosh(v / 2) ** 2 / 4) for v in z.tolist()], dtype=torch.float64)
    torch.testing.assert_close(log_logistic_density(z), expected, rtol=1e-14, atol=0)
