"""The redraw of Figure 1 of the lecture notes (Anonymous n.d., §2.3): smoothings f1, f2, f3.

The plotted curves are checked against f1, f2, f3 written out from the notes
(``tests/distributions/lecture_note_smoothings.py``), not against the distributions that draw them.
"""

import itertools

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest
import torch

from pyrovae.relaxation_figure import plot_smoothing_functions
from tests.distributions.lecture_note_smoothings import f1, f2, f3, on_grid


def test_writes_a_png_with_three_panels(tmp_path):
    path = tmp_path / "figure1.png"
    figure = plot_smoothing_functions(path)
    assert len(figure.axes) == 3
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 900
    # Not a blank canvas: the curves put many distinct colours on it.
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50


def test_curves_are_the_lecture_notes_smoothings():
    betas, probs = (1.0, 4.0, 16.0), (0.2, 0.5, 0.8)
    figure = plot_smoothing_functions(betas=betas, probs=probs, points=101)
    epsilon = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    # One colour per p; dotted < solid < dashed for increasing beta, as in the notes' figure.
    styles = [(f"C{index}", linestyle) for index in range(len(probs)) for linestyle in (":", "-", "--")]
    for ax, smoothing in zip(figure.axes, (f1, f2, f3)):
        lines = ax.get_lines()
        assert len(lines) == len(betas) * len(probs)
        for line, (p, beta), (color, linestyle) in zip(lines, itertools.product(probs, betas), styles):
            assert matplotlib.colors.same_color(line.get_color(), color) and line.get_linestyle() == linestyle
            eps, zeta = (torch.as_tensor(xy, dtype=torch.float64) for xy in line.get_data())
            torch.testing.assert_close(eps, epsilon, atol=0.0, rtol=0.0)
            # f1 rises with slope e^beta / (beta p) at 1 - p, so a rounding of the grid point
            # 1 - p moves it by up to ~1e-10 at beta = 16.
            torch.testing.assert_close(zeta, on_grid(smoothing, beta, p, eps), atol=1e-9, rtol=1e-9)
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels == ["$p=0.2$", "$p=0.5$", "$p=0.8$", "$\\beta=1$", "$\\beta=4$", "$\\beta=16$"]


def test_rejects_betas_that_are_not_three_increasing_values():
    with pytest.raises(ValueError, match="betas"):
        plot_smoothing_functions(betas=(5.0, 2.0, 10.0))
    with pytest.raises(ValueError, match="betas"):
        plot_smoothing_functions(betas=(1.0, 2.0))
