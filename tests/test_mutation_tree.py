"""The scratch tree that mutation testing of ``models/`` and ``guides/`` runs in (docs/testing.md):
the installed layout, in which ``pyrovae.models`` and ``pyrovae.guides`` are the copies, not the checkout's."""

import filecmp
import subprocess
import sys

import pytest

from tests.support.mutation_tree import REPO, build_tree, main


def test_the_tree_has_the_installed_layout_and_imports_its_own_copies(tmp_path):
    tree = build_tree(tmp_path / "tree")
    for source, target in (("models", "pyrovae/models"), ("guides", "pyrovae/guides")):
        names = sorted(path.name for path in (REPO / source).glob("*.py"))
        assert names and sorted(path.name for path in (tree / target).glob("*.py")) == names
        assert not filecmp.dircmp(REPO / source, tree / target, ignore=["__pycache__"]).diff_files
    assert (tree / "pyproject.toml").read_text() == (REPO / "pyproject.toml").read_text()
    assert (tree / "tests" / "conftest.py").exists() and not list(tree.rglob("__pycache__"))
    # mutmut puts its copy of the tree first on sys.path, as the current folder is here: the package,
    # its models and its guides must all come from there, not from the editable install.
    code = "import pyrovae.models.gmvae as m, pyrovae.guides.gmvae as g, pyrovae; print(m.__file__, g.__file__, pyrovae.__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True)
    files = result.stdout.split()
    assert files == [str(tree / "pyrovae/models/gmvae.py"), str(tree / "pyrovae/guides/gmvae.py"),
                     str(tree / "pyrovae/__init__.py")], result.stdout


def test_a_rebuild_refreshes_the_copies_keeps_the_results_and_never_takes_a_foreign_folder(tmp_path):
    tree = build_tree(tmp_path / "tree")
    (tree / "mutants").mkdir()
    (tree / "mutants" / "results").write_text("kept")
    (tree / "pyrovae" / "models" / "stale.py").write_text("")
    build_tree(tree)
    assert (tree / "mutants" / "results").read_text() == "kept"
    assert not (tree / "pyrovae" / "models" / "stale.py").exists()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not built by tests.support.mutation_tree"):
        build_tree(foreign)
    with pytest.raises(ValueError, match="would contain the checkout"):
        build_tree(REPO.parent)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_a_narrowed_tree_mutates_and_selects_only_what_it_is_given(tmp_path):
    tomllib = pytest.importorskip("tomllib")
    tree = tmp_path / "tree"
    main([str(tree), "--mutate", "pyrovae/models/vqvae.py", "--select", "tests/models/test_vqvae.py",
          "--select=--deselect=tests/models/test_vqvae.py::test_bad_configurations_are_rejected_with_their_names"])
    narrowed = tomllib.loads((tree / "pyproject.toml").read_text())
    original = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert narrowed["tool"]["mutmut"] == {
        **original["tool"]["mutmut"],
        "only_mutate": ["pyrovae/models/vqvae.py"],
        "pytest_add_cli_args_test_selection": [
            "tests/models/test_vqvae.py",
            "--deselect=tests/models/test_vqvae.py::test_bad_configurations_are_rejected_with_their_names",
            "-m", "not slow"],
    }
    # Every other section is as it was.
    assert {**narrowed["tool"], "mutmut": None} == {**original["tool"], "mutmut": None}
    assert {**narrowed, "tool": None} == {**original, "tool": None}
