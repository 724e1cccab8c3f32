"""Two CPU ranks (gloo) training one run through :func:`pyrovae.train.fit`, started with
``multiprocessing`` (spawn), against a single process with the same global batch."""

from __future__ import annotations

import json
import multiprocessing

import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovae.callbacks import Checkpoint
from pyrovae.checkpoint import Checkpointer
from pyrovae.data import load_dataset
from pyrovae.engines import ModuleEngine
from pyrovae.train import fit
from tests.distributed.support import BATCH_SIZE, SCENARIOS, digits, free_port, pair, parameters, worker

WORLD = 2


def launch(scenarios: list[str], out, timeout: float = 240.0, ddp_timeout: float = 20.0) -> dict[str, list[dict]]:
    """Run ``scenarios`` on two ranks: ``{scenario: [rank 0's outcome, rank 1's]}``, each
    ``{"result": ...}``, ``{"error": ...}`` or, for a rank that wrote nothing, ``{"exitcode": ...}``."""
    context = multiprocessing.get_context("spawn")
    port = free_port()
    processes = [context.Process(target=worker, args=(rank, WORLD, port, str(out), scenarios, ddp_timeout))
                 for rank in range(WORLD)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout)
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
    outcomes = {}
    for scenario in scenarios:
        outcomes[scenario] = []
        for rank in range(WORLD):
            path = out / f"rank{rank}-{scenario}.pt"
            outcomes[scenario].append(torch.load(path, weights_only=True) if path.exists()
                                      else {"exitcode": processes[rank].exitcode})
    return outcomes


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """One launch of two ranks for every test of this module (see ``support.SCENARIOS``)."""
    out = tmp_path_factory.mktemp("ddp")
    return out, launch(list(SCENARIOS), out)


def results(session, scenario: str) -> list:
    _, outcomes = session
    for outcome in outcomes[scenario]:
        assert "result" in outcome, outcome.get("traceback", outcome)
    return [outcome["result"] for outcome in outcomes[scenario]]


@pytest.fixture(scope="module")
def trained(session):
    return session[0], results(session, "train")


def test_both_ranks_end_with_the_same_parameters_and_history(trained):
    _, (first, second) = trained
    assert torch.equal(first["params"], second["params"])
    assert first["rows"] == [{**row, "seconds": first["rows"][i]["seconds"]} for i, row in enumerate(second["rows"])]


def test_two_ranks_match_one_process_with_the_same_global_batch(trained, tmp_path):
    out, (first, _) = trained
    train, test = digits()
    model, guide = pair()
    history = fit(model, guide, Trace_ELBO(), train, test, epochs=2, batch_size=BATCH_SIZE, lr=1e-2, seed=3,
                  engine="module", callbacks=[Checkpoint(tmp_path / "single")])
    torch.testing.assert_close(first["params"], parameters(model, guide), rtol=1e-4, atol=1e-5)
    for ranks, single in zip(first["rows"], history.rows):
        assert ranks["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)
        # Each rank evaluates its half of the test set; the global latent's term, which mean_elbo
        # counts once per batch it evaluates, is then counted once per rank: log N(s; 0, 1) / 360 apart.
        assert ranks["test_elbo"] == pytest.approx(single["test_elbo"], abs=0.01)


def test_rank_zero_alone_writes_the_run_and_records_the_world(trained):
    out, (first, _) = trained
    run = out / "straight"
    config = Checkpointer(run).run_dir / "config.json"
    settings = json.loads(config.read_text())
    assert (settings["world_size"], settings["global_batch_size"], settings["rank_batch_size"]) == (2, 64, 32)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    saved = Checkpointer(run).load()
    assert torch.equal(parameters_of(saved), first["params"])


def parameters_of(checkpoint) -> torch.Tensor:
    model, guide = pair()
    model.load_state_dict(checkpoint["model"]), guide.load_state_dict(checkpoint["guide"])
    return parameters(model, guide)


def test_a_run_resumed_across_ranks_continues_as_the_uninterrupted_one(trained):
    _, (first, second) = trained
    assert torch.equal(first["resumed"], second["resumed"])
    torch.testing.assert_close(first["resumed"], first["params"], rtol=0, atol=1e-6)


def test_the_compiled_engine_averages_its_gradients_over_the_ranks(session):
    first, second = results(session, "compiled_engine")
    assert first["fallback"] is None
    assert torch.equal(first["params"], second["params"])
    train, _ = digits()
    model, guide = pair()
    engine = ModuleEngine(model, guide, Trace_ELBO(max_plate_nesting=1), lr=1e-2)
    for x, _ in train.batches(BATCH_SIZE, torch.Generator().manual_seed(3)):
        engine.step((x,), len(train))
    torch.testing.assert_close(first["params"], parameters(model, guide), rtol=1e-4, atol=1e-5)


def test_the_cli_on_two_ranks_writes_one_run_directory(session):
    results(session, "cli")
    run = session[0] / "cli"
    settings = json.loads((run / "config.json").read_text())
    assert (settings["world_size"], settings["global_batch_size"], settings["rank_batch_size"]) == (2, 64, 32)
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (run / "results.json").exists() and len(list((run / "tensorboard").iterdir())) == 1


def test_a_rank_that_dies_stops_the_run_with_an_error_and_a_loadable_checkpoint(session, tmp_path):
    out, outcomes = session
    first, second = outcomes["rank_one_dies"]
    assert second == {"exitcode": 3}
    error = first.get("error", "")
    assert error.startswith("DistributedError: rank 0 of 2: another rank stopped"), first
    assert "\n" not in error and "last good checkpoint" in error
    checkpoint = Checkpointer(out / "run").load()
    assert checkpoint["epoch"] == 1
    # The run continues in one process from where it stopped.
    model, guide = pair(seed=4)
    train, test = digits()
    history = fit(model, guide, Trace_ELBO(), train, test, epochs=2, batch_size=BATCH_SIZE, lr=1e-2, seed=3,
                  callbacks=[Checkpoint(out / "run", resume=True)])
    assert [row["epoch"] for row in history.rows] == [1, 2]


def test_a_global_batch_that_the_ranks_cannot_split_evenly_is_refused(monkeypatch):
    from pyrovae import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    train = load_dataset("digits", "train", binarize="static").subset(100)
    model, guide = pair()
    with pytest.raises(ValueError, match="batch_size 25 is not divisible by the 2 ranks"):
        fit(model, guide, Trace_ELBO(), train, epochs=1, batch_size=25)


