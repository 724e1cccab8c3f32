"""Assemble ``docs/results.md`` and the generated blocks of the README and the docs from the JSON files
the benchmarks write in ``benchmarks/results/``.

Each benchmark module describes its own section (``SECTION = Section(...)`` next to its ``main``; see
:mod:`benchmarks.page`): what it measures, its numbers beside their sources' values (from
``pyrovae/references.json``), and how its arguments are recorded. This script only finds the
sections, reads the files and puts the page together, so adding a benchmark touches one file. A file no
section knows gets a generic table of its fields, and a file that cannot be read gets a note, so a new
or half-written benchmark never breaks the page. The page is deterministic (fixed order, fixed float
formats): a test rebuilds it from the committed JSON and compares it with the committed page.

Every measured figure in ``README.md`` and ``docs/`` lives in a generated block::

    <!-- results:zoo -->            (the summary of benchmarks/results/zoo.json)
    <!-- /results:zoo -->
    <!-- results:references -->     (the reference values of pyrovae/references.json)
    <!-- /results:references -->

which this script fills; the same test checks that every block matches its data.

A result's date is the ``date`` field of its JSON if it has one, else the date of the git commit that
last changed the file, else ``uncommitted``. So after a benchmark writes new results: commit the
JSON, then run this script and commit the pages.

    python -m benchmarks.report              # from the files in benchmarks/results/
    python -m benchmarks.report --committed  # from the files as committed at HEAD (what the test checks)
    python -m benchmarks.report --check      # exit 1 if a page differs from its rebuild
"""

from __future__ import annotations

import functools
import importlib
import json
import pkgutil
import re
import shlex
import sys
from pathlib import Path

from benchmarks.page import Section, cell, general, table
from benchmarks.result_files import REPO, RESULTS_DIR, ResultFile, committed_text, read_committed, read_directory
from pyrovae import references
from pyrovae.arguments import Parser

PAGE = "docs/results.md"
#: Pages holding generated blocks, besides the results page itself.
BLOCK_PAGES = ("README.md", "docs/references.md")
STALE = "is stale: run python -m benchmarks.report"
BLOCK = re.compile(r"(<!-- results:(?P<key>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=key) -->)", re.S)
#: Modules of the package that are not benchmarks.
NOT_BENCHMARKS = {"common", "page", "report", "result_files"}


# ---------------------------------------------------------------------------------------- the sections

@functools.cache
def sections() -> dict[str, Section]:
    """``{module name: its SECTION}`` for every module of ``benchmarks/`` that declares one, in page order."""
    found = {}
    for module in pkgutil.iter_modules([str(Path(__file__).resolve().parent)]):
        if module.name in NOT_BENCHMARKS:
            continue
        section = getattr(importlib.import_module(f"benchmarks.{module.name}"), "SECTION", None)
        if isinstance(section, Section):
            found[module.name] = section
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


def benchmark_of(name: str, data: dict | None = None) -> str | None:
    """The benchmark module a result file belongs to, or ``None``: the ``benchmark`` the JSON records, else
    by its name (``dissertation-56`` -> ``dissertation``): a file ``<name>.json``, ``<name>-<tag>.json`` or
    ``<name>_<tag>.json`` is a result of ``benchmarks/<name>.py``."""
    recorded = (data or {}).get("benchmark")
    if isinstance(recorded, str) and recorded in sections():
        return recorded
    for key in sorted(sections(), key=len, reverse=True):
        if name == key or (name.startswith(key) and name[len(key)] in "-_"):
            return key
    return None


def arguments(values: dict) -> str:
    """Command-line arguments for recorded ``argparse`` values, in sorted order (``None`` and ``False`` left out)."""
    words = []
    for key in sorted(values):
        value = values[key]
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            words += [flag, *(shlex.quote(str(item)) for item in value)]
        elif str(value).startswith("-") and not isinstance(value, (int, float)):
            words.append(shlex.quote(f"{flag}={value}"))  # argparse would read "-x" as an option
        else:
            words += [flag, shlex.quote(str(value))]
    return " ".join(words)


def command(name: str, data: dict) -> tuple[str, list[str]]:
    """The command that produced ``data`` and what changed the run but is not recorded (``[]``: the
    command reproduces it). The benchmark's recorded ``arguments`` make the command; for a file written
    before they were recorded, the section's ``arguments`` rebuilds what the JSON shows and names the rest."""
    script = benchmark_of(name, data)
    base = f"python -m benchmarks.{script or name}"
    if isinstance(data.get("arguments"), dict):
        return f"{base} {arguments(data['arguments'])}".strip(), []
    if script is None:
        return (data["command"] if isinstance(data.get("command"), str) else base), []
    known, missing = sections()[script].arguments(data)
    return f"{base} {arguments(known)}".strip(), list(missing)


