"""A run's settings and how to build a run from them.

An :class:`Experiment` is a :class:`RunConfig` (data, objective, optimisation) and the model's own
config dataclass (registered in :mod:`pyrovae.registry`), resolved in that order of precedence:
the dataclass defaults, then a preset, then explicit settings. Its flat dict is a run directory's
``config.json``, which rebuilds the same data, model, guide and objective (``pyrovae evaluate``,
``pyrovae train --resume``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import torch

from pyrovae import registry
from pyrovae.checkpoint import CONFIG, Checkpointer, load_weights
from pyrovae.data import load_dataset
from pyrovae.devices import resolve_device
from pyrovae.registry import OBJECTIVES, RUN_FIELDS, RunConfig


def check_setting(name: str, spec: dataclasses.Field, value) -> None:
    """Raise a ``ValueError`` naming the setting when ``value`` breaks its field's metadata
    (``min``, ``positive``, ``choices``; applied to each element of a list, which must not be
    empty unless ``allow_empty``)."""
    if value is None:
        return
    values = value if isinstance(value, list) else [value]
    meta = spec.metadata
    flag = " or ".join(["--" + name.replace("_", "-"), *spec.metadata.get("flags", [])])
    for v in values:
        if "choices" in meta and v not in meta["choices"]:
            raise ValueError(f"{flag} must be one of {', '.join(map(str, meta['choices']))}; got {v!r}")
        if "min" in meta and v < meta["min"]:
            raise ValueError(f"{flag} must be at least {meta['min']}, got {v}")
        if meta.get("positive") and not v > 0:
            raise ValueError(f"{flag} must be positive, got {v}")
    if isinstance(value, list) and not value and meta.get("min") and not meta.get("allow_empty"):
        raise ValueError(f"{flag} needs at least one value")


@dataclass
class Experiment:
    """A run's complete settings: ``run`` (:class:`RunConfig`) and ``model`` (the model's config)."""

    run: RunConfig
    model: Any

    @classmethod
    def resolve(cls, settings: dict | None = None) -> Experiment:
        """Defaults, then the preset named in ``settings`` (``model``/``preset``), then ``settings``;
        with no objective chosen, the model's default objective for these settings if it has one."""
        settings = {k: v for k, v in (settings or {}).items() if v is not None or k == "binarize"}
        name = settings.get("model", RunConfig.model)
        merged = {**registry.preset(name, settings.get("preset")), **settings}
        default_objective = registry.get(name).default_objective
        if "objective" not in merged and default_objective is not None:
            merged["objective"] = default_objective(merged)
        return cls.from_dict(merged)

    @classmethod
    def from_dict(cls, settings: dict) -> Experiment:
        """The experiment of a flat settings dict (a ``config.json``); unknown keys are an error."""
        name = settings.get("model", RunConfig.model)
        entry = registry.get(name)
        model_fields = entry.config_fields()
        unknown = set(settings) - set(RUN_FIELDS) - set(model_fields)
        if unknown:
            raise ValueError(f"unknown settings for model {name!r}: {', '.join(sorted(unknown))}")
        run = RunConfig(**{k: v for k, v in settings.items() if k in RUN_FIELDS})
        model = entry.config_class(**{k: v for k, v in settings.items() if k in model_fields})
        experiment = cls(run, model)
        experiment.validate()
        return experiment

    def to_dict(self) -> dict:
        """The flat settings dict: run settings and model settings together."""
        return {**dataclasses.asdict(self.run), **dataclasses.asdict(self.model)}

    @property
    def entry(self) -> registry.ModelEntry:
        """The registry entry of the experiment's model."""
        return registry.get(self.run.model)

    @property
    def guide(self) -> str:
        """The guide's name: the one chosen, else the model's default guide."""
        return self.run.guide or self.entry.default_guide

    def validate(self) -> None:
        """Raise a one-line ``ValueError`` for the first setting out of range."""
        entry = self.entry
        for name, spec in {**RUN_FIELDS, **entry.config_fields()}.items():
            source = self.run if name in RUN_FIELDS else self.model
            check_setting(name, spec, getattr(source, name))
        if self.run.guide is not None and self.run.guide not in entry.guides:
            raise ValueError(f"model {entry.name!r} has no guide {self.run.guide!r}; its guides: {', '.join(entry.guides)}")
        if self.run.preset is not None and self.run.preset not in entry.presets:
            raise ValueError(f"model {entry.name!r} has no preset {self.run.preset!r}; its presets: {', '.join(entry.presets)}")
        likelihood = getattr(self.model, "likelihood", None)
        binary_source = self.run.dataset == "binarized-mnist"
        if likelihood == "bernoulli" and self.run.binarize is None and not binary_source:
            raise ValueError("likelihood 'bernoulli' needs binary data: choose --binarize static, dynamic or threshold")
        if likelihood not in (None, "bernoulli") and self.run.binarize == "dynamic":
            raise ValueError(f"likelihood {likelihood!r} models intensities; pass --binarize none")
        if self.run.dequantize and self.run.binarize is not None:
            raise ValueError("--dequantize applies to intensities; pass --binarize none with it")
        if self.run.objective in ("variance", "log_variance") and self.run.num_particles < 2:
            raise ValueError(f"--objective {self.run.objective} needs --num-particles of at least 2 (a sample variance)")


