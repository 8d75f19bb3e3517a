"""The chainable schedules for any param-group value: step, multi-step, constant, exponential,
linear, polynomial and cosine annealing.

Each computes the next value from the value now in the param group (the chained form MMEngine
and ``torch.optim.lr_scheduler`` use), so schedulers applied one after another compose, and
other code may change the value between steps. This module owns only those update rules; the
window, state and conversion logic is in :mod:`.base`. The cyclic and metric-driven schedules
live in :mod:`.cyclic` and :mod:`.plateau` and are re-exported here, at the import path MMEngine
users know (``mmengine.optim.scheduler.param_scheduler``).

Every class takes ``begin``, ``end``, ``last_step``, ``by_epoch`` and ``verbose`` as documented
in :class:`~raytrainer.optim.scheduler.base._ParamScheduler`.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from raytrainer.registry import PARAM_SCHEDULERS

from .base import _REQUIRED, INF, OptimizerLike, _ParamScheduler
from .cyclic import CosineRestartParamScheduler, OneCycleParamScheduler
from .plateau import ReduceOnPlateauParamScheduler

__all__ = [
    "INF", "_ParamScheduler", "StepParamScheduler", "MultiStepParamScheduler",
    "ConstantParamScheduler", "ExponentialParamScheduler", "CosineAnnealingParamScheduler",
    "LinearParamScheduler", "PolyParamScheduler", "OneCycleParamScheduler",
    "CosineRestartParamScheduler", "ReduceOnPlateauParamScheduler",
]


def _check_factor(owner: str, name: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{owner}: {name} must be between 0 and 1, got {value}")


@PARAM_SCHEDULERS.register_module()
class StepParamScheduler(_ParamScheduler):
    """Multiply the value by ``gamma`` every ``step_size`` steps.

    Args:
        optimizer: The optimizer (or wrapper) whose param groups are scheduled.
        param_name: The param-group key to schedule.
        step_size: Steps between two decays (epochs when ``by_epoch``).
        gamma: Multiplicative decay factor.
    """

    _epoch_args = {"step_size": _REQUIRED}

    def __init__(self, optimizer: OptimizerLike, param_name: str, step_size: int,
                 gamma: float = 0.1, begin: int = 0, end: int = INF, last_step: int = -1,
                 by_epoch: bool = True, verbose: bool = False):
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, param_name=param_name, begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    def _get_value(self) -> list[Any]:
        current = [group[self.param_name] for group in self.optimizer.param_groups]
        if self.last_step == 0 or self.last_step % self.step_size != 0:
            return current
        return [value * self.gamma for value in current]


@PARAM_SCHEDULERS.register_module()
class MultiStepParamScheduler(_ParamScheduler):
    """Multiply the value by ``gamma`` at each milestone (``gamma**k`` for a milestone listed
    ``k`` times).

    Args:
        optimizer: The optimizer (or wrapper) whose param groups are scheduled.
        param_name: The param-group key to schedule.
        milestones: Steps (epochs when ``by_epoch``) at which to decay, counted from ``begin``.
        gamma: Multiplicative decay factor.
    """

    _epoch_args = {"milestones": _REQUIRED}

    # ``last_step`` comes before ``begin`` here, as in MMEngine, for positional callers.
    def __init__(self, optimizer: OptimizerLike, param_name: str, milestones: Sequence[int],
                 gamma: float = 0.1, last_step: int = -1, begin: int = 0, end: int = INF,
                 by_epoch: bool = True, verbose: bool = False):
        # A plain dict (milestone -> times listed) so the state dict loads with weights_only.
        self.milestones = dict(Counter(milestones))
        self.gamma = gamma
        super().__init__(optimizer, param_name=param_name, begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a state; MMEngine's ``Counter`` milestones are stored as a plain dict."""
        super().load_state_dict(state_dict)
        self.milestones = dict(self.milestones)

    def _get_value(self) -> list[Any]:
        current = [group[self.param_name] for group in self.optimizer.param_groups]
        if self.last_step not in self.milestones:
            return current
        return [value * self.gamma**self.milestones[self.last_step] for value in current]


