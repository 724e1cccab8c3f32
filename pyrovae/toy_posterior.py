r"""The one-dimensional toy model of Sadier-Gane (2020, §5.1), whose exact posterior is a
StepLogistic, and the two variational fits of its Figure 5.1.

A latent :math:`z` with a Logistic(0, 1) prior stands for the Bernoulli(1/2) value
:math:`\Theta(z)` (:math:`\Theta` the Heaviside step); the observation is that value plus
Gaussian noise of scale 0.5:

.. math::

    z \sim \mathrm{Logistic}(0, 1), \qquad x \mid z \sim \mathcal{N}(\Theta(z), 0.5^2).

The likelihood takes one value on each half line, so by Bayes' theorem (eq. 5.1–5.2) the
posterior is the prior with its two halves rescaled, a
:class:`~pyrovae.distributions.StepLogistic`: with
:math:`r = \log\mathcal{N}(x; 1, s^2) - \log\mathcal{N}(x; 0, s^2) = (2x - 1) / (2 s^2)`,

.. math::

    p(z \mid x) = \mathrm{StepLogistic}\big(z; \alpha = 2\sigma(r)\big), \qquad
    \Pr(z > 0 \mid x) = \sigma(r), \qquad
    p(x) = \tfrac12\big(\mathcal{N}(x; 0, s^2) + \mathcal{N}(x; 1, s^2)\big).

At the observed :math:`x = 1`, :math:`s = 0.5`: :math:`r = 2` (the likelihood ratio is
:math:`e^2`), :math:`\alpha = 2\sigma(2) \approx 1.7616` and :math:`\Pr(z > 0 \mid x = 1) =
\sigma(2) \approx 0.8808`.

:func:`fit_guides` fits two guides by SVI. A Logistic(:math:`\mu, s`) guide cannot have the step,
and its best fit puts too much mass below 0 (Sadier-Gane 2020, Figure 5.1, with :math:`s = 1`); a
StepLogistic(:math:`\alpha`) guide contains the exact posterior and recovers 0.881.
:math:`\Theta` has derivative zero wherever it has one, so reparameterized (pathwise) gradients
carry no information from the likelihood: both guides' samples are marked as not
reparameterizable, and ``Trace_ELBO`` uses the score-function estimator, which is unbiased for
this model. :func:`posterior_figure` draws Figure 5.1.

Reference: Sadier-Gane 2020, §5.1, eqs. (5.1)–(5.2), Figure 5.1; §5.2, eq. (5.4) (full entry in
``docs/references.md``).
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from matplotlib.figure import Figure
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import ClippedAdam
from torch.distributions import constraints

from pyrovae.distributions import Logistic, StepLogistic
from pyrovae.distributions.constraints import open_interval

#: The observation the dissertation conditions on, and the scale of the observation noise.
OBSERVED_X = 1.0
NOISE_SCALE = 0.5
#: Guide names, as :func:`fit_guides` reports them.
GUIDES = ("logistic", "step-logistic")


def _check_noise_scale(noise_scale: float) -> None:
    if not noise_scale > 0:
        raise ValueError(f"noise_scale must be positive, got {noise_scale!r}")


def model(x=OBSERVED_X, noise_scale: float = NOISE_SCALE):
    r""":math:`z \sim \mathrm{Logistic}(0, 1)`, :math:`x \sim \mathcal{N}(\Theta(z), s^2)`,
    with site names ``z`` and ``x`` (``x`` observed)."""
    x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    z = pyro.sample("z", dist.Logistic(torch.zeros_like(x), torch.ones_like(x)))
    pyro.sample("x", dist.Normal((z > 0).to(x.dtype), noise_scale), obs=x)
    return z


def log_likelihood_ratio(x=OBSERVED_X, noise_scale: float = NOISE_SCALE) -> torch.Tensor:
    r""":math:`r = \log\mathcal{N}(x; 1, s^2) - \log\mathcal{N}(x; 0, s^2) = (2x - 1)/(2s^2)`."""
    _check_noise_scale(noise_scale)
    x = torch.as_tensor(x, dtype=torch.float64)
    return (2 * x - 1) / (2 * noise_scale**2)


def exact_posterior(x=OBSERVED_X, noise_scale: float = NOISE_SCALE) -> StepLogistic:
    r"""The exact posterior :math:`p(z \mid x) = \mathrm{StepLogistic}(2\sigma(r))`, in float64."""
    return StepLogistic(2 * torch.sigmoid(log_likelihood_ratio(x, noise_scale)))


def log_evidence(x=OBSERVED_X, noise_scale: float = NOISE_SCALE) -> torch.Tensor:
    r""":math:`\log p(x) = \log \tfrac12[\mathcal{N}(x; 0, s^2) + \mathcal{N}(x; 1, s^2)]`."""
    x = torch.as_tensor(x, dtype=torch.float64)
    _check_noise_scale(noise_scale)
    normal = torch.distributions.Normal(torch.tensor([0.0, 1.0], dtype=torch.float64), noise_scale)
    return torch.logsumexp(normal.log_prob(x.unsqueeze(-1)), -1) - math.log(2)


def log_bayes_numerator(z, x=OBSERVED_X, noise_scale: float = NOISE_SCALE) -> torch.Tensor:
    r""":math:`\log p(x \mid z) + \log p(z)`, the log of eq. (5.2)'s numerator, at each ``z``."""
    _check_noise_scale(noise_scale)
    z = torch.as_tensor(z, dtype=torch.float64)
    x = torch.as_tensor(x, dtype=torch.float64)
    prior = dist.Logistic(torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64))
    return dist.Normal((z > 0).to(z.dtype), noise_scale).log_prob(x) + prior.log_prob(z)


