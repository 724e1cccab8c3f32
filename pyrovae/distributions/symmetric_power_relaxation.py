r"""Symmetric power relaxation of a Bernoulli variable (smoothing transformation f3)."""

from pyrovae.distributions.smoothed_bernoulli import PowerSegment, SmoothedBernoulli


class SymmetricPowerRelaxation(SmoothedBernoulli):
    r"""
    Symmetric power relaxation of a Bernoulli(:math:`q`) variable: the law of
    :math:`\zeta = f_3(\beta, q, \epsilon)`, :math:`\epsilon \sim U(0, 1)`, with the smoothing
    transformation of the lecture notes (Anonymous n.d., §2.3)

    .. math::

        f_3(\beta, q, \epsilon) = \begin{cases}
            \frac12 \big(\epsilon / (1 - q)\big)^\beta & \epsilon \le 1 - q, \\
            1 - \frac12 \big((1 - \epsilon) / q\big)^\beta & \epsilon > 1 - q,
        \end{cases}

    which tends to the step :math:`1_{[1-q, 1]}` as :math:`\beta \to \infty` and has no atoms
    for finite :math:`\beta`. Given the branch, the base of the power is uniform, and a uniform
    to the power :math:`\beta` is Beta(:math:`1/\beta`, 1); so with probability :math:`1 - q`,
    :math:`2\zeta` is Beta(:math:`1/\beta`, 1) on :math:`[0, \frac12]`, and with probability
    :math:`q`, :math:`2(1 - \zeta)` is. The density and CDF (Lebesgue) are

    .. math::

        p(\zeta) = \begin{cases}
            \dfrac{2 (1 - q)}{\beta}\, (2\zeta)^{1/\beta - 1} & 0 \le \zeta \le \frac12, \\
            \dfrac{2 q}{\beta}\, \big(2 (1 - \zeta)\big)^{1/\beta - 1} & \frac12 < \zeta \le 1,
        \end{cases}
        \qquad
        F(\zeta) = \begin{cases}
            (1 - q)\, (2\zeta)^{1/\beta} & \zeta \le \frac12, \\
            1 - q\, \big(2(1 - \zeta)\big)^{1/\beta} & \zeta > \frac12,
        \end{cases}

    and the inverse CDF is :math:`f_3` itself. :math:`P(\zeta > \frac12) = q`: a sample stands
    for the Bernoulli value :math:`1[\zeta > \frac12]` (:meth:`hard`; :math:`\zeta = \frac12`
    has probability 0 and is counted with the lower branch :math:`\epsilon \le 1 - q`, as the
    spike relaxations count :math:`\epsilon \le 1 - q` as 0). With :math:`q \in \{0, 1\}` one
    half is empty. For :math:`\beta > 1` the density is infinite at 0 and 1; ``log_prob`` stays
    finite there (see :class:`~pyrovae.distributions.smoothed_bernoulli.PowerSegment`).

    Mean :math:`q + (1 - 2q) / (2 (1 + \beta))`; variance
    :math:`\frac14 \beta^2/((1 + \beta)^2 (1 + 2\beta)) + q (1 - q)\, \beta^2/(1 + \beta)^2`.
    Both halves have the same conditional law for every :math:`q`, so between two members with
    equal :math:`\beta` the log-ratio is the Bernoulli one and the KL divergence is the
    Bernoulli KL; in general it adds :math:`\log(\beta_q/\beta_p) - 1 + \beta_p/\beta_q`.

    Train it with the KL in closed form (``TraceMeanField_ELBO``), not with ``Trace_ELBO``: with
    :math:`\beta = 10` one sample in a few thousand lands within :math:`10^{-36}` of 0, where
    :math:`\partial \log p / \partial \zeta = (1/\beta - 1)/\zeta` exceeds :math:`10^{36}`;
    the prior's and the guide's terms cancel exactly, but ``Trace_ELBO`` scales each by
    ``num_data / batch_size`` first, and in float32 that overflows to :math:`\infty - \infty`, a NaN
    gradient.

    **References** (full entries in ``docs/references.md``): Anonymous n.d., lecture notes
    "Variational Autoencoders", §2.3, :math:`f_3`; after the exponential and power-function
    smoothings of Vahdat et al. 2018.

    :param probs: :math:`q \in [0, 1]`, the probability that :math:`\zeta > \frac12`.
    :param beta: :math:`\beta > 0`, the sharpness.
    """

    lower = PowerSegment(anchor=0.0, length=0.5)
    upper = PowerSegment(anchor=1.0, length=0.5)
    split = 0.5