def build_data(experiment: Experiment, data_dir=None, download: bool = False):
    """``(train, test)`` data sets, as the model's ``prepare_data`` makes them; a dynamically binarized
    test set is binarized once, with a fixed seed."""
    run = experiment.run
    binarize = None if run.dataset == "binarized-mnist" else run.binarize
    options = dict(root=data_dir, download=download, binarize=binarize, dequantize=run.dequantize)
    train = load_dataset(run.dataset, "train", seed=run.seed, **options)
    test = load_dataset(run.dataset, "test", seed=run.seed + 1, **options).realize(seed=run.seed + 1)
    prepare = experiment.entry.prepare_data
    return prepare(experiment.model, train, test) if prepare is not None else (train, test)


def build_model_and_guide(experiment: Experiment, train):
    """The model and guide of ``experiment`` for examples shaped like ``train``'s."""
    entry = experiment.entry
    model = entry.build(experiment.model, train)
    guide = entry.guides[experiment.guide](experiment.model, train, model)
    return model, guide


def build_objective(experiment: Experiment, model) -> pyro.infer.ELBO:
    """The training objective, with the plate nesting the model declares."""
    nesting = getattr(model, "max_plate_nesting", float("inf"))
    return OBJECTIVES[experiment.run.objective](experiment.run.num_particles, nesting)


def build(experiment: Experiment, data_dir=None, download: bool = False):
    """Seed, then build ``(train, test, model, guide, objective)``: the same seed gives the same run."""
    pyro.set_rng_seed(experiment.run.seed)
    train, test = build_data(experiment, data_dir, download)
    model, guide = build_model_and_guide(experiment, train)
    return train, test, model, guide, build_objective(experiment, model)


def stored_settings(run_dir: Path) -> dict:
    """The settings a run directory's ``config.json`` holds (those of its model and the run; the rest of
    the file, such as a benchmark's notes, left out): a missing or unreadable file is a one-line error."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory: no {CONFIG}")
    try:
        stored = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error.msg}, line {error.lineno})") from None
    entry = registry.get(stored.get("model", "vae"))
    names = set(RUN_FIELDS) | set(entry.config_fields())
    return {k: v for k, v in stored.items() if k in names}


def load_run(run_dir, data_dir=None, device: str = "cpu"):
    """A trained run, ready to evaluate: ``(run_dir, experiment, model, guide, test)`` with the newest
    checkpoint's weights, in evaluation mode on ``device``."""
    device = resolve_device(device, "--device")
    run_dir = Path(run_dir)
    experiment = Experiment.from_dict(stored_settings(run_dir))
    checkpoint = Checkpointer(run_dir).load()
    torch.manual_seed(experiment.run.seed)
    train, test = build_data(experiment, data_dir)
    model, guide = build_model_and_guide(experiment, train)
    load_weights(checkpoint, model, guide, run_dir)
    model.to(device), guide.to(device)
    model.eval(), guide.eval()
    return run_dir, experiment, model, guide, test
