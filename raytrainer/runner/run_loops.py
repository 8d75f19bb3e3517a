"""The Runner's loops: kept as their configs until first used, then built once.

MMEngine's Runner exposes each loop and what hangs off it (``train_loop``, ``epoch``,
``val_dataloader``, ``test_evaluator`` ...). :class:`RunLoops` holds those views and the loop
builders, apart from the Runner's set-up; it reads the Runner's ``_train_loop``/``_val_loop``/
``_test_loop`` (a config, a built loop, or None) and the dataloaders and evaluators given with
them. Building a loop builds its dataloader (with the run's seed) and never runs it.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..registry import LOOPS, build_from_cfg


class RunLoops:
    """Train, val and test loops built on first use, and MMEngine's views of them."""

    _train_loop: Any
    _val_loop: Any
    _test_loop: Any
    _train_dataloader: Any
    _val_dataloader: Any
    _test_dataloader: Any
    _val_evaluator: Any
    _test_evaluator: Any

    @property
    def epoch(self) -> int:
        loop = self.train_loop_or_none
        return loop.epoch if loop is not None else 0

    @property
    def iter(self) -> int:
        loop = self.train_loop_or_none
        return loop.iter if loop is not None else 0

    @property
    def max_epochs(self) -> int:
        loop = self.train_loop_or_none
        return loop.max_epochs if loop is not None else 0

    @property
    def max_iters(self) -> int:
        loop = self.train_loop_or_none
        return loop.max_iters if loop is not None else 0

    @property
    def train_loop_or_none(self):
        """The train loop if it has been built (no building side effects)."""
        loop = self._train_loop
        return loop if loop is not None and not isinstance(loop, Mapping) else None

    @property
    def train_loop(self):
        if self._train_loop is None:
            raise RuntimeError("this runner has no train loop: pass train_dataloader, train_cfg "
                               "and optim_wrapper")
        self._train_loop = self.build_train_loop(self._train_loop)
        return self._train_loop

    @property
    def val_loop(self):
        if self._val_loop is None:
            return None
        self._val_loop = self.build_val_loop(self._val_loop)
        return self._val_loop

    @property
    def test_loop(self):
        if self._test_loop is None:
            return None
        self._test_loop = self.build_test_loop(self._test_loop)
        return self._test_loop

    @property
    def train_dataloader(self):
        return self.train_loop.dataloader

    @property
    def val_dataloader(self):
        return self.val_loop.dataloader

    @property
    def test_dataloader(self):
        return self.test_loop.dataloader

    @property
    def val_evaluator(self):
        return self.val_loop.evaluator

    @property
    def test_evaluator(self):
        return self.test_loop.evaluator

    @property
    def val_interval(self) -> int:
        return self.train_loop.val_interval

    @property
    def val_begin(self) -> int:
        return self.train_loop.val_begin

    def _build_loop(self, loop: Any, default_type: str, key: str, **kwargs):
        if not isinstance(loop, Mapping):
            return loop
        cfg = dict(loop)
        if "type" not in cfg:
            cfg["type"] = default_type
        return build_from_cfg(cfg, LOOPS, dict(runner=self, **kwargs), key=key)

    def build_train_loop(self, loop: Any):
        if not isinstance(loop, Mapping):
            return loop
        cfg = dict(loop)
        if "type" not in cfg:
            by_epoch = cfg.pop("by_epoch", True)
            cfg["type"] = "EpochBasedTrainLoop" if by_epoch else "IterBasedTrainLoop"
        elif "by_epoch" in cfg:
            cfg.pop("by_epoch")
        return self._build_loop(cfg, "EpochBasedTrainLoop", "train_cfg",
                                dataloader=self._train_dataloader)

    def build_val_loop(self, loop: Any):
        return self._build_loop(loop, "ValLoop", "val_cfg", dataloader=self._val_dataloader,
                                evaluator=self._val_evaluator)

    def build_test_loop(self, loop: Any):
        return self._build_loop(loop, "TestLoop", "test_cfg", dataloader=self._test_dataloader,
                                evaluator=self._test_evaluator)
