"""A user's own callbacks: their state is checkpointed, so a killed and resumed run reaches the state
and the weights of the uninterrupted run; ``run.stop`` ends a run; hooks run in the list's order."""

import math

import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovae.callbacks import Callback, Checkpoint, OnEpochEnd, TimeBudget
from pyrovae.data import load_dataset
from pyrovae.train import fit
from tests.support.small_vae import parameters, small_vae_pair


@pytest.fixture(scope="module")
def digits():
    return (load_dataset("digits", "train", binarize="static", seed=0).subset(400),
            load_dataset("digits", "test", binarize="static", seed=1).subset(100))


def pair(seed=0):
    return small_vae_pair(seed)


class HalveOnPlateau(Callback):
    """Keras's ReduceLROnPlateau: halve the rate after an epoch whose test ELBO does not beat the
    best by ``min_delta``. Its rate, best and count are state a resumed run needs."""

    def __init__(self, lr, min_delta):
        self.lr, self.min_delta, self.best, self.plateaus = lr, min_delta, -math.inf, 0

    def on_epoch_start(self, epoch, run):
        run.engine.set_lr(self.lr)

    def on_epoch_end(self, epoch, row, run):
        if row["test_elbo"] < self.best + self.min_delta:
            self.lr, self.plateaus = self.lr / 2, self.plateaus + 1
        self.best = max(self.best, row["test_elbo"])
        row["lr"] = self.lr

    def state_dict(self):
        return {"lr": self.lr, "best": self.best, "plateaus": self.plateaus}

    def load_state_dict(self, state):
        self.lr, self.best, self.plateaus = state["lr"], state["best"], state["plateaus"]


class Forgetful(HalveOnPlateau):
    def load_state_dict(self, state):
        pass


class KilledInEpoch(Callback):
    """Stands for ``kill -9`` in the middle of epoch ``epoch`` (the checkpoint holds the one before)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_batch_start(self, step, run):
        if step == (self.epoch - 1) * run.batches_per_epoch + 1:
            raise KeyboardInterrupt


def test_a_users_callback_state_survives_a_kill_and_resume(digits, tmp_path):
    options = dict(epochs=6, batch_size=100, lr=1e-2, seed=7)
    # A min_delta of 2 nats: the rate halves once the early gains slow down.
    model, guide = pair()
    straight_plateau = HalveOnPlateau(1e-2, min_delta=2.0)
    straight = fit(model, guide, Trace_ELBO(), *digits, callbacks=[straight_plateau, Checkpoint(tmp_path / "a")],
                   **options)
    weights = parameters(model, guide)
    assert 0 < straight_plateau.plateaus < 6, straight.column("lr")  # the state changes, and not every epoch

    with pytest.raises(KeyboardInterrupt):
        fit(*pair(), Trace_ELBO(), *digits, callbacks=[HalveOnPlateau(1e-2, 2.0), Checkpoint(tmp_path / "b"),
                                                       KilledInEpoch(5)], **options)
    saved = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 4 and saved["callbacks"]["HalveOnPlateau"]["lr"] == straight.rows[3]["lr"] < 1e-2

    model, guide = pair(seed=123)
    resumed_plateau = HalveOnPlateau(1e-2, 2.0)
    resumed = fit(model, guide, Trace_ELBO(), *digits,
                  callbacks=[resumed_plateau, Checkpoint(tmp_path / "b", resume=True)], **options)
    assert resumed_plateau.state_dict() == straight_plateau.state_dict()
    assert resumed.column("lr") == straight.column("lr")
    assert torch.equal(parameters(model, guide), weights)

    # The state is what makes it so: a callback that drops it on resume ends elsewhere.
    with pytest.raises(KeyboardInterrupt):
        fit(*pair(), Trace_ELBO(), *digits, callbacks=[HalveOnPlateau(1e-2, 2.0), Checkpoint(tmp_path / "c"),
                                                       KilledInEpoch(5)], **options)
    model, guide = pair()
    fit(model, guide, Trace_ELBO(), *digits, callbacks=[Forgetful(1e-2, 2.0), Checkpoint(tmp_path / "c", resume=True)],
        **options)
    assert not torch.equal(parameters(model, guide), weights)


def test_stop_ends_the_run_after_the_epoch_and_hooks_run_in_list_order(digits):
    calls = []

    class Stopper(Callback):
        def on_fit_start(self, run):
            calls.append("start")

        def on_epoch_end(self, epoch, row, run):
            calls.append(("stopper", epoch, "seen" in row))
            run.stop = epoch == 2

        def on_fit_end(self, run):
            calls.append("end")

    history = fit(*pair(), Trace_ELBO(), *digits, epochs=5, batch_size=100,
                  callbacks=[OnEpochEnd(lambda epoch, row: row.update(seen=True)), Stopper()])
    assert [row["epoch"] for row in history.rows] == [1, 2]
    assert calls == ["start", ("stopper", 1, True), ("stopper", 2, True), "end"]


def test_a_function_is_refused_with_the_way_to_wrap_it(digits):
    with pytest.raises(TypeError, match=r"OnEpochEnd\(f\)"):
        fit(*pair(), Trace_ELBO(), *digits, epochs=1, callbacks=[lambda epoch, row: None])


@pytest.mark.parametrize("per_call, epochs_trained", [(False, []), (True, [2])])
def test_a_resumed_time_budget_counts_earlier_calls_unless_it_is_per_call(digits, tmp_path, per_call, epochs_trained):
    """One epoch under a budget it exhausts, then a resumed call with the same budget: the cumulative
    budget (the time spent is checkpointed) trains nothing more; the per-call one trains one more epoch."""
    options = dict(epochs=5, batch_size=100)
    first = fit(*pair(), Trace_ELBO(), *digits, callbacks=[TimeBudget(1e-9), Checkpoint(tmp_path / "run")], **options)
    assert [row["epoch"] for row in first.rows] == [1]
    resumed = fit(*pair(), Trace_ELBO(), *digits,
                  callbacks=[TimeBudget(1e-9, per_call=per_call), Checkpoint(tmp_path / "run", resume=True)], **options)
    assert [row["epoch"] for row in resumed.rows if row["epoch"] > 1] == epochs_trained
