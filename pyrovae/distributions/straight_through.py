r"""Hard Bernoulli samples with a relaxed gradient: the straight-through Gumbel estimator."""

import torch
from pyro.distributions import Bernoulli
from torch.distributions import constraints

from pyrovae.distributions.uniform_noise import open_uniform


class StraightThroughBernoulli(Bernoulli):
    r"""``Bernoulli(logits)`` whose ``rsample`` is a hard sample with the binary Concrete's gradient.

    With :math:`u \sim U(0, 1)` and logistic noise :math:`L = \log u - \log(1 - u)`, the binary
    Concrete sample at temperature :math:`t` is :math:`y = \sigma((a + L) / t)` (Maddison, Mnih &
    Teh 2017; Jang, Gu & Poole 2017) and the hard sample is :math:`b = 1[a + L > 0]`, which is
    exactly Bernoulli(:math:`\sigma(a)`). ``rsample`` returns :math:`b + y - \mathrm{sg}(y)`: the
    value is :math:`b`, the gradient is :math:`\partial y / \partial a` (the straight-through
    estimator, Bengio, Léonard & Courville 2013), biased but of low variance.

    Everything else is the Bernoulli's: ``log_prob`` is the Bernoulli log-mass at the hard value,
    so ``Trace_ELBO`` with a ``Bernoulli`` prior estimates the ELBO of the discrete model itself,
    and the gradient of :math:`\log q(b)` also flows through :math:`b`'s straight-through path.
    Its Bernoulli view is the Bernoulli's (:func:`~pyrovae.infer.bernoulli_view`).

    :param logits: :math:`a`, the log-odds of 1.
    :param temperature: :math:`t > 0` of the relaxation whose gradient is used.
    """

    arg_constraints = {"logits": constraints.real}
    has_rsample = True

    def __init__(self, logits, temperature=1.0, *, validate_args=None):
        if not temperature > 0:
            raise ValueError(f"StraightThroughBernoulli: temperature must be positive, got {temperature}")
        self.temperature = temperature
        super().__init__(logits=logits, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(StraightThroughBernoulli, _instance)
        new = super().expand(batch_shape, _instance=new)
        new.temperature = self.temperature
        return new

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        u = open_uniform(shape, self.logits)
        noisy = self.logits.expand(shape) + (u.log() - torch.log1p(-u))
        relaxed = torch.sigmoid(noisy / self.temperature)
        hard = (noisy > 0).to(relaxed.dtype)
        return hard + (relaxed - relaxed.detach())

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self.rsample(sample_shape)
