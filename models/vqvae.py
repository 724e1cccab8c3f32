r"""The vector-quantised VAE (VQ-VAE; van den Oord, Vinyals & Kavukcuoglu 2017; the VAE notes, §2.4).

The latent space is a learned codebook :math:`\{e_1, \dots, e_M\} \subset \mathbb{R}^d`. A
convolutional encoder maps an image to a grid :math:`E(x) \in \mathbb{R}^{d \times h \times w}`;
each position is replaced by its nearest code, :math:`z_{ij} = e_k` with
:math:`k = \arg\min_j \lVert E(x)_{ij} - e_j \rVert_2`, and a convolutional decoder gives
:math:`p(x \mid z)`. Training minimises, per example,

.. math::

    L(x) = -\log p(x \mid z_q(x)) + \lVert \mathrm{sg}[E(x)] - z_q(x) \rVert^2
           + \beta \lVert E(x) - \mathrm{sg}[z_q(x)] \rVert^2,

the reconstruction, codebook and commitment terms (squared norms summed over the grid), with
straight-through gradients: the decoder sees :math:`z_q`, the encoder receives :math:`\nabla_{z_q}`.
With ``ema=True`` the codebook term is dropped and the codes are exponential moving averages of
the encoder outputs assigned to them (the paper's appendix A.1; Razavi et al. 2019), see
:class:`Codebook`.

**As a Pyro model and guide.** Generative model, for each data point in the ``"data"`` plate::

    z ~ UniformCodes(codebook, (h, w))        (site "z": each of the h*w positions one of M codes)
    x | z ~ p_theta(x | decoder(z))            (site "x")

and the guide (:class:`~pyrovae.guides.VQVAEGuide`) is the notes' deterministic posterior
:math:`q(z \mid x) = \delta(z - z_q(x))`, a ``Delta`` site ``"z"`` whose value is the
straight-through :math:`E(x) + \mathrm{sg}[z_q(x) - E(x)]`. With the uniform prior the ELBO is

.. math::

    \mathrm{ELBO}(x) = \log p(x \mid z_q(x)) - \mathrm{KL}(\delta_{z_q(x)} \,\|\, p(z))
                     = \log p(x \mid z_q(x)) - hw \log M \;\le\; \log p(x),

a true lower bound on the likelihood of this discrete model, which is what ``test_elbo`` reports
(the KL is the constant :math:`hw \log M`, e.g. 49 log 512 = 305.7 nats for MNIST's 7x7 grid: a
uniform prior over codes is a poor density model, which is why the paper fits an autoregressive
prior afterwards). It has no gradient beyond the reconstruction's. In training mode the guide adds
the codebook and commitment terms with ``pyro.factor("vq_loss", ...)``: a factor in the guide
counts in :math:`\log q`, so ``Trace_ELBO``'s loss :math:`-(\log p - \log q)` gains exactly those
terms, and the default objective and :func:`pyrovae.train.fit` minimise :math:`L(x) + hw \log M`.
``train_loss`` is therefore the VQ-VAE loss (plus the constant), ``test_elbo`` (evaluation mode,
no factor) the bound. Only ``Trace_ELBO``-style objectives (``trace``, ``meanfield``) give the
VQ-VAE's gradients; particle objectives that weight by :math:`\log p - \log q` would weight by the
penalty too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn
from torch.nn import functional as F

from pyrovae.callbacks import Callback
from pyrovae.data import as_dataset
from pyrovae.nn import LIKELIHOODS, PriorThenLikelihood, convolutional_decoder, make_likelihood
from pyrovae.placement import input_spec
from pyrovae.registry import register_model
from pyrovae.validation import InputSpec


class UniformCodes(dist.TorchDistribution):
    r"""The uniform distribution over grids of codes: each of the ``h x w`` positions holds one of the
    ``M`` rows of ``codebook`` (``(M, d)``), all :math:`M^{hw}` grids equally likely,

    .. math:: p(z) = M^{-hw}, \qquad z \in \{e_1, \dots, e_M\}^{h \times w},

    with values shaped ``(..., d, h, w)`` (event dims ``(d, h, w)``). ``log_prob`` returns the
    constant :math:`-hw \log M` without checking that each vector is a code: a straight-through
    value :math:`E(x) + (e - E(x))` equals its code only up to floating-point rounding.
    """

    arg_constraints = {"codebook": constraints.independent(constraints.real, 2)}
    support = constraints.independent(constraints.real, 3)
    has_rsample = False

    def __init__(self, codebook: torch.Tensor, grid_shape, batch_shape=torch.Size(), validate_args=None):
        if codebook.dim() != 2:
            raise ValueError(f"codebook must have shape (M, d), got {tuple(codebook.shape)}")
        self.codebook = codebook
        self.grid_shape = torch.Size(grid_shape)
        if len(self.grid_shape) != 2:
            raise ValueError(f"grid_shape must be (h, w), got {tuple(self.grid_shape)}")
        event_shape = torch.Size((codebook.shape[1], *self.grid_shape))
        super().__init__(torch.Size(batch_shape), event_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(UniformCodes, _instance)
        new.codebook, new.grid_shape = self.codebook, self.grid_shape
        super(UniformCodes, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def num_codes(self) -> int:
        return self.codebook.shape[0]

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape + self.grid_shape
        indices = torch.randint(self.num_codes, shape, device=self.codebook.device)
        with torch.no_grad():
            return F.embedding(indices, self.codebook).movedim(-1, -3)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(value.shape[:value.dim() - 3], self.batch_shape)
        return value.new_full(shape, -self.grid_shape.numel() * math.log(self.num_codes))

    def entropy(self) -> torch.Tensor:
        return self.codebook.new_full(self.batch_shape, self.grid_shape.numel() * math.log(self.num_codes))


#: Why the EMA codebook refuses Pyro's ``Jit*`` objectives (see :class:`Codebook`).
JIT_DROPS_EMA = ("the EMA codebook (ema=True) cannot train under Pyro's Jit* objectives: torch.jit.trace drops its "
                 "moving-average update after the first step; use Trace_ELBO (engine 'compiled' for speed) or ema=False")


class Codebook(nn.Module):
    r"""``M`` code vectors ``e_1..e_M`` of dimension ``d`` (``vectors``, shape ``(M, d)``), nearest-code
    lookup, and optionally the exponential-moving-average update.

    Without ``ema`` the vectors are a parameter, learned through the codebook loss. With ``ema`` they
    are a buffer recomputed at each :meth:`update` from running counts :math:`N_i` and sums :math:`m_i`
    of the encoder outputs assigned to code :math:`i` (van den Oord et al. 2017, appendix A.1; the
    notes' eq. 8): with :math:`n_i` outputs assigned in the batch,

    .. math::

        N_i \leftarrow \gamma N_i + (1 - \gamma) n_i, \qquad
        m_i \leftarrow \gamma m_i + (1 - \gamma) \sum_{j: k_j = i} E(x)_j, \qquad
        e_i = m_i / \tilde N_i, \quad \tilde N_i = \frac{N_i + \epsilon}{\sum_j N_j + M\epsilon} \sum_j N_j,

    where :math:`\tilde N_i` is the Laplace-smoothed count, which keeps an unused code's division
    finite (the smoothing is not in the paper's text; it is in DeepMind Sonnet's ``VectorQuantizerEMA``,
    the implementation the authors released, and VQ-VAE-2, Razavi et al. 2019, trains with these EMA
    updates). The smoothing is applied when dividing, not stored. The
    running statistics start at one pseudo-observation of each initial code (:math:`N_i = 1`,
    :math:`m_i = e_i`), so :math:`e = m / N` holds before the first update and an unused code stays
    put until its count has decayed to about :math:`\epsilon` (:math:`\gamma^t \approx \epsilon`, about
    1,100 steps at :math:`\gamma = 0.99`) and then shrinks toward 0.

    The update is a side effect of the guide's forward pass in a training step, like batch norm's
    running statistics: every engine applies it once per step (the captured and compiled engines
    record it in their graph, :mod:`pyrovae.capture`). Pyro's ``Jit*`` objectives cannot:
    ``torch.jit.trace`` keeps only what reaches the loss, so the traced step would leave the buffers
    alone after the first step. The engines refuse the combination (:attr:`jit_blocker`), and
    :meth:`update` refuses to run under ``torch.jit.trace`` (plain ``SVI`` with ``JitTrace_ELBO``).

    Args:
        num_codes: ``M >= 1``.
        code_dim: ``d >= 1``.
        ema: update the vectors by moving averages instead of gradients.
        decay: :math:`\gamma \in (0, 1)`.
        epsilon: :math:`\epsilon > 0` of the Laplace smoothing.
    """

    def __init__(self, num_codes: int, code_dim: int, ema: bool = False, decay: float = 0.99, epsilon: float = 1e-5):
        super().__init__()
        if num_codes < 1:
            raise ValueError(f"the codebook needs at least one code (num_codes M >= 1), got {num_codes}")
        if code_dim < 1:
            raise ValueError(f"code_dim d must be at least 1, got {code_dim}")
        if not 0 < decay < 1:
            raise ValueError(f"the EMA decay must lie in (0, 1), got {decay}")
        if not epsilon > 0:
            raise ValueError(f"the EMA epsilon (Laplace smoothing) must be positive, got {epsilon}")
        self.num_codes, self.code_dim, self.ema = num_codes, code_dim, ema
        self.decay, self.epsilon = float(decay), float(epsilon)
        # Small codes, U(-1/M, 1/M), as in common PyTorch ports: the codes start near the origin,
        # around which the freshly initialised encoder's outputs lie.
        initial = torch.empty(num_codes, code_dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        if ema:
            self.register_buffer("vectors", initial)
            self.register_buffer("cluster_size", torch.ones(num_codes))
            self.register_buffer("code_sum", initial.clone())
        else:
            self.vectors = nn.Parameter(initial)

    @property
    def jit_blocker(self) -> str | None:
        """Why Pyro's ``Jit*`` objectives cannot train this codebook, or ``None``
        (:func:`pyrovae.engines.check_jit_side_effects` reads it)."""
        return JIT_DROPS_EMA if self.ema else None

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Indices ``(B, h, w)`` of the code nearest (squared Euclidean distance) to each vector of ``z`` ``(B, d, h, w)``."""
        if z.dim() != 4 or z.shape[1] != self.code_dim:
            raise ValueError(f"z must have shape (batch, {self.code_dim}, h, w), got {tuple(z.shape)}")
        flat = z.detach().movedim(1, -1).reshape(-1, self.code_dim)
        codes = self.vectors.detach()
        distances = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.T + codes.pow(2).sum(1)
        return distances.argmin(1).reshape(z.shape[0], *z.shape[2:])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The codes ``(B, d, h, w)`` at ``indices`` ``(B, h, w)``."""
        return F.embedding(indices, self.vectors).movedim(-1, 1)

    @torch.no_grad()
    def update(self, z: torch.Tensor, indices: torch.Tensor) -> None:
        """One moving-average step from encoder outputs ``z`` ``(B, d, h, w)`` assigned to ``indices`` ``(B, h, w)``."""
        if not self.ema:
            raise RuntimeError("update() is the EMA codebook's; this codebook learns by gradient (ema=False)")
        if torch.jit.is_tracing():
            raise ValueError(JIT_DROPS_EMA)
        flat = z.detach().movedim(1, -1).reshape(-1, self.code_dim)
        index = indices.reshape(-1)
        counts = torch.zeros_like(self.cluster_size).index_add_(0, index, torch.ones_like(index, dtype=flat.dtype))
        sums = torch.zeros_like(self.code_sum).index_add_(0, index, flat)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.code_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.num_codes * self.epsilon) * total
        self.vectors.copy_(self.code_sum / smoothed.unsqueeze(1))


def image_shape(shape) -> tuple[int, int, int]:
    """A data set's example shape as ``(C, H, W)``: ``(H, W)`` gains one channel."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return shape
    raise ValueError(f"the VQ-VAE takes images (H, W) or (C, H, W); got examples of shape {shape}")


class VQVAE(PriorThenLikelihood, nn.Module):
    """The VQ-VAE's generative model: ``forward(x, num_data=None)`` is the Pyro model (see the module docstring).

    Args:
        image_shape: ``(C, H, W)``; ``H`` and ``W`` divisible by ``2 ** downsamplings``.
        num_codes: ``M``, the codebook size.
        code_dim: ``d``, the dimension of a code.
        downsamplings: halvings of the height and width between image and latent grid.
        hidden_channels, residual_blocks, residual_channels: the default decoder
            (:func:`~pyrovae.nn.convolutional_decoder`).
        likelihood: ``"bernoulli"``, ``"gaussian"`` or ``"continuous_bernoulli"``.
        likelihood_scale: for ``"gaussian"``, a fixed scale; ``None`` learns one per pixel.
        ema, ema_decay, ema_epsilon: the codebook's update (``Codebook`` in ``pyrovae.models.vqvae``).
        decoder: a module mapping ``(..., d, h, w)`` to likelihood parameters ``(..., C, H, W)`` (any
            leading batch dims, as :class:`~pyrovae.nn.ImageLayers`; importance sampling adds one).
        name: the prefix of its parameters in Pyro's parameter store.
    """

    max_plate_nesting = 1

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_codes: int = 512,
        code_dim: int = 16,
        downsamplings: int = 2,
        hidden_channels: int = 64,
        residual_blocks: int = 2,
        residual_channels: int = 32,
        likelihood: str = "bernoulli",
        likelihood_scale: float | None = None,
        ema: bool = False,
        ema_decay: float = 0.99,
        ema_epsilon: float = 1e-5,
        decoder: nn.Module | None = None,
        name: str = "vqvae",
    ):
        super().__init__()
        channels, height, width = image_shape
        if downsamplings < 1:
            raise ValueError(f"downsamplings must be at least 1, got {downsamplings}")
        factor = 2 ** downsamplings
        if height % factor or width % factor:
            raise ValueError(f"images of {height}x{width} cannot be halved {downsamplings} times "
                             f"(height and width must be divisible by {factor})")
        self.name, self.image_shape, self.downsamplings = name, (channels, height, width), downsamplings
        self.codebook = Codebook(num_codes, code_dim, ema, ema_decay, ema_epsilon)
        self.grid_shape = (height // factor, width // factor)
        options = {"scale": likelihood_scale} if likelihood == "gaussian" else {}
        self.likelihood = make_likelihood(likelihood, self.image_shape, **options)
        self.inputs = InputSpec(self.image_shape, kind="image", support=self.likelihood.support)
        self.decoder = decoder if decoder is not None else convolutional_decoder(
            code_dim, hidden_channels, channels, downsamplings, residual_blocks, residual_channels)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(d, h, w)``, the shape of one latent grid."""
        return (self.codebook.code_dim, *self.grid_shape)

    def latent_grid(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` as grids ``(..., d, h, w)``; flattened codes ``(..., d*h*w)`` (the guide's ``encode``) are reshaped."""
        if tuple(z.shape[-3:]) == self.latent_shape:
            return z
        if z.shape[-1] == math.prod(self.latent_shape):
            return z.reshape(*z.shape[:-1], *self.latent_shape)
        raise ValueError(f"z must have shape (..., {', '.join(map(str, self.latent_shape))}) or "
                         f"(..., {math.prod(self.latent_shape)}), got {tuple(z.shape)}")

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        """``p(x | z)`` for grids of codes or their flattening."""
        return self.likelihood.distribution(self.decoder(self.latent_grid(z)))

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """``E[x | z]``."""
        return self.likelihood.mean(self.decoder(self.latent_grid(z)))

    def prior(self, batch_size: int) -> dist.TorchDistribution:
        """``p(z)``, uniform over the ``M^(hw)`` grids of codes, for a batch (a ``UniformCodes``)."""
        return UniformCodes(self.codebook.vectors, self.grid_shape, (batch_size,))

    @torch.no_grad()
    def sample_images(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images ``E[x | z]`` for ``z`` drawn from the uniform prior: ``(num_samples, C, H, W)``.
        They show what independent uniform codes decode to, not digits: the VQ-VAE's prior is not
        trained (the paper fits a PixelCNN over the codes to sample)."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        indices = torch.randint(self.codebook.num_codes, (num_samples, *self.grid_shape), generator=generator)
        return self.decode_mean(self.codebook.lookup(indices.to(self.codebook.vectors.device)))


@torch.no_grad()
def codebook_metrics(model: VQVAE, guide, data, batch_size: int = 1000) -> dict[str, float]:
    r"""Reconstruction and codebook usage of ``data`` under the quantised codes :math:`z_q(x)`.

    Returns:
        ``reconstruction_nll``: :math:`-\log p(x \mid z_q(x))` in nats per example (the loss's first term);
        ``reconstruction_mse``: :math:`\lVert x - E[x \mid z_q(x)] \rVert^2` per example (summed over
        pixels, as :func:`pyrovae.evaluate.reconstruction_error`; divide by the pixel count for per pixel);
        ``perplexity``: :math:`\exp(-\sum_i p_i \log p_i)` of the frequencies :math:`p_i` with which
        code :math:`i` is chosen over all positions of all examples (1 when one code is used, ``M``
        when all are used equally);
        ``codes_used``: the number of codes chosen at least once.
    """
    dataset = as_dataset(data)
    spec = input_spec(model, dataset)
    counts = torch.zeros(model.codebook.num_codes)
    nll = squared_error = 0.0
    for x, _ in dataset.batches(batch_size, shuffle=False):
        x = spec.shape_batch(x)
        indices = guide.code_indices(x)
        output = model.decoder(model.codebook.lookup(indices))
        nll -= model.likelihood.distribution(output).log_prob(x).sum().item()
        squared_error += (x - model.likelihood.mean(output)).pow(2).sum().item()
        counts += torch.bincount(indices.reshape(-1).cpu(), minlength=model.codebook.num_codes)
    frequencies = counts / counts.sum()
    entropy = -(frequencies[frequencies > 0] * frequencies[frequencies > 0].log()).sum()
    return {"reconstruction_nll": nll / len(dataset), "reconstruction_mse": squared_error / len(dataset),
            "perplexity": float(entropy.exp()), "codes_used": int((counts > 0).sum())}


class CodebookMetrics(Callback):
    """Add :func:`codebook_metrics` of ``data`` to each epoch's row, keys prefixed by ``prefix``
    (``test_perplexity``, ...). It runs after the epoch's evaluation, with the model and guide in
    evaluation mode."""

    def __init__(self, model: VQVAE, guide, data, prefix: str = "test_"):
        self.model, self.guide, self.data, self.prefix = model, guide, as_dataset(data), prefix

    def on_epoch_end(self, epoch: int, row: dict, run) -> None:
        metrics = codebook_metrics(self.model, self.guide, self.data)
        row.update({self.prefix + key: value for key, value in metrics.items()})


@dataclass
class VQVAEConfig:
    """Hyperparameters of :class:`VQVAE` and its guide (the defaults train on the 8x8 digits in seconds;
    the loss weights and EMA settings are the paper's)."""

    num_codes: int = field(default=32, metadata={"help": "codebook size M", "min": 1})
    code_dim: int = field(default=8, metadata={"help": "dimension d of a code", "min": 1})
    downsamplings: int = field(default=1, metadata={
        "help": "stride-2 convolutions between image and latent grid (grid = image / 2^k)", "min": 1})
    hidden_channels: int = field(default=32, metadata={"help": "channels of the encoder and decoder", "min": 1})
    residual_blocks: int = field(default=1, metadata={"help": "residual blocks in the encoder and decoder", "min": 0})
    residual_channels: int = field(default=16, metadata={"help": "channels inside a residual block", "min": 1})
    commitment_cost: float = field(default=0.25, metadata={"help": "beta, weight of the commitment loss", "min": 0})
    ema: bool = field(default=False, metadata={"help": "update the codebook by moving averages (no codebook loss)"})
    ema_decay: float = field(default=0.99, metadata={"help": "decay gamma of the EMA codebook, in (0, 1)",
                                                     "positive": True})
    ema_epsilon: float = field(default=1e-5, metadata={"help": "Laplace smoothing of the EMA counts",
                                                       "positive": True})
    likelihood: str = field(default="bernoulli", metadata={"help": "p(x | z)", "choices": sorted(LIKELIHOODS)})
    likelihood_scale: float | None = field(default=None, metadata={
        "help": "fixed scale of the gaussian likelihood (none: learned per pixel)", "positive": True})

    def __post_init__(self):
        # An open interval is not a field bound the registry's checks express; refuse it where it enters.
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"--ema-decay must lie in (0, 1), got {self.ema_decay}")


def build_vqvae(config: VQVAEConfig, data) -> VQVAE:
    """The :class:`VQVAE` of ``config`` for images of ``data``."""
    return VQVAE(image_shape(data.image_shape), config.num_codes, config.code_dim, config.downsamplings,
                 config.hidden_channels, config.residual_blocks, config.residual_channels, config.likelihood,
                 config.likelihood_scale, config.ema, config.ema_decay, config.ema_epsilon)


# The paper's architecture (two 4x4 stride-2 convolutions, two residual blocks, K = 512, beta = 0.25)
# at a quarter of its 256 channels, so that an epoch of MNIST takes about a minute on one CPU thread;
# Adam 1e-3 rather than the paper's 2e-4 (its 250,000 steps on CIFAR-10 are not the budget here).
_MNIST = dict(binarize="dynamic", likelihood="bernoulli", num_codes=512, code_dim=16, downsamplings=2,
              hidden_channels=64, residual_blocks=2, residual_channels=32, batch_size=128, lr=1e-3, epochs=20)

register_model(
    "vqvae",
    VQVAEConfig,
    build=build_vqvae,
    default_guide="nearest",
    description="VQ-VAE: codebook, nearest-code Delta guide, straight-through gradients, optional EMA codebook",
    # Reconstruction and codebook perplexity on the test set every epoch (in the CLI too).
    callbacks=lambda config, model, guide, test: [] if test is None else [CodebookMetrics(model, guide, test)],
    presets={
        "tiny": dict(dataset="digits", num_codes=8, code_dim=4, downsamplings=1, hidden_channels=8,
                     residual_blocks=0, residual_channels=4, epochs=1, batch_size=64),
        "digits": dict(dataset="digits", num_codes=32, code_dim=8, downsamplings=1, hidden_channels=32,
                       residual_blocks=1, residual_channels=16, epochs=100, batch_size=64, lr=1e-3),
        "mnist": dict(dataset="mnist", **_MNIST),
        "mnist-ema": dict(dataset="mnist", ema=True, **_MNIST),
        "fashion-mnist": dict(dataset="fashion-mnist", **_MNIST),
    },
)
