"""Measures data-loading and iteration time and estimates the time left (ETA)."""
from __future__ import annotations

import time

from ..registry import HOOKS
from .hook import Hook


@HOOKS.register_module()
class IterTimerHook(Hook):
    """Logs ``<mode>/data_time`` and ``<mode>/time`` per iteration and the run-time info ``eta``
    (seconds), averaged over the iterations since training (re)started."""

    priority = "NORMAL"

    def __init__(self):
        self._train_time = 0.0
        self._eval_time = 0.0
        self._start_iter = 0
        self._t = time.perf_counter()

    def before_train(self, runner) -> None:
        self._start_iter = runner.iter
        self._train_time = 0.0

    def _before_epoch(self, runner, mode: str = "train") -> None:
        self._t = time.perf_counter()

    def _after_epoch(self, runner, mode: str = "train") -> None:
        self._eval_time = 0.0

    def _before_iter(self, runner, batch_idx, data_batch=None, mode: str = "train") -> None:
        runner.message_hub.update_scalar(f"{mode}/data_time", time.perf_counter() - self._t)

    def _after_iter(self, runner, batch_idx, data_batch=None, outputs=None,
                    mode: str = "train") -> None:
        now = time.perf_counter()
        elapsed = now - self._t
        self._t = now
        hub = runner.message_hub
        hub.update_scalar(f"{mode}/time", elapsed)
        if mode == "train":
            self._train_time += elapsed
            current = runner.iter
            done = current - self._start_iter + 1
            hub.update_info("eta", self._train_time / done * (runner.max_iters - current - 1))
        else:
            self._eval_time += elapsed
            loader = runner.val_dataloader if mode == "val" else runner.test_dataloader
            hub.update_info("eta", self._eval_time / (batch_idx + 1)
                            * (len(loader) - batch_idx - 1))
