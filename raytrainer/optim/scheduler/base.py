"""The parameter-scheduler base class: the ``begin``/``end`` window, step counting and state.

This module owns what every scheduler shares: recording ``initial_<param>`` in each param
group, the step counter that decides whether the current step falls inside ``[begin, end)``,
writing scheduled values into ``optimizer.param_groups``, plain-data ``state_dict``s, and the
epoch → iteration conversion of ``build_iter_from_epoch``. The schedules themselves (how a value
changes from one step to the next) live in the subclasses; this module must not know any of them.

Semantics follow MMEngine 0.10.7's ``_ParamScheduler`` so that configs and checkpoints port
unchanged.
"""
from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, Union

from torch.optim import Optimizer

from raytrainer.logging import print_log

__all__ = ["INF", "OptimizerLike", "_ParamScheduler"]

# The default ``end``: a step no run reaches. An int (not ``math.inf``) so that windows, periods
# and state dicts stay integers, as in MMEngine.
INF = int(1e9)

# ``build_iter_from_epoch`` marks epoch-unit arguments without a default with this.
_REQUIRED = object()


class _HasParamGroups(Protocol):
    param_groups: list[dict[str, Any]]


# A torch optimizer, or anything exposing its ``param_groups`` (an OptimWrapper).
OptimizerLike = Union[Optimizer, _HasParamGroups]


