"""``pyrovae train`` options: bad values are one-line errors that write nothing; ``--help`` shows every
default; the guide, likelihood, objective and thread options reach what they name."""

import argparse
import importlib.metadata
import re
import urllib.error

import pytest
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO

import pyrovae.cli
from pyrovae import registry
from pyrovae.experiment import Experiment, build_objective
from pyrovae.guides import FullCovarianceNormalGuide, NormalizingFlowGuide
from pyrovae.infer import ImportanceWeightedELBO, LogVarianceELBO, TraceEnumMeanField_ELBO, VarianceELBO
from pyrovae.infer.disarm import DisARM_ELBO
from pyrovae.infer.score_function import DifferentiableTraceGraph_ELBO
from tests.cli.invocation import QUICK, assert_one_line_error, checkpoint, refusal, run_main

TRAIN_ERRORS = [
    (["--num-particles", "0"], "--num-particles must be at least 1, got 0"),
    (["--latent-dim", "0"], "must be at least 1, got 0"),
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--lr", "0"], "--lr must be positive, got 0.0"),
    (["--lr", "-1"], "--lr must be positive, got -1.0"),
    (["--threads", "0"], "--threads must be at least 1, got 0"),
    (["--nll-samples", "-1"], "--nll-samples must be 0 or more, got -1"),
    (["--tsne-points", "-1"], "--tsne-points must be 0 or more, got -1"),
    (["--guide", "gaussian"], "argument --guide: unknown guide 'gaussian' (one of: diagonal, flow, full)"),
    (["--preset", "huge"], "argument --preset: unknown preset 'huge' (one of: burda, "),
    (["--objective", "variance", "--num-particles", "1"], "--objective variance needs --num-particles of at least 2"),
    (["--likelihood", "gaussian", "--binarize", "dynamic"], "likelihood 'gaussian' models intensities; pass --binarize none"),
]


@pytest.mark.parametrize("options, expected", TRAIN_ERRORS, ids=[" ".join(o) for o, _ in TRAIN_ERRORS])
def test_a_bad_train_option_is_a_one_line_error_and_writes_nothing(tmp_path, capsys, options, expected):
    message = refusal(["train", "--out", tmp_path / "run", *QUICK, *options], capsys)
    assert expected in message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command, expected", [
    (["sample", "{run}", "--num", "0"], "--num must be at least 1, got 0"),
    (["evaluate", "{run}", "-K", "0"], "--num-samples (-K) must be at least 1, got 0"),
    (["plot", "{run}", "--tsne-points", "-1"], "--tsne-points must be 0 or more, got -1"),
])
def test_a_bad_option_of_a_run_command_is_a_one_line_error(trained_run, capsys, command, expected):
    before = (trained_run.path / "results.json").read_bytes()
    message = refusal([part.format(run=trained_run.path) for part in command], capsys)
    assert expected in message
    assert (trained_run.path / "results.json").read_bytes() == before


def test_option_errors_reach_the_user_without_a_traceback(cli, tmp_path):
    completed = cli("train", "--out", tmp_path / "run", "--epochs", "0", *QUICK)
    assert "--epochs must be at least 1" in assert_one_line_error(completed, "train")
    completed = cli("train", "--guide", "gaussian")
    assert completed.returncode == 2 and completed.stderr.splitlines() == [
        "pyrovae train: argument --guide: unknown guide 'gaussian' (one of: diagonal, flow, full)"]


MISTAKES = [
    (["train", "--model", "vea"], "pyrovae train: argument --model: unknown model 'vea'; did you mean 'vae'?"),
    (["train", "--preset", "burdaa"], "pyrovae train: argument --preset: unknown preset 'burdaa'; did you mean 'burda'?"),
    (["train", "--guide", "ful"], "pyrovae train: argument --guide: unknown guide 'ful'; did you mean 'full'?"),
    (["train", "--model", "bernoulli-vae", "--relaxation", "step-logistc"],
     "pyrovae train: argument --relaxation: unknown relaxation 'step-logistc'; did you mean 'step-logistic'"),
    (["train", "--objective", "iwea"],
     "pyrovae train: argument --objective: unknown objective 'iwea'; did you mean 'iwae'?"),
    (["train", "--epcohs", "3"], "pyrovae train: unknown option --epcohs; did you mean --epochs? "
                                 "(pyrovae train --help lists them)"),
    (["train", "--nll-smaples=3"], "pyrovae train: unknown option --nll-smaples; did you mean --nll-samples"),
    (["evaluate", "run", "--num-smaples", "3"], "pyrovae evaluate: unknown option --num-smaples; did you mean --num-samples?"),
    (["trian"], "pyrovae: unknown command 'trian'; did you mean 'train'? (one of: train, evaluate, sample, plot, models)"),
]


