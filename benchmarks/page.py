"""What a benchmark's section of the results page is made of: the :class:`Section` a benchmark module
declares next to its ``main`` (``SECTION = Section(...)``), and the fixed formats every section uses,
so that the page is deterministic and ``benchmarks/report.py`` only assembles the sections.

A section renders one result JSON into Markdown lines: what the benchmark measures, its numbers
beside their sources' values (from ``pyrovae/references.json``), and, through ``arguments``, the
command that reproduces the result. A benchmark that records its parsed arguments in the JSON
(``save_results(..., args=args)``) needs no ``arguments`` function; ``arguments`` reconstructs them for
a JSON written before they were recorded, and says which ones it cannot know.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

#: The ``arguments`` of a section for a JSON without recorded ``arguments``: ``(known arguments, what
#: changed the run but cannot be recovered from the JSON)``, e.g. ``({"steps": 60}, ["`--min-samples`"])``.
LegacyArguments = Callable[[dict], "tuple[dict, list[str]]"]


def budget_arguments(data: dict) -> tuple[dict, list[str]]:
    """The arguments older benchmarks recorded whole under ``budget`` (``vars(args)``)."""
    budget = data.get("budget")
    return (budget, []) if isinstance(budget, dict) else ({}, ["its arguments"])


@dataclass(frozen=True)
class Section:
    """One benchmark's part of the results page.

    ``render(data) -> lines`` gives the body of the section for one result JSON; ``summary(data) -> lines``
    the shorter form that fills the README's ``<!-- results:NAME -->`` block (``render`` when ``None``);
    ``arguments`` rebuilds the command of a JSON written before the benchmark recorded its arguments;
    ``order`` places the section on the page (then the result's name)."""

    title: str
    measures: str
    render: Callable[[dict], list[str]]
    summary: Callable[[dict], list[str]] | None = None
    arguments: LegacyArguments = budget_arguments
    order: int = 100
    #: Each row records its own command (runs of different settings in one file): the page prints those.
    per_row_commands: bool = False


# ------------------------------------------------------------------------------------------ formatting

def number(value, digits: int = 2) -> str:
    """``value`` with a fixed number of decimals (``-`` for a missing value)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        return f"{value:.{digits}f}"
    return cell(value)


def general(value) -> str:
    """A value of unknown meaning: floats to 4 significant digits, containers summarised."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:.4g}"
    if isinstance(value, list):
        if all(isinstance(item, (int, float, str, bool)) or item is None for item in value) and len(value) <= 8:
            return ", ".join(general(item) for item in value)
        return f"(list of {len(value)})"
    if isinstance(value, dict):
        return f"({len(value)} fields)"
    return number(value)


def cell(value) -> str:
    text = "-" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(cell(header) for header in headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def difference(value, source, digits: int = 2) -> str:
    if not isinstance(value, (int, float)) or not isinstance(source, (int, float)):
        return "-"
    return f"{value - source:+.{digits}f}"


def with_error(value, standard_error, digits: int = 2) -> str:
    """``value ± standard_error``, or ``value`` alone when the error was not recorded."""
    if not isinstance(standard_error, (int, float)):
        return number(value, digits)
    return f"{number(value, digits)} ± {number(standard_error, digits)}"


def load_average(data: dict) -> str:
    load = data.get("load_average")
    return f" Load average when the run ended: {', '.join(number(x) for x in load)}." if isinstance(load, list) else ""


# ------------------------------------------------------------------------------------------- budgets

@functools.cache
def preset_epochs(model: str, preset: str) -> int | None:
    """The epochs of a preset: a preset's settings are those that reproduce its reference result."""
    try:
        from pyrovae.experiment import Experiment

        return Experiment.resolve({"model": model, "preset": preset}).run.epochs
    except Exception:  # an unknown or renamed preset: the page says the source's budget is unknown
        return None


def budget_sentence(epochs, source_epochs, source: str) -> str:
    """Says when a run had a smaller budget than its source, from the recorded epochs."""
    if not isinstance(epochs, int) or not isinstance(source_epochs, int):
        return f"The epochs of this run or of {source} are not known, so the budgets cannot be compared."
    if epochs < source_epochs:
        return (f"This run trained {epochs} epochs against {source}'s {source_epochs:,} "
                f"({100 * epochs / source_epochs:.1f}% of its budget), so its numbers are expected to fall "
                "short of the source's.")
    return f"This run trained {epochs} epochs, at least {source}'s {source_epochs:,}."


def images_used(data: dict, count_key: str = "test_images", seed_key: str = "subset_seed") -> str:
    """Which test images a number was computed on, as recorded: all of them, or a seeded random subset."""
    count, seed = data.get(count_key), data.get(seed_key)
    if not isinstance(count, int):
        return "test images not recorded"
    if seed is None:
        return f"all {count:,} test images"
    return f"a random subset of {count:,} test images (seed {seed})"
