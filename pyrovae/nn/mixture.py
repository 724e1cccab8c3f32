r"""Pieces shared by the models with a categorical latent ``y`` and a Gaussian latent ``z``:
:class:`~pyrovae.models.GMVAE` (Yang 2022, §5.5) and :class:`~pyrovae.models.MixtureVAE`
(Rainforth 2020, "Deep LVM").

Both sample ``y`` as a ``Categorical`` index, :math:`y \in \{0, \dots, C - 1\}`, so that Pyro's
``infer_discrete`` and ``TraceEnum_ELBO.compute_marginals`` can read it (an enumerated index has no
event dimension), and every network reads it one-hot, as a vector of ``C`` numbers
(:func:`component_code`). An enumerated batch of indices, shaped ``(C, 1)`` with the enumeration
dimension left of the data plate, becomes ``(C, 1, C)``; a Gumbel-softmax sample (a point inside the
simplex, what the relaxed estimators sample at ``"y"``) is already such a vector, and goes through
the same networks unchanged.

* :class:`ComponentGaussian`: the prior :math:`p(z \mid y) = \mathcal N(\mu(y), \operatorname{diag}\sigma(y)^2)`,
  learned (linear in ``y``) or fixed per component.
* :class:`ConditionedEncoder`: ``(x, c) -> MLP([x; c]) -> head`` that computes ``x``'s share of the
  first layer once, however many values of ``c`` are enumerated.
* :class:`MixtureEncoder`: the networks of the guide :math:`q(y \mid x)\, q(z \mid x, y)`.
* :func:`sample_mixture_latents`: the guide body, with :data:`enumerated_mixture_latents` its
  ``config_enumerate``\ d form (``y`` summed out in parallel by ``TraceEnum_ELBO``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate
from torch import nn
from torch.nn import functional as F

from pyrovae.nn.heads import LocScaleHead, LogitsHead
from pyrovae.nn.networks import Encoder, activation_module, mlp


def component_code(y: torch.Tensor, num_components: int, like: torch.Tensor) -> torch.Tensor:
    """The vector a network reads for a value of ``"y"``: the one-hot :math:`e_y`, shape ``(..., C)``
    and ``like``'s dtype, for an integer index (a ``Categorical`` sample or enumerated value, shape
    ``(...)``); a floating ``y`` of shape ``(..., C)`` (a relaxed one-hot sample, or a code already
    one-hot) unchanged.

    The one-hot is a comparison with ``arange(C)``, not ``F.one_hot``, which reads the indices'
    range on the host and so cannot be captured (:mod:`pyrovae.capture`)."""
    if y.is_floating_point():
        return y
    components = torch.arange(num_components, device=y.device)
    return (y.unsqueeze(-1) == components).to(like.dtype)


class ComponentGaussian(nn.Module):
    r"""The prior of ``z`` given a one-hot ``y``: :math:`p(z \mid y) = \mathcal N(z; \mu(y), \operatorname{diag}\sigma(y)^2)`.

    Learned (``locs=None``): :math:`\mu(y) = M y + b`, :math:`\sigma(y) = \operatorname{softplus}(S y + c) + 10^{-4}`,
    a :class:`~pyrovae.nn.LocScaleHead` on ``y``, so a one-hot ``y = e_k`` selects component ``k``'s
    parameters. These are Yang 2022, §5.5.1's "linear transformations" of ``y``, and a relaxed ``y``
    (Gumbel-softmax) gets the same linear map.

    Fixed (``locs`` and ``scales`` of shape ``(C, L)``): :math:`\mu(y) = y^\top m`, :math:`\sigma(y) = y^\top s`,
    stored as buffers: Rainforth 2020's "fixed parameters :math:`m_{1:K}, S_{1:K}`".
    """

    def __init__(self, num_components: int, z_dim: int, locs: torch.Tensor | None = None,
                 scales: torch.Tensor | None = None):
        super().__init__()
        if num_components < 2:
            raise ValueError(f"num_components must be at least 2, got {num_components}")
        if z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {z_dim}")
        self.num_components, self.z_dim = num_components, z_dim
        if (locs is None) != (scales is None):
            raise ValueError("give both locs and scales (fixed components) or neither (learned components)")
        if locs is None:
            self.head = LocScaleHead(num_components, z_dim)
            return
        locs, scales = torch.as_tensor(locs, dtype=torch.get_default_dtype()), torch.as_tensor(scales, dtype=torch.get_default_dtype())
        for name, value in (("locs", locs), ("scales", scales)):
            if tuple(value.shape) != (num_components, z_dim):
                raise ValueError(f"{name} must have shape ({num_components}, {z_dim}), one row per component; got {tuple(value.shape)}")
        if not (scales > 0).all():
            raise ValueError("scales must be positive")
        self.head = None
        self.register_buffer("locs", locs)
        self.register_buffer("scales", scales)

    @property
    def learned(self) -> bool:
        return self.head is not None

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, scale)`` of shape ``(..., L)`` for ``y`` an index of shape ``(...)`` or a (relaxed)
        one-hot vector of shape ``(..., C)`` (:func:`component_code`)."""
        if self.head is not None:
            y = component_code(y, self.num_components, self.head.loc.weight)
            return self.head(y)
        y = component_code(y, self.num_components, self.locs)
        return y @ self.locs, y @ self.scales

    def distribution(self, y: torch.Tensor) -> dist.TorchDistribution:
        """:math:`p(z \\mid y)` with event shape ``(L,)``."""
        loc, scale = self(y)
        return dist.Normal(loc, scale).to_event(1)


