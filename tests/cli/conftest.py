import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.invocation import cli_env, run_cli, run_python


@pytest.fixture(scope="session")
def cli_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli-cache")


@pytest.fixture(scope="session")
def cli(cli_cache):
    """``cli(*args, cwd=None, umask=None, **env)``: ``pyrovae ARGS`` in a fresh process."""

    def run(*args, cwd=None, umask=None, **env):
        return run_cli(*args, env=cli_env(cli_cache, **env), cwd=cwd, umask=umask)

    return run


@pytest.fixture(scope="session")
def python(cli_cache):
    """``python(*args)``: ``python ARGS`` in a fresh process with the environment of ``cli``."""

    def run(*args, cwd=None):
        return run_python(*args, env=cli_env(cli_cache), cwd=cwd)

    return run


@dataclass
class TrainedRun:
    path: Path
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cli) -> TrainedRun:
    """A default digits run of 3 epochs with every output (plots too), trained once under umask 022.

    Read it; a test that changes files works on ``run_copy``.
    """
    run = tmp_path_factory.mktemp("trained") / "run"
    completed = cli("train", "--out", run, "--epochs", "3", "--nll-samples", "20", "--tsne-points", "100", "--quiet",
                    umask=0o022)
    assert completed.returncode == 0, completed.stderr
    return TrainedRun(run, completed.stdout, completed.stderr)


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A private copy of ``trained_run``."""
    return Path(shutil.copytree(trained_run.path, tmp_path / "run"))
