"""Reduce a param-group value when a validation metric stops improving.

This module owns the plateau rule (best value so far, patience, cooldown, thresholds). Unlike
the other schedulers it is driven by validation results: a hook calls ``step(metrics)`` after
each validation epoch (``need_val_args = True`` tells it to) and ``step()`` after each training
epoch, which only counts epochs for the ``begin``/``end`` window.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from raytrainer.logging import print_log
from raytrainer.registry import PARAM_SCHEDULERS

from .base import (
    INF,
    OptimizerLike,
    _ParamScheduler,
    check_optimizer,
    check_window,
    record_initial_values,
    torch_optimizer_of,
)

__all__ = ["ReduceOnPlateauParamScheduler"]


@PARAM_SCHEDULERS.register_module()
class ReduceOnPlateauParamScheduler(_ParamScheduler):
    """Multiply the value by ``factor`` once ``monitor`` has not improved for ``patience``
    validations in a row (torch's ``ReduceLROnPlateau``, with ``mode`` named ``rule``).

    Only epoch-based: the construction takes no step, ``step()`` counts training epochs, and
    ``step(metrics)`` judges a validation result while the epoch count is in ``[begin, end)``.

    Args:
        optimizer: The optimizer (or wrapper) whose param groups are scheduled.
        param_name: The param-group key to schedule.
        monitor: The key of the metric in the ``metrics`` dict.
        rule: ``'less'`` (lower is better) or ``'greater'``.
        factor: The multiplier applied on a plateau, in [0, 1).
        patience: Validations without improvement tolerated before reducing.
        threshold: The least change that counts as an improvement.
        threshold_rule: ``'rel'`` (relative to the best value) or ``'abs'``.
        cooldown: Validations to wait after a reduction before counting bad ones again.
        min_value: Lower bound of the value, one for all groups or one per group of the
            underlying optimizer.
        eps: Reductions smaller than this are skipped.
        begin: First epoch (inclusive) in which validations are judged.
        end: Epoch (exclusive) after which validations are ignored.
        last_step: Index of the last judged validation; see ``_ParamScheduler``.
        by_epoch: Must be True.
        verbose: Log every value the scheduler sets.

    Raises:
        ValueError: An argument is out of range or ``by_epoch`` is False.
    """

    need_val_args = True

    def __init__(self, optimizer: OptimizerLike, param_name: str, monitor: str = "loss",
                 rule: str = "less", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_rule: str = "rel", cooldown: int = 0,
                 min_value: float | Sequence[float] = 0.0, eps: float = 1e-8, begin: int = 0,
                 end: int = INF, last_step: int = -1, by_epoch: bool = True,
                 verbose: bool = False):
        name = type(self).__name__
        check_optimizer(name, optimizer)
        check_window(name, begin, end, last_step)
        if not by_epoch:
            raise ValueError(f"{name}: only by_epoch=True is supported (it follows "
                             f"validation epochs), got by_epoch=False")
        if not 0 <= factor < 1:
            raise ValueError(f"{name}: factor must be in [0, 1), got {factor}")
        self._check_rules(rule, threshold, threshold_rule)
        self.optimizer = optimizer
        self.param_name = param_name
        self.begin = begin
        self.end = end
        self.by_epoch = by_epoch
        record_initial_values(name, optimizer, param_name, last_step)
        self.last_step = last_step
        self._global_step = 0
        self.verbose = verbose
        self._step_watch = None
        self.factor = factor
        self.min_values = self._min_values(optimizer, min_value)
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.monitor = monitor
        self.rule = rule
        self.threshold = threshold
        self.threshold_rule = threshold_rule
        # The worst possible value under ``rule``, where ``best`` starts.
        self.rule_worse = INF if rule == "less" else -INF
        self.best = self.rule_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0
        self._last_value = [group[param_name] for group in optimizer.param_groups]

    def _check_rules(self, rule: str, threshold: float, threshold_rule: str) -> None:
        name = type(self).__name__
        if rule not in ("less", "greater"):
            raise ValueError(f"{name}: rule must be 'less' or 'greater', got {rule!r}")
        if threshold_rule not in ("rel", "abs"):
            raise ValueError(f"{name}: threshold_rule must be 'rel' or 'abs', got "
                             f"{threshold_rule!r}")
        if threshold < 0:
            raise ValueError(f"{name}: threshold must be >= 0, got {threshold}")

    def _min_values(self, optimizer: OptimizerLike,
                    min_value: float | Sequence[float]) -> list[float]:
        groups = optimizer.param_groups
        if not isinstance(min_value, (list, tuple)):
            return [min_value] * len(groups)
        inner = torch_optimizer_of(optimizer) or optimizer
        if len(min_value) != len(inner.param_groups):
            raise ValueError(f"{type(self).__name__}: expected {len(inner.param_groups)} "
                             f"min_value entries (one per param group), got {len(min_value)}")
        # A wrapper may expose extra groups after the optimizer's own (MMEngine's OptimWrapper
        # appends one tracking the base settings); they take the last group's bound.
        values = list(min_value)
        return values + [values[-1]] * (len(groups) - len(values))

    @classmethod
    def build_iter_from_epoch(cls, *args: Any, **kwargs: Any) -> _ParamScheduler:
        """Not supported: the schedule follows validation epochs, which have no iterations."""
        raise NotImplementedError(f"{cls.__name__} follows validation metrics once per epoch "
                                  f"and cannot be converted to iteration-based; remove "
                                  f"convert_to_iter_based from its config")

    def step(self, metrics: Mapping[str, Any] | None = None) -> None:
        """Count a training epoch (``metrics`` None) or judge a validation result.

        Args:
            metrics: Validation results by name; must contain ``monitor``.

        Raises:
            TypeError: ``metrics`` is not a dict.
            KeyError: ``metrics`` lacks ``monitor``.
        """
        if metrics is None:
            self._global_step += 1
            return
        if not isinstance(metrics, Mapping):
            raise TypeError(f"{type(self).__name__}.step: metrics must be a dict of "
                            f"validation results, got {type(metrics).__name__}")
        if self.begin <= self._global_step < self.end:
            self.last_step += 1
            if self.monitor not in metrics:
                raise KeyError(f"{type(self).__name__}: monitor '{self.monitor}' is not among "
                               f"the validation metrics {sorted(metrics)}")
            self._judge(float(metrics[self.monitor]))
        self._last_value = [group[self.param_name] for group in self.optimizer.param_groups]

    def _judge(self, metric: float) -> None:
        if self._is_better(metric, self.best):
            self.best = metric
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self._in_cooldown():
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad results during cooldown do not count
        if self.num_bad_epochs > self.patience:
            for i, (group, value) in enumerate(zip(self.optimizer.param_groups,
                                                   self._get_value())):
                if group[self.param_name] - value > self.eps:
                    group[self.param_name] = value
                    self.print_value(self.verbose, i, value)
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def _get_value(self) -> list[Any]:
        values = [float(group[self.param_name]) * self.factor
                  for group in self.optimizer.param_groups]
        return [max(value, low) for value, low in zip(values, self.min_values)]

    def _in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, value: float, best: float) -> bool:
        if self.rule == "less":
            if self.threshold_rule == "rel":
                return value < best * (1.0 - self.threshold)
            return value < best - self.threshold
        if self.threshold_rule == "rel":
            return value > best * (self.threshold + 1.0)
        return value > best + self.threshold

    def print_value(self, is_verbose: bool, group: int, value: float) -> None:
        """Log the value just set for param group ``group`` when ``is_verbose``."""
        if is_verbose:
            unit = "epoch" if self.by_epoch else "iter"
            print_log(f"Adjusting parameter value of group {group} to {value:.4e} in "
                      f"{unit} {self.last_step}.", logger="current")
