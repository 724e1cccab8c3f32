"""Build pyrovae's installed layout in a scratch folder, where mutmut can mutate ``models/`` and ``guides/``.

``pyproject.toml`` installs ``models/`` and ``guides/`` as ``pyrovae.models`` and ``pyrovae.guides``
(``[tool.setuptools.package-dir]``). mutmut copies its ``source_paths`` into ``mutants/``, names each
mutant by its file path and runs the tests with ``mutants/`` first on ``sys.path``. In the checkout a
mutant of ``models/gmvae.py`` is named ``models.gmvae.*`` while the tests import (and mutmut's
trampoline records) ``pyrovae.models.gmvae``, and the editable install resolves ``pyrovae.models``
to the unmutated ``models/``: every mutant ends "no tests".

The tree built here puts the two folders where the installed package has them::

    DEST/pyrovae/           a copy of pyrovae/
    DEST/pyrovae/models/    a copy of models/
    DEST/pyrovae/guides/    a copy of guides/
    DEST/tests/, DEST/pyproject.toml, DEST/README.md

so a mutant is named ``pyrovae.models.gmvae.*``, and the tests, run from ``DEST/mutants``, import the
mutated ``pyrovae.models`` through ``pyrovae.__path__`` (Python's path finder answers before the
editable install's finder, which setuptools appends to ``sys.meta_path``). Usage (docs/testing.md)::

    python -m tests.support.mutation_tree build/mutation
    cd build/mutation && mutmut run --max-children 1 "pyrovae.models.gmvae*"

Running it again refreshes the copies (after editing code or tests) and keeps ``DEST/mutants``, the
results that ``mutmut run NAME ...`` re-runs by name. ``/build/`` is in ``.gitignore``.

``--mutate`` and ``--select`` narrow the copy's ``[tool.mutmut]`` to some files and the tests that
cover them, so that mutmut generates and collects statistics for those alone (minutes instead of an
hour on two shared cores); a narrower selection can only kill fewer mutants::

    python -m tests.support.mutation_tree build/mut-vqvae --mutate pyrovae/models/vqvae.py \
        --select tests/models/test_vqvae.py --select=--deselect=tests/models/test_vqvae.py::test_training_...
"""

import argparse
import json
import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARKER = ".pyrovae-mutation-tree"
# (what to copy from the checkout, where it goes in the tree)
LAYOUT = (("pyrovae", "pyrovae"), ("models", "pyrovae/models"), ("guides", "pyrovae/guides"),
          ("tests", "tests"), ("pyproject.toml", "pyproject.toml"), ("README.md", "README.md"))
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def build_tree(dest: Path, repo: Path = REPO) -> Path:
    """Copy the checkout at ``repo`` into ``dest`` in the installed layout and return ``dest``.

    Refuses a ``dest`` that holds files and was not built by this function, so it never deletes
    someone's folder; the copies are replaced, ``dest/mutants`` is kept.
    """
    dest = Path(dest).resolve()
    if dest == repo or repo.is_relative_to(dest):
        raise ValueError(f"the mutation tree {dest} would contain the checkout {repo}; choose another folder")
    if dest.exists() and any(dest.iterdir()) and not (dest / MARKER).exists():
        raise ValueError(f"{dest} is not empty and was not built by tests.support.mutation_tree; choose another folder")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MARKER).write_text("built by python -m tests.support.mutation_tree; safe to delete\n")
    for _, target in LAYOUT:
        path = dest / target
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for source, target in LAYOUT:
        if (repo / source).is_dir():
            shutil.copytree(repo / source, dest / target, ignore=IGNORE)
        else:
            shutil.copy2(repo / source, dest / target)
    return dest


def narrow_mutmut_config(text: str, mutate=None, select=None) -> str:
    """``pyproject.toml``'s ``text`` with ``[tool.mutmut]``'s ``only_mutate`` replaced by ``mutate`` and its
    test selection by ``select`` (each when given), the other keys and sections unchanged."""
    import tomllib  # Python 3.11+, as mutmut 3 (the package supports 3.10)

    config = tomllib.loads(text)["tool"]["mutmut"]
    if mutate:
        config["only_mutate"] = list(mutate)
    if select:
        config["pytest_add_cli_args_test_selection"] = list(select) + ["-m", "not slow"]
    block = "[tool.mutmut]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in config.items()) + "\n"
    return re.sub(r"^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", lambda _: block, text, count=1, flags=re.S | re.M)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path, help="the scratch folder (build/mutation is git-ignored)")
    parser.add_argument("--mutate", action="append", help="a file to mutate (repeat); default: only_mutate")
    parser.add_argument("--select", action="append", help="a pytest argument of the selection (repeat; "
                        "--select=--deselect=ID for an option); -m 'not slow' is added")
    args = parser.parse_args(argv)
    dest = build_tree(args.dest)
    if args.mutate or args.select:
        config = dest / "pyproject.toml"
        config.write_text(narrow_mutmut_config(config.read_text(), args.mutate, args.select))
    print(dest)


if __name__ == "__main__":
    main()
