r"""The Gaussian-mixture VAE (Shu 2016; Yang 2022, §5.5).

Generative model, for each data point in the ``"data"`` plate::

    y ~ Categorical(1/C, ..., 1/C)                       (site "y", C components, fixed uniform prior)
    z | y ~ Normal(mu(e_y), diag sigma(e_y)^2)           (site "z"; mu, sigma linear in the one-hot e_y)
    x | z ~ Bernoulli(sigmoid(decoder(z)))               (site "x", binary pixels)

``y`` is an index; the networks read it one-hot (:func:`~pyrovae.nn.mixture.component_code`), so
an enumerated ``y`` and a relaxed one-hot sample (the Gumbel estimators below) go through the same
networks.

paired with the guide :math:`q(y \mid x)\, q(z \mid x, y)` of :class:`~pyrovae.guides.GMVAEGuide`.
Its per-example ELBO is

.. math::

    \mathcal L(x) = \sum_y q(y \mid x)\, \mathbb E_{q(z \mid x, y)}\big[\log p(x \mid z) + \log p(z \mid y)
                    - \log q(z \mid x, y)\big] - \mathrm{KL}\big(q(y \mid x) \,\|\, p(y)\big),

where :math:`-\mathrm{KL}(q(y|x) \| p(y)) = \mathbb H(q(y \mid x)) - \log C`. The tutorial logs the ELBO
without the constant :math:`-\log C` (:math:`-\log 10 = -2.30` nats); pyrovae's test ELBO includes it.

``estimator`` chooses how ``y`` is handled in training (model and guide must agree; both are built
from one config):

* ``"enumerate"`` (Estimator 1, the marginalising estimator of §5.5.3): the guide marks ``y`` for
  parallel enumeration (``config_enumerate``) and ``TraceEnum_ELBO`` (objective ``enum``) sums it out
  exactly; ``z`` is reparameterised, one draw per value of ``y``. This is the formula above with
  :math:`\mathbb E_{q(z|x,y)}` estimated by one sample. Objective ``enum_meanfield``
  (:class:`~pyrovae.infer.TraceEnumMeanField_ELBO`, the preset ``yang``'s) takes the ``z`` terms'
  expectation in closed form, :math:`-\mathrm{KL}(q(z \mid x, y) \,\|\, p(z \mid y))`, as the
  tutorial does: the same bound with less noise, and better clusters.
* ``"gumbel-a"`` (Estimator 2, "one context"): ``y`` is a Gumbel-softmax sample
  :math:`\tilde y = \operatorname{softmax}((\log\pi + g)/\tau)` in both model and guide: :math:`p(y)`
  and :math:`q(y \mid x)` are both ``RelaxedOneHotCategorical`` at temperature τ and the
  single-sample estimate :math:`\log p(x|z) + \log p(z|\tilde y) + \log p(\tilde y) - \log q(\tilde y|x) - \log q(z|x,\tilde y)`
  uses their Concrete densities. Train it with objective ``trace``.
* ``"gumbel-b"`` (Estimator 2, "another context"): :math:`\log p(x|z) + \log p(z|\tilde y) - \log q(z|x,\tilde y)
  - \mathrm{KL}(q(y|x) \| p(y))` with the categorical KL in closed form and the relaxed
  :math:`\tilde y` fed to :math:`p(z \mid y)` and :math:`q(z \mid x, y)`. In Pyro: the site ``"y"`` is
  relaxed in model and guide with both densities masked out (``.mask(False)``), and the guide adds
  ``pyro.factor("y_kl", KL(q(y|x) || p(y)), has_rsample=True)``: a guide factor enters the ELBO with a
  minus sign, and the KL is a differentiable function of the logits, so it needs no score function.
  Any single-sample objective (``trace``, ``enum``) then optimises this estimator.

Temperatures are fixed (``temperature``) or annealed between epochs with
:class:`TemperatureAnnealing` (Jang et al. 2017: :math:`\tau = \max(0.5, \exp(-r t))`);
``straight_through`` feeds the one-hot argmax forward and the relaxed gradient backward. Generation
(:meth:`GMVAE.sample_images`) and clustering (:func:`pyrovae.clustering.clustering_accuracy`) use the
discrete ``y`` whatever the estimator, and :func:`pyrovae.clustering.enumerated_elbo` gives the true
ELBO of a model trained with a relaxation.

Cluster assignments, for a batch ``x``:

* :math:`\arg\max_y q(y \mid x)`, the guide's: ``guide.cluster_probabilities(x).argmax(-1)``, what
  :func:`pyrovae.clustering.clustering_accuracy` scores;
* the model's posterior :math:`p(y \mid x, z) \propto p(y)\, p(z \mid y)` given a code ``z`` drawn
  from the guide, by Pyro's ``infer_discrete`` (``temperature=0``: the most probable ``y``;
  ``1``: a posterior draw) or ``TraceEnum_ELBO.compute_marginals`` (the probabilities):
  :func:`pyrovae.clustering.infer_assignments` and :func:`pyrovae.clustering.posterior_assignment_probabilities`
  do it, as in Pyro's own words::

      from pyro import poutine
      from pyro.infer import config_enumerate, infer_discrete

      z = poutine.trace(guide).get_trace(x).nodes["z"]["value"]
      conditioned = config_enumerate(poutine.condition(model.with_estimator("enumerate"), data={"z": z}))
      map_y = poutine.trace(infer_discrete(conditioned, first_available_dim=-2, temperature=0)).get_trace(x).nodes["y"]["value"]
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.callbacks import Callback
from pyrovae.clustering import ClusterMetrics, cluster_sample_grid
from pyrovae.nn import ACTIVATIONS, DecodesThroughLikelihood, decoder_mlp, make_likelihood, open_data_plate
from pyrovae.nn.initialization import glorot_normal_
from pyrovae.nn.mixture import ComponentGaussian, relaxed_one_hot_categorical
from pyrovae.registry import register_model
from pyrovae.validation import InputSpec

ESTIMATORS = ("enumerate", "gumbel-a", "gumbel-b")


def check_estimator(estimator: str, temperature: float) -> None:
    """Raise a ``ValueError`` for an unknown ``estimator`` or a non-positive ``temperature``."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")


