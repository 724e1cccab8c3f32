"""More objectives evaluated each epoch, and another objective for the test ELBO."""

from __future__ import annotations

import pyro

from pyrovae.callbacks.base import Callback, Run
from pyrovae.evaluate import mean_elbos_over_ranks
from pyrovae.placement import set_plate_nesting


class Diagnostics(Callback):
    """Evaluate ``objectives`` (``{name: pyro.infer.ELBO}``) each epoch on the test set (the training
    set if there is none), logged as ``-loss`` per example under their names, e.g.
    ``Diagnostics({"true_discrete_bound": TrueDiscreteBound()})`` next to a relaxed objective.
    Across ranks each evaluates its part of the data and the sums are added up."""

    def __init__(self, objectives: dict[str, pyro.infer.ELBO]):
        self.objectives = dict(objectives)

    def on_fit_start(self, run: Run) -> None:
        for objective in self.objectives.values():
            set_plate_nesting(objective, run.model)

    def on_epoch_end(self, epoch: int, row: dict, run: Run) -> None:
        data = run.test if run.test is not None else run.train
        row.update(mean_elbos_over_ranks(run.model, run.guide, data, self.objectives))


class TestObjective(Callback):
    """Evaluate the test ELBO with ``objective`` instead of :func:`pyrovae.train.default_eval_elbo`
    (e.g. the relaxed objective a model trains on, or :class:`~pyrovae.infer.TrueDiscreteBound`)."""

    __test__ = False  # not a pytest test class

    def __init__(self, objective: pyro.infer.ELBO):
        self.objective = objective

    def on_fit_start(self, run: Run) -> None:
        set_plate_nesting(self.objective, run.model)
        run.eval_elbo = self.objective
