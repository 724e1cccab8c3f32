"""check_floating_point, the dtype check that pyrovae's relaxations run on their parameters."""

import re

import pytest
import torch

from pyrovae.distributions.constraints import check_floating_point


def test_check_floating_point_passes_float_tensors_and_numbers():
    check_floating_point(a=torch.zeros(2), b=torch.zeros((), dtype=torch.float64), c=0.5, d=1)
    check_floating_point("Owner", a=torch.ones(3, dtype=torch.float16))


@pytest.mark.parametrize(
    "owner, message",
    [
        ((), "parameter beta must be a floating point tensor, got dtype torch.int64"),
        (("",), "parameter beta must be a floating point tensor, got dtype torch.int64"),
        (("SmoothedBernoulli",), "SmoothedBernoulli: parameter beta must be a floating point tensor, got dtype torch.int64"),
    ],
)
def test_check_floating_point_names_the_owner_and_the_integer_parameter(owner, message):
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        check_floating_point(*owner, alpha=torch.ones(2), beta=torch.ones(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="parameter flag .* got dtype torch.bool$"):
        check_floating_point(*owner, flag=torch.tensor(True))