class _StepWatch:
    """Optimizer step post-hook that remembers whether ``optimizer.step()`` has run.

    Registered through torch's own hook API instead of replacing ``optimizer.step``, so the
    optimizer object is left as the user built it.
    """

    def __init__(self, optimizer: Optimizer):
        self.stepped = False
        self._handle = optimizer.register_step_post_hook(self)

    def __call__(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        self.stepped = True

    def remove(self) -> None:
        self._handle.remove()


def torch_optimizer_of(optimizer: OptimizerLike) -> Optimizer | None:
    """The ``torch.optim.Optimizer`` behind ``optimizer`` (itself or a wrapper's ``.optimizer``)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    inner = getattr(optimizer, "optimizer", None)
    return inner if isinstance(inner, Optimizer) else None


def check_optimizer(owner: str, optimizer: Any) -> None:
    """Raise ``TypeError`` unless ``optimizer`` exposes ``param_groups``."""
    if not hasattr(optimizer, "param_groups"):
        raise TypeError(f"{owner}: optimizer must be a torch.optim.Optimizer or an object with "
                        f"'param_groups' (such as an OptimWrapper), got {type(optimizer).__name__}")


def check_window(owner: str, begin: int, end: int, last_step: int) -> None:
    """Validate the ``[begin, end)`` window and ``last_step``."""
    if end <= begin:
        raise ValueError(f"{owner}: end must be larger than begin, got begin={begin}, end={end}")
    if not isinstance(last_step, int) or last_step < -1:
        raise ValueError(f"{owner}: last_step must be an int >= -1, got {last_step!r}")


def record_initial_values(owner: str, optimizer: OptimizerLike, param_name: str,
                          last_step: int) -> list[Any]:
    """Store ``initial_<param_name>`` in every param group and return those values.

    A fresh schedule (``last_step == -1``) records the current value unless an earlier scheduler
    on the same optimizer already did, so chained schedulers share one base value. Resuming
    without a state dict (``last_step >= 0``) needs the value recorded by the original run.
    """
    key = f"initial_{param_name}"
    for i, group in enumerate(optimizer.param_groups):
        if last_step == -1:
            group.setdefault(key, group[param_name])
        elif key not in group:
            raise KeyError(f"{owner}: optimizer.param_groups[{i}] has no '{key}', which "
                           f"last_step={last_step} requires (it is recorded when a scheduler "
                           f"starts from last_step=-1, and restored with the optimizer state)")
    return [group[key] for group in optimizer.param_groups]


def epochs_to_iters(value: Any, epoch_length: int) -> Any:
    """Scale an epoch count, or a list of them, to iterations; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [v * epoch_length for v in value]
    return value * epoch_length


class _ParamScheduler:
    """Base class of the schedulers that set one hyper-parameter in ``optimizer.param_groups``.

    A subclass implements :meth:`_get_value`, which returns the value of every param group for
    the current ``last_step``; it may read the values of the previous step from the param groups
    (the chained form), so several schedulers can act on one parameter in turn.

    Each :meth:`step` advances a global counter; only steps with ``begin <= counter < end`` move
    ``last_step`` and change the parameter. The constructor takes the first step.

    Args:
        optimizer: A ``torch.optim.Optimizer`` or an object with ``param_groups`` (an
            OptimWrapper).
        param_name: The param-group key to schedule (``'lr'``, ``'momentum'``, ...).
        begin: First step (inclusive) at which the value changes.
        end: Step (exclusive) at which the value stops changing.
        last_step: Index of the last step taken; ``-1`` starts afresh. A larger value resumes
            without a state dict and needs ``initial_<param_name>`` in the param groups.
        by_epoch: Whether :meth:`step` is called once per epoch (else once per iteration).
        verbose: Log every value the scheduler sets.

    Raises:
        TypeError: ``optimizer`` has no ``param_groups``.
        ValueError: ``end <= begin`` or ``last_step < -1``.
        KeyError: ``last_step != -1`` and a param group lacks ``initial_<param_name>``.
    """

    # Constructor arguments counted in epochs that ``build_iter_from_epoch`` converts to
    # iterations, mapped to their default (``_REQUIRED`` when the caller must give them).
    _epoch_args: ClassVar[dict[str, Any]] = {}
    # Attributes tied to this process's objects, never part of the state dict.
    _runtime_attrs: ClassVar[frozenset[str]] = frozenset({"optimizer", "_step_watch"})

    def __init__(self, optimizer: OptimizerLike, param_name: str, begin: int = 0,
                 end: int = INF, last_step: int = -1, by_epoch: bool = True,
                 verbose: bool = False):
        name = type(self).__name__
        check_optimizer(name, optimizer)
        check_window(name, begin, end, last_step)
        self.optimizer = optimizer
        self.param_name = param_name
        self.begin = begin
        self.end = end
        self.by_epoch = by_epoch
        self.base_values = record_initial_values(name, optimizer, param_name, last_step)
        self.last_step = last_step
        self._global_step = -1
        self.verbose = verbose
        torch_optimizer = torch_optimizer_of(optimizer)
        self._step_watch = _StepWatch(torch_optimizer) if torch_optimizer is not None else None
        self.step()

    @classmethod
    def build_iter_from_epoch(cls, *args: Any, begin: int = 0, end: int = INF,
                              by_epoch: bool = True, epoch_length: int | None = None,
                              **kwargs: Any) -> _ParamScheduler:
        """Build an iteration-based scheduler from epoch-based arguments.

        ``begin``, ``end`` and the class's epoch-unit arguments (such as ``T_max`` or
        ``milestones``) are multiplied by ``epoch_length``; the result has ``by_epoch=False``.

        Args:
            *args: Positional constructor arguments (the optimizer first).
            begin: First epoch of the window.
            end: End epoch of the window (``INF`` stays ``INF``).
            by_epoch: Must be True: only epoch-based arguments can be converted.
            epoch_length: Iterations per epoch.
            **kwargs: The other constructor arguments.

        Raises:
            ValueError: ``by_epoch`` is False or ``epoch_length`` is not a positive integer.
            TypeError: A required epoch-unit argument is missing from ``kwargs``.
        """
        owner = f"{cls.__name__}.build_iter_from_epoch"
        if not by_epoch:
            raise ValueError(f"{owner}: only epoch-based arguments (by_epoch=True) can be "
                             f"converted to iteration-based, got by_epoch=False")
        if not isinstance(epoch_length, numbers.Integral) or epoch_length <= 0:
            raise ValueError(f"{owner}: epoch_length must be a positive integer (iterations "
                             f"per epoch), got {epoch_length!r}")
        epoch_length = int(epoch_length)  # keep numpy integers out of the state dict
        for arg, default in cls._epoch_args.items():
            if default is _REQUIRED and arg not in kwargs:
                raise TypeError(f"{owner}: pass '{arg}' as a keyword argument, so that it can "
                                f"be converted from epochs to iterations")
            kwargs[arg] = epochs_to_iters(kwargs.get(arg, default), epoch_length)
        begin = int(begin * epoch_length)
        if end != INF:
            end = int(end * epoch_length)
        return cls(*args, begin=begin, end=end, by_epoch=False, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        """Return the scheduler's state as plain data (no optimizer), safe for
        ``torch.load(weights_only=True)``."""
        return {key: value for key, value in vars(self).items()
                if key not in self._runtime_attrs}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a state returned by :meth:`state_dict`."""
        self.__dict__.update({key: value for key, value in state_dict.items()
                              if key not in self._runtime_attrs})
        # A restored scheduler is past its first step: the step-order check no longer applies.
        self._drop_step_watch()

    def get_last_value(self) -> list[Any]:
        """Return the value of every param group after the last :meth:`step`."""
        return self._last_value

    def _get_value(self) -> list[Any]:
        """Return the value of every param group at ``self.last_step``."""
        raise NotImplementedError

    def print_value(self, is_verbose: bool, group: int, value: float) -> None:
        """Log the value just set for param group ``group`` when ``is_verbose``."""
        if is_verbose:
            print_log(f"Adjusting parameter value of group {group} to {value:.4e}.",
                      logger="current")

    def step(self) -> None:
        """Advance one step; inside ``[begin, end)`` set the next value in every param group."""
        if self._global_step == 0:
            self._warn_if_optimizer_not_stepped()
        self._global_step += 1
        if self.begin <= self._global_step < self.end:
            self.last_step += 1
            values = self._get_value()
            for i, (group, value) in enumerate(zip(self.optimizer.param_groups, values)):
                group[self.param_name] = value
                self.print_value(self.verbose, i, value)
        self._last_value = [group[self.param_name] for group in self.optimizer.param_groups]

    def _warn_if_optimizer_not_stepped(self) -> None:
        # The first value of a schedule applies to the first optimizer step; stepping the
        # scheduler first silently skips it (https://github.com/pytorch/pytorch/issues/20124).
        watch = getattr(self, "_step_watch", None)
        if watch is not None and not watch.stepped:
            warnings.warn(f"{type(self).__name__}.step() was called before optimizer.step(); "
                          f"call optimizer.step() first, or the first value of the schedule is "
                          f"skipped", UserWarning, stacklevel=3)
        self._drop_step_watch()

    def _drop_step_watch(self) -> None:
        watch = getattr(self, "_step_watch", None)
        if watch is not None:
            watch.remove()
        self._step_watch = None