@pytest.mark.parametrize("argv, expected", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_a_misspelt_name_or_option_is_one_line_from_its_command_with_the_closest_names(capsys, argv, expected):
    with pytest.raises(SystemExit) as info:
        pyrovae.cli.main(argv)
    assert info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_a_name_with_no_close_match_lists_the_choices_without_a_guess(capsys):
    message = refusal(["train", "--objective", "zzz"], capsys)
    assert "did you mean" not in message and "unknown objective 'zzz' (one of: disarm, enum," in message


def test_a_missing_data_set_names_every_path_searched(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PYROVAE_DATA_DIR", str(empty))
    monkeypatch.setenv("PYROVAE_CACHE_DIR", str(tmp_path / "cache"))
    message = refusal(["train", "--dataset", "mnist", "--data-dir", "/nonexistent", "--out", tmp_path / "run",
                       *QUICK], capsys)
    assert "'mnist' not found" in message
    for root in ("/nonexistent", str(empty), str(tmp_path / "cache")):
        assert root in message, root
    assert "--data-dir" in message and "PYROVAE_DATA_DIR" in message and "pass --download" in message
    assert "download=True" not in message and "root=" not in message  # Python's words, not a CLI user's
    assert not (tmp_path / "run").exists()


def test_a_download_without_internet_is_one_line_with_the_url_and_the_offline_way(tmp_path, capsys, monkeypatch):
    def offline(url, download_root, filename, md5):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", offline)
    monkeypatch.delenv("PYROVAE_DATA_DIR", raising=False)
    monkeypatch.setenv("PYROVAE_CACHE_DIR", str(tmp_path / "cache"))
    message = refusal(["train", "--preset", "burda", "--download", "--out", tmp_path / "run", *QUICK], capsys)
    assert message.startswith("pyrovae train: could not download 'mnist' from "
                              "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"), message
    assert "pass --data-dir DIR or set PYROVAE_DATA_DIR" in message and "root=" not in message
    assert capsys.readouterr().out == ""
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def _train_parser() -> argparse.ArgumentParser:
    parser = pyrovae.cli._parser(["train"])
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["train"]


def test_train_help_shows_a_default_for_every_option(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as info:
        pyrovae.cli.main(["train", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    # One entry per option: its line and the more deeply indented lines that continue it.
    entries = re.split(r"\n(?=  -)", text.split("options:", 1)[1])
    switches = {s for a in _train_parser()._actions if a.nargs == 0 and not isinstance(a, argparse.BooleanOptionalAction)
                for s in a.option_strings}
    checked = 0
    for entry in entries:
        entry = " ".join(entry.split())
        flag = entry.split(" ", 1)[0].rstrip(",")
        if not flag.startswith("--") or flag == "--help":
            continue
        checked += 1
        assert "(default:" in entry or flag in switches, entry
    every_option = {a.option_strings[0] for a in _train_parser()._actions if a.option_strings} - {"-h"}
    assert checked == len(every_option)
    for option in every_option | {"--latent-dim", "--lr", "--out", "--resume", "--force", "--threads", "--seed"}:
        assert option in text, option
    # The data roots, as pyrovae.data.default_roots searches them.
    assert "$PYROVAE_DATA_DIR, then $PYROVAE_CACHE_DIR or ~/.cache/pyrovae" in " ".join(text.split())


def test_version_prints_the_installed_version(cli):
    completed = cli("--version")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"pyrovae {importlib.metadata.version('pyrovae')}"


def test_version_of_a_checkout_that_was_never_installed(capsys, monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(pyrovae.cli, "version", not_installed)
    with pytest.raises(SystemExit) as info:
        pyrovae.cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("pyrovae ")


def test_models_lists_vae_with_its_guides_and_presets(capsys):
    pyrovae.cli.main(["models"])
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("vae "))
    for name in ("diagonal*", "full", "flow", "tiny", "digits", "burda", "torch-example", "yang"):
        assert name in line, name


def test_threads_sets_torch_threads(python, tmp_path):
    # OMP_NUM_THREADS=1 makes 1 torch's default: 2 can only come from --threads.
    code = ("import sys, torch; from pyrovae.cli import main; main(sys.argv[1:]); "
            "print('torch threads', torch.get_num_threads())")
    completed = python("-c", code, "train", "--out", tmp_path / "run", "--epochs", "1", "--threads", "2", *QUICK)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "torch threads 2"


def _train_one_epoch(run, *options):
    run_main("train", "--out", run, "--epochs", "1", *options, *QUICK)
    return checkpoint(run)


@pytest.mark.parametrize("guide, guide_class", [("full", FullCovarianceNormalGuide), ("flow", NormalizingFlowGuide)])
def test_guide_option_trains_that_guide(tmp_path, guide, guide_class):
    state = _train_one_epoch(tmp_path / "run", "--guide", guide)["guide"]
    expected = guide_class(64, 8, [128]).state_dict()  # digits: 64 pixels; the defaults z_dim 8, hidden [128]
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in expected.items()}


def test_gaussian_likelihood_learns_a_scale(tmp_path):
    state = _train_one_epoch(tmp_path / "run", "--likelihood", "gaussian", "--binarize", "none")["model"]
    assert state["likelihood.raw_scale"].shape == (64,)


OBJECTIVES = {
    "trace": (Trace_ELBO, None),
    "meanfield": (TraceMeanField_ELBO, None),
    "iwae": (ImportanceWeightedELBO, "standard"),
    "iwae_dreg": (ImportanceWeightedELBO, "dreg"),
    "variance": (VarianceELBO, None),
    "log_variance": (LogVarianceELBO, None),
    "enum": (TraceEnum_ELBO, None),
    "enum_meanfield": (TraceEnumMeanField_ELBO, None),
    "graph": (DifferentiableTraceGraph_ELBO, None),
    "disarm": (DisARM_ELBO, None),
}


@pytest.mark.parametrize("name", sorted(registry.OBJECTIVES))  # every name the CLI offers, mapped above
def test_each_objective_name_builds_its_class(name):
    experiment = Experiment.resolve({"objective": name, "num_particles": 3})
    objective = build_objective(experiment, model=None)
    cls, estimator = OBJECTIVES[name]
    assert type(objective) is cls
    # DisARM's --num-particles counts antithetic pairs; Pyro's num_particles counts their members.
    assert objective.num_particles == (6 if name == "disarm" else 3)
    if estimator is not None:
        assert objective.estimator == estimator


def test_every_objective_name_is_covered():
    experiment_field = pyrovae.cli.RUN_FIELDS["objective"]
    assert set(experiment_field.metadata["choices"]) == set(OBJECTIVES)
