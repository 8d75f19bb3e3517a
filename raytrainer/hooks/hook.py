"""The Hook base class: every point of the run where user code can act, and their priorities.

Also :func:`has_train_loop`, the question hooks (and the log processor the logger hook drives)
ask of whatever runner calls them; it lives here so that neither imports the runner package.
"""
from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any

DATA_BATCH = Any  # a batch as the dataloader yields it


class Priority(IntEnum):
    """Hook priorities; a lower value runs earlier at every hook point."""

    HIGHEST = 0
    VERY_HIGH = 10
    HIGH = 30
    ABOVE_NORMAL = 40
    NORMAL = 50
    BELOW_NORMAL = 60
    LOW = 70
    VERY_LOW = 90
    LOWEST = 100


def get_priority(priority: int | str | Priority) -> int:
    """Turn a priority (a number 0-100, a name like ``'NORMAL'``, or a Priority) into an int."""
    if isinstance(priority, bool):
        raise TypeError(f"priority must be an int, a Priority name or a Priority, got "
                        f"{priority!r}")
    if isinstance(priority, int):
        if not 0 <= priority <= 100:
            raise ValueError(f"priority must be between 0 and 100, got {priority}")
        return int(priority)
    if isinstance(priority, str):
        try:
            return Priority[priority.upper()].value
        except KeyError:
            raise ValueError(f"unknown priority name {priority!r}; expected one of "
                             f"{[p.name for p in Priority]}") from None
    raise TypeError(f"priority must be an int, a Priority name or a Priority, got {priority!r}")


class Hook:
    """Base class of hooks. Override any of the hook points; each receives the runner first.

    The ``_before_epoch``/``_after_iter``... methods are shared bodies that the train, val and test
    variants call with ``mode``; override those to act at the same point in every mode.
    """

    priority = "NORMAL"
    stages = ("before_run", "after_load_checkpoint", "before_train", "before_train_epoch",
              "before_train_iter", "after_train_iter", "after_train_epoch", "before_val",
              "before_val_epoch", "before_val_iter", "after_val_iter", "after_val_epoch",
              "after_val", "before_save_checkpoint", "after_train", "before_test",
              "before_test_epoch", "before_test_iter", "after_test_iter", "after_test_epoch",
              "after_test", "after_run")

    def before_run(self, runner) -> None:
        pass

    def after_run(self, runner) -> None:
        pass

    def before_train(self, runner) -> None:
        pass

    def after_train(self, runner) -> None:
        pass

    def before_val(self, runner) -> None:
        pass

    def after_val(self, runner) -> None:
        pass

    def before_test(self, runner) -> None:
        pass

    def after_test(self, runner) -> None:
        pass

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        pass

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        pass

    def before_train_epoch(self, runner) -> None:
        self._before_epoch(runner, mode="train")

    def before_val_epoch(self, runner) -> None:
        self._before_epoch(runner, mode="val")

    def before_test_epoch(self, runner) -> None:
        self._before_epoch(runner, mode="test")

    def after_train_epoch(self, runner) -> None:
        self._after_epoch(runner, mode="train")

    def after_val_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        self._after_epoch(runner, mode="val")

    def after_test_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        self._after_epoch(runner, mode="test")

    def before_train_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None) -> None:
        self._before_iter(runner, batch_idx=batch_idx, data_batch=data_batch, mode="train")

    def before_val_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None) -> None:
        self._before_iter(runner, batch_idx=batch_idx, data_batch=data_batch, mode="val")

    def before_test_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None) -> None:
        self._before_iter(runner, batch_idx=batch_idx, data_batch=data_batch, mode="test")

    def after_train_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                         outputs: dict | None = None) -> None:
        self._after_iter(runner, batch_idx=batch_idx, data_batch=data_batch, outputs=outputs,
                         mode="train")

    def after_val_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                       outputs=None) -> None:
        self._after_iter(runner, batch_idx=batch_idx, data_batch=data_batch, outputs=outputs,
                         mode="val")

    def after_test_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                        outputs=None) -> None:
        self._after_iter(runner, batch_idx=batch_idx, data_batch=data_batch, outputs=outputs,
                         mode="test")

    def _before_epoch(self, runner, mode: str = "train") -> None:
        pass

    def _after_epoch(self, runner, mode: str = "train") -> None:
        pass

    def _before_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                     mode: str = "train") -> None:
        pass

    def _after_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                    outputs=None, mode: str = "train") -> None:
        pass

    # Interval helpers, named as in MMEngine so user hooks port unchanged.
    def every_n_epochs(self, runner, n: int, start: int = 0) -> bool:
        dividend = runner.epoch + 1 - start
        return n > 0 and dividend >= 0 and dividend % n == 0

    def every_n_inner_iters(self, batch_idx: int, n: int) -> bool:
        return n > 0 and (batch_idx + 1) % n == 0

    def every_n_train_iters(self, runner, n: int, start: int = 0) -> bool:
        dividend = runner.iter + 1 - start
        return n > 0 and dividend >= 0 and dividend % n == 0

    def end_of_epoch(self, dataloader, batch_idx: int) -> bool:
        return batch_idx + 1 == len(dataloader)

    def is_last_train_epoch(self, runner) -> bool:
        return runner.epoch + 1 == runner.max_epochs

    def is_last_train_iter(self, runner) -> bool:
        return runner.iter + 1 == runner.max_iters

    def get_triggered_stages(self) -> list[str]:
        """Hook points this hook overrides (the runner calls only these)."""
        shared = {"_before_epoch": ("before_train_epoch", "before_val_epoch", "before_test_epoch"),
                  "_after_epoch": ("after_train_epoch", "after_val_epoch", "after_test_epoch"),
                  "_before_iter": ("before_train_iter", "before_val_iter", "before_test_iter"),
                  "_after_iter": ("after_train_iter", "after_val_iter", "after_test_iter")}
        triggered = set()
        for stage in self.stages:
            if _overrides(self, stage):
                triggered.add(stage)
        for method, points in shared.items():
            if _overrides(self, method):
                triggered.update(points)
        return [stage for stage in self.stages if stage in triggered]


def _overrides(hook: Hook, name: str) -> bool:
    return getattr(type(hook), name) is not getattr(Hook, name)


def has_train_loop(runner) -> bool:
    """Whether the runner has a built train loop (val/test-only runs have none).

    MMEngine runners keep an unbuilt loop as a dict in ``_train_loop``; other runners may only
    expose ``train_loop``, which may be None or raise when there is no training.
    """
    if hasattr(runner, "_train_loop"):
        loop = runner._train_loop
    else:
        try:
            loop = runner.train_loop
        except (AttributeError, RuntimeError):
            return False
    return loop is not None and not isinstance(loop, Mapping)
