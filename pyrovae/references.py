"""The published values pyrovae is compared with, from their one home, ``pyrovae/references.json``.

Each entry is a number as its source prints it (a paper's table row, a line of the AEVB tutorial's
code or log), with the citation (a key of ``docs/references.md``) and where in the source it is. The
registry gives a model's presets their references from here, the benchmarks compare with them and
``benchmarks/report.py`` prints them; no value is typed anywhere else.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

FILE = Path(__file__).resolve().parent / "references.json"


@dataclass(frozen=True)
class Reference:
    """One published value. ``value`` is the source's number; ``comparable`` adds ``shift`` (a constant
    the source leaves out, e.g. the GMVAE tutorial's bound without p(y)'s -log 10) so that it compares
    with pyrovae's metric of the same name. ``value`` is ``None`` for a preset whose source publishes no
    number (the model of a lecture, a paper without this data set): ``where`` says so, and the preset is
    still run to its budget and reported (``benchmarks/zoo.py``) with nothing to compare against."""

    key: str
    value: float | None
    metric: str
    cite: str
    where: str
    unit: str = "nats"
    shift: float = 0.0
    epochs: int | None = None
    preset: str | None = None
    model: str | None = None
    estimator: str | None = None
    note: str | None = None

    @property
    def comparable(self) -> float | None:
        """The published value shifted onto pyrovae's metric (``value + shift``), the number a run is
        compared with; ``None`` when the source publishes no number."""
        return None if self.value is None else self.value + self.shift

    @property
    def source(self) -> str:
        """The citation and the place in the source, as one line."""
        return f"{self.cite}, {self.where}" + (f"; {self.note}" if self.note else "")


@functools.cache
def all_references() -> dict[str, Reference]:
    """Every reference by key, in the file's order."""
    entries = json.loads(FILE.read_text(encoding="utf-8"))["references"]
    return {key: Reference(key=key, **entry) for key, entry in entries.items()}


def get(key: str) -> Reference:
    """The reference stored under ``key`` (e.g. ``"rainforth2020/toy-var-w"``); a ``KeyError`` lists the known keys."""
    try:
        return all_references()[key]
    except KeyError:
        raise KeyError(f"no reference {key!r} in {FILE.name}; known: {', '.join(all_references())}") from None


def for_model(model: str) -> dict[str, dict]:
    """The references of ``model``'s presets, ``{preset: {"metric", "value", "source", "epochs", "key"}}``,
    ``value`` comparable with the run's metric of that name (``benchmarks/zoo.py`` reports beside it)."""
    found = {}
    for reference in all_references().values():
        if reference.preset and reference.preset.split("/")[0] == model:
            found[reference.preset.split("/", 1)[1]] = {
                "metric": reference.metric, "value": reference.comparable, "source": reference.source,
                "epochs": reference.epochs, "key": reference.key}
    return found


def estimator_table(prefix: str) -> dict[str, dict[str, float]]:
    """``{model: {estimator: value}}`` of the references whose key starts with ``prefix``
    (``yin-zhou2019/``: Table 2 of Yin & Zhou 2019)."""
    table: dict[str, dict[str, float]] = {}
    for reference in all_references().values():
        if reference.key.startswith(prefix) and reference.model and reference.estimator:
            table.setdefault(reference.model, {})[reference.estimator] = reference.value
    return table
