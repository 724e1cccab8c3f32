"""The variational recurrent neural network (VRNN; Chung et al. 2015), as in Yang 2022, §5.6.

An example is a sequence ``x_1, ..., x_T`` of binary vectors ``x_t in {0, 1}^D``: the rows of an
image, top to bottom (T = D = 28 for MNIST, 8 for the digits). For each example in the ``"data"``
plate and ``t = 1, ..., T`` (Yang 2022, §5.6.1)::

    (h_1, c_1) = (0, 0)
    (h_t, c_t) = LSTM(x_{t-1} || z_{t-1}, (h_{t-1}, c_{t-1}))               t >= 2
    z_t | h_t      ~ N(mu_theta(h_t), diag sigma_theta(h_t)^2)              (sites "z_1", ..., "z_T")
    x_t | h_t, z_t ~ prod_d Bernoulli(sigmoid(decoder_theta(h_t || z_t))_d)

so ``h_t`` summarises ``(x_{<t}, z_{<t})`` and ``p(x, z) = prod_t p(z_t | x_{<t}, z_{<t}) p(x_t | x_{<t}, z_{<=t})``.
The rows are observed together at one site ``"x"`` of event shape ``(T, D)``, whose log-density is
``sum_t log p(x_t | h_t, z_t)`` with each step's Bernoulli logits computed inside the loop: one
site, because pyrovae's evaluators and plots read the observation at ``"x"`` and its mean.

The guide (:class:`pyrovae.guides.VRNNGuide`) is ``q(z_t | x_t, h_t)``, a diagonal Normal fed by the
model's own LSTM (:class:`VRNNRecurrence`), and the ELBO per example is (Yang 2022, §5.6.3)

    ELBO(x) = E_q[ sum_t log p(x_t | h_t, z_t) - KL(q(z_t | x_t, h_t) || p(z_t | h_t)) ],

with ``h_t`` computed from the sampled ``z_{<t}``. ``TraceMeanField_ELBO`` (objective ``meanfield``)
uses the closed-form KL of each step given the sampled past, as the tutorial does;
``Trace_ELBO`` estimates it from the sample.

Beside the tutorial's code (zhihanyang2022/aevb-tutorial, ``05_vrnn``) the model is the same, with
these differences of parameterization and loop: the decoder outputs logits (the tutorial applies a
sigmoid and passes probabilities), scales are ``softplus(.) + 1e-4`` (the tutorial's have no floor),
and :func:`pyrovae.train.fit` shuffles the training set each epoch (the tutorial's loader does not;
``benchmarks/vrnn_tutorial.py`` runs the tutorial's own loop in both orders: after one epoch the order accounts for
pyrovae's lead over the tutorial's logged test ELBO, see the results page).
Its ``.sample()`` of ``z_t`` is the guide's ``reparameterize=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae import settings
from pyrovae.nn import ACTIVATIONS, Encoder, LocScaleHead, decoder_mlp, make_likelihood, open_data_plate
from pyrovae.registry import register_model
from pyrovae.validation import InputSpec


def latent_site(t: int) -> str:
    """The name of the latent site of step ``t`` (1-based, as in the math): ``"z_1"``, ..., ``"z_T"``."""
    return f"z_{t}"


def concat(*tensors: torch.Tensor) -> torch.Tensor:
    """Join feature vectors on the last dim, broadcasting their batch dims: at ``t = 1`` the state is
    one per example ``(B, H)`` while a vectorised particle plate gives ``z_t`` of shape ``(S, B, L)``."""
    batch_shape = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(*batch_shape, t.shape[-1]) for t in tensors], dim=-1)


def check_sequence_length(x, inputs: InputSpec) -> None:
    """Raise a ``ValueError`` naming the sequence length when ``x`` has ``(B, T', D)`` with ``T' != T``
    (other shape errors are :class:`~pyrovae.validation.InputSpec`'s)."""
    if not settings.check_data() or not isinstance(x, torch.Tensor) or x.dim() != 3:
        return
    steps, width = inputs.shape
    if x.shape[1] != steps:
        raise ValueError(
            f"x holds sequences of {x.shape[1]} steps; this VRNN models sequences of T = {steps} steps of "
            f"{width} values, so x must have shape (batch, {steps}, {width}), got {tuple(x.shape)}"
        )


class VRNNRecurrence(nn.Module):
    """The deterministic state ``(h_t, c_t) = LSTM(x_{t-1} || z_{t-1}, (h_{t-1}, c_{t-1}))`` with
    ``(h_1, c_1) = 0``; ``h_t`` is the top layer's output (Yang 2022, §5.6.1 and §5.6.3).

    The model and the guide both read ``h_t``, so both hold this one module; it belongs to the model
    (its weights are generative parameters theta and are saved with the model).

    Args:
        x_dim: values per step ``D``.
        z_dim: latent dimension per step ``L``.
        hidden_dim: LSTM state size ``H``.
        num_layers: stacked LSTM layers.
    """

    def __init__(self, x_dim: int, z_dim: int, hidden_dim: int, num_layers: int = 1):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.lstm = nn.LSTM(x_dim + z_dim, hidden_dim, num_layers=num_layers, batch_first=True)

    def initial(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """``(h_1, state_1)`` for a batch ``x`` of shape ``(B, T, D)``: zeros, and ``None``, which
        the LSTM reads as a zero state."""
        return x.new_zeros(x.shape[0], self.hidden_dim), None

    def forward(self, x_prev: torch.Tensor, z_prev: torch.Tensor, state):
        """``(h_t, state_t)`` from ``x_{t-1}`` ``(..., D)``, ``z_{t-1}`` ``(..., L)`` and ``state_{t-1}``."""
        inputs = concat(x_prev, z_prev)
        batch_shape = inputs.shape[:-1]
        output, state = self.lstm(inputs.reshape(-1, 1, inputs.shape[-1]), state)
        return output.reshape(*batch_shape, self.hidden_dim), state


class VRNN(nn.Module):
    """A VRNN model over sequences of binary vectors: ``forward(x, num_data=None)`` is the Pyro model,
    ``x`` of shape ``(B, T, D)`` (see the module docstring for the generative process).

    Args:
        seq_len: number of steps ``T`` (image rows).
        x_dim: values per step ``D`` (image columns).
        z_dim: latent dimension per step ``L``.
        hidden_dim: LSTM state size ``H``.
        num_layers: stacked LSTM layers.
        hidden_sizes: hidden layers of the prior network ``h_t -> (mu, sigma)`` and of the decoder
            ``h_t || z_t -> logits`` (the tutorial's 500-500 ReLU heads).
        activation: their hidden activation.
        name: the prefix of its parameters in Pyro's parameter store.

    ``x_1, ..., x_T`` must be binary (a Bernoulli likelihood): binarize the data set.
    """

    #: The data plate is the only plate; the steps are a sequential ``pyro.markov`` loop.
    max_plate_nesting = 1

    def __init__(
        self,
        seq_len: int,
        x_dim: int,
        z_dim: int = 2,
        hidden_dim: int = 256,
        num_layers: int = 2,
        hidden_sizes: Sequence[int] = (500, 500),
        activation: str = "relu",
        name: str = "vrnn",
    ):
        super().__init__()
        if z_dim < 1 or hidden_dim < 1 or num_layers < 1:
            raise ValueError(f"z_dim, hidden_dim and num_layers must be at least 1, got {z_dim}, {hidden_dim}, {num_layers}")
        hidden = list(hidden_sizes)
        self.seq_len, self.x_dim, self.z_dim, self.name = seq_len, x_dim, z_dim, name
        self.likelihood = make_likelihood("bernoulli", (seq_len, x_dim))
        self.inputs = InputSpec((seq_len, x_dim), kind="sequence", support=self.likelihood.support)
        self.recurrence = VRNNRecurrence(x_dim, z_dim, hidden_dim, num_layers)
        self.prior_net = Encoder(hidden_dim, hidden, LocScaleHead(hidden[-1] if hidden else hidden_dim, z_dim), activation)
        self.decoder = decoder_mlp(hidden_dim + z_dim, hidden, x_dim, activation)

    def prior(self, h: torch.Tensor) -> dist.TorchDistribution:
        """``p(z_t | h_t) = N(mu(h_t), diag sigma(h_t)^2)``."""
        loc, scale = self.prior_net(h)
        return dist.Normal(loc, scale).to_event(1)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        check_sequence_length(x, self.inputs)
        with open_data_plate(self, x, num_data=num_data):
            h, state = self.recurrence.initial(x)
            logits = []
            # pyro.markov only matters to enumeration, which continuous z_t never use; z_t depends on
            # every earlier step through the LSTM state.
            for t in pyro.markov(range(self.seq_len)):
                z = pyro.sample(latent_site(t + 1), self.prior(h))
                logits.append(self.decoder(concat(h, z)))
                if t + 1 < self.seq_len:
                    h, state = self.recurrence(x[:, t], z, state)
            pyro.sample("x", self.likelihood.distribution(torch.stack(logits, dim=-2)), obs=x)
        return z

    @torch.no_grad()
    def sample_images(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images generated one row at a time (Yang 2022, Fig. 12): ``z_t ~ p(z_t | h_t)``, row
        ``E[x_t | h_t, z_t]`` drawn, and a Bernoulli draw of ``x_t`` fed to the LSTM for the next row.
        Returns the mean rows flattened: ``(num_samples, T * D)``."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        like = next(self.parameters())
        h, state = self.recurrence.initial(like.new_zeros(num_samples, self.seq_len, self.x_dim))
        rows = []
        for t in range(self.seq_len):
            loc, scale = self.prior_net(h)
            z = loc + scale * torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
            mean = self.likelihood.mean(self.decoder(concat(h, z)))
            rows.append(mean)
            if t + 1 < self.seq_len:
                h, state = self.recurrence(torch.bernoulli(mean, generator=generator), z, state)
        return torch.stack(rows, dim=1).reshape(num_samples, -1)


def generation_figure(model: VRNN, image_shape, num_samples: int = 6, steps: int = 7,
                      generator: torch.Generator | None = None, title: str | None = None):
    """Row-by-row generation (Yang 2022, Fig. 12): one row of panels per generated image
    (:meth:`VRNN.sample_images`), showing it after ``steps`` evenly spaced numbers of generated rows
    ``t``, up to all ``T``; rows not generated yet are left blank (0). Returns the ``Figure``."""
    from pyrovae import plots  # matplotlib: only when a figure is drawn

    if not 1 <= steps <= model.seq_len:
        raise ValueError(f"steps must be between 1 and the sequence length {model.seq_len}, got {steps}")
    images = model.sample_images(num_samples, generator).reshape(num_samples, model.seq_len, model.x_dim).cpu()
    shown = torch.linspace(model.seq_len / steps, model.seq_len, steps).round().long().tolist()
    panels = []
    for image in images:
        for t in shown:
            partial = image.clone()
            partial[t:] = 0
            panels.append(partial.reshape(-1))
    caption = f"each row one image, after t = {', '.join(map(str, shown))} of its {model.seq_len} rows"
    return plots.labelled_grid(torch.stack(panels), torch.arange(num_samples).repeat_interleave(steps), image_shape,
                               columns=steps, title=f"{title}\n{caption}" if title else caption,
                               row_axis_label="sample")


@dataclass
class VRNNConfig:
    """Hyperparameters of :class:`VRNN` and :class:`~pyrovae.guides.VRNNGuide`; the defaults are the
    tutorial's (Yang 2022, §5.6.4), the preset ``yang`` adds its data and optimiser."""

    z_dim: int = field(default=2, metadata={"help": "latent dimension L per step", "min": 1, "flags": ["--latent-dim"]})
    hidden_dim: int = field(default=256, metadata={"help": "LSTM state size H", "min": 1})
    num_layers: int = field(default=2, metadata={"help": "stacked LSTM layers", "min": 1})
    hidden_sizes: list[int] = field(default_factory=lambda: [500, 500], metadata={
        "help": "hidden layers of the prior, decoder and encoder networks", "min": 1, "flags": ["--hidden"]})
    activation: str = field(default="relu", metadata={"help": "hidden activation", "choices": sorted(ACTIVATIONS)})
    reparameterize: bool = field(default=True, metadata={
        "help": "reparameterized z_t in the guide; off reproduces the tutorial's .sample(), which cuts the "
                "reconstruction gradient to the encoder (use it with --objective meanfield)"})


def build_vrnn(config: VRNNConfig, data) -> VRNN:
    """The :class:`VRNN` of ``config`` for sequences shaped like ``data``'s examples: ``data.image_shape``
    is ``(T, D)`` (the rows of an image)."""
    if len(data.image_shape) != 2:
        raise ValueError(f"a VRNN reads an example as a sequence (T, D); {data.name} has examples of shape {data.image_shape}")
    seq_len, x_dim = data.image_shape
    model = VRNN(seq_len, x_dim, config.z_dim, config.hidden_dim, config.num_layers, config.hidden_sizes,
                 config.activation)
    return model


register_model(
    "vrnn",
    VRNNConfig,
    build=build_vrnn,
    default_guide="recurrent",
    description="variational RNN over image rows (Yang 2022, §5.6); LSTM shared with its guide",
    presets={
        "tiny": dict(dataset="digits", binarize="dynamic", z_dim=2, hidden_dim=16, num_layers=1, hidden_sizes=[16],
                     epochs=1, batch_size=64),
        # Yang 2022, §5.6.4 and zhihanyang2022/aevb-tutorial 05_vrnn: z = 2, H = 256, two LSTM layers,
        # 500-500 ReLU heads, batch 100, Adam 1e-3, closed-form KL per step. Its MNIST is (k + u)/256 > 0.5,
        # which is k >= 128, i.e. k/255 > 0.5: binarize "threshold". It reports the test ELBO after 7 epochs.
        "yang": dict(dataset="mnist", binarize="threshold", objective="meanfield", z_dim=2, hidden_dim=256,
                     num_layers=2, hidden_sizes=[500, 500], activation="relu", batch_size=100, lr=1e-3, epochs=7),
    },
    figures={"generation.png": lambda model, test, title, generator: generation_figure(
        model, test.image_shape, generator=generator, title=f"row-by-row generation\n{title}")},
)
