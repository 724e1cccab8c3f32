"""The training loop stays a short loop plus callbacks: no function of the training modules is over
60 lines, and ``fit`` takes at most 12 parameters (what a run may have beyond that is a callback)."""

import ast
import inspect
from pathlib import Path

import pytest

from pyrovae import train

PACKAGE = Path(train.__file__).parent
TRAINING_MODULES = [PACKAGE / "train.py", *sorted((PACKAGE / "callbacks").glob("*.py"))]


@pytest.mark.parametrize("path", TRAINING_MODULES, ids=lambda path: path.name)
def test_no_function_of_a_training_module_is_over_60_lines(path):
    functions = [node for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    long = {node.name: node.end_lineno - node.lineno + 1 for node in functions
            if node.end_lineno - node.lineno + 1 > 60}
    assert not long, f"{path.name}: {long}"


def test_fit_takes_at_most_12_parameters():
    assert len(inspect.signature(train.fit).parameters) <= 12
