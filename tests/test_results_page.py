"""docs/results.md matches the page benchmarks/report.py builds from the committed benchmark JSON, and the
report turns unknown, partial and malformed result files into sections rather than errors."""

from __future__ import annotations

import difflib
import json
import re

import pytest

from benchmarks import report

MACHINE = {"cpu_count": 2, "device": "cpu", "torch": "2.0", "pyro": "1.9", "python": "3.11", "torch_threads": 1,
           "platform": "Linux"}


def _mask_dates(page: str) -> str:
    return re.sub(r"\d{4}-\d{2}-\d{2} \(git commit of the JSON\)", "<date> (git commit of the JSON)", page)


def test_committed_page_matches_committed_results():
    root = report.repository_root(report.REPO)
    if root is None:
        pytest.skip("not a git checkout: the committed JSON and page cannot be read")
    committed = report.committed_text(root, report.PAGE)
    assert committed is not None, f"{report.PAGE} is not committed: run python -m benchmarks.report and commit it"
    page = report.render(report.read_committed(root))
    if report.is_shallow(root):
        # A shallow clone dates every old file by its oldest commit: compare all but the dates.
        page, committed = _mask_dates(page), _mask_dates(committed)
    if page != committed:
        diff = "".join(list(difflib.unified_diff(committed.splitlines(True), page.splitlines(True),
                                                 "committed", "rebuilt"))[:40])
        pytest.fail(f"{report.STALE}, then commit docs/results.md (this test compares the page committed at HEAD "
                    f"with the page rebuilt from the JSON committed at HEAD)\n{diff}")


def _write(directory, name, content):
    path = directory / f"{name}.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_unknown_result_gets_a_generic_section(tmp_path):
    data = {"rows": [{"b": "x|y", "a": 1.234567}, {"a": 2, "c": [1, 2]}], "score": 0.123456, "nested": {"k": 1},
            "machine": MACHINE, "command": "python -m benchmarks.new_thing --n 3"}
    _write(tmp_path, "new_thing", data)
    page = report.render(report.read_directory(tmp_path))
    assert "## `new_thing`" in page
    assert "- Command: `python -m benchmarks.new_thing --n 3`" in page
    assert "- Date: uncommitted" in page
    assert "- Machine: 2 cores, device cpu, torch 2.0, pyro 1.9" in page
    assert "| `score` | 0.1235 |" in page
    assert "| `nested` | (1 fields) |" in page
    assert "| a | b | c |" in page
    assert "| 1.235 | x\\|y | - |" in page
    assert "| 2 | - | 1, 2 |" in page
    assert "references.md" in page
    # Deterministic: the same fields in another order give the same page.
    _write(tmp_path, "new_thing", dict(reversed(list(data.items()))))
    assert report.render(report.read_directory(tmp_path)) == page


def test_malformed_and_partial_results_give_notes(tmp_path):
    _write(tmp_path, "zoo", '{"rows": [{"model": "vae"')
    _write(tmp_path, "mnist_nll", {"test_nll": 88.0, "machine": MACHINE})
    _write(tmp_path, "step_overhead", [1, 2])
    page = report.render(report.read_directory(tmp_path))
    assert "`benchmarks/results/zoo.json` is not valid JSON" in page
    assert "`benchmarks/results/mnist_nll.json` lacks fields the mnist_nll section needs" in page
    assert "| `test_nll` | 88 |" in page
    assert "holds a JSON list, not the object a benchmark writes" in page


def test_known_result_beside_its_source(tmp_path):
    row = {"model": "linear", "relaxation": "concrete", "objective": "trace", "epochs": 2, "true_bound": -120.0,
           "nll_subset_true_bound": -121.0, "nll": 110.25, "paper": "Concrete", "paper_nll": 107.3,
           "encoder_snr": 0.5, "ms_per_step": 3.0}
    budget = {"epochs": 2, "models": ["linear"], "relaxations": ["concrete", "disarm"], "data_dir": None, "seed": 0}
    _write(tmp_path, "discrete_estimators-quick", {
        "rows": [row], "anchors": {"linear": {"Concrete": 107.3}}, "budget": budget,
        "command": "python -m benchmarks.discrete_estimators", "machine": MACHINE, "date": "2030-01-02"})
    page = report.render(report.read_directory(tmp_path))
    assert "## Bernoulli-latent estimators: `discrete_estimators-quick`" in page
    assert ("- Command: `python -m benchmarks.discrete_estimators --epochs 2 --models linear "
            "--relaxations concrete disarm --seed 0`") in page
    assert "- Date: 2030-01-02 (recorded in the JSON)" in page
    assert "| 110.25 | Concrete | 107.30 | +2.95 |" in page
    assert "Only 1 of the 2 runs of the command are recorded" in page
    assert "trained 2 epochs against the `bernoulli-vae/arm-linear` preset's 1,000" in page


def test_benchmark_of_result_names():
    assert report.benchmark_of("dissertation-56") == "dissertation"
    assert report.benchmark_of("mnist_nll_long") == "mnist_nll"
    assert report.benchmark_of("dissertation") == "dissertation"
    assert report.benchmark_of("discrete_estimators") == "discrete_estimators"
    assert report.benchmark_of("zookeeper") is None


def test_dissertation_runs_over_seeds_give_their_spread(tmp_path):
    runs = [{"preset": "dissertation-fashion-8", "run": "step-logistic", "seed": seed, "settings": {}, "epochs": 12,
             "trained_on": "elbo", "test_objective": value, "true_bound": value, "dead_units": dead,
             "saturated_units": 0, "diverged": None, "minutes": 1.0, "curve": []}
            for seed, value, dead in ((0, -280.0, 2), (1, -284.0, 0))]
    summary = [{"preset": "dissertation-fashion-8", "run": "step-logistic", "settings": {}, "epochs": 12,
                "seeds": [0, 1], "diverged_seeds": [],
                "test_objective": {"mean": -282.0, "std": 2.8284, "min": -284.0, "max": -280.0},
                "dead_units": {"mean": 1.0, "std": 1.4142, "min": 0, "max": 2}}]
    _write(tmp_path, "dissertation", {"runs": runs, "summary": summary, "machine": MACHINE,
                                      "budget": {"presets": ["dissertation-fashion-8"], "runs": ["step-logistic"],
                                                 "seeds": [0, 1, 2]},
                                      "command": "python -m benchmarks.dissertation --seeds 0 1 2"})
    page = report.render(report.read_directory(tmp_path))
    assert "| `dissertation-fashion-8` | step-logistic | 1 | elbo | 12 |" in page
    assert ("| `dissertation-fashion-8` | step-logistic | 12 | 0, 1 | -282.00 ± 2.83 (-284.00 to -280.00) | - | - "
            "| 1.00 ± 1.41 (0 to 2) | - |") in page
    assert "Only 2 of the 3 runs of the command are recorded" in page
    assert "not a normalised density" not in page
    runs[1]["likelihood"] = "bernoulli_cross_entropy"
    _write(tmp_path, "dissertation", {"runs": runs, "machine": MACHINE})
    page = report.render(report.read_directory(tmp_path))
    assert "| `dissertation-fashion-8` | step-logistic* | 1 |" in page and "not a normalised density" in page
