"""The result files of ``benchmarks/results/``, as they are on disk or as committed at a git revision,
with the date of each (the git commit that last changed it, or ``uncommitted``)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = "benchmarks/results"


@dataclass(frozen=True)
class ResultFile:
    """One benchmark result: its file name, its text (``None`` if it could not be read) and its date."""

    name: str
    text: str | None
    date: str
    error: str | None = None


# --------------------------------------------------------------------------------------------- reading

def _git(repo: Path, *args: str) -> str | None:
    """``git -C repo args`` standard output, or ``None`` when git or the repository is missing."""
    try:
        completed = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return completed.stdout if completed.returncode == 0 else None


def repository_root(path: Path) -> Path | None:
    """The top of the git work tree holding ``path``, or ``None``."""
    top = _git(path, "rev-parse", "--show-toplevel")
    return Path(top.strip()) if top else None


def is_shallow(repo: Path) -> bool:
    """Whether ``repo`` is a shallow clone, whose commit dates of old files are those of its oldest commit."""
    return (_git(repo, "rev-parse", "--is-shallow-repository") or "").strip() == "true"


def commit_date(repo: Path, path: str, rev: str = "HEAD") -> str | None:
    """The date (YYYY-MM-DD) of the last commit up to ``rev`` that changed ``path``."""
    date = (_git(repo, "log", "-1", "--format=%cs", rev, "--", path) or "").strip()
    return date or None


def committed_text(repo: Path, path: str, rev: str = "HEAD") -> str | None:
    """The text of ``path`` as committed at ``rev``."""
    return _git(repo, "show", f"{rev}:{path}")


def read_directory(directory: Path) -> list[ResultFile]:
    """The ``*.json`` files in ``directory`` as they are on disk. A file that is untracked or differs
    from its committed version is dated ``uncommitted``."""
    directory = Path(directory)
    repo = repository_root(directory)
    changed = set()
    if repo is not None:
        status = _git(repo, "status", "--porcelain", "--untracked-files=all", "--", str(directory.resolve())) or ""
        changed = {(repo / line[3:].strip().strip('"')).resolve() for line in status.splitlines()}
    files = []
    for path in sorted(directory.glob("*.json")):
        try:
            text, error = path.read_text(encoding="utf-8"), None
        except (OSError, UnicodeDecodeError) as exc:
            text, error = None, f"{type(exc).__name__}: {exc}"
        date = None
        if repo is not None and path.resolve() not in changed:
            date = commit_date(repo, str(path.resolve().relative_to(repo)))
        files.append(ResultFile(path.stem, text, date or "uncommitted", error))
    return files


def read_committed(repo: Path = REPO, rev: str = "HEAD") -> list[ResultFile]:
    """The ``*.json`` files of ``benchmarks/results/`` as committed at ``rev``, with their commit dates."""
    listing = _git(repo, "ls-tree", "--name-only", f"{rev}:{RESULTS_DIR}") or ""
    files = []
    for name in sorted(line for line in listing.splitlines() if line.endswith(".json")):
        path = f"{RESULTS_DIR}/{name}"
        text = committed_text(repo, path, rev)
        files.append(ResultFile(name[: -len(".json")], text, commit_date(repo, path, rev) or "uncommitted",
                                None if text is not None else f"git show {rev}:{path} failed"))
    return files
