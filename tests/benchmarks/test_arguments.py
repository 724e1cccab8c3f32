"""Every benchmark reports a wrong argument in one line, as the ``pyrovae`` CLI does, not after a usage block."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

import benchmarks

#: Every benchmark module with a command line (a ``main``).
BENCHMARKS = sorted(path.stem for path in Path(benchmarks.__file__).parent.glob("*.py")
                    if "\ndef main(" in path.read_text())


def test_every_command_line_benchmark_is_checked():
    assert len(BENCHMARKS) >= 13 and {"discrete_estimators", "m2", "report"} <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_misspelt_option_is_one_line_naming_it(name, monkeypatch, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--no-such-option", "3"])
    with pytest.raises(SystemExit) as stop:
        module.main()
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--no-such-option" in error and "usage" not in error, error
