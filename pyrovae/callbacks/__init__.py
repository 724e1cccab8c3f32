"""Callbacks of :func:`pyrovae.train.fit`: each concern a run may have, in its own module.

==============================  =========================================================
:class:`Checkpoint`             run directory, config, metrics, checkpoints, resume, overwrite refusal
:class:`Progress`               progress bars and the printed row of each epoch
:class:`TensorBoard`            scalars (and sample grids, reconstructions) for TensorBoard
:class:`Diagnostics`            more objectives evaluated each epoch
:class:`TestObjective`          another objective for the test ELBO
:class:`TimeBudget`             no epoch starts after ``max_seconds`` of training
:class:`LearningRateSchedule`   the learning rate of each epoch
:class:`AdamEpsilon`            Adam's ``eps``
:class:`Alternate`              guide-only and model-only steps in turn (stochastic variational EM)
:class:`OnEpochEnd`             a function ``f(epoch, row)``
==============================  =========================================================

A model's own (cluster metrics, temperature or β annealing, codebook metrics, exact evidence) live
beside the model and are listed by its registry entry (:meth:`pyrovae.registry.ModelEntry.training_callbacks`).
"""

from pyrovae.callbacks.alternation import Alternate, alternation
from pyrovae.callbacks.base import Callback, Run
from pyrovae.callbacks.budget import TimeBudget
from pyrovae.callbacks.checkpoint import Checkpoint
from pyrovae.callbacks.diagnostics import Diagnostics, TestObjective
from pyrovae.callbacks.function import OnEpochEnd
from pyrovae.callbacks.optimizer import AdamEpsilon
from pyrovae.callbacks.progress import Progress
from pyrovae.callbacks.schedule import LearningRateSchedule
from pyrovae.callbacks.tensorboard import TensorBoard

__all__ = ["AdamEpsilon", "Alternate", "Callback", "Checkpoint", "Diagnostics", "LearningRateSchedule", "OnEpochEnd",
           "Progress", "Run", "TensorBoard", "TestObjective", "TimeBudget", "alternation"]
