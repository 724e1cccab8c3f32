r"""Rolfe's spike-and-exponential relaxation of a Bernoulli variable."""

from pyrovae.distributions.smoothed_bernoulli import SmoothedBernoulli, Spike, TruncatedExponential


class SpikeAndExponential(SmoothedBernoulli):
    r"""
    Spike-and-exponential relaxation of a Bernoulli(:math:`q`) variable (Rolfe 2017, eq. 9):
    :math:`\zeta = 0` with probability :math:`1 - q`, otherwise :math:`\zeta \in (0, 1]` with the
    exponential density :math:`\beta e^{\beta\zeta} / (e^\beta - 1)`. The density

    .. math::

        p(\zeta) = \begin{cases}
            1 - q & \zeta = 0, \\
            q\, \dfrac{\beta e^{\beta \zeta}}{e^\beta - 1} & 0 < \zeta \le 1,
        \end{cases}

    is taken with respect to the base measure :math:`\delta_0 + \mathrm{Lebesgue}` on
    :math:`[0, 1]`: ``log_prob(0)`` is :math:`\log(1 - q)`, the log-probability of the spike,
    not a log-density. Every member shares this base measure, so
    :math:`\log p_1(\zeta) - \log p_2(\zeta)` is a proper log-ratio of densities and a
    Monte Carlo ELBO (e.g. ``Trace_ELBO``) with spike-and-exponential prior and guide is
    correct; between two members with equal :math:`\beta` it is the Bernoulli log-ratio and
    the KL divergence is the Bernoulli KL (registered in ``pyrovae.distributions.kl``, with
    the general different-:math:`\beta` closed form).

    The CDF is :math:`F(\zeta) = 1 - q + q\, (e^{\beta\zeta} - 1)/(e^\beta - 1)`; its inverse
    is the smoothing transformation :math:`f_1` of the lecture notes (Anonymous n.d., §2.3),
    used by :meth:`rsample` with
    :math:`\rho \sim U(0, 1)`, differentiably in :math:`q` and :math:`\beta`:

    .. math::

        \zeta = f_1(\beta, q, \rho) = 1_{(1-q, 1]}(\rho)\, \frac{1}{\beta}
            \log\Big(\frac{\rho + q - 1}{q}\,(e^\beta - 1) + 1\Big).

    The mean is :math:`q\, m_\beta` and the variance
    :math:`q\, v_\beta + q (1 - q)\, m_\beta^2`, with :math:`m_\beta = 1/(1 - e^{-\beta}) -
    1/\beta` and :math:`v_\beta = 1/\beta^2 - e^{-\beta}/(1 - e^{-\beta})^2` the mean and
    variance of the exponential part. A sample stands for the Bernoulli value
    :math:`1[\zeta > 0]` (:meth:`hard`).

    **References** (full entries in ``docs/references.md``): Rolfe 2017, eq. 9; Anonymous n.d.,
    lecture notes "Variational Autoencoders", §2.3, :math:`f_1`.

    :param probs: :math:`q \in [0, 1]`, the probability that :math:`\zeta > 0`.
    :param beta: :math:`\beta > 0`, the sharpness of the exponential part.
    """

    lower = Spike()
    upper = TruncatedExponential()
    split = 0.0
