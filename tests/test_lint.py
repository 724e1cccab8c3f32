"""The code follows the lint rules in pyproject.toml ([tool.ruff]): imports sorted, no unused names, no
invalid escape sequences in docstrings (a SyntaxWarning from Python 3.12)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    folders = [str(ROOT / name) for name in ("pyrovae", "models", "guides", "benchmarks", "tests")]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *folders], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
