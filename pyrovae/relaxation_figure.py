r"""Figure 1 of the lecture notes "Variational Autoencoders" (Anonymous n.d., §2.3): the smoothing
transformations :math:`f_1, f_2, f_3` of a uniform.

Each :math:`\zeta = f_k(\beta, p, \epsilon)` is the inverse CDF of the relaxation it defines, so
the curves are drawn from the distributions' ``icdf``:
:math:`f_1` from :class:`~pyrovae.distributions.spike_and_exponential.SpikeAndExponential`,
:math:`f_2` from :class:`~pyrovae.distributions.spike_and_power.SpikeAndPower` and
:math:`f_3` from
:class:`~pyrovae.distributions.symmetric_power_relaxation.SymmetricPowerRelaxation`.
"""

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pyrovae.distributions.spike_and_exponential import SpikeAndExponential
from pyrovae.distributions.spike_and_power import SpikeAndPower
from pyrovae.distributions.symmetric_power_relaxation import SymmetricPowerRelaxation

SMOOTHINGS = (
    ("$f_1$: spike-and-exponential", SpikeAndExponential),
    ("$f_2$: spike-and-power", SpikeAndPower),
    ("$f_3$: symmetric power", SymmetricPowerRelaxation),
)
# As in the notes' Figure 1, increasing beta is drawn dotted < solid < dashed.
LINESTYLES = (":", "-", "--")


def plot_smoothing_functions(path=None, betas=(2.0, 6.0, 20.0), probs=(0.2, 0.5, 0.8), points=1001):
    r"""Redraw Figure 1 of Anonymous n.d.: :math:`f_1, f_2, f_3` against :math:`\epsilon \in [0, 1]`.

    One panel per smoothing; within a panel one colour per :math:`p` in ``probs`` and one line
    style per :math:`\beta` in ``betas`` (dotted, solid, dashed for increasing :math:`\beta`).
    Uses :class:`matplotlib.figure.Figure` directly, so no pyplot state or interactive backend
    is involved.

    :param path: if given, the figure is saved there as PNG.
    :param betas: three sharpness values, in increasing order.
    :param probs: the Bernoulli probabilities :math:`p`.
    :param points: number of grid points in :math:`\epsilon`.
    :returns: the :class:`~matplotlib.figure.Figure`.
    """
    if len(betas) != len(LINESTYLES) or list(betas) != sorted(betas):
        raise ValueError(f"betas must be three increasing values, got {betas!r}")
    epsilon = torch.linspace(0.0, 1.0, points, dtype=torch.float64)
    figure = Figure(figsize=(13.0, 4.0), layout="constrained")
    axes = figure.subplots(1, len(SMOOTHINGS), sharey=True)
    for ax, (title, relaxation) in zip(axes, SMOOTHINGS):
        for index, p in enumerate(probs):
            for linestyle, beta in zip(LINESTYLES, betas):
                zeta = relaxation(torch.tensor(p, dtype=torch.float64), beta).icdf(epsilon)
                ax.plot(epsilon.numpy(), zeta.numpy(), color=f"C{index}", linestyle=linestyle)
        ax.set_title(title)
        ax.set_xlabel(r"$\epsilon$")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(r"$\zeta = f(\beta, p, \epsilon)$")
    keys = [Line2D([], [], color=f"C{index}", label=f"$p={p:g}$") for index, p in enumerate(probs)]
    keys += [
        Line2D([], [], color="black", linestyle=linestyle, label=f"$\\beta={beta:g}$")
        for linestyle, beta in zip(LINESTYLES, betas)
    ]
    figure.legend(handles=keys, loc="outside right center")
    if path is not None:
        figure.savefig(path, format="png", dpi=100)
    return figure
