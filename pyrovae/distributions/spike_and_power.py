r"""Spike-and-power relaxation of a Bernoulli variable (smoothing transformation f2)."""

from pyrovae.distributions.smoothed_bernoulli import PowerSegment, SmoothedBernoulli, Spike


class SpikeAndPower(SmoothedBernoulli):
    r"""
    Spike-and-power relaxation of a Bernoulli(:math:`q`) variable: the law of
    :math:`\zeta = f_2(\beta, q, \epsilon)`, :math:`\epsilon \sim U(0, 1)`, with the smoothing
    transformation of the lecture notes (Anonymous n.d., §2.3)

    .. math::

        f_2(\beta, q, \epsilon) = 1_{[1-q, 1]}(\epsilon)
            \Big(1 - \Big(\frac{1 - \epsilon}{q}\Big)^\beta\Big),

    which tends to the step :math:`1_{[1-q, 1]}` as :math:`\beta \to \infty`. Given
    :math:`\epsilon > 1 - q`, :math:`(1 - \epsilon)/q` is uniform, so :math:`1 - \zeta` is a
    uniform to the power :math:`\beta`, i.e. Beta(:math:`1/\beta`, 1), and :math:`\zeta` is
    Beta(1, :math:`1/\beta`). Hence an atom of mass :math:`1 - q` at 0 and

    .. math::

        p(\zeta) = \begin{cases}
            1 - q & \zeta = 0, \\
            \dfrac{q}{\beta}\, (1 - \zeta)^{1/\beta - 1} & 0 < \zeta \le 1,
        \end{cases}
        \qquad F(\zeta) = 1 - q\, (1 - \zeta)^{1/\beta},

    with respect to the base measure :math:`\delta_0 + \mathrm{Lebesgue}` (see
    :class:`~pyrovae.distributions.spike_and_exponential.SpikeAndExponential` for why this
    makes ELBOs with spike priors and guides correct). The inverse CDF is :math:`f_2` itself.
    For :math:`\beta > 1` the density is infinite at :math:`\zeta = 1`, where float samples do
    land; ``log_prob`` stays finite there (see
    :class:`~pyrovae.distributions.smoothed_bernoulli.PowerSegment`).

    Mean :math:`q\beta/(1 + \beta)`; variance :math:`q\, \beta^2/((1 + \beta)^2 (1 + 2\beta))
    + q (1 - q)\, \beta^2/(1 + \beta)^2`. Between two members with equal :math:`\beta` the
    continuous parts coincide and the KL divergence is the Bernoulli KL; in general it adds
    :math:`q_p (\log(\beta_q/\beta_p) - 1 + \beta_p/\beta_q)`. A sample stands for the
    Bernoulli value :math:`1[\zeta > 0]` (:meth:`hard`).

    **References** (full entries in ``docs/references.md``): Anonymous n.d., lecture notes
    "Variational Autoencoders", §2.3, :math:`f_2`; after the power-function smoothing of Vahdat
    et al. 2018.

    :param probs: :math:`q \in [0, 1]`, the probability that :math:`\zeta > 0`.
    :param beta: :math:`\beta > 0`, the sharpness.
    """

    lower = Spike()
    upper = PowerSegment(anchor=1.0, length=1.0)
    split = 0.0
