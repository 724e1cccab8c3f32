"""The registry of models: each model file registers its name, its config dataclass, the guides it
pairs with and its named presets, and the CLI, the benchmarks and the notebooks build from here.

A model file (``models/<name>.py``) ends with::

    register_model("vae", VAEConfig, build=build_vae, presets={...}, description="...")

and a guide file (``guides/<family>.py``) with::

    register_guide("vae", "diagonal", build_diagonal_guide)

The run settings every model shares (data set, objective, optimisation) are :class:`RunConfig`.
``build(config, data)`` and a guide builder ``(config, data, model)`` receive the model's config and
the training :class:`~pyrovae.data.Dataset` (its example shape and number of classes), and the guide
builder also the model it pairs with (a guide may share the model's modules, as the VRNN's shares its
LSTM); each returns the ``nn.Module``. A **preset** is a dict of settings, run settings and model settings together, that
reproduces a reference result (``vae/burda``: Burda et al. 2016's MNIST VAE); the registry checks
its keys when it is registered. Every model has a preset ``tiny``: the smallest configuration that
trains in a second, which the contract test in ``tests/models`` builds.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO

from pyrovae.data import BINARIZATIONS, DATASETS
from pyrovae.engines import ENGINES
from pyrovae.infer import (
    DifferentiableTraceGraph_ELBO,
    DisARM_ELBO,
    ImportanceWeightedELBO,
    LogVarianceELBO,
    TraceEnumMeanField_ELBO,
    VarianceELBO,
)

TINY_PRESET = "tiny"


OBJECTIVES = {
    "trace": lambda s, n: Trace_ELBO(num_particles=s, vectorize_particles=s > 1, max_plate_nesting=n),
    "meanfield": lambda s, n: TraceMeanField_ELBO(num_particles=s, vectorize_particles=s > 1, max_plate_nesting=n),
    "iwae": lambda s, n: ImportanceWeightedELBO(num_particles=s, max_plate_nesting=n),
    "iwae_dreg": lambda s, n: ImportanceWeightedELBO(num_particles=s, estimator="dreg", max_plate_nesting=n),
    "variance": lambda s, n: VarianceELBO(num_particles=s, max_plate_nesting=n),
    "log_variance": lambda s, n: LogVarianceELBO(num_particles=s, max_plate_nesting=n),
    # Score-function gradients with Rao-Blackwellization and any baselines the guide declares (NVIL).
    "graph": lambda s, n: DifferentiableTraceGraph_ELBO(num_particles=s, vectorize_particles=s > 1, max_plate_nesting=n),
    # Antithetic gradients for Bernoulli latents (Dong, Mnih & Tucker 2020).
    "disarm": lambda s, n: DisARM_ELBO(num_particles=s, max_plate_nesting=n),
    # Discrete latents marked for enumeration (config_enumerate in the guide) are summed out exactly.
    "enum": lambda s, n: TraceEnum_ELBO(num_particles=s, vectorize_particles=s > 1, max_plate_nesting=n),
    # The same, with each continuous latent's KL divergence in closed form (Yang 2022's GMVAE bound).
    "enum_meanfield": lambda s, n: TraceEnumMeanField_ELBO(num_particles=s, vectorize_particles=s > 1,
                                                           max_plate_nesting=n),
}


@dataclass
class RunConfig:
    """The settings of a run that are not the model's hyperparameters."""

    model: str = field(default="vae", metadata={"help": "registered model (see `pyrovae models`)"})
    preset: str | None = field(default=None, metadata={"help": "named settings of the model (see `pyrovae models`)"})
    guide: str | None = field(default=None, metadata={"help": "guide of the model"})
    dataset: str = field(default="digits", metadata={"help": "data set", "choices": list(DATASETS)})
    binarize: str | None = field(default="dynamic", metadata={
        "help": "binarization of the intensities", "choices": [b for b in BINARIZATIONS if b]})
    dequantize: bool = field(default=False, metadata={"help": "(k + u)/L intensities with fresh noise per batch"})
    objective: str = field(default="trace", metadata={"help": "training objective", "choices": sorted(OBJECTIVES)})
    num_particles: int = field(default=1, metadata={"help": "particles (samples) per data point", "min": 1})
    epochs: int = field(default=60, metadata={"help": "total epochs", "min": 1})
    batch_size: int = field(default=64, metadata={"help": "examples per step", "min": 1})
    lr: float = field(default=3e-3, metadata={"help": "Adam learning rate", "positive": True})
    adam_eps: float = field(default=1e-8, metadata={"help": "Adam's epsilon", "positive": True})
    seed: int = field(default=0, metadata={"help": "seeds initialisation, batches and noise", "min": 0})
    engine: str = field(default="auto", metadata={
        "help": "training engine; auto compiles the loss for runs of 20,000 steps or more and captures it (uncompiled) from 2,000", "choices": list(ENGINES)})
    device: str = field(default="cpu", metadata={
        "help": "where to train and evaluate: cpu, cuda, cuda:N, or auto (a GPU when there is one); under "
                "torchrun cuda is each rank's own GPU"})


RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}




