"""The contract every registered (model, guide) pair keeps, checked on its ``tiny`` preset.

As Pyro's ``tests/infer/test_valid_models.py`` runs every inference algorithm over one catalogue
of models, this module runs one set of checks over the registry: a model or guide registered
later is picked up with no edit here. Each pair must

* train: one step of :func:`pyrovae.train.fit`, with the model's own fit options, changes the
  model's and the guide's weights and logs only finite numbers;
* agree on sites: every latent of the model is sampled by the guide under the same name and
  shape, the guide samples nothing else, and the observed site ``"x"`` is the batch as the
  model's :class:`~pyrovae.validation.InputSpec` shapes it, with the batch shape of its plates;
* reject bad input where it enters: a wrong shape, non-binary data for a binary likelihood,
  out-of-range labels for a model that takes labels;
* scale to the data set: ``num_data=N`` multiplies a batch's loss by ``N / B``;
* survive a save and a ``weights_only`` load into freshly built modules with the same ELBO.
"""

import dataclasses
import warnings

import pyro
import pyro.poutine as poutine
import pytest
import torch

from pyrovae import registry
from pyrovae.evaluate import default_elbo, input_spec
from pyrovae.experiment import Experiment, build, build_model_and_guide
from pyrovae.io import save_torch
from pyrovae.nn import ACTIVATIONS, DATA_PLATE
from pyrovae.relaxations import RELAXATIONS
from pyrovae.train import fit

PAIRS = [(name, guide) for name, entry in sorted(registry.models().items()) for guide in sorted(entry.guides)]
BATCH = 8


@pytest.fixture(params=PAIRS, ids=[f"{model}-{guide}" for model, guide in PAIRS])
def tiny(request):
    """``(experiment, train, test, model, guide, objective)`` built from the pair's ``tiny`` preset."""
    name, guide = request.param
    experiment = Experiment.resolve({"model": name, "preset": registry.TINY_PRESET, "guide": guide})
    return (experiment, *build(experiment))


def first_batch(model, data, size=BATCH):
    """The model's positional arguments for the first ``size`` examples of ``data``."""
    x, y = next(data.batches(size, shuffle=False))
    return input_spec(model, data).arguments(x, y)


def latent_sites(trace):
    return {name: site for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and type(site["fn"]).__name__ != "_Subsample"}


def elbo_at_fixed_noise(model, guide, args, seed=11, **kwargs):
    model.eval(), guide.eval()
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        # TraceEnum_ELBO for a guide that enumerates a site: Trace_ELBO would sample it, and Pyro warn.
        elbo = default_elbo(model, guide, args, max_plate_nesting=model.max_plate_nesting)
        return elbo.loss(model, guide, *args, **kwargs)


def weights(module):
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def test_one_training_step_changes_model_and_guide(tiny):
    experiment, train, test, model, guide, objective = tiny
    batch_size = experiment.run.batch_size
    before = {"model": weights(model), "guide": weights(guide)}
    test = test.subset(BATCH)
    # With the model's own callbacks (diagnostics, annealing, metrics), as the CLI passes them.
    callbacks = experiment.entry.training_callbacks(experiment.model, model, guide, test)
    history = fit(model, guide, objective, train.subset(batch_size), test, epochs=1,
                  batch_size=batch_size, lr=experiment.run.lr, seed=experiment.run.seed, callbacks=callbacks)
    row = history.rows[0]
    assert len(history.rows) == 1 and torch.isfinite(torch.tensor([float(v) for v in row.values()])).all(), row
    for owner, module in (("model", model), ("guide", guide)):
        changed = [name for name, value in weights(module).items() if not torch.equal(value, before[owner][name])]
        assert changed, f"one step of {experiment.run.objective} left every {owner} weight unchanged"