def normalised_bayes_numerator(z, x=OBSERVED_X, noise_scale: float = NOISE_SCALE) -> torch.Tensor:
    r"""The Bayes numerator :math:`p(x \mid z) p(z)` on the increasing grid ``z``, divided by its
    integral over the grid by the trapezoidal rule, split at 0 where it jumps: a posterior
    density computed without the evidence. The grid should cover the
    posterior's mass (e.g. [-30, 30]; the tails beyond ±30 hold less than 1e-13)."""
    z = torch.as_tensor(z, dtype=torch.float64)
    if z.dim() != 1 or z.numel() < 2 or not bool((z[1:] > z[:-1]).all()):
        raise ValueError(f"z must be an increasing 1-D grid of at least 2 points, got shape {tuple(z.shape)}")
    return log_bayes_numerator(z, x, noise_scale).exp() / _integral_on_grid(z, x, noise_scale)


def _integral_on_grid(z, x, noise_scale):
    # The numerator jumps at 0: each half line is integrated on its own, closed at 0 by the
    # one-sided limits (the left value at 0, and the right limit at the smallest positive float).
    total = z.new_zeros(())
    zero = z.new_zeros(1)
    for half in (torch.cat([z[z < 0], zero]), torch.cat([zero + torch.finfo(z.dtype).tiny, z[z > 0]])):
        if half.numel() > 1:
            total = total + torch.trapezoid(log_bayes_numerator(half, x, noise_scale).exp(), half)
    return total


# Guides -------------------------------------------------------------------------------------------


def make_logistic_guide(scale: float | None = None):
    r"""A Logistic(:math:`\mu, s`) guide with learnable ``logistic_loc`` and, when ``scale`` is
    None, learnable ``logistic_scale``; otherwise :math:`s` is fixed at ``scale`` (the
    dissertation's Figure 5.1 fixes :math:`s = 1`)."""
    if scale is not None and not scale > 0:
        raise ValueError(f"scale must be positive or None (learnable), got {scale!r}")

    def logistic_guide(x=OBSERVED_X, noise_scale: float = NOISE_SCALE):
        r"""The guide :math:`q(z) = \mathrm{Logistic}(z; \mu, s)` (``x`` and ``noise_scale`` are the
        model's arguments, unused), sampled without reparameterization: the toy model's step makes
        pathwise gradients zero, so SVI uses the score function."""
        loc = pyro.param("logistic_loc", torch.tensor(0.0))
        if scale is None:
            s = pyro.param("logistic_scale", torch.tensor(1.0), constraint=constraints.positive)
        else:
            s = torch.tensor(float(scale))
        return pyro.sample("z", Logistic(loc, s).has_rsample_(False))

    return logistic_guide


