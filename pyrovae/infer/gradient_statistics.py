r"""Mean, variance and signal-to-noise ratio of an objective's gradient estimator.

The estimators are compared (as planned in Stojanovič n.d., §3) by redrawing the gradient many times on one fixed
batch: for each parameter element :math:`j`, with draws :math:`g^{(1)}, \dots, g^{(D)}`,

.. math::

    \hat\mu_j = \frac1D \sum_d g^{(d)}_j, \qquad
    \hat\sigma^2_j = \frac1{D-1} \sum_d \bigl(g^{(d)}_j - \hat\mu_j\bigr)^2, \qquad
    \mathrm{SNR}_j = \frac{|\hat\mu_j|}{\hat\sigma_j},

the per-parameter signal-to-noise ratio of Rainforth et al. (2018), "Tighter Variational Bounds
are Not Necessarily Better".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyro.poutine as poutine
import torch


@dataclass
class GroupGradientStatistics:
    """Gradient statistics of one parameter group, flattened over all its parameter elements."""

    mean: torch.Tensor
    variance: torch.Tensor
    snr: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Scalars for a results table: averages over the group's parameter elements.

        The SNR averages leave out elements whose gradient never varies (e.g. weights of input
        pixels that are 0 in the whole batch), where it is 0/0 or infinite; ``num_constant`` counts them.
        """
        varying = self.variance > 0
        snr = self.snr[varying]
        return {
            "mean_abs_mean": self.mean.abs().mean().item(),
            "mean_variance": self.variance.mean().item(),
            "mean_snr": snr.mean().item() if snr.numel() else float("nan"),
            "median_snr": snr.median().item() if snr.numel() else float("nan"),
            "num_constant": int((~varying).sum()),
        }


@dataclass
class GradientStatistics:
    """Statistics per parameter group (``"guide"``, ``"model"``) and wall time per draw."""

    groups: dict[str, GroupGradientStatistics]
    seconds_per_draw: float
    num_draws: int

    def summary(self) -> dict:
        """Scalars for a results table: the seconds per draw, the number of draws, and each group's
        ``summary()`` (a ``GroupGradientStatistics`` per group)."""
        return {
            "seconds_per_draw": self.seconds_per_draw,
            "num_draws": self.num_draws,
            **{name: group.summary() for name, group in self.groups.items()},
        }


def _parameters(fn, args) -> list[torch.Tensor]:
    """Trainable tensors of ``fn``: its ``nn.Module`` parameters and the Pyro params it reads."""
    params = list(fn.parameters()) if isinstance(fn, torch.nn.Module) else []
    with poutine.block():
        trace = poutine.trace(fn, param_only=True).get_trace(*args)
    for site in trace.nodes.values():
        value = site["value"]
        leaf = value.unconstrained() if hasattr(value, "unconstrained") else value
        params.append(leaf)
    unique = {id(p): p for p in params if p.requires_grad}
    return list(unique.values())


def gradient_statistics(model, guide, objective, batch, num_draws: int) -> GradientStatistics:
    """Draw ``objective``'s gradient ``num_draws`` times on the fixed ``batch``.

    :param model: the Pyro model (callable or ``nn.Module``).
    :param guide: the Pyro guide.
    :param objective: a Pyro/pyrovae objective with ``differentiable_loss``.
    :param batch: the model/guide arguments, a tuple (or one tensor).
    :param int num_draws: number of gradient draws, at least 2.
    :returns: :class:`GradientStatistics` with groups ``"guide"`` and ``"model"`` (a group without
        trainable parameters is left out); a parameter read by both counts as the guide's.
        ``.grad`` of the parameters is not touched.
    """
    if num_draws < 2:
        raise ValueError(f"num_draws must be at least 2 to estimate a variance, got {num_draws}")
    args = batch if isinstance(batch, tuple) else (batch,)
    guide_params = _parameters(guide, args)
    guide_ids = {id(p) for p in guide_params}
    model_params = [p for p in _parameters(model, args) if id(p) not in guide_ids]
    groups = {name: params for name, params in (("guide", guide_params), ("model", model_params)) if params}
    if not groups:
        raise ValueError("neither the model nor the guide has trainable parameters")
    all_params = [p for params in groups.values() for p in params]

    draws = {name: [] for name in groups}
    start = time.perf_counter()
    for _ in range(num_draws):
        loss = objective.differentiable_loss(model, guide, *args)
        if not loss.requires_grad:
            raise ValueError(f"{type(objective).__name__} produces no gradients")
        grads = torch.autograd.grad(loss, all_params, allow_unused=True)
        position = 0
        for name, params in groups.items():
            flat = [
                (g if g is not None else torch.zeros_like(p)).reshape(-1)
                for p, g in zip(params, grads[position : position + len(params)])
            ]
            draws[name].append(torch.cat(flat).detach())
            position += len(params)
    seconds_per_draw = (time.perf_counter() - start) / num_draws

    statistics = {}
    for name, rows in draws.items():
        stacked = torch.stack(rows)
        mean, variance = stacked.mean(0), stacked.var(0, correction=1)
        statistics[name] = GroupGradientStatistics(mean, variance, mean.abs() / variance.sqrt())
    return GradientStatistics(statistics, seconds_per_draw, num_draws)
