"""What a trained latent-variable model must beat to show that it uses its latents.

A decoder that ignores ``z`` can at best model each pixel on its own. The best such model of
binary images is the **pixel-frequency baseline**: an independent Bernoulli per pixel with the
training set's frequencies. A VAE whose test ELBO (a lower bound on its log-likelihood) beats the
baseline's exact test log-likelihood by a clear margin, and whose posterior moves away from the
prior (``KL(q || p)`` well above zero), has learned something that depends on ``z``.
"""

import torch
from pyro import poutine
from torch.distributions import kl_divergence

from pyrovae.evaluate import input_spec


def pixel_frequency_log_likelihood(train, test) -> float:
    """Test log-likelihood per example (nats) of independent Bernoulli pixels with the training frequencies."""
    # Clamp a pixel never (or always) on in training, so one test example cannot make it -inf.
    probs = train.x.mean(0).clamp(1e-3, 1 - 1e-3)
    return (test.x * probs.log() + (1 - test.x) * (1 - probs).log()).sum(1).mean().item()


@torch.no_grad()
def mean_kl_from_prior(model, guide, data) -> float:
    """``(1/N) sum_i KL(q(z | x_i) || p(z))`` in nats, summed over the latent sites, in closed form.

    ``p`` is read from the model replayed on the guide's samples, so this is the prior term of the
    ELBO when the prior of each latent does not depend on the others (the VAE's ``N(0, I)``).
    """
    args = input_spec(model, data).arguments(data.x, data.y)
    with poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    total = 0.0
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and type(site["fn"]).__name__ != "_Subsample":
            total += kl_divergence(site["fn"], model_trace.nodes[name]["fn"]).sum().item()
    return total / len(data)
