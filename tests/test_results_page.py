"""docs/results.md and every generated block of the README and docs/ match what benchmarks/report.py
builds from the committed benchmark JSON; the report turns unknown, partial and malformed result files
into sections rather than errors, prints only commands that reproduce a result (or says why not), and
every benchmark describes its own section."""

from __future__ import annotations

import ast
import difflib
import json
import re
from pathlib import Path

import pytest

from benchmarks import report, result_files
from benchmarks.page import Section
from pyrovae import references, registry

MACHINE = {"cpu_count": 2, "device": "cpu", "torch": "2.0", "pyro": "1.9", "python": "3.11", "torch_threads": 1,
           "platform": "Linux"}


def _mask_dates(page: str) -> str:
    return re.sub(r"\d{4}-\d{2}-\d{2} \(git commit of the JSON\)", "<date> (git commit of the JSON)", page)


def test_committed_pages_match_committed_results():
    root = result_files.repository_root(report.REPO)
    if root is None:
        pytest.skip("not a git checkout: the committed JSON and pages cannot be read")
    assert report.committed_text(root, report.PAGE) is not None, \
        f"{report.PAGE} is not committed: run python -m benchmarks.report and commit it"
    built = report.pages(report.read_committed(root), lambda path: report.committed_text(root, path))
    assert set(built) == {report.PAGE, *report.BLOCK_PAGES}
    for path, page in built.items():
        committed = report.committed_text(root, path)
        if result_files.is_shallow(root):
            # A shallow clone dates every old file by its oldest commit: compare all but the dates.
            page, committed = _mask_dates(page), _mask_dates(committed)
        if page != committed:
            diff = "".join(list(difflib.unified_diff(committed.splitlines(True), page.splitlines(True),
                                                     "committed", "rebuilt"))[:40])
            pytest.fail(f"{path} {report.STALE}, then commit it (this test compares the page committed at HEAD "
                        f"with the page rebuilt from the JSON committed at HEAD)\n{diff}")


def test_the_readme_holds_its_figures_in_generated_blocks():
    readme = (report.REPO / "README.md").read_text(encoding="utf-8")
    keys = [match["key"] for match in report.BLOCK.finditer(readme)]
    assert {"mnist_nll", "zoo", "discrete_estimators", "dissertation"} <= set(keys)
    assert len(keys) == len(set(keys)), "a block appears twice"
    # Every opening marker has its closing marker (an unclosed one would never be filled).
    openings, closings = (re.findall(rf"^<!-- {mark}results:", readme, re.M) for mark in ("", "/"))
    assert len(openings) == len(keys) == len(closings)


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
        "rows": [row], "budget": budget, "command": "python -m benchmarks.discrete_estimators", "machine": MACHINE,
        "date": "2030-01-02"})
    page = report.render(report.read_directory(tmp_path))
    assert "## Bernoulli-latent estimators: `discrete_estimators-quick`" in page
    # An old file's budget predates --engine: the command names the module engine it ran on.
    assert ("- Command: `python -m benchmarks.discrete_estimators --engine module --epochs 2 --models linear "
            "--relaxations concrete disarm --seed 0`\n") in page
    assert "- Date: 2030-01-02 (recorded in the JSON)" in page
    # The paper's value comes from pyrovae/references.json, not from the result file.
    paper = references.get("yin-zhou2019/linear/Concrete").value
    assert f"| 110.25 | the first ? test images | Concrete | {paper:.2f} | {110.25 - paper:+.2f} |" in page
    assert "| -120.00 (1 particle) |" in page, "a one-particle bound says so"
    assert "Only 1 of the 2 runs of the command are recorded" in page
    assert "trained 2 epochs against the `bernoulli-vae/arm-linear` preset's 1,000" in page


def test_benchmark_of_result_names():
    assert report.benchmark_of("dissertation-56") == "dissertation"
    assert report.benchmark_of("mnist_nll_long") == "mnist_nll"
    assert report.benchmark_of("dissertation") == "dissertation"
    assert report.benchmark_of("discrete_estimators") == "discrete_estimators"
    assert report.benchmark_of("zookeeper") is None


