import os
from pathlib import Path

import pyro
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

pyro.enable_validation(True)
# Test models are tiny: one thread is as fast as two and does not thrash when other work shares the cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def private_cache_dir(tmp_path_factory):
    """``$PYROVAE_CACHE_DIR`` in a temporary folder unless it is set, so a test that decompresses
    or downloads data (or searches the cache for it) never writes into ``~/.cache``."""
    if os.environ.get("PYROVAE_CACHE_DIR"):
        yield Path(os.environ["PYROVAE_CACHE_DIR"])
        return
    path = tmp_path_factory.mktemp("pyrovae-cache")
    os.environ["PYROVAE_CACHE_DIR"] = str(path)
    yield path
    del os.environ["PYROVAE_CACHE_DIR"]


@pytest.fixture(autouse=True)
def fresh_pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def float64():
    """float64 as torch's default dtype during the test, restored afterwards.

    A module opts in with ``pytestmark = pytest.mark.usefixtures("float64")``; validation, one
    thread, a cleared param store and seed 0 come from ``fresh_pyro_state`` above.
    """
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default_dtype)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data sets: ``$PYROVAE_DATA_DIR`` or ``../shared/data`` beside the checkout.

    Missing data skips the test, unless ``PYROVAE_REQUIRE_DATA=1`` (CI sets it), which fails it.
    """
    root = Path(os.environ.get("PYROVAE_DATA_DIR", SHARED_DATA))
    if not (root / "MNIST").exists():
        if os.environ.get("PYROVAE_REQUIRE_DATA") == "1":
            pytest.fail(f"real data required but not found at {root}")
        pytest.skip(f"real data not found at {root}")
    return root