@dataclass
class ModelEntry:
    """A registered model: ``build(config, data) -> model``; ``guides`` maps a guide name to its builder
    ``(config, data, model) -> guide``."""

    name: str
    config_class: type
    build: Callable
    presets: dict[str, dict]
    description: str
    default_guide: str
    guides: dict[str, Callable] = field(default_factory=dict)
    #: ``default_objective(settings) -> name``: the objective used when none is chosen, from the
    #: resolved settings (a Bernoulli-latent model trains DisARM with DisARM); ``None``: RunConfig's.
    default_objective: Callable | None = None
    #: ``callbacks(config, model, guide, test) -> list``: the :class:`~pyrovae.callbacks.Callback`\ s the
    #: model needs in every run of :func:`pyrovae.train.fit` (``Diagnostics`` to log, a callback annealing
    #: a setting or logging a metric on ``test``, the test :class:`~pyrovae.data.Dataset` or ``None``).
    callbacks: Callable | None = None
    #: ``{file name: draw}``, ``draw(model, test, title, generator) -> matplotlib Figure``: the model's
    #: own figures, drawn by ``pyrovae train`` and ``pyrovae plot`` beside the samples, reconstructions
    #: and curves every model gets (samples per class or per cluster, row-by-row generation).
    figures: dict[str, Callable] = field(default_factory=dict)
    #: ``prepare_data(config, train, test) -> (train, test)``: the data sets as the model trains and is
    #: evaluated on them (the semi-supervised M2 shows only some training labels and no test label).
    prepare_data: Callable | None = None

    @property
    def references(self) -> dict[str, dict]:
        """Published numbers the presets reproduce, ``{preset: {"metric": ..., "value": ..., "source": ...}}``
        (``metric`` a key of the run's metrics rows), from their one home ``pyrovae/references.json``;
        ``benchmarks/zoo.py`` reports beside them."""
        from pyrovae import references

        return references.for_model(self.name)

    def training_callbacks(self, config, model, guide, test=None) -> list:
        """The model's own callbacks for :func:`pyrovae.train.fit` (``[]`` if it has none)."""
        return list(self.callbacks(config, model, guide, test)) if self.callbacks is not None else []

    def config_fields(self) -> dict[str, dataclasses.Field]:
        """The fields of the model's config dataclass by name (the settings the CLI turns into flags)."""
        return {f.name: f for f in dataclasses.fields(self.config_class)}


_MODELS: dict[str, ModelEntry] = {}
#: Run settings and model settings share one namespace (one CLI flag each), so no model config may reuse these.
_RESERVED = set(RUN_FIELDS)


def register_model(name: str, config_class: type, build: Callable, presets: dict[str, dict], description: str,
                   default_guide: str, default_objective: Callable | None = None, callbacks: Callable | None = None,
                   figures: dict[str, Callable] | None = None, prepare_data: Callable | None = None) -> None:
    """Register a model. ``presets`` must include ``tiny``; their keys must be run or model settings.
    ``default_guide`` names the guide used when none is chosen (registered by a guide file).
    The published number a preset reproduces is an entry of ``pyrovae/references.json`` naming the
    preset (:mod:`pyrovae.references`), not an argument here; ``default_objective``,
    ``callbacks``, ``figures`` and ``prepare_data`` are described in :class:`ModelEntry`."""
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"{name}: the config must be a dataclass, got {config_class!r}")
    if name in _MODELS:
        raise ValueError(f"a model named {name!r} is already registered")
    clash = {f.name for f in dataclasses.fields(config_class)} & _RESERVED
    if clash:
        raise ValueError(f"{name}: config fields {sorted(clash)} clash with run settings")
    if TINY_PRESET not in presets:
        raise ValueError(f"{name}: every model needs a {TINY_PRESET!r} preset (the contract test builds it)")
    known = {f.name for f in dataclasses.fields(config_class)} | _RESERVED
    for preset, settings in presets.items():
        unknown = set(settings) - known
        if unknown:
            raise ValueError(f"preset {name}/{preset} sets unknown settings {sorted(unknown)}")
    _MODELS[name] = ModelEntry(name, config_class, build, dict(presets), description, default_guide,
                               default_objective=default_objective, callbacks=callbacks,
                               figures=dict(figures or {}), prepare_data=prepare_data)


def register_guide(model: str, name: str, build: Callable) -> None:
    """Register guide ``name`` for ``model`` (which must already be registered)."""
    if model not in _MODELS:
        importlib.import_module("pyrovae.models")  # a guide file imported before the models
    entry = _MODELS.get(model)
    if entry is None:
        raise ValueError(f"cannot register guide {name!r}: no model {model!r} is registered")
    if name in entry.guides:
        raise ValueError(f"model {model!r} already has a guide named {name!r}")
    entry.guides[name] = build


def _load_plugins() -> None:
    # Importing the packages runs every model's and guide's registration.
    importlib.import_module("pyrovae.models")
    importlib.import_module("pyrovae.guides")


def models() -> dict[str, ModelEntry]:
    """Every registered model, by name."""
    _load_plugins()
    return dict(_MODELS)


def get(name: str) -> ModelEntry:
    """The model registered as ``name``; a ``ValueError`` lists the known names otherwise."""
    entries = models()
    if name not in entries:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(entries))}")
    entry = entries[name]
    if entry.default_guide not in entry.guides:
        raise ValueError(f"model {name!r}: its default guide {entry.default_guide!r} is not registered")
    return entry


def preset(model: str, name: str | None) -> dict:
    """The settings of preset ``model/name`` (``{}`` for ``None``)."""
    if name is None:
        return {}
    entry = get(model)
    if name not in entry.presets:
        raise ValueError(f"model {model!r} has no preset {name!r}; its presets: {', '.join(sorted(entry.presets))}")
    return dict(entry.presets[name])
