"""Tests of the Figure-1 redraw of seed 001 (smoothing transformations f1, f2, f3)."""

import matplotlib.image
import numpy as np
import pytest
import torch

from pyrovae.distributions.spike_and_exponential import SpikeAndExponential
from pyrovae.distributions.spike_and_power import SpikeAndPower
from pyrovae.distributions.symmetric_power_relaxation import SymmetricPowerRelaxation
from pyrovae.relaxation_figure import plot_smoothing_functions


def test_writes_a_png_with_three_panels(tmp_path):
    path = tmp_path / "figure1.png"
    figure = plot_smoothing_functions(path)
    assert len(figure.axes) == 3
    assert path.exists()
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 900
    # Not a blank canvas: the curves put many distinct colours on it.
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50


def test_curves_are_the_distributions_icdf():
    betas, probs = (1.0, 4.0, 16.0), (0.2, 0.5, 0.8)
    figure = plot_smoothing_functions(betas=betas, probs=probs, points=101)
    relaxations = (SpikeAndExponential, SpikeAndPower, SymmetricPowerRelaxation)
    for ax, relaxation in zip(figure.axes, relaxations):
        lines = ax.get_lines()
        assert len(lines) == len(betas) * len(probs)
        assert [line.get_linestyle() for line in lines[:3]] == [":", "-", "--"]
        for line, (p, beta) in zip(lines, [(p, b) for p in probs for b in betas]):
            eps, zeta = (torch.as_tensor(xy) for xy in line.get_data())
            expected = relaxation(torch.tensor(p, dtype=torch.float64), beta).icdf(eps)
            torch.testing.assert_close(zeta, expected)


def test_rejects_betas_that_are_not_three_increasing_values():
    with pytest.raises(ValueError, match="betas"):
        plot_smoothing_functions(betas=(5.0, 2.0, 10.0))
    with pytest.raises(ValueError, match="betas"):
        plot_smoothing_functions(betas=(1.0, 2.0))
