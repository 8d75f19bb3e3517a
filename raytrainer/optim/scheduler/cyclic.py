"""Cyclic schedules: the one-cycle policy and cosine annealing with warm restarts.

Unlike the schedules in :mod:`.param_scheduler`, these set values from positions inside a cycle
(one-cycle ignores the current value altogether; cosine-restart jumps back to a fraction of the
initial value at each restart), so they are not meant to be chained with other schedulers on
the same parameter. This module owns only those two update rules.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from raytrainer.registry import PARAM_SCHEDULERS

from .base import _REQUIRED, INF, OptimizerLike, _ParamScheduler, check_optimizer

__all__ = ["OneCycleParamScheduler", "CosineRestartParamScheduler"]


def _one_cycle_phases(param_name: str, pct_start: float, total_steps: int,
                      three_phase: bool) -> list[dict[str, Any]]:
    """The phases of a one-cycle schedule: the step each ends at and the group keys holding
    the value it starts from and anneals to."""
    def phase(end_step: float, start: str, end: str) -> dict[str, Any]:
        return {"end_step": end_step, f"start_{param_name}": f"{start}_{param_name}",
                f"end_{param_name}": f"{end}_{param_name}"}

    warmup_end = float(pct_start * total_steps) - 1
    if three_phase:
        return [phase(warmup_end, "initial", "max"),
                phase(float(2 * pct_start * total_steps) - 2, "max", "initial"),
                phase(total_steps - 1, "initial", "min")]
    return [phase(warmup_end, "initial", "max"), phase(total_steps - 1, "max", "min")]


@PARAM_SCHEDULERS.register_module()
class OneCycleParamScheduler(_ParamScheduler):
    """The 1cycle policy (https://arxiv.org/abs/1708.07120): anneal the learning rate from
    ``eta_max / div_factor`` up to ``eta_max``, then down to a minimum far below the start.

    Values are set from the position in the cycle, not from the current value, so this
    scheduler does not chain. ``initial_lr``, ``max_lr`` and ``min_lr`` are stored in every
    param group. The default two phases follow fastai; ``three_phase=True`` follows the paper.

    Args:
        optimizer: The optimizer (or wrapper) whose param groups are scheduled.
        param_name: Must be ``'lr'``.
        eta_max: Peak value, one for all groups or a list with one per group.
        total_steps: Steps in the cycle; defaults to ``end - begin``.
        pct_start: Fraction of the cycle spent increasing, a float in [0, 1].
        anneal_strategy: ``'cos'`` or ``'linear'``.
        div_factor: The start value is ``eta_max / div_factor``.
        final_div_factor: The final value is the start value divided by this.
        three_phase: Add a third phase that anneals from the start value to the minimum, the
            first two being symmetric around ``pct_start``.

    Raises:
        ValueError: An argument is out of range, or the scheduler steps past ``total_steps``.
    """

    _epoch_args = {"total_steps": None}

    def __init__(self, optimizer: OptimizerLike, param_name: str,
                 eta_max: float | Sequence[float] = 0, total_steps: int | None = None,
                 pct_start: float = 0.3, anneal_strategy: str = "cos", div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False, begin: int = 0,
                 end: int = INF, last_step: int = -1, by_epoch: bool = True,
                 verbose: bool = False):
        name = type(self).__name__
        check_optimizer(name, optimizer)
        self._check_args(param_name, total_steps, pct_start, anneal_strategy)
        self.eta_max = eta_max
        self.div_factor = div_factor
        self.final_div_factor = final_div_factor
        self.total_steps = total_steps if total_steps is not None else end - begin
        self.anneal_strategy = anneal_strategy
        self._schedule_phases = _one_cycle_phases(param_name, pct_start, self.total_steps,
                                                  three_phase)
        max_values = self._format_param(f"max_{param_name}", optimizer, eta_max)
        if last_step == -1:
            for group, max_value in zip(optimizer.param_groups, max_values):
                group[f"initial_{param_name}"] = max_value / div_factor
                group[f"max_{param_name}"] = max_value
                group[f"min_{param_name}"] = group[f"initial_{param_name}"] / final_div_factor
        super().__init__(optimizer, param_name=param_name, begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    def _check_args(self, param_name: str, total_steps: int | None, pct_start: float,
                    anneal_strategy: str) -> None:
        name = type(self).__name__
        if param_name != "lr":
            raise ValueError(f"{name}: the one-cycle policy schedules 'lr' only, got "
                             f"param_name={param_name!r}")
        if total_steps is not None and (not isinstance(total_steps, int) or total_steps <= 0):
            raise ValueError(f"{name}: total_steps must be a positive integer, got "
                             f"{total_steps!r}")
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"{name}: pct_start must be a float between 0 and 1, got "
                             f"{pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{name}: anneal_strategy must be 'cos' or 'linear', got "
                             f"{anneal_strategy!r}")

    def _format_param(self, name: str, optimizer: OptimizerLike,
                      param: float | Sequence[float]) -> list[float]:
        """Return one value per param group: ``param`` repeated, or the list checked."""
        groups = optimizer.param_groups
        if isinstance(param, (list, tuple)):
            if len(param) != len(groups):
                raise ValueError(f"{type(self).__name__}: expected {len(groups)} values for "
                                 f"{name} (one per param group), got {len(param)}")
            return list(param)
        return [param] * len(groups)

    @staticmethod
    def _annealing_cos(start: float, end: float, pct: float) -> float:
        """Cosine-anneal from ``start`` to ``end`` as ``pct`` goes from 0 to 1."""
        cos_out = math.cos(math.pi * pct) + 1
        return end + (start - end) / 2.0 * cos_out

    @staticmethod
    def _annealing_linear(start: float, end: float, pct: float) -> float:
        """Linearly anneal from ``start`` to ``end`` as ``pct`` goes from 0 to 1."""
        return (end - start) * pct + start

    @property
    def anneal_func(self) -> Callable[[float, float, float], float]:
        """The annealing function ``anneal_strategy`` names."""
        if self.anneal_strategy == "cos":
            return self._annealing_cos
        return self._annealing_linear

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a state; one saved by MMEngine holds ``anneal_func`` instead of its name."""
        state = dict(state_dict)
        func = state.pop("anneal_func", None)
        if func is not None and "anneal_strategy" not in state:
            linear = "linear" in getattr(func, "__name__", "")
            state["anneal_strategy"] = "linear" if linear else "cos"
        super().load_state_dict(state)

    def _get_value(self) -> list[Any]:
        step = self.last_step
        if step > self.total_steps:
            raise ValueError(f"{type(self).__name__}: stepped {step + 1} times, but "
                             f"total_steps is {self.total_steps}")
        return [self._value_in_cycle(group, step) for group in self.optimizer.param_groups]

    def _value_in_cycle(self, group: dict[str, Any], step: int) -> float:
        start_step = 0
        for phase in self._schedule_phases[:-1]:
            if step <= phase["end_step"]:
                break
            start_step = phase["end_step"]
        else:  # past every earlier phase: the last one extends to the end of the cycle
            phase = self._schedule_phases[-1]
        pct = (step - start_step) / (phase["end_step"] - start_step)
        return self.anneal_func(group[phase[f"start_{self.param_name}"]],
                                group[phase[f"end_{self.param_name}"]], pct)


@PARAM_SCHEDULERS.register_module()
class CosineRestartParamScheduler(_ParamScheduler):
    """Cosine annealing with warm restarts: each period anneals from ``initial value *
    restart_weight`` down to the minimum, then the next period restarts.

    After the last period the value is left unchanged.

    Args:
        optimizer: The optimizer (or wrapper) whose param groups are scheduled.
        param_name: The param-group key to schedule.
        periods: Length of each cosine cycle, in steps (epochs when ``by_epoch``).
        restart_weights: The peak of each cycle as a fraction of the initial value; one per
            period.
        eta_min: The minimum value. Give exactly one of ``eta_min`` and ``eta_min_ratio``.
        eta_min_ratio: The minimum as a fraction of each group's initial value.

    Raises:
        ValueError: Not exactly one of ``eta_min``/``eta_min_ratio`` is given, or
            ``periods`` and ``restart_weights`` differ in length.
    """

    _epoch_args = {"periods": _REQUIRED}

    def __init__(self, optimizer: OptimizerLike, param_name: str, periods: Sequence[int],
                 restart_weights: Sequence[float] = (1,), eta_min: float | None = None,
                 eta_min_ratio: float | None = None, begin: int = 0, end: int = INF,
                 last_step: int = -1, by_epoch: bool = True, verbose: bool = False):
        name = type(self).__name__
        if (eta_min is None) == (eta_min_ratio is None):
            raise ValueError(f"{name}: give exactly one of eta_min and eta_min_ratio, got "
                             f"eta_min={eta_min}, eta_min_ratio={eta_min_ratio}")
        if len(periods) != len(restart_weights):
            raise ValueError(f"{name}: periods and restart_weights must have the same length, "
                             f"got {len(periods)} and {len(restart_weights)}")
        self.periods = list(periods)
        self.eta_min = eta_min
        self.eta_min_ratio = eta_min_ratio
        self.restart_weights = list(restart_weights)
        self.cumulative_periods = list(itertools.accumulate(self.periods))
        super().__init__(optimizer, param_name=param_name, begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    @staticmethod
    def get_position_from_periods(iteration: int,
                                  cumulative_periods: Sequence[int]) -> int | None:
        """Return the index of the period ``iteration`` falls in, or None past the last.

        With ``cumulative_periods=[100, 200, 300]``: 50 -> 0, 210 -> 2, 300 -> None.
        """
        for i, period_end in enumerate(cumulative_periods):
            if iteration < period_end:
                return i
        return None

    def _get_value(self) -> list[Any]:
        groups = self.optimizer.param_groups
        idx = self.get_position_from_periods(self.last_step, self.cumulative_periods)
        if idx is None:
            return [group[self.param_name] for group in groups]
        period = self.periods[idx]
        step = self.last_step - (0 if idx == 0 else self.cumulative_periods[idx - 1])
        values = []
        for base, group in zip(self.base_values, groups):
            eta_min = self.eta_min if self.eta_min_ratio is None else base * self.eta_min_ratio
            if step == 0:
                values.append(base * self.restart_weights[idx])
                continue
            ratio = ((1 + math.cos(math.pi * step / period))
                     / (1 + math.cos(math.pi * (step - 1) / period)))
            values.append(ratio * (group[self.param_name] - eta_min) + eta_min)
        return values