class GMVAE(DecodesThroughLikelihood, nn.Module):
    """The GMVAE model: ``forward(x, num_data=None)`` is the Pyro model (see the module docstring).

    Args:
        x_dim: number of binary pixels ``D``.
        num_components: number of mixture components ``C`` (values of ``y``).
        z_dim: dimension ``L`` of ``z``.
        hidden_sizes: decoder hidden layers (used when ``decoder`` is not given).
        activation: hidden activation of the default decoder.
        estimator: ``"enumerate"``, ``"gumbel-a"`` or ``"gumbel-b"`` (see the module docstring).
        temperature: the Gumbel-softmax temperature τ (a buffer; the ``TemperatureAnnealing`` callback of
            ``pyrovae.models.gmvae`` anneals it).
        straight_through: feed the one-hot argmax of the relaxed sample forward (Gumbel estimators).
        decoder: a module mapping ``(..., L)`` to ``(..., D)`` Bernoulli logits.
        name: the prefix of its parameters in Pyro's parameter store.
    """

    max_plate_nesting = 1

    def __init__(
        self,
        x_dim: int,
        num_components: int = 10,
        z_dim: int = 64,
        hidden_sizes: Sequence[int] = (512, 512),
        activation: str = "relu",
        estimator: str = "enumerate",
        temperature: float = 1.0,
        straight_through: bool = False,
        decoder: nn.Module | None = None,
        name: str = "gmvae",
    ):
        super().__init__()
        check_estimator(estimator, temperature)
        self.x_dim, self.num_components, self.z_dim, self.name = x_dim, num_components, z_dim, name
        self.estimator, self.straight_through = estimator, straight_through
        self.likelihood = make_likelihood("bernoulli", x_dim)
        self.inputs = InputSpec((x_dim,), support=self.likelihood.support)
        self.component_prior = ComponentGaussian(num_components, z_dim)
        self.decoder = decoder if decoder is not None else decoder_mlp(z_dim, hidden_sizes, x_dim, activation)
        # p(y) is fixed, pi = (1/C, ..., 1/C) (Yang 2022, §5.5.1).
        self.register_buffer("prior_logits", torch.zeros(num_components))
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def with_estimator(self, estimator: str) -> GMVAE:
        """A view of this model with another ``estimator``, sharing every parameter and buffer (e.g.
        ``"enumerate"`` for the exact ELBO of a model trained with a relaxation)."""
        check_estimator(estimator, float(self.temperature))
        view = copy.copy(self)
        view.estimator = estimator
        return view

    def prior_y(self, batch_size: int) -> dist.TorchDistribution:
        """``p(y)`` for a batch, as the estimator needs it: categorical (an index), relaxed one-hot, or
        relaxed one-hot and masked."""
        logits = self.prior_logits.expand(batch_size, self.num_components)
        if self.estimator == "enumerate":
            return dist.Categorical(logits=logits)
        relaxed = relaxed_one_hot_categorical(self.temperature, logits, self.straight_through)
        # gumbel-b: log p(y) enters through the guide's closed-form KL, not through this site.
        return relaxed if self.estimator == "gumbel-a" else relaxed.mask(False)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        with open_data_plate(self, x, num_data=num_data):
            y = pyro.sample("y", self.prior_y(x.shape[0]))
            z = pyro.sample("z", self.component_prior.distribution(y))
            pyro.sample("x", self.decode(z), obs=x)
        return z

    @torch.no_grad()
    def sample_components(self, components: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images ``E[x | z]``, ``z ~ p(z | y = e_k)`` for each component ``k`` in ``components``: ``(N, D)``."""
        loc, scale = self.component_prior(components)
        z = loc + scale * torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
        return self.decode_mean(z)

    @torch.no_grad()
    def sample_images(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images ``E[x | z]`` for ``y ~ p(y)`` (discrete), ``z ~ p(z | y)``: ``(num_samples, D)``."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        components = torch.randint(self.num_components, (num_samples,), generator=generator)
        return self.sample_components(components.to(self.prior_logits.device), generator)


def annealed_temperature(step: int, rate: float, minimum: float = 0.5) -> float:
    """Jang et al. (2017)'s schedule :math:`\\tau = \\max(\\tau_{min}, \\exp(-r\\,t))` at step ``t``."""
    if rate < 0:
        raise ValueError(f"the annealing rate must be non-negative, got {rate}")
    return max(minimum, math.exp(-rate * step))


class TemperatureAnnealing(Callback):
    """Set the temperature of ``model`` and ``guide`` after each epoch to :func:`annealed_temperature`
    at ``t = epoch * steps_per_epoch``, and log it as ``row["temperature"]`` (the value the next epoch
    trains with). Jang et al. (2017) anneal by training step (``r`` of 1e-5 or 1e-4, updated every
    500 steps); pass the number of steps per epoch for their ``t``, or 1 to count epochs. The first
    epoch trains at the temperature the modules were built with. The temperature is a buffer, so it
    is checkpointed and a resumed run continues with it."""

    def __init__(self, model: GMVAE, guide, rate: float, minimum: float = 0.5, steps_per_epoch: int = 1):
        annealed_temperature(0, rate, minimum)  # checks the rate now, not after the first epoch
        self.model, self.guide = model, guide
        self.rate, self.minimum, self.steps_per_epoch = rate, minimum, steps_per_epoch

    def on_epoch_end(self, epoch: int, row: dict, run) -> None:
        tau = annealed_temperature(epoch * self.steps_per_epoch, self.rate, self.minimum)
        for module in (self.model, self.guide):
            module.temperature.fill_(tau)
        row["temperature"] = tau


@dataclass
class GMVAEConfig:
    """Hyperparameters of :class:`GMVAE` and :class:`~pyrovae.guides.GMVAEGuide`; the defaults are the
    tutorial's network (Yang 2022, §5.5.4)."""

    num_components: int = field(default=10, metadata={"help": "number of mixture components C (values of y)", "min": 2})
    z_dim: int = field(default=64, metadata={"help": "dimension L of z", "min": 1, "flags": ["--latent-dim"]})
    hidden_sizes: list[int] = field(default_factory=lambda: [512, 512], metadata={
        "help": "hidden layer sizes of the decoder and of both encoder networks", "min": 1, "flags": ["--hidden"]})
    activation: str = field(default="relu", metadata={"help": "hidden activation", "choices": sorted(ACTIVATIONS)})
    estimator: str = field(default="enumerate", metadata={
        "help": "how y is handled: enumerate (objective enum) or Gumbel-softmax variant A or B", "choices": list(ESTIMATORS)})
    temperature: float = field(default=1.0, metadata={"help": "Gumbel-softmax temperature (gumbel estimators)", "positive": True})
    straight_through: bool = field(default=False, metadata={"help": "straight-through Gumbel-softmax (hard y forward)"})
    glorot_init: bool = field(default=True, metadata={"help": "Glorot-normal weights and zero biases in every linear layer"})


def gmvae_callbacks(config: GMVAEConfig, model: GMVAE, guide, test) -> list:
    """Cluster accuracy and entropy on a labelled test set every epoch, and for a Gumbel-softmax run
    the enumerated (true) ELBO, since its test ELBO is the relaxed objective."""
    if test is None or test.y is None:
        return []
    return [ClusterMetrics(model, guide, test, elbo=config.estimator != "enumerate")]


def build_gmvae(config: GMVAEConfig, data) -> GMVAE:
    """The :class:`GMVAE` of ``config`` for examples of ``data``."""
    model = GMVAE(data.x_dim, config.num_components, config.z_dim, config.hidden_sizes, config.activation,
                  config.estimator, config.temperature, config.straight_through)
    return glorot_normal_(model) if config.glorot_init else model


register_model(
    "gmvae",
    GMVAEConfig,
    build=build_gmvae,
    default_guide="mixture",
    description="Gaussian-mixture VAE: y ~ Cat(C), z | y Gaussian, Bernoulli decoder; y enumerated or Gumbel-softmax",
    callbacks=gmvae_callbacks,
    figures={"samples-per-cluster.png": lambda model, test, title, generator: cluster_sample_grid(
        model, test.image_shape, generator=generator, title=f"samples E[x | z], z ~ p(z | y), one row per cluster y\n{title}")},
    presets={
        "tiny": dict(dataset="digits", binarize="dynamic", objective="enum", num_components=10, z_dim=2,
                     hidden_sizes=[16], epochs=1, batch_size=64),
        # Yang 2022, §5.5.4 and its code (aevb-tutorial/04_gmvae): MNIST dequantized then thresholded at 0.5,
        # which keeps exactly the pixels with level >= 128 (as binarize="threshold" does); C = 10, z = 64,
        # 512-512 ReLU networks, Glorot-normal weights and zero biases, batch 100, Adam 1e-3, y marginalised
        # and the KL of z in closed form (objective enum_meanfield; a one-sample KL clusters worse).
        "yang": dict(dataset="mnist", binarize="threshold", objective="enum_meanfield", num_components=10, z_dim=64,
                     hidden_sizes=[512, 512], activation="relu", glorot_init=True, batch_size=100, lr=1e-3,
                     epochs=100),
    },
)
