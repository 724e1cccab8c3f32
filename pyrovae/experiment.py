"""Building a run from its settings, so a run directory's ``config.json`` rebuilds its model,
guide and data (used by the CLI for ``train``, ``evaluate``, ``sample`` and ``plot``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyrovae.data import load_dataset
from pyrovae.guides import DiagonalNormalGuide, FullCovarianceNormalGuide, NormalizingFlowGuide
from pyrovae.infer import ImportanceWeightedELBO, LogVarianceELBO, VarianceELBO
from pyrovae.models import VAE

GUIDES = {"diagonal": DiagonalNormalGuide, "full": FullCovarianceNormalGuide, "flow": NormalizingFlowGuide}
OBJECTIVES = {
    "trace": lambda s: Trace_ELBO(num_particles=s, vectorize_particles=s > 1),
    "meanfield": lambda s: TraceMeanField_ELBO(num_particles=s, vectorize_particles=s > 1),
    "iwae": lambda s: ImportanceWeightedELBO(num_particles=s),
    "iwae_dreg": lambda s: ImportanceWeightedELBO(num_particles=s, estimator="dreg"),
    "variance": lambda s: VarianceELBO(num_particles=s),
    "log_variance": lambda s: LogVarianceELBO(num_particles=s),
}


@dataclass
class ExperimentConfig:
    """Every setting of a run. The defaults train a small VAE on the bundled ``digits`` data in seconds."""

    model: str = "vae"
    dataset: str = "digits"
    likelihood: str = "bernoulli"
    binarize: str | None = "dynamic"
    dequantize: bool = False
    guide: str = "diagonal"
    objective: str = "trace"
    z_dim: int = 8
    hidden_sizes: list[int] = field(default_factory=lambda: [128])
    activation: str = "relu"
    epochs: int = 60
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    num_particles: int = 1
    data_dir: str | None = None

    def __post_init__(self):
        if self.model != "vae":
            raise ValueError(f"unknown model {self.model!r}; the CLI builds: vae")
        if self.guide not in GUIDES:
            raise ValueError(f"unknown guide {self.guide!r}; expected one of {sorted(GUIDES)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; expected one of {sorted(OBJECTIVES)}")
        if self.likelihood == "bernoulli" and self.binarize is None and self.dataset != "binarized-mnist":
            raise ValueError("likelihood 'bernoulli' needs binary data: choose --binarize static|dynamic|threshold")
        if self.likelihood != "bernoulli" and self.binarize == "dynamic":
            raise ValueError(f"likelihood {self.likelihood!r} models intensities; drop --binarize dynamic")

    def to_dict(self) -> dict:
        return asdict(self)


def build_data(config: ExperimentConfig):
    """``(train, test)`` data sets; a dynamically binarized test set is binarized once, with a fixed seed."""
    binarize = None if config.dataset == "binarized-mnist" else config.binarize
    options = dict(root=config.data_dir, binarize=binarize, dequantize=config.dequantize)
    train = load_dataset(config.dataset, "train", seed=config.seed, **options)
    test = load_dataset(config.dataset, "test", seed=config.seed + 1, **options)
    return train, test.realize(seed=config.seed + 1)


def build_model_and_guide(config: ExperimentConfig, x_dim: int):
    model = VAE(x_dim, config.z_dim, config.hidden_sizes, config.likelihood, activation=config.activation)
    guide = GUIDES[config.guide](x_dim, config.z_dim, config.hidden_sizes, activation=config.activation)
    return model, guide


def build_objective(config: ExperimentConfig):
    """The training objective named ``config.objective`` with ``config.num_particles`` particles."""
    return OBJECTIVES[config.objective](config.num_particles)
