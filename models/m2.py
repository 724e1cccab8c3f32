r"""The semi-supervised VAE M2 (Kingma, Rezende, Mohamed & Welling 2014, §2.2).

Generative model, for each data point in the ``"data"`` plate::

    y ~ Categorical(1/C, ..., 1/C)                       (the class; observed where its label is known)
    z ~ Normal(0, I)                                     (site "z", the "style", independent of y)
    x | y, z ~ Bernoulli(sigmoid(decoder(z, e_y)))       (site "x"; e_y the one-hot y)

paired with the guide :math:`q(y \mid x)\, q(z \mid x, y)` of :class:`~pyrovae.guides.M2Guide`. A batch
mixes labelled and unlabelled examples: its labels ``y`` hold -1 (:data:`pyrovae.data.UNLABELLED`)
where the label is unknown. For a labelled example the bound is

.. math::

    -\mathcal L(x, y) = \mathbb E_{q(z \mid x, y)}\big[\log p(x \mid y, z) + \log p(z) - \log q(z \mid x, y)\big]
                        + \log p(y) \;\le\; \log p(x, y),

and for an unlabelled one ``y`` is summed out against the classifier :math:`q(y \mid x)`:

.. math::

    -\mathcal U(x) = \sum_y q(y \mid x)\,\big(-\mathcal L(x, y)\big) + \mathbb H(q(y \mid x)) \;\le\; \log p(x).

Kingma et al. (eq. 9) add :math:`\alpha\,\mathbb E_{\tilde p_l(x, y)}[-\log q(y \mid x)]` so that the
classifier also learns from the labels directly, with :math:`\alpha = 0.1 \cdot N`; the guide adds it
as a factor (see :class:`~pyrovae.guides.M2Guide`), so any ``pyro.infer`` objective in a plain SVI loop
optimises :math:`\sum_l \mathcal L + \sum_u \mathcal U + \alpha\,\mathbb E[-\log q(y \mid x)]`.

**Sites.** ``y`` is split as Pyro's ``obs_mask`` splits a partly observed site: ``"y_observed"``
(``Categorical``, observed, masked to the labelled rows) and ``"y_unobserved"`` (masked to the
unlabelled rows), the latent the guide samples or enumerates; the decoder and :math:`q(z \mid x, y)`
read the observed label on labelled rows and ``y_unobserved`` elsewhere (:func:`label_code`). The
split is written out rather than passed as ``obs_mask=`` because the relaxed estimators draw the
unobserved part from a Concrete distribution, not from the observed labels' ``Categorical``. On a
labelled row the enumerated ``y_unobserved`` is masked in model and guide, so its
:math:`\log p - \log q` is 0, and ``TraceEnum_ELBO`` weighs its ``C`` values by the guide's
(unmasked) probabilities, which sum to one: the row's bound is :math:`\mathcal L(x, y)` averaged over
``C`` draws of ``z``. The guide gives those rows the fixed :math:`p(y)` there, so that the classifier
gets no gradient from this average. ``y`` is a ``Categorical`` index (``infer_discrete`` handles it),
one-hot encoded inside the networks.

``estimator`` chooses how the unlabelled ``y`` is handled in training (model and guide must agree):

* ``"enumerate"``: the guide marks ``y_unobserved`` for parallel enumeration and ``TraceEnum_ELBO``
  (objective ``enum``) sums it out exactly, the bound :math:`\mathcal U` above with one draw of ``z``
  per value of ``y``; ``TraceEnumMeanField_ELBO`` (``enum_meanfield``) takes the KL of ``z`` in closed
  form. The exact sum costs ``C`` decoder passes per example (labelled rows included, see above).
* ``"gumbel-a"``, ``"gumbel-b"``: a Gumbel-softmax (Concrete) sample :math:`\tilde y` replaces the
  unlabelled ``y``, one decoder pass per example and a biased, lower-variance gradient (Jang et al.
  2017), as in :mod:`pyrovae.models.gmvae`: variant A scores it with the Concrete densities (objective
  ``trace``), variant B masks them and adds the closed-form :math:`\mathrm{KL}(q(y \mid x) \,\|\, p(y))`.

Classification (:mod:`pyrovae.classification`) reads :math:`\arg\max_y q(y \mid x)` whatever the
estimator, and generation (:meth:`M2.sample_images`, :func:`analogy_grid`) the discrete ``y``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyrovae.data import with_labels
from pyrovae.models.gmvae import ESTIMATORS, check_estimator
from pyrovae.nn import ACTIVATIONS, make_likelihood, open_data_plate
from pyrovae.nn.initialization import small_normal_
from pyrovae.nn.mixture import ConditionedEncoder, relaxed_one_hot_categorical
from pyrovae.registry import register_model
from pyrovae.validation import InputSpec, check_labels

#: The likelihoods :class:`M2` offers: a decoder of logits ``sigma^{-1}(E[x])`` per pixel.
M2_LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "bernoulli_cross_entropy")


def label_code(labelled: torch.Tensor, observed: torch.Tensor, unobserved: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The one-hot ``y`` the networks read: the observed label ``(B,)`` on labelled rows, else
    ``unobserved``, an index (``(B,)``, or ``(C, 1)`` enumerated) or a relaxed one-hot vector ``(B, C)``.
    Shape ``(..., B, C)``, broadcast over an enumeration dimension on the left."""
    dtype = unobserved.dtype if unobserved.is_floating_point() else torch.get_default_dtype()
    shown = F.one_hot(observed, num_classes).to(dtype)
    hidden = unobserved if unobserved.is_floating_point() else F.one_hot(unobserved, num_classes).to(dtype)
    return torch.where(labelled.unsqueeze(-1), shown, hidden)