@PARAM_SCHEDULERS.register_module()
class ConstantParamScheduler(_ParamScheduler):
    """Multiply the value by ``factor`` from ``begin`` until the last step of the window, where
    the original value is restored.

    Args:
        optimizer: The optimizer (or wrapper) whose param groups are scheduled.
        param_name: The param-group key to schedule.
        factor: The multiplier, between 0 and 1.

    Raises:
        ValueError: ``factor`` is outside [0, 1].
    """

    def __init__(self, optimizer: OptimizerLike, param_name: str, factor: float = 1.0 / 3,
                 begin: int = 0, end: int = INF, last_step: int = -1, by_epoch: bool = True,
                 verbose: bool = False):
        _check_factor(type(self).__name__, "factor", factor)
        self.factor = factor
        self.total_iters = end - begin - 1
        super().__init__(optimizer, param_name=param_name, begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    def _get_value(self) -> list[Any]:
        current = [group[self.param_name] for group in self.optimizer.param_groups]
        if self.last_step == 0:
            return [value * self.factor for value in current]
        if self.last_step == self.total_iters:
            return [value * (1.0 / self.factor) for value in current]
        return current


@PARAM_SCHEDULERS.register_module()
class ExponentialParamScheduler(_ParamScheduler):
    """Multiply the value by ``gamma`` every step after the first.

    Args:
        optimizer: The optimizer (or wrapper) whose param groups are scheduled.
        param_name: The param-group key to schedule.
        gamma: Multiplicative decay factor.
    """

    def __init__(self, optimizer: OptimizerLike, param_name: str, gamma: float,
                 begin: int = 0, end: int = INF, last_step: int = -1, by_epoch: bool = True,
                 verbose: bool = False):
        self.gamma = gamma
        super().__init__(optimizer, param_name=param_name, begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    def _get_value(self) -> list[Any]:
        current = [group[self.param_name] for group in self.optimizer.param_groups]
        if self.last_step == 0:
            return current
        return [value * self.gamma for value in current]


@PARAM_SCHEDULERS.register_module()
class CosineAnnealingParamScheduler(_ParamScheduler):
    r"""Anneal the value from its initial value to ``eta_min`` along half a cosine.

    Run alone it gives :math:`\eta_t = \eta_{min} + \frac{1}{2}(\eta_{max} - \eta_{min})
    (1 + \cos(\pi t / T_{max}))`, with :math:`\eta_{max}` the initial value; it is computed
    recursively from the current value (SGDR without restarts,
    https://arxiv.org/abs/1608.03983), so it composes with other schedulers. Past ``T_max`` it
    climbs back up, as torch's ``CosineAnnealingLR`` does.

    Args:
        optimizer: The optimizer (or wrapper) whose param groups are scheduled.
        param_name: The param-group key to schedule.
        T_max: Steps of the half cosine; defaults to ``end - begin``.
        eta_min: The minimum value. Defaults to 0 when ``eta_min_ratio`` is not given either.
        eta_min_ratio: The minimum as a fraction of each group's initial value.

    Raises:
        ValueError: Both ``eta_min`` and ``eta_min_ratio`` are given.
    """

    _epoch_args = {"T_max": None}

    def __init__(self, optimizer: OptimizerLike, param_name: str, T_max: int | None = None,
                 eta_min: float | None = None, begin: int = 0, end: int = INF,
                 last_step: int = -1, by_epoch: bool = True, verbose: bool = False,
                 eta_min_ratio: float | None = None):
        if eta_min is not None and eta_min_ratio is not None:
            raise ValueError(f"{type(self).__name__}: give either eta_min or eta_min_ratio, "
                             f"not both (got eta_min={eta_min}, eta_min_ratio={eta_min_ratio})")
        if eta_min is None and eta_min_ratio is None:
            eta_min = 0.0
        self.T_max = T_max or (end - begin)
        self.eta_min = eta_min
        self.eta_min_ratio = eta_min_ratio
        super().__init__(optimizer, param_name=param_name, begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    def _eta_min(self, base_value: float) -> float:
        return self.eta_min if self.eta_min_ratio is None else base_value * self.eta_min_ratio

    def _get_value(self) -> list[Any]:
        groups = self.optimizer.param_groups
        if self.last_step == 0:
            return [group[self.param_name] for group in groups]
        if (self.last_step - 1 - self.T_max) % (2 * self.T_max) == 0:
            # At the trough the ratio form below divides by zero; step up by the first increment.
            return [group[self.param_name]
                    + (base - self._eta_min(base)) * (1 - math.cos(math.pi / self.T_max)) / 2
                    for base, group in zip(self.base_values, groups)]
        ratio = ((1 + math.cos(math.pi * self.last_step / self.T_max))
                 / (1 + math.cos(math.pi * (self.last_step - 1) / self.T_max)))
        return [ratio * (group[self.param_name] - self._eta_min(base)) + self._eta_min(base)
                for base, group in zip(self.base_values, groups)]


@PARAM_SCHEDULERS.register_module()
class LinearParamScheduler(_ParamScheduler):
    """Scale the value by a factor moving linearly from ``start_factor`` (at ``begin``) to
    ``end_factor`` (at the last step of the window).

    The factor is applied in chained form: each step multiplies the current value by the ratio
    of this step's factor to the previous one, like torch's ``LinearLR``.

    Args:
        optimizer: The optimizer (or wrapper) whose param groups are scheduled.
        param_name: The param-group key to schedule.
        start_factor: The factor at the first step, between 0 and 1.
        end_factor: The factor at the last step of the window, between 0 and 1.

    Raises:
        ValueError: A factor is outside [0, 1].
    """

    def __init__(self, optimizer: OptimizerLike, param_name: str,
                 start_factor: float = 1.0 / 3, end_factor: float = 1.0, begin: int = 0,
                 end: int = INF, last_step: int = -1, by_epoch: bool = True,
                 verbose: bool = False):
        _check_factor(type(self).__name__, "start_factor", start_factor)
        _check_factor(type(self).__name__, "end_factor", end_factor)
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = end - begin - 1
        super().__init__(optimizer, param_name=param_name, begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    def _get_value(self) -> list[Any]:
        current = [group[self.param_name] for group in self.optimizer.param_groups]
        if self.last_step == 0:
            return [value * self.start_factor for value in current]
        slope = self.end_factor - self.start_factor
        previous = self.total_iters * self.start_factor + (self.last_step - 1) * slope
        return [value * (1.0 + slope / previous) for value in current]


@PARAM_SCHEDULERS.register_module()
class PolyParamScheduler(_ParamScheduler):
    """Decay the value polynomially to ``eta_min`` at the last step of the window.

    Args:
        optimizer: The optimizer (or wrapper) whose param groups are scheduled.
        param_name: The param-group key to schedule.
        eta_min: The value reached at the last step of the window.
        power: The power of the polynomial.
    """

    def __init__(self, optimizer: OptimizerLike, param_name: str, eta_min: float = 0,
                 power: float = 1.0, begin: int = 0, end: int = INF, last_step: int = -1,
                 by_epoch: bool = True, verbose: bool = False):
        self.eta_min = eta_min
        self.power = power
        self.total_iters = end - begin - 1
        super().__init__(optimizer, param_name=param_name, begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    def _get_value(self) -> list[Any]:
        current = [group[self.param_name] for group in self.optimizer.param_groups]
        if self.last_step == 0:
            return current
        decay = (1 - 1 / (self.total_iters - self.last_step + 1))**self.power
        return [(value - self.eta_min) * decay + self.eta_min for value in current]