def command_line(name: str, data: dict) -> str:
    script = benchmark_of(name, data)
    if script is not None and sections()[script].per_row_commands:
        return "each row's own, in the table"
    text, missing = command(name, data)
    if not missing:
        return f"`{text}`"
    return (f"`{text}` (**not a reproducing command**: this JSON predates the recording of the run's arguments "
            f"and does not record {'; '.join(missing)}, which changed the run)")


def date_of(result: ResultFile) -> str:
    """A ``date`` recorded in the JSON, else the git date of the file (or ``uncommitted``)."""
    try:
        recorded = json.loads(result.text).get("date") if result.text is not None else None
    except (json.JSONDecodeError, AttributeError):
        recorded = None
    if isinstance(recorded, str) and recorded:
        return f"{recorded} (recorded in the JSON)"
    return "uncommitted" if result.date == "uncommitted" else f"{result.date} (git commit of the JSON)"


def machine_line(data: dict) -> str:
    machine = data.get("machine")
    if not isinstance(machine, dict):
        return "not recorded"
    device = machine.get("device", "not recorded")
    return (f"{machine.get('cpu_count', '?')} cores, device {device}, torch {machine.get('torch', '?')}, "
            f"pyro {machine.get('pyro', '?')}, Python {machine.get('python', '?')}, "
            f"torch threads {machine.get('torch_threads', '?')} when saved, {machine.get('platform', '?')}")


def generic(data: dict) -> list[str]:
    """Every field of a result no section knows: the scalars, then each list of records as a table."""
    lines = []
    scalars = [[f"`{key}`", cell(general(data[key]))] for key in sorted(data)
               if key != "machine" and not (isinstance(data[key], list) and data[key]
                                            and all(isinstance(item, dict) for item in data[key]))]
    if scalars:
        lines += table(["field", "value"], scalars)
    for key in sorted(data):
        records = data[key]
        if key == "machine" or not (isinstance(records, list) and records and all(isinstance(r, dict) for r in records)):
            continue
        columns = sorted({column for record in records for column in record})
        lines += [f"`{key}`:", ""]
        lines += table(columns, [[cell(general(record.get(column))) for column in columns] for record in records])
    return lines


def read(result: ResultFile) -> tuple[dict | None, str | None]:
    """The JSON object of ``result``, or ``None`` and a note saying why it cannot be used."""
    file = f"`{RESULTS_DIR}/{result.name}.json`"
    if result.text is None:
        return None, f"**Note:** {file} could not be read ({result.error})."
    try:
        data = json.loads(result.text)
    except json.JSONDecodeError as error:
        return None, (f"**Note:** {file} is not valid JSON ({error}); it may be half-written by a running "
                      "benchmark. Rerun `python -m benchmarks.report` once it is complete.")
    if not isinstance(data, dict):
        return None, f"**Note:** {file} holds a JSON {type(data).__name__}, not the object a benchmark writes."
    return data, None