def test_a_result_of_recorded_arguments_prints_them_and_an_older_one_says_what_it_lacks(tmp_path):
    rows = [{"global_batch": 100, "steps": 600, "samples_per_s_1x1": 1.0, "samples_per_s_2x1": 1.5, "speedup": 1.5,
             "runs_1x1": [1.0, 1.0]}]
    _write(tmp_path, "ddp_scaling", {"rows": rows, "machine": MACHINE})
    page = report.render(report.read_directory(tmp_path))
    assert "`python -m benchmarks.ddp_scaling --batch-sizes 100 --repeats 2` (**not a reproducing command**" in page
    assert "`--min-samples`" in page
    _write(tmp_path, "ddp_scaling", {"rows": rows, "machine": MACHINE, "arguments": {
        "batch_sizes": [100], "min_samples": 60000, "repeats": 2, "steps": 300, "warmup": 20}})
    page = report.render(report.read_directory(tmp_path))
    assert ("- Command: `python -m benchmarks.ddp_scaling --batch-sizes 100 --min-samples 60000 --repeats 2 "
            "--steps 300 --warmup 20`\n") in page


def test_recorded_arguments_leave_out_what_only_locates_files():
    from benchmarks.common import recorded_arguments

    assert recorded_arguments({"epochs": 3, "data_dir": "/data", "resume": True, "shard": [0, 2], "seed": 1}) == {
        "epochs": 3, "seed": 1}


def test_zoo_rows_old_and_new_show_epochs_done_of_the_budget(tmp_path):
    old = {"model": "cvae", "preset": "yang", "metric": "test_elbo", "pyrovae": 1800.0, "reference": 1820.1,
           "source": "Yang 2022", "epochs": 62, "preset_epochs": 70, "minutes": 22.0,
           "command": "pyrovae train --model cvae --preset yang --epochs 62"}
    new = {**old, "settings": {"reparameterize": False}, "seed": 1, "epochs": 70, "complete": True,
           "command": "python -m benchmarks.zoo --models cvae --seed 1 --threads 1 --set reparameterize=false"}
    _write(tmp_path, "zoo", {"rows": [old, new], "minutes_per_run": 22.0, "threads": 1, "machine": MACHINE})
    page = report.render(report.read_directory(tmp_path))
    assert "- Command: each row's own, in the table" in page
    assert "| 62 of 70 |" in page and "| 70 of 70 (complete) |" in page
    assert "1820.100 at epoch 69" in page, "the reference's own epoch, from pyrovae/references.json"
    # An old row's recorded `pyrovae train` command is not how it ran: the page rebuilds the benchmark's.
    assert "`python -m benchmarks.zoo --models cvae --minutes 22.0 --threads 1`" in page
    assert "pyrovae train --model cvae" not in page
    assert f"`{new['command']}`" in page and "| reparameterize=false | 1 |" in page


def test_blocks_are_filled_from_their_result_and_stale_ones_replaced(tmp_path):
    _write(tmp_path, "toy_posterior", {
        "rows": [{"guide": "step-logistic", "params": "alpha = 1.76", "Pr(z>0)": 0.8823, "ELBO": -0.79,
                  "KL to posterior": 0.0, "seconds": 7.1}],
        "log_evidence": -0.792, "arguments": {"steps": 1000, "seed": 0, "particles": 256}, "machine": MACHINE})
    results = report.read_directory(tmp_path)
    text = ("intro\n<!-- results:toy_posterior -->\nan old 0.5 typed by hand\n<!-- /results:toy_posterior -->\n"
            "<!-- results:missing -->\n<!-- /results:missing -->\noutro\n")
    filled = report.fill_blocks(text, results, "README.md")
    assert "an old 0.5" not in filled and filled.startswith("intro\n") and filled.endswith("outro\n")
    assert "| step-logistic | alpha = 1.76 | 0.8823 |" in filled
    assert "Command: `python -m benchmarks.toy_posterior --particles 256 --seed 0 --steps 1000`" in filled
    assert "[all of it on the results page](docs/results.md)" in filled
    assert "**No result `benchmarks/results/missing.json`**" in filled
    assert report.fill_blocks(filled, results, "README.md") == filled, "filling is idempotent"
    assert "](results.md)" in report.fill_blocks(text, results, "docs/references.md")


