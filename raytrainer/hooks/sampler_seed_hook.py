"""Tells the training sampler which epoch starts, so each epoch gets its own shuffle."""
from __future__ import annotations

from ..dataset.loader_info import find_sampler
from ..registry import HOOKS
from .hook import Hook


@HOOKS.register_module()
class DistSamplerSeedHook(Hook):
    """Calls ``set_epoch(runner.epoch)`` on the train dataloader's sampler before each epoch."""

    priority = "NORMAL"

    def before_train_epoch(self, runner) -> None:
        sampler = find_sampler(runner.train_loop.dataloader)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(runner.epoch)