def rendered(result: ResultFile, data: dict, summary: bool = False) -> list[str]:
    """The lines of the section (or its summary) for ``data``, or a note and its fields if they do not fit."""
    script = benchmark_of(result.name, data)
    if script is None:
        return generic(data)
    benchmark = sections()[script]
    render = (benchmark.summary or benchmark.render) if summary else benchmark.render
    try:
        return render(data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        return [f"**Note:** `{RESULTS_DIR}/{result.name}.json` lacks fields the {script} section needs or holds "
                f"them in an unexpected form ({type(error).__name__}: {error}); its fields as recorded:", "",
                *generic(data)]


def section(result: ResultFile) -> list[str]:
    data, note = read(result)
    script = benchmark_of(result.name, data)
    benchmark = sections().get(script)
    title = f"{benchmark.title}: `{result.name}`" if benchmark else f"`{result.name}`"
    lines = [f"## {title}", ""]
    if data is None:
        return lines + [note, ""]
    derived = benchmark is None and not isinstance(data.get("command"), str)
    lines += [benchmark.measures if benchmark else "A result written by a benchmark this page has no section for; "
              "its fields as recorded.", "",
              f"- File: `{RESULTS_DIR}/{result.name}.json`",
              f"- Command: {command_line(result.name, data)}"
              + (" (from the file name: no command recorded)" if derived else ""),
              f"- Date: {date_of(result)}",
              f"- Machine: {machine_line(data)}", ""]
    return lines + rendered(result, data)


def render(results: list[ResultFile]) -> str:
    """The results page for ``results`` (known benchmarks in a fixed order, then the others by name)."""
    order = list(sections())

    def key(result: ResultFile):
        script = benchmark_of(result.name, read(result)[0])
        return (order.index(script) if script else len(order), result.name)

    lines = ["# Results", "",
             "Every number the benchmarks in `benchmarks/` reproduced, beside its source's value where there is "
             "one, with the command that produced it, its date and the machine it ran on. This page is generated "
             "from `benchmarks/results/*.json` by `python -m benchmarks.report`; do not edit it by hand. After a "
             "benchmark writes new results, commit the JSON, then rerun the report and commit this page "
             "(`tests/test_results_page.py` checks that it matches the committed JSON).", "",
             "References are cited by author and year; the full entries are in [references.md](references.md).", ""]
    results = sorted(results, key=key)
    if not results:
        lines += ["No results: `benchmarks/results/` holds no JSON files.", ""]
    lines += ["| result | date |", "| --- | --- |"]
    for result in results:
        lines.append(f"| `{result.name}` | {date_of(result)} |")
    lines.append("")
    for result in results:
        lines += section(result)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ generated blocks

def reference_table() -> list[str]:
    """Every value of ``pyrovae/references.json`` with its citation and place in the source."""
    rows = [[f"`{ref.key}`", ("none published" if ref.value is None else str(ref.value))
             + (f" ({ref.shift:+.4f} added before comparing)" if ref.shift else ""),
             cell(ref.metric), cell(ref.cite), cell(ref.where) + (f"; {cell(ref.note)}" if ref.note else "")]
            for ref in references.all_references().values()]
    return table(["key", "value", "metric", "source", "where"], rows)


def block(key: str, results: dict[str, ResultFile], results_page: str = PAGE) -> list[str]:
    """The generated lines of block ``key``: the reference values, or the summary of result ``key``."""
    if key == "references":
        return reference_table()
    result = results.get(key)
    if result is None:
        return [f"**No result `{RESULTS_DIR}/{key}.json`**: run the benchmark, commit its JSON, then "
                "`python -m benchmarks.report`.", ""]
    data, note = read(result)
    if data is None:
        return [note, ""]
    return [*rendered(result, data, summary=True),
            f"Command: {command_line(key, data)}; {date_of(result)}; "
            f"[all of it on the results page]({results_page}).", ""]


def fill_blocks(text: str, results: list[ResultFile], page: str) -> str:
    """``text`` with every ``<!-- results:KEY -->`` block filled from its data. Links are written for a
    page at ``page`` (relative to the repository)."""
    by_name = {result.name: result for result in results}
    results_page = Path(PAGE).relative_to(Path(page).parent).as_posix()

    def fill(match: re.Match) -> str:
        body = "\n".join(block(match["key"], by_name, results_page))
        return f"{match.group(1)}{body}\n{match.group(4)}"

    return BLOCK.sub(fill, text)


def pages(results: list[ResultFile], read_page) -> dict[str, str]:
    """``{path: text}`` of every generated page: the results page, and each page with blocks as
    ``read_page(path)`` gives it, its blocks filled."""
    built = {PAGE: render(results)}
    for path in BLOCK_PAGES:
        text = read_page(path)
        if text is not None:
            built[path] = fill_blocks(text, results, path)
    return built


def main(argv=None) -> int:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--committed", action="store_true",
                        help="read the JSON and pages as committed at HEAD instead of the files on disk")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if a page differs from its rebuild")
    args = parser.parse_args(argv)
    if args.committed:
        results, read_page = read_committed(REPO), lambda path: committed_text(REPO, path)
    else:
        results = read_directory(REPO / RESULTS_DIR)

        def read_page(path):
            return (REPO / path).read_text(encoding="utf-8") if (REPO / path).exists() else None
    built = pages(results, read_page)
    if args.check:
        stale = [path for path, text in built.items() if read_page(path) != text]
        for path in stale:
            print(f"{path} {STALE}", file=sys.stderr)
        if not stale:
            print(f"{', '.join(built)} are current")
        return 1 if stale else 0
    from pyrovae.io import atomic_write

    for path, text in built.items():
        if (REPO / path).exists() and (REPO / path).read_text(encoding="utf-8") == text:
            continue
        atomic_write(REPO / path, lambda handle, text=text: handle.write(text.encode("utf-8")))
        print(f"wrote {REPO / path}")
    uncommitted = [r.name for r in results if r.date == "uncommitted"]
    if uncommitted:
        print(f"uncommitted results: {', '.join(uncommitted)}; commit them, then rerun this script so the pages "
              "carry their commit dates (or use --committed to leave them out)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
