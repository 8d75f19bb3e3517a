"""CheckInvalidLossHook: stop training with a clear error when the loss becomes NaN or inf."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ..registry import HOOKS
from .hook import DATA_BATCH, Hook


def _as_float(value: Any) -> float | str:
    if isinstance(value, torch.Tensor):
        return value.detach().float().mean().item() if value.numel() else float("nan")
    if isinstance(value, (int, float)):
        return float(value)
    return repr(value)


@HOOKS.register_module()
class CheckInvalidLossHook(Hook):
    """Raise ``FloatingPointError`` when the loss of a training step is NaN or infinite.

    Checks ``outputs['loss']`` and every other term whose name contains ``loss``. The check
    copies one number to the host every ``interval`` iterations; with ``interval=1`` that is
    one small transfer per step (the logging hooks already read the loss every step).

    Args:
        interval: Check every this many training iterations.
    """

    priority = "NORMAL"

    def __init__(self, interval: int = 50) -> None:
        if int(interval) != interval or interval < 1:
            raise ValueError(f"CheckInvalidLossHook: interval must be a positive integer, got "
                             f"{interval!r}")
        self.interval = int(interval)

    def after_train_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                         outputs: dict | None = None) -> None:
        if self.interval != 1 and not self.every_n_train_iters(runner, self.interval):
            return
        if not isinstance(outputs, Mapping) or "loss" not in outputs:
            keys = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
            raise KeyError(f"CheckInvalidLossHook: train_step must return a dict with 'loss', "
                           f"got {keys}")
        # Sum every loss term: a NaN/inf in any of them makes the sum non-finite, and one host
        # transfer checks them all. outputs['loss'] alone is not enough, because a term that is
        # itself named 'loss' replaces the total under that key (as in MMEngine).
        total: torch.Tensor | float = 0.0
        for key, value in outputs.items():
            if "loss" in key:
                total = total + (value.detach().float().sum()
                                 if isinstance(value, torch.Tensor) else float(value))
        finite = math.isfinite(float(total))
        if not finite:
            terms = ", ".join(f"{name}={_as_float(value)}" for name, value in outputs.items())
            raise FloatingPointError(
                f"loss is not finite at iteration {runner.iter + 1} (epoch {runner.epoch + 1}): "
                f"{terms}")


__all__ = ["CheckInvalidLossHook"]
