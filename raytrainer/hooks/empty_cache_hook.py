"""EmptyCacheHook: return cached, unused CUDA memory to the driver at chosen points of a run."""
from __future__ import annotations

import torch

from ..registry import HOOKS
from .hook import DATA_BATCH, Hook


def _empty_cuda_cache() -> None:
    # is_initialized() is a cheap flag check; a process that never touched CUDA has no cache.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


@HOOKS.register_module()
class EmptyCacheHook(Hook):
    """Call ``torch.cuda.empty_cache()`` before/after epochs and/or after iterations.

    Applies to training, validation and test alike. Without CUDA it does nothing. Emptying the
    cache helps other processes on the same GPU and fragmentation-bound jobs, at the cost of
    re-allocating memory afterwards, so ``after_iter`` is off by default.

    Args:
        before_epoch: Empty the cache before every epoch.
        after_epoch: Empty the cache after every epoch.
        after_iter: Empty the cache after every iteration.
    """

    priority = "NORMAL"

    def __init__(self, before_epoch: bool = False, after_epoch: bool = True,
                 after_iter: bool = False) -> None:
        self._do_before_epoch = before_epoch
        self._do_after_epoch = after_epoch
        self._do_after_iter = after_iter

    def _before_epoch(self, runner, mode: str = "train") -> None:
        if self._do_before_epoch:
            _empty_cuda_cache()

    def _after_epoch(self, runner, mode: str = "train") -> None:
        if self._do_after_epoch:
            _empty_cuda_cache()

    def _after_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                    outputs=None, mode: str = "train") -> None:
        if self._do_after_iter:
            _empty_cuda_cache()


__all__ = ["EmptyCacheHook"]
