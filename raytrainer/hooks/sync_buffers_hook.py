"""SyncBuffersHook: average the model's buffers (BatchNorm running stats ...) across ranks.

DDP keeps parameters identical on every rank but each rank's buffers see only its own data
(unless ``broadcast_buffers``), so evaluation and checkpoints would depend on which rank they
came from. This hook owns that one all-reduce; it does nothing in a single process.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from .. import dist
from ..registry import HOOKS
from .hook import Hook


def all_reduce_buffers(buffers: Iterable[torch.Tensor]) -> None:
    """Replace every tensor with its mean over the ranks, in place.

    Tensors are flattened into one message per (device, dtype) to keep the number of
    collectives small. Integer buffers (``num_batches_tracked``) get the truncated mean, as
    MMEngine does.
    """
    world_size = dist.get_world_size()
    if world_size == 1:
        return
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for buffer in buffers:
        groups.setdefault((buffer.device, buffer.dtype), []).append(buffer)
    for (_, dtype), tensors in groups.items():
        flat = torch.cat([t.detach().reshape(-1) for t in tensors])
        dist.all_reduce(flat, op="sum")
        if dtype.is_floating_point or dtype.is_complex:
            flat.div_(world_size)
        else:
            flat = torch.div(flat, world_size, rounding_mode="trunc")
        offset = 0
        with torch.no_grad():
            for tensor in tensors:
                tensor.copy_(flat[offset:offset + tensor.numel()].view_as(tensor))
                offset += tensor.numel()


@HOOKS.register_module()
class SyncBuffersHook(Hook):
    """Average the model's buffers across ranks after every training epoch.

    An iteration-based loop validates without ending an epoch, so buffers are also averaged
    before a validation that did not follow a training epoch.
    """

    priority = "NORMAL"

    def __init__(self) -> None:
        self._synced_after_train = False

    def after_train_epoch(self, runner) -> None:
        if dist.is_distributed():
            all_reduce_buffers(runner.model.buffers())
            self._synced_after_train = True

    def before_val_epoch(self, runner) -> None:
        if dist.is_distributed() and not self._synced_after_train:
            all_reduce_buffers(runner.model.buffers())
        self._synced_after_train = False


__all__ = ["SyncBuffersHook", "all_reduce_buffers"]