def test_every_reference_is_cited_in_docs_references_and_listed_there():
    page = (report.REPO / "docs" / "references.md").read_text(encoding="utf-8")
    keys = set(re.findall(r"^\| ([^|]+?) \| ", page, re.M)) - {"Key", "key"}
    for reference in references.all_references().values():
        assert reference.cite in keys, f"{reference.key}: {reference.cite!r} has no entry in docs/references.md"
        assert f"`{reference.key}`" in page, f"{reference.key} is not in the generated block of docs/references.md"


def test_the_registry_reads_its_references_from_the_data_file():
    for name, entry in registry.models().items():
        for preset, reference in entry.references.items():
            assert preset in entry.presets, f"{name}/{preset}: a reference names a preset that does not exist"
            assert reference["value"] == references.get(reference["key"]).comparable
    gmvae = registry.get("gmvae").references["yang"]
    assert gmvae["value"] == pytest.approx(-80.84 - 2.302585, abs=1e-6), "the tutorial's bound plus p(y)'s -log 10"


def test_every_benchmark_describes_its_own_section():
    """A benchmark is one file: a module of benchmarks/ with a main declares its SECTION, which the report finds."""
    found = report.sections()
    for path in sorted(Path(report.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        has_main = any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)
        if has_main and path.stem != "report":
            assert path.stem in found and isinstance(found[path.stem], Section), \
                f"benchmarks/{path.name} has a main but no SECTION = Section(...) for the results page"


def test_a_result_named_by_output_finds_its_benchmark_by_the_recorded_name(tmp_path):
    run = {"preset": "dissertation-8", "run": "logistic", "epochs": 3, "true_bound": -150.0}
    _write(tmp_path, "steplogistic-pair", {"runs": [run], "benchmark": "dissertation", "machine": MACHINE,
                                           "arguments": {"epochs": 3, "output": "steplogistic-pair"}})
    page = report.render(report.read_directory(tmp_path))
    assert "## StepLogistic dissertation: `steplogistic-pair`" in page
    assert "- Command: `python -m benchmarks.dissertation --epochs 3 --output steplogistic-pair`\n" in page


def test_dissertation_runs_over_seeds_give_their_spread(tmp_path):
    runs = [{"preset": "dissertation-fashion-8", "run": "step-logistic", "seed": seed, "settings": {}, "epochs": 12,
             "trained_on": "elbo", "test_objective": value, "true_bound": value, "dead_units": dead,
             "saturated_units": 0, "diverged": None, "minutes": 1.0, "curve": [],
             "command": f"python -m benchmarks.dissertation --seeds {seed}"}
            for seed, value, dead in ((0, -280.0, 2), (1, -284.0, 0))]
    summary = [{"preset": "dissertation-fashion-8", "run": "step-logistic", "settings": {}, "epochs": 12,
                "seeds": [0, 1], "diverged_seeds": [],
                "test_objective": {"mean": -282.0, "std": 2.8284, "min": -284.0, "max": -280.0},
                "dead_units": {"mean": 1.0, "std": 1.4142, "min": 0, "max": 2}}]
    _write(tmp_path, "dissertation", {"runs": runs, "summary": summary, "machine": MACHINE,
                                      "arguments": {"presets": ["dissertation-fashion-8"], "runs": ["step-logistic"],
                                                    "seeds": [0, 1, 2]}})
    page = report.render(report.read_directory(tmp_path))
    assert "| `dissertation-fashion-8` | step-logistic | 1 | elbo | 12 |" in page
    assert ("| `dissertation-fashion-8` | step-logistic | 12 | 0, 1 | -282.00 ± 2.83 (-284.00 to -280.00) | - | - "
            "| 1.00 ± 1.41 (0 to 2) | - |") in page
    assert "- `python -m benchmarks.dissertation --seeds 0`\n- `python -m benchmarks.dissertation --seeds 1`" in page
    assert "Only 2 of the 3 runs of the command are recorded" in page
    assert "not a normalised density" not in page
    runs[1]["likelihood"] = "bernoulli_cross_entropy"
    _write(tmp_path, "dissertation", {"runs": runs, "machine": MACHINE})
    page = report.render(report.read_directory(tmp_path))
    assert "| `dissertation-fashion-8` | step-logistic* | 1 |" in page and "not a normalised density" in page