class ConditionedEncoder(nn.Module):
    """``(x, c) -> MLP([x; c]) -> head``, for ``x`` of shape ``(..., D)`` and ``c`` of shape ``(..., K)``
    whose leading dimensions broadcast (an enumerated ``c`` of shape ``(C, 1, K)`` against ``x`` of
    shape ``(B, D)``).

    The first layer is one ``nn.Linear(D + K, H)`` (so it initialises like the MLP on the
    concatenation), applied as :math:`W_x x + W_c c + b`: the large product :math:`W_x x` is
    computed once per ``x`` instead of once per value of ``c``, which for ``C`` enumerated values is
    ``C`` times less work than repeating ``x`` (Yang 2022, §5.5.3 repeats it).
    """

    def __init__(self, in_features: int, condition_features: int, hidden_sizes: Sequence[int], head: nn.Module,
                 activation: str = "relu"):
        super().__init__()
        hidden = [int(h) for h in hidden_sizes]
        if not hidden:
            raise ValueError("a conditioned encoder needs at least one hidden layer")
        self.in_features = in_features
        self.first = nn.Linear(in_features + condition_features, hidden[0])
        rest = [mlp(hidden, activation, activate_last=True)] if len(hidden) > 1 else []
        self.body = nn.Sequential(activation_module(activation), *rest)
        self.head = head

    def forward(self, x: torch.Tensor, c: torch.Tensor):
        weight = self.first.weight
        h = F.linear(x, weight[:, : self.in_features], self.first.bias) + F.linear(c, weight[:, self.in_features :])
        return self.head(self.body(h))


class MixtureEncoder(nn.Module):
    r"""The networks of the guide :math:`q(y \mid x)\, q(z \mid x, y)` (Yang 2022, §5.5.2):

    * :math:`q(y \mid x) = \mathrm{Categorical}(\operatorname{softmax} f(x))`, ``f`` an MLP to ``C`` logits;
    * :math:`q(z \mid x, y) = \mathcal N(\mu(x, y), \operatorname{diag}\sigma(x, y)^2)`, an MLP on ``[x; y]``.

    The two networks share no layers, as in the tutorial's code.
    """

    def __init__(self, x_dim: int, num_components: int, z_dim: int, hidden_sizes: Sequence[int] = (512, 512),
                 activation: str = "relu"):
        super().__init__()
        hidden = list(hidden_sizes)
        if not hidden:
            raise ValueError("the mixture encoder needs at least one hidden layer")
        self.num_components, self.z_dim = num_components, z_dim
        self.classifier = Encoder(x_dim, hidden, LogitsHead(hidden[-1], num_components), activation)
        self.z_encoder = ConditionedEncoder(x_dim, num_components, hidden, LocScaleHead(hidden[-1], z_dim), activation)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised :math:`\\log q(y \\mid x)`, shape ``(B, C)``."""
        return self.classifier(x)

    def z_params(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, scale)`` of :math:`q(z \\mid x, y)`, broadcast over the leading dimensions of ``x`` and ``y``
        (an index, or a (relaxed) one-hot vector: :func:`component_code`)."""
        return self.z_encoder(x, component_code(y, self.num_components, x))

    @torch.no_grad()
    def cluster_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`q(y \\mid x)`, shape ``(B, C)``."""
        return torch.softmax(self.logits(x), dim=-1)

    @torch.no_grad()
    def most_probable_code(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y*, E_q[z | x, y*])``: the one-hot most probable component :math:`y^* = \\arg\\max_y q(y \\mid x)`
        and the posterior mean of ``z`` given it."""
        logits = self.logits(x)
        y = F.one_hot(logits.argmax(-1), self.num_components).to(logits.dtype)
        return y, self.z_params(x, y)[0]


def sample_mixture_latents(encoder: MixtureEncoder, x: torch.Tensor, y_distribution: dist.TorchDistribution):
    """The guide body, inside the caller's data plate: ``"y" ~ y_distribution`` (a ``Categorical`` or
    a relaxed one-hot, batch shape ``(B,)``), then ``"z" ~ q(z | x, y)``. Returns ``(y, z)``."""
    y = pyro.sample("y", y_distribution)
    loc, scale = encoder.z_params(x, y)
    z = pyro.sample("z", dist.Normal(loc, scale).to_event(1))
    return y, z


#: :func:`sample_mixture_latents` with every enumerable site marked for parallel enumeration: a
#: ``Categorical`` ``y`` is summed out exactly by ``TraceEnum_ELBO``; a relaxed ``y`` (not
#: enumerable) is sampled.
enumerated_mixture_latents = config_enumerate(sample_mixture_latents, default="parallel")


def relaxed_one_hot_categorical(temperature: torch.Tensor, logits: torch.Tensor,
                                straight_through: bool = False) -> dist.TorchDistribution:
    r"""The Gumbel-softmax (Concrete) relaxation of ``Categorical(logits)``, one-hot encoded, at ``temperature``
    (Jang et al. 2017; Maddison et al. 2017): samples :math:`\operatorname{softmax}((\text{logits} + g)/\tau)`,
    ``g`` i.i.d. Gumbel(0, 1). With ``straight_through`` the sample is the one-hot argmax on the
    forward pass and the relaxed sample's gradient on the backward pass; its density is read at the
    relaxed sample (Pyro's :class:`~pyro.distributions.RelaxedOneHotCategoricalStraightThrough`).
    """
    if straight_through:
        return dist.RelaxedOneHotCategoricalStraightThrough(temperature, logits=logits)
    return dist.RelaxedOneHotCategorical(temperature, logits=logits)