def test_guide_samples_every_model_latent_with_its_shape(tiny):
    _, train, _, model, guide, _ = tiny
    args = first_batch(model, train)
    guide_trace = poutine.trace(guide).get_trace(*args)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    model_latents, guide_latents = latent_sites(model_trace), latent_sites(guide_trace)
    assert model_latents, "the model has no latent site"
    assert set(guide_latents) == set(model_latents), (sorted(guide_latents), sorted(model_latents))
    for name, site in model_latents.items():
        expected = tuple(site["fn"].batch_shape + site["fn"].event_shape)
        assert tuple(guide_latents[name]["value"].shape) == expected, name
        assert tuple(guide_latents[name]["fn"].event_shape) == tuple(site["fn"].event_shape), name

    x = model_trace.nodes["x"]
    assert x["is_observed"] and torch.equal(x["value"], args[0])
    plates = {frame.name: frame for frame in x["cond_indep_stack"] if frame.vectorized}
    assert plates[DATA_PLATE].size == BATCH and plates[DATA_PLATE].dim is not None
    nesting = max(-frame.dim for frame in plates.values())
    assert nesting <= model.max_plate_nesting
    plate_shape = [1] * nesting
    for frame in plates.values():
        plate_shape[frame.dim] = frame.size
    assert tuple(x["fn"].batch_shape) == tuple(plate_shape)
    assert tuple(x["fn"].batch_shape + x["fn"].event_shape) == tuple(args[0].shape)
    # Pyro's own checks of every site against its plates, at the declared nesting.
    assert torch.isfinite(torch.tensor(elbo_at_fixed_noise(model, guide, args)))


def test_bad_input_is_rejected_where_it_enters(tiny):
    _, train, _, model, guide, _ = tiny
    spec = input_spec(model, train)
    args = first_batch(model, train)
    x, rest = args[0], args[1:]
    wrong_shape = torch.zeros(*x.shape[:-1], x.shape[-1] + 1)
    for module in (model, guide):
        with pytest.raises(ValueError, match="shape"):
            module(wrong_shape, *rest)
    if spec.support == "binary":
        with pytest.raises(ValueError, match="binary"):
            model(torch.full_like(x, 0.5), *rest)
    if spec.support == "unit_interval":
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            model(torch.full_like(x, 1.5), *rest)
    if spec.takes_labels:
        with pytest.raises(ValueError, match="labels"):
            model(x, torch.full((x.shape[0],), spec.num_classes))


def test_data_plate_scales_the_loss_to_the_data_set(tiny):
    _, train, _, model, guide, _ = tiny
    args = first_batch(model, train)
    batch = elbo_at_fixed_noise(model, guide, args)
    scaled = elbo_at_fixed_noise(model, guide, args, num_data=10 * BATCH)
    assert scaled == pytest.approx(10 * batch, rel=1e-5)
    with pytest.raises(ValueError, match="smaller than the batch size"):
        model(*args, num_data=BATCH - 1)


def test_weights_survive_a_save_and_a_weights_only_load(tiny, tmp_path):
    experiment, train, _, model, guide, objective = tiny
    fit(model, guide, objective, train.subset(BATCH), epochs=1, batch_size=BATCH)
    args = first_batch(model, train)
    trained = elbo_at_fixed_noise(model, guide, args)
    save_torch(tmp_path / "weights.pt", {"model": model.state_dict(), "guide": guide.state_dict()})

    pyro.set_rng_seed(experiment.run.seed + 1)  # fresh modules start from other weights
    fresh_model, fresh_guide = build_model_and_guide(experiment, train)
    assert elbo_at_fixed_noise(fresh_model, fresh_guide, args) != pytest.approx(trained, rel=1e-6)
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    fresh_model.load_state_dict(state["model"])
    fresh_guide.load_state_dict(state["guide"])
    assert elbo_at_fixed_noise(fresh_model, fresh_guide, args) == pytest.approx(trained, rel=1e-6, abs=1e-6)


def _pairs_with(setting):
    return [(model, guide) for model, guide in PAIRS
            if setting in {f.name for f in dataclasses.fields(registry.models()[model].config_class)}]


def _built(name, guide, **settings):
    experiment = Experiment.resolve({"model": name, "preset": registry.TINY_PRESET, "guide": guide, **settings})
    _, _, model, guide, _ = build(experiment)
    return model, guide