logistic_guide = make_logistic_guide()


def step_logistic_guide(x=OBSERVED_X, noise_scale: float = NOISE_SCALE):
    r"""StepLogistic(:math:`\alpha`) with learnable ``step_alpha`` in (0, 2), started at the
    prior (:math:`\alpha = 1`)."""
    alpha = pyro.param("step_alpha", torch.tensor(1.0), constraint=open_interval(0.0, 2.0))
    return pyro.sample("z", StepLogistic(alpha).has_rsample_(False))


def guide_distribution(name: str, params: dict):
    """The fitted guide ``name`` (one of :data:`GUIDES`) as a float64 distribution, from the
    parameters :func:`fit_guides` reports."""
    if name == "logistic":
        return dist.Logistic(torch.tensor(params["loc"], dtype=torch.float64),
                             torch.tensor(params["scale"], dtype=torch.float64))
    if name == "step-logistic":
        return StepLogistic(torch.tensor(params["alpha"], dtype=torch.float64))
    raise ValueError(f"unknown guide {name!r}; expected one of {GUIDES}")


def probability_positive(name: str, params: dict) -> float:
    r""":math:`\Pr_q(z > 0)` under the fitted guide: :math:`\sigma(\mu/s)` or :math:`\alpha/2`."""
    return float(1 - guide_distribution(name, params).cdf(torch.zeros((), dtype=torch.float64)))


def kl_to_exact_posterior(q, x=OBSERVED_X, noise_scale: float = NOISE_SCALE, half_width: float = 60.0,
                          points: int = 200_001) -> float:
    r""":math:`\mathrm{KL}(q \,\|\, p(z \mid x))` by the trapezoidal rule on :math:`[-w, 0]` and
    :math:`[0, w]` separately (the posterior jumps at 0), in float64. ``q`` is a univariate
    distribution on the real line; the default grid resolves a Logistic guide of scale above
    0.05 to about 1e-9 (for a StepLogistic ``q`` the closed form is
    ``kl_divergence(q, exact_posterior(x))``)."""
    posterior = exact_posterior(x, noise_scale)
    tiny = torch.finfo(torch.float64).tiny
    total = 0.0
    for half in (torch.linspace(-half_width, 0, points, dtype=torch.float64),
                 torch.linspace(0, half_width, points, dtype=torch.float64)):
        if half[-1] > 0:
            half[0] = tiny  # the right limit at 0 (the posterior's log_prob takes its left value at 0)
        log_q = q.log_prob(half)
        total += float(torch.trapezoid(log_q.exp() * (log_q - posterior.log_prob(half)), half))
    return total


def exact_elbo(q, x=OBSERVED_X, noise_scale: float = NOISE_SCALE) -> float:
    r"""The ELBO of guide ``q`` without Monte Carlo error:
    :math:`\log p(x) - \mathrm{KL}(q \,\|\, p(z \mid x))`."""
    return float(log_evidence(x, noise_scale)) - kl_to_exact_posterior(q, x, noise_scale)


# Fitting ------------------------------------------------------------------------------------------


