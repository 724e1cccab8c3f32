"""open_uniform and hard_threshold, the noise and the read-out shared by every relaxation."""

import pytest
import scipy.stats
import torch

from pyrovae.distributions.uniform_noise import hard_threshold, open_uniform


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_open_uniform_moves_both_ends_of_the_draw_inside_the_open_interval(dtype, monkeypatch):
    finfo = torch.finfo(dtype)
    one, zero = torch.tensor(1.0, dtype=dtype), torch.tensor(0.0, dtype=dtype)
    largest_below_one = torch.nextafter(one, zero).item()
    # torch's CPU generator never returns 1 (none in 10^7 draws of each float dtype); a generator on the
    # closed interval, as curand's (0, 1], would: its 1 is moved to the largest number below 1.
    expected = {0.0: finfo.tiny, 0.5: 0.5, largest_below_one: largest_below_one, 1.0: largest_below_one}
    for draw, inside in expected.items():

        def uniform_(tensor, *args, draw=draw, **kwargs):
            return tensor.fill_(draw)

        monkeypatch.setattr(torch.Tensor, "uniform_", uniform_)
        u = open_uniform((3,), torch.zeros((), dtype=dtype))
        assert u.dtype == dtype and u.shape == (3,)
        assert torch.equal(u, torch.full((3,), inside, dtype=dtype)), (draw, u)


def test_open_uniform_is_uniform():
    torch.manual_seed(0)
    u = open_uniform((100_000,), torch.zeros((), dtype=torch.float64))
    assert scipy.stats.kstest(u.numpy(), "uniform").pvalue > 1e-3


def test_hard_threshold_counts_the_split_as_zero_and_keeps_the_dtype():
    value = torch.tensor([-1.0, 0.5, 0.5000001, 2.0], dtype=torch.float64)
    hard = hard_threshold(value, 0.5)
    assert hard.dtype == torch.float64
    assert hard.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert hard_threshold(torch.tensor([0.0, 1e-30]), 0.0).tolist() == [0.0, 1.0]