def unobserved_y(estimator: str, logits: torch.Tensor, temperature: torch.Tensor,
                 straight_through: bool) -> dist.TorchDistribution:
    """The distribution of ``"y_unobserved"`` for ``estimator``: categorical (enumerated), relaxed
    (``gumbel-a``), or relaxed with its density masked out (``gumbel-b``, whose KL is a guide factor)."""
    if estimator == "enumerate":
        return dist.Categorical(logits=logits)
    relaxed = relaxed_one_hot_categorical(temperature, logits, straight_through)
    return relaxed if estimator == "gumbel-a" else relaxed.mask(False)


class M2(nn.Module):
    """The M2 model: ``forward(x, y, num_data=None)`` is the Pyro model, ``y`` holding -1 where the
    label is unknown (see the module docstring).

    Args:
        x_dim: number of binary pixels ``D``.
        num_classes: number of classes ``C``.
        z_dim: dimension ``L`` of ``z``.
        hidden_sizes, activation: the default decoder's hidden layers.
        estimator, temperature, straight_through: how the unlabelled ``y`` is handled (module docstring).
        likelihood: ``p(x | y, z)``: ``"bernoulli"`` on binary pixels (the paper's), or, on grey values,
            ``"continuous_bernoulli"`` (a density) or ``"bernoulli_cross_entropy"`` (the loss Pyro's SS-VAE
            example trains with on intensities; not a normalised density, see
            :data:`~pyrovae.nn.LIKELIHOODS`).
        decoder: a module ``(z, e_y) -> logits`` for ``z`` ``(..., L)`` and one-hot ``e_y`` ``(..., C)``
            (default: a :class:`~pyrovae.nn.mixture.ConditionedEncoder` MLP with a linear output).
        name: the prefix of its parameters in Pyro's parameter store.
    """

    max_plate_nesting = 1

    def __init__(self, x_dim: int, num_classes: int = 10, z_dim: int = 50, hidden_sizes: Sequence[int] = (500,),
                 activation: str = "softplus", estimator: str = "enumerate", temperature: float = 1.0,
                 straight_through: bool = False, likelihood: str = "bernoulli", decoder: nn.Module | None = None,
                 name: str = "m2"):
        super().__init__()
        check_estimator(estimator, temperature)
        if num_classes < 2:
            raise ValueError(f"M2 needs at least 2 classes, got num_classes={num_classes}")
        if z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {z_dim}")
        self.x_dim, self.num_classes, self.z_dim, self.name = x_dim, num_classes, z_dim, name
        self.estimator, self.straight_through = estimator, straight_through
        if likelihood not in M2_LIKELIHOODS:
            raise ValueError(f"M2's likelihood must be one of {', '.join(M2_LIKELIHOODS)}, got {likelihood!r}")
        self.likelihood = make_likelihood(likelihood, x_dim)
        self.inputs = InputSpec((x_dim,), support=self.likelihood.support, num_classes=num_classes,
                                partially_labelled=True)
        hidden = list(hidden_sizes)
        self.decoder = decoder if decoder is not None else ConditionedEncoder(
            z_dim, num_classes, hidden, nn.Linear(hidden[-1], x_dim), activation)
        # p(y) is uniform (Kingma et al. 2014, eq. 2).
        self.register_buffer("prior_logits", torch.zeros(num_classes))
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def with_estimator(self, estimator: str) -> M2:
        """A view of this model with another ``estimator``, sharing every parameter and buffer."""
        check_estimator(estimator, float(self.temperature))
        view = copy.copy(self)
        view.estimator = estimator
        return view

    def decode(self, z: torch.Tensor, code: torch.Tensor) -> dist.TorchDistribution:
        """:math:`p(x \\mid y, z)` for a one-hot (or relaxed) ``code`` of ``y``."""
        return self.likelihood.distribution(self.decoder(z, code))

    def forward(self, x: torch.Tensor, y: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        batch = x.shape[0]
        labelled = y >= 0
        with open_data_plate(self, x, y, num_data):
            logits = self.prior_logits.expand(batch, self.num_classes)
            observed = pyro.sample("y_observed", dist.Categorical(logits=logits).mask(labelled), obs=y.clamp(min=0))
            hidden = unobserved_y(self.estimator, logits, self.temperature, self.straight_through)
            unobserved = pyro.sample("y_unobserved", hidden.mask(~labelled))
            z = pyro.sample("z", dist.Normal(x.new_zeros(batch, self.z_dim), 1.0).to_event(1))
            pyro.sample("x", self.decode(z, label_code(labelled, observed, unobserved, self.num_classes)), obs=x)
        return z

    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean images :math:`\\mathbb E[x \\mid y, z]` for styles ``z`` ``(N, L)`` and classes ``labels`` ``(N,)``."""
        check_labels(labels, self.num_classes, z.shape[0], name="labels")
        code = F.one_hot(labels.to(z.device), self.num_classes).to(z.dtype)
        return self.likelihood.mean(self.decoder(z, code))

    @torch.no_grad()
    def sample_images(self, num_samples: int, generator: torch.Generator | None = None,
                      labels: torch.Tensor | None = None) -> torch.Tensor:
        """Mean images for ``z ~ p(z)``: ``(num_samples, D)``; ``labels`` chooses each image's class,
        by default the classes in order in equal consecutive blocks (one class per row of a grid)."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        device = self.prior_logits.device
        if labels is None:
            labels = torch.arange(num_samples, device=device) * self.num_classes // num_samples
        z = torch.randn(num_samples, self.z_dim, generator=generator, device=device)
        return self.generate(z, torch.as_tensor(labels, device=device))


@torch.no_grad()
def every_class(model: M2, z: torch.Tensor) -> torch.Tensor:
    """Each style of ``z`` ``(N, L)`` rendered as every class: ``(N, C, D)``, :math:`\\mathbb E[x \\mid y = k, z_i]`."""
    classes = torch.arange(model.num_classes, device=z.device)
    images = model.generate(z.repeat_interleave(model.num_classes, 0), classes.repeat(z.shape[0]))
    return images.reshape(z.shape[0], model.num_classes, -1)


@torch.no_grad()
def analogies(model: M2, guide, x: torch.Tensor) -> torch.Tensor:
    """Kingma et al. 2014, Fig. 1(b): the style :math:`z = \\mathbb E_q[z \\mid x, \\hat y]` of each image
    of ``x`` ``(B, D)``, :math:`\\hat y = \\arg\\max_y q(y \\mid x)`, rendered as every class:
    ``(B, C, D)``, row ``i`` holding :math:`\\mathbb E[x \\mid y = k, z_i]` for ``k = 0, ..., C - 1``."""
    return every_class(model, guide.encode(x))


@torch.no_grad()
def styles_by_class(model: M2, num_styles: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``num_styles`` styles :math:`z \\sim p(z)`, each rendered as every class: ``(num_styles, C, D)``."""
    if num_styles < 1:
        raise ValueError(f"num_styles must be at least 1, got {num_styles}")
    return every_class(model, torch.randn(num_styles, model.z_dim, generator=generator, device=model.prior_logits.device))


def style_grid(model: M2, image_shape, rows: int = 10, generator: torch.Generator | None = None,
               title: str | None = None):
    """Conditional generation with the style held fixed along a row (Kingma et al. 2014, Fig. 1): row
    ``i`` shows :math:`\\mathbb E[x \\mid y = k, z_i]` for ``k = 0, ..., C - 1``, ``z_i ~ p(z)``."""
    from pyrovae import plots  # matplotlib: only when a figure is drawn

    images = styles_by_class(model, rows, generator).flatten(0, 1).cpu()
    caption = "each row one style z ~ p(z), each column a class y = 0, 1, ..."
    return plots.image_grid(images, image_shape, columns=model.num_classes,
                            title=f"{title}\n{caption}" if title else caption)


def analogy_grid(model: M2, guide, data, rows: int = 10, title: str | None = None):
    """A figure of :func:`analogies` for the first ``rows`` examples of ``data``: each row a test
    image, then the same style ``z`` as each class 0, ..., C - 1; returns the ``Figure``."""
    from pyrovae import plots  # matplotlib: only when a figure is drawn

    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    x = data.x[:rows].to(model.prior_logits.device)
    images = torch.cat([x.unsqueeze(1), analogies(model, guide, x)], dim=1).flatten(0, 1).cpu()
    caption = (f"left: test image x; then E[x | y, z] for y = 0, ..., {model.num_classes - 1} with its style "
               "z = E_q[z | x, argmax q(y | x)]")
    return plots.image_grid(images, data.image_shape, columns=model.num_classes + 1,
                            title=f"{title}\n{caption}" if title else caption)


@dataclass
class M2Config:
    """Hyperparameters of :class:`M2`, :class:`~pyrovae.guides.M2Guide` and their labelled subset;
    the defaults are Kingma et al. 2014's network (§4.1: one hidden layer of 500 softplus units, z of 50)."""

    labels: int | None = field(default=100, metadata={
        "help": "labelled training examples, the same number per class (none: every label)", "min": 0})
    label_seed: int = field(default=0, metadata={"help": "seeds which examples of each class are labelled", "min": 0})
    z_dim: int = field(default=50, metadata={"help": "dimension L of z", "min": 1, "flags": ["--latent-dim"]})
    hidden_sizes: list[int] = field(default_factory=lambda: [500], metadata={
        "help": "hidden layer sizes of the decoder and of both encoder networks", "min": 1, "flags": ["--hidden"]})
    activation: str = field(default="softplus", metadata={"help": "hidden activation", "choices": sorted(ACTIVATIONS)})
    estimator: str = field(default="enumerate", metadata={
        "help": "the unlabelled y: enumerate (objective enum) or Gumbel-softmax variant A or B", "choices": list(ESTIMATORS)})
    temperature: float = field(default=1.0, metadata={"help": "Gumbel-softmax temperature (gumbel estimators)", "positive": True})
    straight_through: bool = field(default=False, metadata={"help": "straight-through Gumbel-softmax (hard y forward)"})
    likelihood: str = field(default="bernoulli", metadata={
        "help": "p(x | y, z): bernoulli (binary pixels), or on grey values continuous_bernoulli or "
                "bernoulli_cross_entropy (Pyro's SS-VAE example; not a normalised density)",
        "choices": list(M2_LIKELIHOODS)})
    alpha: float = field(default=0.1, metadata={
        "help": "weight of the classification term, as a fraction of N: alpha * N (Kingma et al. 2014: 0.1)", "min": 0})
    init_scale: float | None = field(default=None, metadata={
        "help": "start every weight at N(0, init_scale^2) and every bias at 0, as Kingma et al.'s code does with "
                "1e-3 (default: PyTorch's initialisation)", "positive": True})


def build_m2(config: M2Config, data) -> M2:
    """The :class:`M2` of ``config`` for examples and classes of ``data``."""
    if data.y is None or data.num_classes < 2:
        raise ValueError(f"M2 learns a classifier and needs a data set with classes; {data.name!r} has none")
    model = M2(data.x_dim, data.num_classes, config.z_dim, config.hidden_sizes, config.activation, config.estimator,
               config.temperature, config.straight_through, config.likelihood)
    return model if config.init_scale is None else small_normal_(model, config.init_scale)


def prepare_m2_data(config: M2Config, train, test):
    """The training set with ``config.labels`` labels shown (:func:`pyrovae.data.with_labels`), and the
    test set with none, so that its ELBO sums ``y`` out; the evaluation reads the test labels itself."""
    return with_labels(train, config.labels, config.label_seed), with_labels(test, 0)


def m2_callbacks(config: M2Config, model: M2, guide, test) -> list:
    """Test accuracy of :math:`\\arg\\max_y q(y \\mid x)` every epoch (``test_accuracy``), and for a
    Gumbel-softmax run the test ELBO with ``y`` summed out (``enumerated_elbo``)."""
    from pyrovae.classification import ClassificationMetrics

    if test is None or test.y is None:
        return []
    relaxed = config.estimator != "enumerate"
    return [ClassificationMetrics(guide, test, model if relaxed else None)]


# Kingma et al. 2014 (§4; the paper's text was not at hand here, so these follow it as Pyro's SS-VAE example,
# examples/vae/ss_vae_M2.py, sets it up): MLPs with one hidden layer of 500 softplus units, z of 50, alpha = 0.1 N.
# Adam at 3e-4 (beta 0.9, 0.999) is the optimiser of the authors' code (dpkingma/nips14-ssl, learn_yz_x_ss.py),
# with batches of 100 and 100 epochs (the example's defaults: Adam at 4.2e-4, batches of 200, 50 epochs). That
# code also starts every weight at N(0, 1e-3^2) and adds a N(0, 1) prior on the weights; the presets keep
# PyTorch's initialisation and no weight prior. Pixels are dynamically binarized (the Bernoulli
# likelihood needs binary data; the example feeds intensities to it, which --binarize none --likelihood
# bernoulli_cross_entropy reproduces). The example's weight of the classification term is PYRO_EXAMPLE_WEIGHT below.
_PAPER = dict(dataset="mnist", binarize="dynamic", objective="enum", z_dim=50, hidden_sizes=[500],
              activation="softplus", alpha=0.1, batch_size=100, lr=3e-4, epochs=100)
#: The numbers of labels of the MNIST presets: Kingma et al. 2014, Table 1's columns (their results, and the
#: Pyro SS-VAE tutorial's, are entries of ``pyrovae/references.json``).
LABEL_COUNTS = (100, 600, 1000, 3000)
#: The classification term's weight per labelled example in Pyro's SS-VAE example (its --aux-loss-multiplier,
#: chosen by validation accuracy for the tutorial's Table 1): the presets ``labels-N-pyro-weight`` are
#: ``labels-N`` with alpha = 46 N_l / N, N = 60,000 MNIST training images. With 3,000 labels that is 23 times
#: the paper's weight, and what brings the preset to the example's accuracy (the results page).
PYRO_EXAMPLE_WEIGHT = 46
MNIST_TRAINING_IMAGES = 60_000


register_model(
    "m2",
    M2Config,
    build=build_m2,
    default_guide="classifier",
    description="semi-supervised VAE M2: y observed where labelled, enumerated (or Gumbel-softmax) where not",
    default_objective=lambda settings: "trace" if settings.get("estimator", "enumerate") == "gumbel-a" else "enum",
    callbacks=m2_callbacks,
    prepare_data=prepare_m2_data,
    figures={"styles-by-class.png": lambda model, test, title, generator: style_grid(
        model, test.image_shape, generator=generator, title=f"E[x | y, z]\n{title}")},
    presets={
        "tiny": dict(dataset="digits", binarize="dynamic", objective="enum", labels=50, z_dim=2, hidden_sizes=[16],
                     epochs=1, batch_size=64),
        **{f"labels-{n}": dict(_PAPER, labels=n) for n in LABEL_COUNTS},
        **{f"labels-{n}-pyro-weight": dict(_PAPER, labels=n, alpha=PYRO_EXAMPLE_WEIGHT * n / MNIST_TRAINING_IMAGES)
           for n in LABEL_COUNTS},
    },
)