def fit_guides(steps: int = 1000, seed: int = 0, num_particles: int = 256, lr: float = 0.1,
               final_lr_fraction: float = 0.05, logistic_scale: float | None = None, x=OBSERVED_X,
               noise_scale: float = NOISE_SCALE) -> dict:
    r"""Fit the Logistic and the StepLogistic guide to :func:`model` at ``x`` by SVI.

    ``Trace_ELBO`` with ``num_particles`` vectorized particles and score-function gradients (see
    the module docstring), optimised by Adam whose learning rate decays geometrically from ``lr``
    to ``final_lr_fraction * lr`` over ``steps``, so the parameters settle at the optimum rather
    than wander around it. Returns, for each name in :data:`GUIDES`, a dict with ``params``
    (floats), ``prob_positive`` (:math:`\Pr_q(z > 0)`), ``elbo`` (exact, :func:`exact_elbo`),
    ``kl_to_posterior`` and ``loss_history`` (the negative ELBO estimates, one per step).
    ``logistic_scale`` fixes the Logistic guide's scale (1 in the dissertation); by default it is
    learned.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps!r}")
    if num_particles < 1:
        raise ValueError(f"num_particles must be at least 1, got {num_particles!r}")
    _check_noise_scale(noise_scale)
    results = {}
    for name, guide in (("logistic", make_logistic_guide(logistic_scale)), ("step-logistic", step_logistic_guide)):
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        optimizer = ClippedAdam({"lr": lr, "lrd": final_lr_fraction ** (1 / steps)})
        elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=0)
        svi = SVI(model, guide, optimizer, loss=elbo)
        history = [svi.step(x, noise_scale) for _ in range(steps)]
        store = pyro.get_param_store()
        if name == "logistic":
            scale = store["logistic_scale"].item() if logistic_scale is None else float(logistic_scale)
            params = {"loc": store["logistic_loc"].item(), "scale": scale}
        else:
            params = {"alpha": store["step_alpha"].item()}
        q = guide_distribution(name, params)
        kl = kl_to_exact_posterior(q, x, noise_scale)
        results[name] = {
            "params": params,
            "prob_positive": probability_positive(name, params),
            "elbo": float(log_evidence(x, noise_scale)) - kl,
            "kl_to_posterior": kl,
            "loss_history": history,
        }
    pyro.clear_param_store()
    return results


# Figure 5.1 ---------------------------------------------------------------------------------------


def posterior_figure(fits: dict | None = None, x=OBSERVED_X, noise_scale: float = NOISE_SCALE,
                     z_range: tuple[float, float] = (-8.0, 8.0)) -> Figure:
    r"""Figure 5.1 of Sadier-Gane (2020): left, the exact posterior density against the Bayes
    numerator normalised on a grid; right, the exact posterior against the fitted guides
    (``fits`` as :func:`fit_guides` returns it; without it, only the left panel), each labelled
    with its :math:`\Pr(z > 0)`. Returns a :class:`matplotlib.figure.Figure` (no pyplot)."""
    posterior = exact_posterior(x, noise_scale)
    lo, hi = z_range
    z = torch.cat([torch.linspace(lo, 0, 801, dtype=torch.float64),
                   torch.linspace(0, hi, 801, dtype=torch.float64)[1:]])
    exact = posterior.log_prob(z).exp()
    grid = torch.linspace(-30, 30, 60_001, dtype=torch.float64)
    numerator = normalised_bayes_numerator(grid, x, noise_scale)
    shown = (grid >= lo) & (grid <= hi) & (torch.arange(len(grid)) % 250 == 0)
    p_exact = float(1 - posterior.cdf(torch.zeros((), dtype=torch.float64)))

    panels = 2 if fits else 1
    fig = Figure(figsize=(5.2 * panels, 3.8), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    left = axes[0]
    left.plot(z, exact, color="black", label=f"exact: StepLogistic(2σ(2)), Pr(z>0) = {p_exact:.3f}")
    left.plot(grid[shown], numerator[shown], "o", color="tab:orange", markersize=3,
              label="Bayes numerator p(x|z)p(z), normalised")
    left.set_title(f"Posterior of the toy model at x = {x:g}")
    if fits:
        right = axes[1]
        right.plot(z, exact, color="black", label=f"exact, Pr(z>0) = {p_exact:.3f}")
        styles = {"logistic": ("tab:blue", "--"), "step-logistic": ("tab:green", ":")}
        for name, fit in fits.items():
            q = guide_distribution(name, fit["params"])
            described = ", ".join(f"{k} = {v:.3f}" for k, v in fit["params"].items())
            colour, style = styles.get(name, (None, "-."))
            right.plot(z, q.log_prob(z).exp(), linestyle=style, color=colour, linewidth=2,
                       label=f"{name} guide ({described}), Pr(z>0) = {fit['prob_positive']:.3f}")
            if name == "logistic":
                below = z <= 0
                right.fill_between(z[below], q.log_prob(z[below]).exp(), alpha=0.2, color=colour,
                                   label=f"logistic guide's mass below 0: {1 - fit['prob_positive']:.3f}")
        right.set_title("Guides fitted by SVI")
    for ax in axes:
        ax.axvline(0, color="grey", linewidth=0.5)
        ax.set_xlabel("z")
        ax.set_ylabel("density")
        ax.set_xlim(lo, hi)
        ax.legend(fontsize=7, loc="upper right")
    return fig