@pytest.mark.parametrize("name, guide", _pairs_with("activation"), ids=lambda value: value)
def test_the_activation_setting_is_every_hidden_activation_of_model_and_guide(name, guide):
    """One network left at a default activation trains another model than the one asked for. (The
    flow guide's autoregressive networks are Pyro's, with their own ReLU.)"""
    for activation in ("tanh", "elu"):  # no model's default
        for module in _built(name, guide, activation=activation):
            used = {type(m) for path, m in module.named_modules() if not path.startswith("flows.")}
            used &= set(ACTIVATIONS.values())
            assert used == {ACTIVATIONS[activation]}, (type(module).__name__, activation, used)


@pytest.mark.parametrize("name, guide", _pairs_with("glorot_init"), ids=lambda value: value)
def test_glorot_init_gives_every_linear_layer_zero_biases_in_model_and_guide(name, guide):
    for glorot in (True, False):
        for module in _built(name, guide, glorot_init=glorot):
            biases = [m.bias for m in module.modules() if isinstance(m, torch.nn.Linear)]
            assert biases and all(torch.equal(b, torch.zeros_like(b)) for b in biases) == glorot, type(module).__name__


def _train_three_steps(experiment, engine):
    train, test, model, guide, objective = build(experiment)
    callbacks = experiment.entry.training_callbacks(experiment.model, model, guide, test.subset(BATCH))
    batch_size = experiment.run.batch_size
    fit(model, guide, objective, train.subset(3 * batch_size), epochs=1, batch_size=batch_size,
        lr=experiment.run.lr, seed=experiment.run.seed, engine=engine, callbacks=callbacks)
    return [value.detach().clone() for module in (model, guide) for value in module.state_dict().values()]


#: Objectives whose loss cannot be captured yet, and where (none since enumeration is captured through
#: pyrovae.infer.dice.MaskFreeDice).
MAY_FALL_BACK: dict[str, str] = {}
#: Objectives whose captured run matches the module engine's to float rounding rather than bit for bit:
#: one enumerated loss and its gradients are bit-identical on the same noise (tests/engines/test_enumeration.py),
#: but three steps of fit differ by up to 2.2e-7 in weights of size up to 2 (cause not yet found). A frozen
#: decision would move them by far more.
ROUNDING = {"enum": 1e-6, "enum_meanfield": 1e-6}

CAPTURE_CASES = [(model, guide, None) for model, guide in PAIRS] + \
    [("bernoulli-vae", None, relaxation) for relaxation in sorted(RELAXATIONS)]


@pytest.mark.parametrize("name, guide, relaxation", CAPTURE_CASES,
                         ids=[f"{m}-{g or r}" for m, g, r in CAPTURE_CASES])
def test_the_captured_engine_trains_as_the_module_engine_or_says_why_not(name, guide, relaxation):
    """``engine="auto"`` runs of 2,000 steps or more capture the loss (:mod:`pyrovae.capture`). A
    captured graph replays tensor operations only, so an objective that took a Python decision on
    a tensor's value would be frozen at the capture's decision. For every model, guide and
    relaxation, three steps on the captured engine must give the module engine's weights exactly,
    or the capture must be refused (one warning) and the module engine used."""
    settings = {"model": name, "preset": registry.TINY_PRESET}
    settings.update({"guide": guide} if guide else {"relaxation": relaxation})
    if relaxation == "variance-loss":
        settings["num_particles"] = 4  # a sample variance needs two or more
    experiment = Experiment.resolve(settings)
    module = _train_three_steps(experiment, "module")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        captured = _train_three_steps(experiment, "captured")
    fell_back = [str(w.message) for w in caught if "runs eagerly instead" in str(w.message)]
    # A fallback runs the module engine, so the comparison below would hold trivially: only the
    # objectives known to resist capture may fall back, for their known reason.
    reason = MAY_FALL_BACK.get(experiment.run.objective)
    assert len(fell_back) <= (1 if reason else 0), (experiment.run.objective, fell_back)
    assert all(reason in message for message in fell_back), fell_back
    # A refused capture leaves the random stream alone, so the run is the module engine's either way.
    tolerance = ROUNDING.get(experiment.run.objective)
    same = (lambda a, b: torch.allclose(a, b, rtol=0, atol=tolerance)) if tolerance else torch.equal
    assert all(same(a, b) for a, b in zip(module, captured)), (experiment.run.objective, fell_back)
