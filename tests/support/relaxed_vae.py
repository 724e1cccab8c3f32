"""A VAE whose latents are relaxed Bernoulli variables, for tests of the discrete diagnostics.

It reuses the Gaussian VAE's networks and replaces only the prior and the posterior family:
``z ~ RelaxedBernoulli(T, 1/2)^L`` and ``q(z | x) = RelaxedBernoulli(T, logits_phi(x))``.
"""

import pyro.distributions as dist

from pyrovae.guides import DiagonalNormalGuide
from pyrovae.models import VAE

TEMPERATURE = 0.5


class RelaxedBernoulliVAE(VAE):
    """The VAE with z ~ RelaxedBernoulli(T, 1/2)^L in place of the Gaussian prior."""

    def prior(self, batch_size):
        probs = self.prior_loc.new_full((batch_size, self.z_dim), 0.5)
        return dist.RelaxedBernoulli(self.prior_loc.new_tensor(TEMPERATURE), probs=probs).to_event(1)


class RelaxedBernoulliGuide(DiagonalNormalGuide):
    """q(z | x) = RelaxedBernoulli(T, logits_phi(x)), the encoder's location head read as logits."""

    def posterior(self, x):
        logits, _ = self.encoder(x)
        return dist.RelaxedBernoulli(logits.new_tensor(TEMPERATURE), logits=logits).to_event(1)
